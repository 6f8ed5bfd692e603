//! The DAG walk: every node starts as soon as its dependencies have finished.
//!
//! Each graph (the top level, or one sample of a consensus body) is driven by a
//! `FuturesUnordered` of its running nodes: when one finishes, the dependents whose last
//! dependency it was are started. Nothing is spawned, so dropping the run's future drops every
//! node in flight — model requests and sandbox calls included — which is how a caller that goes
//! away cancels its run.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::{self, FuturesUnordered, StreamExt};
use serde_json::{Map, Value};
use sgde_llm::{ChatRequest, ChatResponse, Message, ModelClient, Usage};
use sgde_sandbox::{CallRequest, Limits, Sandbox};
use sgde_workflow::validate::MAX_SAMPLES;

use crate::error::{NodeError, NodeErrorKind, RunError};
use crate::prepared::{
    PreparedCode, PreparedConsensus, PreparedGraph, PreparedKind, PreparedLlm, PreparedNode,
    PreparedWorkflow, code_limits, template_key,
};
use crate::trace::{NodeTrace, Trace, TraceSink};
use crate::vote::{self, Ballot};

/// Service-wide execution settings.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Deadline of an `llm` node without its own `timeout_ms`.
    pub node_timeout: Duration,
    /// Deadline of a whole run unless the caller asks for a shorter one.
    pub run_deadline: Duration,
    /// Most samples of one consensus node in flight at once.
    pub consensus_concurrency: usize,
    /// Sandbox limits of a code node that sets none.
    pub code_defaults: Limits,
    /// Sandbox limits no code node may exceed.
    pub code_ceiling: Limits,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        let defaults = Limits::default();
        Self {
            node_timeout: Duration::from_secs(120),
            run_deadline: Duration::from_secs(600),
            consensus_concurrency: 16,
            code_ceiling: defaults,
            code_defaults: defaults,
        }
    }
}

/// Per-run options.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// A deadline shorter than the service's.
    pub deadline: Option<Duration>,
}

/// The outcome of one run. The trace is there whether the run succeeded or not.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub result: Result<Value, RunError>,
    pub trace: Trace,
    pub usage: Usage,
    pub elapsed: Duration,
}

/// Executes prepared workflows against a model client and a sandbox.
#[derive(Clone)]
pub struct Runtime {
    models: Arc<dyn ModelClient>,
    sandbox: Sandbox,
    config: Arc<RuntimeConfig>,
}

/// Values a graph can see: by id, from its own nodes and from outside.
type Scope = BTreeMap<String, Arc<Value>>;

/// Where in the consensus tree a graph runs.
#[derive(Clone)]
struct SampleCtx {
    /// Sample index within the innermost consensus, for traces.
    index: Option<u32>,
    /// Path prefix for traces, e.g. `solve[2]/`.
    prefix: String,
    /// Distinct per sample across nesting; sent to the model so N samples are N answers.
    key: u32,
}

struct RunCtx<'a> {
    runtime: &'a Runtime,
    workflow: &'a PreparedWorkflow,
    inputs: Arc<Value>,
    sink: TraceSink,
    /// Replies fetched for a whole consensus fan-out at once, by (node path, sample key); each
    /// sample takes its own when it reaches the node.
    prefetched: Mutex<HashMap<(String, u32), ModelReply>>,
}

/// A model reply, or why there is none, as a node records it.
type ModelReply = Result<ChatResponse, (NodeErrorKind, String)>;

