//! Compiler overhead and iteration latency.
//!
//! - `overhead/*`: an in-process model that answers instantly (the simulated student and a fixed
//!   teacher), so the time is the compiler's own — prompt building, schema validation, applying
//!   edits, preparing candidates, scheduling m × k runs — plus the runtime and the real sandbox
//!   calls of the code nodes. `baseline` scores the starting workflow (extract → program →
//!   code, the reference workflow's evaluator) only; `iteration` adds one iteration that wraps it in a 5× consensus. The difference is
//!   the cost of one iteration. Goal: ≤ 50 ms for m = 3, k = 3.
//! - `latency/m{m}_k{k}`: every model call takes 200 ms; one iteration from the single-node
//!   workflow (critique, edit, evaluating extract → 5× [program → code]). The measured time is
//!   the iteration alone (its `durations.total_ms`). Ideal: 4 model latencies (critique, edit,
//!   and two dependent levels in the candidate), whatever m and k, because runs and samples run
//!   concurrently.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use sgde_compiler::{CompileRequest, Compiler, CompilerDeps, Example, Metric, StopReason};
use sgde_llm::{ChatRequest, ChatResponse, ModelClient, ModelError, Usage};
use sgde_runtime::RuntimeConfig;
use sgde_sandbox::{Sandbox, SandboxConfig, WorkerCommand};
use sgde_testkit::{ChatCall, Difficulty, ProblemGenerator, SimulatedStudent};
use sgde_workflow::{WorkflowSpec, apply};

/// Student and teacher in one in-process client, each call delayed by `delay`.
struct Models {
    delay: Duration,
    student: SimulatedStudent,
    edits: Value,
}

#[async_trait]
impl ModelClient for Models {
    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, ModelError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let system = request.messages.first().map(|m| m.content.as_str()).unwrap_or_default();
        let text = if request.endpoint == "teacher" {
            if system.starts_with("You are the critic") {
                json!({"critiques": [{"node": "answer", "critique": "Samples disagree; vote over them."}]})
                    .to_string()
            } else {
                json!({"edits": self.edits}).to_string()
            }
        } else {
            let messages: Vec<Value> =
                request.messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect();
            let seed = request.decoding.seed.unwrap_or(0).wrapping_add(u64::from(request.sample_index));
            let body = json!({"model": "s", "messages": messages, "seed": seed, "temperature": request.decoding.temperature});
            let call = ChatCall::from_json(body)
                .map_err(|message| ModelError::BadReply { endpoint: request.endpoint.clone(), message })?;
            self.student.reply(&call, 0)
        };
        Ok(ChatResponse {
            usage: Usage { prompt_tokens: 100, completion_tokens: 20, estimated: false, cost_usd: 0.0 },
            text,
            latency: self.delay,
            cached: false,
        })
    }
}

