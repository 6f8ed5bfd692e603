//! A workflow version compiled for execution: templates parsed, parsers and schemas compiled,
//! code signatures read, graphs indexed.
//!
//! All of this is done once per version (the service caches the result), so that the hot path of
//! a run only renders, calls and parses. Preparing also validates: a prepared workflow is always
//! a valid one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sgde_llm::Decoding;
use sgde_sandbox::Limits;
use sgde_workflow::{
    CodeLimits, CompiledParser, Graph, Node, NodeMap, OutputParser, SpecErrors, TemplateSet, Vote,
    WorkflowSpec, run_signature,
};

/// Why a spec could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Invalid(#[from] SpecErrors),
    #[error("template `{name}` failed to compile: {message}")]
    Template { name: String, message: String },
}

/// A validated spec ready to run. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct PreparedWorkflow {
    pub(crate) spec: WorkflowSpec,
    pub(crate) hash: String,
    pub(crate) root: PreparedGraph,
    pub(crate) templates: TemplateSet,
    pub(crate) input_validator: jsonschema::Validator,
}

/// One graph (the top level or a consensus body), indexed for the scheduler.
#[derive(Debug)]
pub(crate) struct PreparedGraph {
    pub(crate) nodes: Vec<PreparedNode>,
    pub(crate) output: usize,
    /// For each node, the indices of the nodes in this graph that depend on it.
    pub(crate) dependents: Vec<Vec<usize>>,
    /// For each node, how many of its deps are in this graph (the rest come from outside).
    pub(crate) local_deps: Vec<usize>,
}

#[derive(Debug)]
pub(crate) struct PreparedNode {
    pub(crate) id: String,
    /// Template-set key prefix: the chain of ids from the root, joined by `/`.
    pub(crate) path: String,
    pub(crate) deps: Vec<String>,
    pub(crate) kind: PreparedKind,
}

#[derive(Debug)]
pub(crate) enum PreparedKind {
    Llm(Box<PreparedLlm>),
    Code(PreparedCode),
    Consensus(Box<PreparedConsensus>),
}

#[derive(Debug)]
pub(crate) struct PreparedLlm {
    pub(crate) model: String,
    pub(crate) has_system: bool,
    pub(crate) decoding: Decoding,
    pub(crate) parser: CompiledParser,
    pub(crate) json_schema: Option<Value>,
    pub(crate) timeout: Option<Duration>,
}

#[derive(Debug)]
pub(crate) struct PreparedCode {
    pub(crate) code: Arc<str>,
    /// Parameters of `run` to fill; `None` when it takes `**kwargs` (then: everything).
    pub(crate) params: Option<Vec<String>>,
    pub(crate) limits: Option<CodeLimits>,
}

#[derive(Debug)]
pub(crate) struct PreparedConsensus {
    pub(crate) samples: u32,
    pub(crate) body: PreparedGraph,
    pub(crate) vote: Vote,
    /// Body node whose value is voted on.
    pub(crate) over: String,
    pub(crate) max_concurrency: Option<u32>,
}

impl PreparedWorkflow {
    /// Validates `spec` and compiles everything a run needs.
    pub fn new(spec: WorkflowSpec) -> Result<Self, PrepareError> {
        spec.validate()?;
        let mut templates = TemplateSet::new();
        let root = prepare_graph(&spec.nodes, &spec.output, "", &mut templates)?;
        // Validation already compiled the inputs schema once; a failure here cannot happen for a
        // valid spec, but is reported rather than assumed.
        let input_validator = jsonschema::validator_for(&spec.inputs).map_err(|e| {
            SpecErrors(vec![sgde_workflow::ValidationError {
                pointer: "/inputs".into(),
                message: format!("invalid JSON Schema: {e}"),
            }])
        })?;
        let hash = spec.content_hash();
        Ok(Self { spec, hash, root, templates, input_validator })
    }

    pub fn spec(&self) -> &WorkflowSpec {
        &self.spec
    }

    /// Every way `inputs` breaks the input schema, as (JSON pointer, message); empty if valid.
    pub fn input_errors(&self, inputs: &Value) -> Vec<(String, String)> {
        self.input_validator
            .iter_errors(inputs)
            .take(10)
            .map(|e| (e.instance_path().to_string(), e.to_string()))
            .collect()
    }

    /// The version's content hash (`sha256:…`).
    pub fn content_hash(&self) -> &str {
        &self.hash
    }
}