impl Runtime {
    pub fn new(models: Arc<dyn ModelClient>, sandbox: Sandbox, config: RuntimeConfig) -> Self {
        Self { models, sandbox, config: Arc::new(config) }
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Runs `workflow` on `inputs`. Never panics on anything a model, the code or the inputs do;
    /// every failure is in `result` and names its node.
    pub async fn execute(
        &self,
        workflow: &PreparedWorkflow,
        inputs: Value,
        options: &RunOptions,
    ) -> RunReport {
        let started = Instant::now();
        let errors: Vec<String> = workflow
            .input_errors(&inputs)
            .into_iter()
            .map(|(at, e)| if at.is_empty() { e } else { format!("{at}: {e}") })
            .collect();
        if !errors.is_empty() {
            return RunReport {
                result: Err(RunError::Inputs { errors }),
                trace: Trace::default(),
                usage: Usage::default(),
                elapsed: started.elapsed(),
            };
        }
        let ctx = RunCtx {
            runtime: self,
            workflow,
            inputs: Arc::new(inputs),
            sink: TraceSink::new(),
            prefetched: Mutex::new(HashMap::new()),
        };
        let deadline = options.deadline.unwrap_or(self.config.run_deadline).min(self.config.run_deadline);
        let root = SampleCtx { index: None, prefix: String::new(), key: 0 };
        let walk = run_graph(&ctx, &workflow.root, Scope::new(), root);
        let result = match tokio::time::timeout(deadline, walk).await {
            Ok(Ok(mut values)) => {
                let output = &workflow.root.nodes[workflow.root.output].id;
                Ok(values.remove(output).map(Arc::unwrap_or_clone).unwrap_or(Value::Null))
            }
            Ok(Err(e)) => Err(RunError::Node(e)),
            Err(_) => Err(RunError::Deadline {
                deadline_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
            }),
        };
        let trace = ctx.sink.take();
        RunReport { result, usage: trace.usage(), trace, elapsed: started.elapsed() }
    }
}

/// Runs one graph to completion and returns the values of all its nodes.
fn run_graph<'a>(
    ctx: &'a RunCtx<'a>,
    graph: &'a PreparedGraph,
    outer: Scope,
    sample: SampleCtx,
) -> BoxFuture<'a, Result<Scope, NodeError>> {
    Box::pin(async move {
        let mut remaining = graph.local_deps.clone();
        let mut values = outer;
        let mut running = FuturesUnordered::new();
        let start = |i: usize, values: &Scope| {
            let node = &graph.nodes[i];
            let deps: Scope =
                node.deps.iter().filter_map(|d| values.get(d).map(|v| (d.clone(), Arc::clone(v)))).collect();
            let sample = sample.clone();
            async move { (i, run_node(ctx, node, deps, sample).await) }
        };
        for (i, _) in remaining.iter().enumerate().filter(|(_, n)| **n == 0) {
            running.push(start(i, &values));
        }
        let mut finished = 0;
        while let Some((i, result)) = running.next().await {
            let value = result?;
            finished += 1;
            values.insert(graph.nodes[i].id.clone(), Arc::new(value));
            for &d in &graph.dependents[i] {
                remaining[d] -= 1;
                if remaining[d] == 0 {
                    running.push(start(d, &values));
                }
            }
        }
        debug_assert_eq!(finished, graph.nodes.len(), "a valid graph runs every node");
        Ok(values)
    })
}

async fn run_node(
    ctx: &RunCtx<'_>,
    node: &PreparedNode,
    deps: Scope,
    sample: SampleCtx,
) -> Result<Value, NodeError> {
    let path = format!("{}{}", sample.prefix, node.id);
    let kind = match &node.kind {
        PreparedKind::Llm(_) => "llm",
        PreparedKind::Code(_) => "code",
        PreparedKind::Consensus(_) => "consensus",
    };
    let mut trace = NodeTrace::new(path.clone(), &node.id, kind, sample.index, ctx.sink.now_us());
    let result = match &node.kind {
        PreparedKind::Llm(llm) => run_llm(ctx, node, llm, &deps, &sample, &mut trace).await,
        PreparedKind::Code(code) => run_code(ctx, code, &deps, &mut trace).await,
        PreparedKind::Consensus(c) => run_consensus(ctx, node, c, deps, &sample, &mut trace).await,
    };
    let result = result.map_err(|(kind, message)| NodeError { node: path, kind, message });
    match &result {
        Ok(value) => trace.value = Some(value.clone()),
        Err(e) => trace.error = Some(e.clone()),
    }
    ctx.sink.record(trace);
    result
}

type StepResult = Result<Value, (NodeErrorKind, String)>;