fn single_node() -> WorkflowSpec {
    WorkflowSpec::from_value(json!({
        "schema": "sgde.workflow/v1",
        "inputs": {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"], "additionalProperties": false},
        "output": "answer",
        "nodes": {"answer": {"kind": "llm", "prompt": "{{ inputs.question }}", "parser": {"type": "number"}}}
    }))
    .expect("single node")
}

fn offload_ops() -> Value {
    json!([
        {"op": "insert_node", "id": "extract", "dependents": ["answer"], "node": {"kind": "llm",
            "prompt": "Extract the quantities from the problem as a JSON object.\n\nProblem: {{ inputs.question }}",
            "decoding": {"temperature": 0.0}, "parser": {"type": "json"}}},
        {"op": "set_prompt", "node": "answer",
         "prompt": "Write a single Python expression that computes the answer. Reply with the expression only.\n\nNames: {{ extract | tojson }}\nProblem: {{ inputs.question }}"},
        {"op": "set_parser", "node": "answer", "parser": {"type": "text"}},
        {"op": "set_decoding", "node": "answer", "decoding": {"temperature": 0.7}},
        {"op": "offload_to_code", "node": "answer", "mode": "insert_after", "renamed_to": "program",
         "code": reference_evaluator()},
        {"op": "rewire", "node": "answer", "deps": ["program", "extract"]}
    ])
}

/// The reference workflow's expression evaluator: a small parser that stays on the sandbox's
/// warm path (`eval` would fork per call).
fn reference_evaluator() -> String {
    let reference: Value =
        serde_json::from_str(include_str!("../../../examples/gsm_consensus.json")).expect("reference JSON");
    reference["nodes"]["solve"]["body"]["nodes"]["run"]["code"].as_str().expect("run code").to_owned()
}

fn consensus_ops() -> Value {
    json!([{"op": "wrap_in_consensus", "nodes": ["program", "answer"], "samples": 5,
            "vote": {"normalize": {"type": "number", "tolerance": 1e-6}, "quorum": 3}}])
}

fn request(m: usize, k: u32, initial: WorkflowSpec) -> CompileRequest {
    let train = ProblemGenerator::new(7)
        .batch(m, Difficulty::Hard)
        .into_iter()
        .map(|p| Example { inputs: json!({"question": p.question}), expected: json!(p.answer) })
        .collect();
    let mut r = CompileRequest::new(
        "Solve word problems.",
        train,
        Metric::Numeric { tolerance: 1e-6 },
        "teacher",
        "student",
    );
    r.initial = Some(initial);
    r.samples_per_example = k;
    r.budget.max_iterations = 1;
    r
}

fn deps(sandbox: &Sandbox, delay: Duration, edits: Value) -> CompilerDeps {
    CompilerDeps {
        models: Arc::new(Models { delay, student: SimulatedStudent::new(), edits }),
        sandbox: sandbox.clone(),
        runtime: RuntimeConfig::default(),
    }
}

fn bench(c: &mut Criterion) {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
    let sandbox = rt.block_on(async {
        let worker =
            WorkerCommand::locate().expect("build the worker first: cargo build --release -p sgde-sandbox");
        Sandbox::start(SandboxConfig { workers: 2, ..SandboxConfig::new(worker) }).await.expect("sandbox")
    });

    let offloaded = apply(&single_node(), &serde_json::from_value::<Vec<_>>(offload_ops()).expect("ops"))
        .expect("offloaded spec");
    let mut group = c.benchmark_group("overhead");
    let instant = deps(&sandbox, Duration::ZERO, consensus_ops());
    let baseline_only = {
        let mut r = request(3, 3, offloaded.clone());
        r.budget.max_teacher_calls = Some(0);
        r
    };
    group.bench_function("baseline_m3_k3", |b| {
        b.to_async(&rt).iter(|| async {
            let outcome = Compiler::new(baseline_only.clone(), instant.clone()).expect("request").run().await;
            assert_eq!(outcome.iterations, 0);
        })
    });
    let one_iteration = request(3, 3, offloaded.clone());
    group.bench_function("iteration_m3_k3", |b| {
        b.to_async(&rt).iter(|| async {
            let outcome = Compiler::new(one_iteration.clone(), instant.clone()).expect("request").run().await;
            assert_eq!(outcome.iterations, 1, "{}", outcome.stop_detail);
        })
    });
    group.finish();

    let mut group = c.benchmark_group("latency");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(11));
    let mut edits = offload_ops().as_array().cloned().unwrap_or_default();
    edits.extend(consensus_ops().as_array().cloned().unwrap_or_default());
    let slow = deps(&sandbox, Duration::from_millis(200), Value::Array(edits));
    for m in [1usize, 3, 5] {
        for k in [1u32, 3] {
            let request = request(m, k, single_node());
            let printed = Arc::new(AtomicBool::new(false));
            group.bench_function(format!("m{m}_k{k}"), |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let (request, slow, printed) = (request.clone(), slow.clone(), Arc::clone(&printed));
                    async move {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let outcome =
                                Compiler::new(request.clone(), slow.clone()).expect("request").run().await;
                            let record = &outcome.history[0];
                            assert!(record.outcome.is_accepted() || outcome.stop_reason != StopReason::Error);
                            if !printed.swap(true, Ordering::Relaxed) {
                                eprintln!(
                                    "m{m} k{k}: critique {} ms, edit {} ms, evaluate {} ms, iteration {} ms",
                                    record.durations.critique_ms,
                                    record.durations.edit_ms,
                                    record.durations.evaluate_ms,
                                    record.durations.total_ms
                                );
                            }
                            total += Duration::from_millis(record.durations.total_ms);
                        }
                        total
                    }
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