pub(crate) fn template_key(path: &str, part: &str) -> String {
    format!("{path}#{part}")
}

fn prepare_graph(
    nodes: &NodeMap,
    output: &str,
    prefix: &str,
    templates: &mut TemplateSet,
) -> Result<PreparedGraph, PrepareError> {
    let index: HashMap<&str, usize> = nodes.ids().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    let mut prepared = Vec::with_capacity(nodes.len());
    let mut dependents = vec![Vec::new(); nodes.len()];
    let mut local_deps = vec![0; nodes.len()];
    for (i, (id, node)) in nodes.iter().enumerate() {
        let path = if prefix.is_empty() { id.clone() } else { format!("{prefix}/{id}") };
        for dep in node.deps() {
            if let Some(&d) = index.get(dep.as_str()) {
                dependents[d].push(i);
                local_deps[i] += 1;
            }
        }
        let kind = prepare_kind(node, &path, templates)?;
        prepared.push(PreparedNode { id: id.clone(), path, deps: node.deps().to_vec(), kind });
    }
    let output = index.get(output).copied().unwrap_or_default();
    Ok(PreparedGraph { nodes: prepared, output, dependents, local_deps })
}

fn prepare_kind(node: &Node, path: &str, templates: &mut TemplateSet) -> Result<PreparedKind, PrepareError> {
    let mut add = |part: &str, source: &str| {
        let name = template_key(path, part);
        templates
            .add(name.clone(), source.to_owned())
            .map_err(|e| PrepareError::Template { name, message: e.message })
    };
    Ok(match node {
        Node::Llm(llm) => {
            if let Some(system) = &llm.system {
                add("system", system)?;
            }
            add("prompt", &llm.prompt)?;
            let parser = CompiledParser::compile(&llm.parser)
                .map_err(|e| PrepareError::Template { name: format!("{path} parser"), message: e.0 })?;
            let json_schema = match &llm.parser {
                OutputParser::Json { schema } => schema.clone(),
                _ => None,
            };
            let d = &llm.decoding;
            PreparedKind::Llm(Box::new(PreparedLlm {
                model: llm.model.clone(),
                has_system: llm.system.is_some(),
                decoding: Decoding {
                    temperature: d.temperature,
                    top_p: d.top_p,
                    max_tokens: d.max_tokens,
                    seed: d.seed,
                    stop: d.stop.clone(),
                },
                parser,
                json_schema,
                timeout: llm.timeout_ms.map(Duration::from_millis),
            }))
        }
        Node::Code(code) => {
            let signature = run_signature(&code.code).map_err(|e| PrepareError::Template {
                name: format!("{path} code"),
                message: e.to_string(),
            })?;
            PreparedKind::Code(PreparedCode {
                code: Arc::from(code.code.as_str()),
                params: if signature.takes_kwargs { None } else { Some(signature.params) },
                limits: code.limits.clone(),
            })
        }
        Node::Consensus(c) => {
            let Graph { nodes, output } = &c.body;
            let body = prepare_graph(nodes, output, path, templates)?;
            PreparedKind::Consensus(Box::new(PreparedConsensus {
                samples: c.samples,
                body,
                vote: c.vote.clone(),
                over: c.vote.over.clone().unwrap_or_else(|| output.clone()),
                max_concurrency: c.max_concurrency,
            }))
        }
    })
}

/// Sandbox limits for a code node: the node's own where set, else the service's defaults; never
/// above the service's ceiling, because the code (and its limits) may come from a model.
pub(crate) fn code_limits(node: Option<&CodeLimits>, defaults: &Limits, ceiling: &Limits) -> Limits {
    let node = node.cloned().unwrap_or_default();
    Limits {
        cpu_ms: node.cpu_ms.unwrap_or(defaults.cpu_ms).min(ceiling.cpu_ms),
        wall_ms: node.wall_ms.unwrap_or(defaults.wall_ms).min(ceiling.wall_ms),
        memory_bytes: node
            .memory_mb
            .map_or(defaults.memory_bytes, |mb| mb.saturating_mul(1024 * 1024))
            .min(ceiling.memory_bytes),
        output_bytes: node
            .output_kb
            .map_or(defaults.output_bytes, |kb| {
                usize::try_from(kb.saturating_mul(1024)).unwrap_or(usize::MAX)
            })
            .min(ceiling.output_bytes),
        ..*defaults
    }
}