/// The template context: `inputs` plus each dependency by id, borrowed, not copied.
fn template_context<'v>(inputs: &'v Value, deps: &'v Scope) -> BTreeMap<&'v str, &'v Value> {
    let mut context: BTreeMap<&str, &Value> = deps.iter().map(|(k, v)| (k.as_str(), v.as_ref())).collect();
    context.insert("inputs", inputs);
    context
}

/// The request of an `llm` node: rendered templates (also recorded in the trace) and decoding.
fn llm_request(
    ctx: &RunCtx<'_>,
    node: &PreparedNode,
    llm: &PreparedLlm,
    deps: &Scope,
    sample_key: u32,
    mut trace: Option<&mut NodeTrace>,
) -> Result<ChatRequest, (NodeErrorKind, String)> {
    let context = template_context(&ctx.inputs, deps);
    let render = |part: &str| {
        ctx.workflow
            .templates
            .render(&template_key(&node.path, part), &context)
            .map_err(|e| (NodeErrorKind::Template, format!("{part}: {}", e.message)))
    };
    let mut messages = Vec::with_capacity(2);
    if llm.has_system {
        let system = render("system")?;
        if let Some(trace) = trace.as_deref_mut() {
            trace.system = Some(system.clone());
        }
        messages.push(Message::system(system));
    }
    let prompt = render("prompt")?;
    if let Some(trace) = trace {
        trace.prompt = Some(prompt.clone());
    }
    messages.push(Message::user(prompt));
    let mut decoding = llm.decoding.clone();
    decoding.seed = decoding.seed.map(|s| s.wrapping_add(u64::from(sample_key)));
    Ok(ChatRequest {
        endpoint: llm.model.clone(),
        messages,
        decoding,
        sample_index: sample_key,
        json_schema: llm.json_schema.clone(),
    })
}

fn no_reply_within(timeout: Duration) -> (NodeErrorKind, String) {
    (NodeErrorKind::Timeout, format!("no model reply within {} ms", timeout.as_millis()))
}

async fn run_llm(
    ctx: &RunCtx<'_>,
    node: &PreparedNode,
    llm: &PreparedLlm,
    deps: &Scope,
    sample: &SampleCtx,
    trace: &mut NodeTrace,
) -> StepResult {
    let request = llm_request(ctx, node, llm, deps, sample.key, Some(trace))?;
    let prefetched = ctx
        .prefetched
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&(node.path.clone(), sample.key));
    let reply = match prefetched {
        Some(reply) => reply,
        None => {
            let timeout = llm.timeout.unwrap_or(ctx.runtime.config.node_timeout);
            match tokio::time::timeout(timeout, ctx.runtime.models.complete(request)).await {
                Err(_) => Err(no_reply_within(timeout)),
                Ok(Err(e)) => Err((NodeErrorKind::Model, e.to_string())),
                Ok(Ok(response)) => Ok(response),
            }
        }
    };
    let response = reply?;
    trace.usage = Some(response.usage);
    trace.cached = response.cached;
    trace.raw_output = Some(response.text.clone());
    llm.parser.parse(&response.text).map_err(|e| (NodeErrorKind::Parse, e.to_string()))
}

/// Fetches, for every `llm` node of a consensus body that depends only on values from outside
/// the body, all samples' replies with one `complete_n` call: one request with the API's `n`
/// where the endpoint honours it (the prompt is the same for every sample), concurrent calls
/// otherwise. Each sample then finds its reply under its own sample key, so traces, seeds and
/// cache keys are per sample as if it had asked itself.
async fn prefetch_fan_out(ctx: &RunCtx<'_>, consensus: &PreparedConsensus, deps: &Scope, first_key: u32) {
    let body = &consensus.body;
    let fetches =
        body.nodes.iter().enumerate().filter(|(i, _)| body.local_deps[*i] == 0).filter_map(|(_, node)| {
            let PreparedKind::Llm(llm) = &node.kind else { return None };
            let node_deps: Scope =
                node.deps.iter().filter_map(|d| deps.get(d).map(|v| (d.clone(), Arc::clone(v)))).collect();
            // A template error is reported by each sample itself, with its trace.
            let request = llm_request(ctx, node, llm, &node_deps, first_key, None).ok()?;
            let timeout = llm.timeout.unwrap_or(ctx.runtime.config.node_timeout);
            Some(async move {
                let replies: Vec<ModelReply> = match tokio::time::timeout(
                    timeout,
                    ctx.runtime.models.complete_n(request, consensus.samples),
                )
                .await
                {
                    Err(_) => (0..consensus.samples).map(|_| Err(no_reply_within(timeout))).collect(),
                    Ok(results) => results
                        .into_iter()
                        .map(|r| r.map_err(|e| (NodeErrorKind::Model, e.to_string())))
                        .collect(),
                };
                (node.path.clone(), replies)
            })
        });
    let fetched = futures::future::join_all(fetches).await;
    let mut prefetched = ctx.prefetched.lock().unwrap_or_else(PoisonError::into_inner);
    for (path, replies) in fetched {
        for (i, reply) in replies.into_iter().enumerate() {
            let key = first_key.wrapping_add(u32::try_from(i).unwrap_or(u32::MAX));
            prefetched.insert((path.clone(), key), reply);
        }
    }
}

async fn run_code(ctx: &RunCtx<'_>, code: &PreparedCode, deps: &Scope, trace: &mut NodeTrace) -> StepResult {
    let mut kwargs = Map::new();
    let mut put = |name: &str| {
        let value =
            if name == "inputs" { Some(ctx.inputs.as_ref()) } else { deps.get(name).map(Arc::as_ref) };
        if let Some(value) = value {
            kwargs.insert(name.to_owned(), value.clone());
        }
    };
    match &code.params {
        Some(params) => params.iter().for_each(|p| put(p)),
        None => {
            put("inputs");
            deps.keys().for_each(|k| put(k));
        }
    }
    let config = &ctx.runtime.config;
    let request = CallRequest {
        code: Arc::clone(&code.code),
        function: sgde_workflow::python::ENTRY_POINT.to_owned(),
        kwargs,
        limits: Some(code_limits(code.limits.as_ref(), &config.code_defaults, &config.code_ceiling)),
    };
    match ctx.runtime.sandbox.call(request).await {
        Ok(output) => {
            if !output.stdout.is_empty() {
                trace.stdout = Some(output.stdout);
            }
            Ok(output.value)
        }
        Err(e) => Err((NodeErrorKind::Code, e.to_string())),
    }
}

async fn run_consensus(
    ctx: &RunCtx<'_>,
    node: &PreparedNode,
    consensus: &PreparedConsensus,
    deps: Scope,
    sample: &SampleCtx,
    trace: &mut NodeTrace,
) -> StepResult {
    let limit = consensus
        .max_concurrency
        .map_or(consensus.samples as usize, |m| m as usize)
        .min(ctx.runtime.config.consensus_concurrency)
        .max(1);
    let over = consensus.over.as_str();
    let key_of = |s: u32| sample.key.wrapping_mul(MAX_SAMPLES + 1).wrapping_add(s + 1);
    if consensus.samples > 1 {
        prefetch_fan_out(ctx, consensus, &deps, key_of(0)).await;
    }
    let runs = stream::iter(0..consensus.samples)
        .map(|s| {
            let child = SampleCtx {
                index: Some(s),
                prefix: format!("{}{}[{s}]/", sample.prefix, node.id),
                key: key_of(s),
            };
            let outer = deps.clone();
            async move {
                let ballot = match run_graph(ctx, &consensus.body, outer, child).await {
                    Ok(mut values) => match values.remove(over) {
                        Some(v) => Ballot::Value(Arc::unwrap_or_clone(v)),
                        None => Ballot::Abstain(format!("sample produced no value for `{over}`")),
                    },
                    Err(e) => Ballot::Abstain(e.to_string()),
                };
                (s, ballot)
            }
        })
        .buffer_unordered(limit);
    let mut ballots: Vec<(u32, Ballot)> = runs.collect().await;
    ballots.sort_by_key(|(s, _)| *s);
    let ballots: Vec<Ballot> = ballots.into_iter().map(|(_, b)| b).collect();
    let (tally, result) = vote::count(&ballots, &consensus.vote);
    trace.tally = Some(tally);
    result.map_err(|e| (NodeErrorKind::Vote, e.to_string()))
}
