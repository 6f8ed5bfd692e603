//! Edit operations as data: what the teacher proposes and the compiler applies.
//!
//! Edits are typed values, not free-form rewrites of the spec, so that they can be validated,
//! logged in one line each, rejected with a reason naming the op, and replayed. Nodes are
//! addressed by id; a body node whose id is shared with its consensus node (the usual result of
//! wrapping) is addressed by the path `consensus/inner`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::node_map::NodeMap;
use crate::spec::{
    CodeNode, ConsensusNode, DecodingParams, Graph, Node, Normalize, OutputParser, Vote, WorkflowSpec,
};
use crate::validate::{ValidationError, validate};

/// One change to a spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum EditOp {
    /// Replace the system prompt and/or the user template of an `llm` node.
    SetPrompt {
        node: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        system: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prompt: Option<String>,
    },
    /// Replace the decoding parameters of an `llm` node.
    SetDecoding { node: String, decoding: DecodingParams },
    /// Replace the output parser of an `llm` node.
    SetParser { node: String, parser: OutputParser },
    /// Replace the Python of a `code` node.
    SetCode { node: String, code: String },
    /// Capability offloading. `replace`: the `llm` node becomes a `code` node with the same id
    /// and deps. `insert_after`: a `code` node takes the node's id (so dependents keep their
    /// references) and post-processes the `llm` node, which is renamed `renamed_to`
    /// (default `<node>_raw`); the code's `run` receives it under that name.
    OffloadToCode {
        node: String,
        code: String,
        #[serde(default)]
        mode: OffloadMode,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        renamed_to: Option<String>,
    },
    /// Add a node to the graph of `within` (a consensus node's body) or the top level, and add it
    /// to the deps of `dependents`.
    InsertNode {
        id: String,
        node: Box<Node>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        within: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        dependents: Vec<String>,
    },
    /// Remove a node; whatever depended on it now depends on its deps.
    RemoveNode { node: String },
    /// Replace the deps of a node.
    Rewire { node: String, deps: Vec<String> },
    /// Make `node` the output of the graph that holds it.
    SetOutput { node: String },
    /// Structural consensus: wrap a connected set of nodes with a single sink in a consensus
    /// node. The consensus node takes `id` (default: the sink's id, so dependents keep working).
    WrapInConsensus {
        nodes: Vec<String>,
        samples: u32,
        #[serde(default)]
        vote: Vote,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Change the samples and/or the vote of a consensus node.
    SetConsensus {
        node: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        samples: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vote: Option<Vote>,
    },
    /// Replace a consensus node by its body; the body's output takes the consensus node's id.
    Unwrap { node: String },
}

/// How [`EditOp::OffloadToCode`] places the code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OffloadMode {
    #[default]
    Replace,
    InsertAfter,
}

/// Why a list of edits could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The op itself could not be carried out (unknown node, wrong kind, ...).
    #[error("edit #{index} ({summary}) failed: {reason}")]
    Op { index: usize, summary: String, reason: String },
    /// The ops applied but the result is not a valid spec; `index` is the first op whose result
    /// already had the problems.
    #[error("edit #{index} ({summary}) makes the workflow invalid: {}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid { index: usize, summary: String, errors: Vec<ValidationError> },
}

impl EditOp {
    /// One line for audit logs and the iteration history.
    pub fn summary(&self) -> String {
        match self {
            EditOp::SetPrompt { node, system, prompt } => {
                let what = match (system.is_some(), prompt.is_some()) {
                    (true, true) => "system prompt and template",
                    (true, false) => "system prompt",
                    _ => "prompt template",
                };
                format!("rewrite the {what} of `{node}`")
            }
            EditOp::SetDecoding { node, decoding } => format!(
                "set decoding of `{node}` (temperature {}, max_tokens {})",
                decoding.temperature.map_or("default".to_owned(), |t| t.to_string()),
                decoding.max_tokens.map_or("default".to_owned(), |t| t.to_string())
            ),
            EditOp::SetParser { node, parser } => format!("parse `{node}` as {}", parser_name(parser)),
            EditOp::SetCode { node, code } => {
                format!("rewrite the Python of `{node}` ({} lines)", code.lines().count())
            }
            EditOp::OffloadToCode { node, mode: OffloadMode::Replace, .. } => {
                format!("offload `{node}` to Python (replace the model call)")
            }
            EditOp::OffloadToCode { node, mode: OffloadMode::InsertAfter, renamed_to, .. } => format!(
                "offload `{node}` to Python after the model call (model output renamed `{}`)",
                renamed_to.clone().unwrap_or_else(|| format!("{node}_raw"))
            ),
            EditOp::InsertNode { id, node, within, dependents } => format!(
                "insert {} node `{id}`{}{}",
                node.kind(),
                within.as_ref().map(|w| format!(" into the body of `{w}`")).unwrap_or_default(),
                if dependents.is_empty() {
                    String::new()
                } else {
                    format!(", feeding {}", dependents.join(", "))
                }
            ),
            EditOp::RemoveNode { node } => format!("remove `{node}` and rewire its dependents"),
            EditOp::Rewire { node, deps } => format!("make `{node}` depend on [{}]", deps.join(", ")),
            EditOp::SetOutput { node } => format!("make `{node}` the output"),
            EditOp::WrapInConsensus { nodes, samples, vote, id } => format!(
                "wrap [{}] in a {samples}× consensus{} ({})",
                nodes.join(", "),
                id.as_ref().map(|i| format!(" `{i}`")).unwrap_or_default(),
                vote_summary(vote)
            ),
            EditOp::SetConsensus { node, samples, vote } => format!(
                "set consensus `{node}`{}{}",
                samples.map(|s| format!(" to {s} samples")).unwrap_or_default(),
                vote.as_ref().map(|v| format!(" with {}", vote_summary(v))).unwrap_or_default()
            ),
            EditOp::Unwrap { node } => format!("unwrap consensus `{node}`"),
        }
    }
}

fn parser_name(parser: &OutputParser) -> String {
    match parser {
        OutputParser::Text => "text".into(),
        OutputParser::Number { pick, integer } => {
            format!("{} {:?} number", if *integer { "integer," } else { "" }, pick)
                .to_lowercase()
                .trim()
                .to_owned()
        }
        OutputParser::Json { schema } => if schema.is_some() { "JSON with a schema" } else { "JSON" }.into(),
        OutputParser::Regex { pattern, group } => format!("regex /{pattern}/ group {group}"),
    }
}

fn vote_summary(vote: &Vote) -> String {
    let normalize = match &vote.normalize {
        Normalize::Number { tolerance } => format!("numbers ±{tolerance}"),
        Normalize::Text { .. } => "text".to_owned(),
        Normalize::Json => "JSON".to_owned(),
    };
    format!("{:?} vote over {normalize}, quorum {}", vote.method, vote.quorum).to_lowercase()
}

/// Applies `ops` in order and returns the new spec, which is guaranteed valid.
pub fn apply(spec: &WorkflowSpec, ops: &[EditOp]) -> Result<WorkflowSpec, EditError> {
    let mut current = spec.clone();
    let mut prefixes = Vec::with_capacity(ops.len());
    for (index, op) in ops.iter().enumerate() {
        apply_one(&mut current, op).map_err(|reason| EditError::Op {
            index,
            summary: op.summary(),
            reason,
        })?;
        prefixes.push(current.clone());
    }
    let errors = validate(&current);
    if errors.is_empty() {
        return Ok(current);
    }
    // Blame the first op after which some of the final problems were already present.
    let index = prefixes
        .iter()
        .position(|prefix| validate(prefix).iter().any(|e| errors.contains(e)))
        .unwrap_or(ops.len().saturating_sub(1));
    let summary = ops.get(index).map(EditOp::summary).unwrap_or_else(|| "no edits".to_owned());
    Err(EditError::Invalid { index, summary, errors })
}

/// Where a node lives: the chain of consensus ids leading to its graph, and its id.
#[derive(Debug, Clone)]
struct Location {
    graph: Vec<String>,
    id: String,
}

fn graph_mut<'a>(spec: &'a mut WorkflowSpec, path: &[String]) -> Option<(&'a mut NodeMap, &'a mut String)> {
    let (mut nodes, mut output) = (&mut spec.nodes, &mut spec.output);
    for consensus in path {
        match nodes.get_mut(consensus) {
            Some(Node::Consensus(c)) => {
                nodes = &mut c.body.nodes;
                output = &mut c.body.output;
            }
            _ => return None,
        }
    }
    Some((nodes, output))
}

fn find_all(nodes: &NodeMap, id: &str, path: &mut Vec<String>, out: &mut Vec<Location>) {
    if nodes.contains(id) {
        out.push(Location { graph: path.clone(), id: id.to_owned() });
    }
    for (cid, node) in nodes.iter() {
        if let Node::Consensus(c) = node {
            path.push(cid.clone());
            find_all(&c.body.nodes, id, path, out);
            path.pop();
        }
    }
}

/// Resolves `id` or `outer/inner` to a location; a plain id shared by a consensus node and its
/// body output means the consensus node.
fn locate(spec: &WorkflowSpec, reference: &str) -> Result<Location, String> {
    if reference.contains('/') {
        let mut parts: Vec<String> = reference.split('/').map(str::to_owned).collect();
        let id = parts.pop().unwrap_or_default();
        let mut probe = spec.clone();
        let found = graph_mut(&mut probe, &parts).is_some_and(|(nodes, _)| nodes.contains(&id));
        return if found {
            Ok(Location { graph: parts, id })
        } else {
            Err(format!("no node at path `{reference}`"))
        };
    }
    let mut found = Vec::new();
    find_all(&spec.nodes, reference, &mut Vec::new(), &mut found);
    found.sort_by_key(|l| l.graph.len());
    match found.as_slice() {
        [] => Err(format!("unknown node `{reference}`")),
        [only] => Ok(only.clone()),
        [first, second, ..] if first.graph.len() < second.graph.len() => Ok(first.clone()),
        _ => Err(format!("`{reference}` is ambiguous; address it by path (`consensus/node`)")),
    }
}

fn node_mut<'a>(spec: &'a mut WorkflowSpec, at: &Location) -> Result<&'a mut Node, String> {
    graph_mut(spec, &at.graph)
        .and_then(|(nodes, _)| nodes.get_mut(&at.id))
        .ok_or_else(|| format!("unknown node `{}`", at.id))
}

fn apply_one(spec: &mut WorkflowSpec, op: &EditOp) -> Result<(), String> {
    match op {
        EditOp::SetPrompt { node, system, prompt } => {
            if system.is_none() && prompt.is_none() {
                return Err("give `system`, `prompt` or both".into());
            }
            let at = locate(spec, node)?;
            let Node::Llm(llm) = node_mut(spec, &at)? else {
                return Err(format!("`{node}` is not an llm node"));
            };
            if let Some(system) = system {
                llm.system = Some(system.clone());
            }
            if let Some(prompt) = prompt {
                llm.prompt = prompt.clone();
            }
        }
        EditOp::SetDecoding { node, decoding } => {
            let at = locate(spec, node)?;
            let Node::Llm(llm) = node_mut(spec, &at)? else {
                return Err(format!("`{node}` is not an llm node"));
            };
            llm.decoding = decoding.clone();
        }
        EditOp::SetParser { node, parser } => {
            let at = locate(spec, node)?;
            let Node::Llm(llm) = node_mut(spec, &at)? else {
                return Err(format!("`{node}` is not an llm node"));
            };
            llm.parser = parser.clone();
        }
        EditOp::SetCode { node, code } => {
            let at = locate(spec, node)?;
            let Node::Code(c) = node_mut(spec, &at)? else {
                return Err(format!("`{node}` is not a code node"));
            };
            c.code = code.clone();
        }
        EditOp::OffloadToCode { node, code, mode, renamed_to } => {
            offload(spec, node, code, *mode, renamed_to.as_deref())?
        }
        EditOp::InsertNode { id, node, within, dependents } => {
            insert(spec, id, node.as_ref(), within.as_deref(), dependents)?
        }
        EditOp::RemoveNode { node } => remove(spec, node)?,
        EditOp::Rewire { node, deps } => {
            let at = locate(spec, node)?;
            *node_mut(spec, &at)?.deps_mut() = deps.clone();
        }
        EditOp::SetOutput { node } => {
            let at = locate(spec, node)?;
            let (_, output) = graph_mut(spec, &at.graph).ok_or("unknown graph")?;
            *output = at.id;
        }
        EditOp::WrapInConsensus { nodes, samples, vote, id } => {
            wrap(spec, nodes, *samples, vote, id.as_deref())?
        }
        EditOp::SetConsensus { node, samples, vote } => {
            let at = locate(spec, node)?;
            let Node::Consensus(c) = node_mut(spec, &at)? else {
                return Err(format!("`{node}` is not a consensus node"));
            };
            if let Some(samples) = samples {
                c.samples = *samples;
            }
            if let Some(vote) = vote {
                c.vote = vote.clone();
            }
        }
        EditOp::Unwrap { node } => unwrap(spec, node)?,
    }
    Ok(())
}

fn offload(
    spec: &mut WorkflowSpec,
    node: &str,
    code: &str,
    mode: OffloadMode,
    renamed_to: Option<&str>,
) -> Result<(), String> {
    let at = locate(spec, node)?;
    let (nodes, _) = graph_mut(spec, &at.graph).ok_or("unknown graph")?;
    let Some(Node::Llm(llm)) = nodes.get(&at.id).cloned() else {
        return Err(format!("`{node}` is not an llm node"));
    };
    match mode {
        OffloadMode::Replace => {
            nodes.insert(
                at.id.clone(),
                Node::Code(CodeNode {
                    deps: llm.deps,
                    code: code.to_owned(),
                    limits: None,
                    unknown: Default::default(),
                }),
            );
        }
        OffloadMode::InsertAfter => {
            let raw = renamed_to.map(str::to_owned).unwrap_or_else(|| format!("{}_raw", at.id));
            if nodes.contains(&raw) {
                return Err(format!("`{raw}` already exists"));
            }
            nodes.insert(raw.clone(), Node::Llm(llm));
            nodes.insert(
                at.id.clone(),
                Node::Code(CodeNode {
                    deps: vec![raw],
                    code: code.to_owned(),
                    limits: None,
                    unknown: Default::default(),
                }),
            );
        }
    }
    Ok(())
}

fn insert(
    spec: &mut WorkflowSpec,
    id: &str,
    node: &Node,
    within: Option<&str>,
    dependents: &[String],
) -> Result<(), String> {
    let mut graph = Vec::new();
    if let Some(within) = within {
        let at = locate(spec, within)?;
        if !matches!(node_mut(spec, &at)?, Node::Consensus(_)) {
            return Err(format!("`{within}` is not a consensus node"));
        }
        graph = at.graph;
        graph.push(at.id);
    }
    let (nodes, _) = graph_mut(spec, &graph).ok_or("unknown graph")?;
    if nodes.contains(id) {
        return Err(format!("`{id}` already exists"));
    }
    for dependent in dependents {
        if !nodes.contains(dependent) {
            return Err(format!("dependent `{dependent}` is not in the same graph"));
        }
    }
    nodes.insert(id, node.clone());
    for dependent in dependents {
        if let Some(n) = nodes.get_mut(dependent)
            && !n.deps().iter().any(|d| d == id)
        {
            n.deps_mut().push(id.to_owned());
        }
    }
    Ok(())
}

/// Replaces `old` in every deps list of `nodes` (recursively through bodies) with `new`.
fn replace_dep(nodes: &mut NodeMap, old: &str, new: &[String]) {
    for (_, node) in nodes.iter_mut() {
        let deps = node.deps_mut();
        if let Some(pos) = deps.iter().position(|d| d == old) {
            deps.remove(pos);
            for (offset, d) in new.iter().enumerate() {
                if !deps.contains(d) {
                    deps.insert((pos + offset).min(deps.len()), d.clone());
                }
            }
        }
        if let Node::Consensus(c) = node {
            replace_dep(&mut c.body.nodes, old, new);
        }
    }
}

fn remove(spec: &mut WorkflowSpec, node: &str) -> Result<(), String> {
    let at = locate(spec, node)?;
    let (nodes, output) = graph_mut(spec, &at.graph).ok_or("unknown graph")?;
    if *output == at.id {
        return Err(format!("`{}` is the output; make another node the output first", at.id));
    }
    let removed = nodes.remove(&at.id).ok_or_else(|| format!("unknown node `{node}`"))?;
    replace_dep(nodes, &at.id, removed.deps());
    Ok(())
}

fn wrap(
    spec: &mut WorkflowSpec,
    members: &[String],
    samples: u32,
    vote: &Vote,
    id: Option<&str>,
) -> Result<(), String> {
    let first = members.first().ok_or("name at least one node to wrap")?;
    let graph = locate(spec, first)?.graph;
    let (nodes, output) = graph_mut(spec, &graph).ok_or("unknown graph")?;
    for m in members {
        if !nodes.contains(m) {
            return Err(format!("`{m}` is not in the same graph as `{first}`"));
        }
    }
    let is_member = |id: &str| members.iter().any(|m| m == id);
    let sinks: Vec<&String> = members
        .iter()
        .filter(|m| !members.iter().any(|other| nodes.get(other).is_some_and(|n| n.deps().contains(m))))
        .collect();
    let [sink] = sinks.as_slice() else {
        return Err(format!("the wrapped nodes must have exactly one sink; found {}", sinks.len()));
    };
    let sink = (*sink).clone();
    for (other, node) in nodes.iter() {
        if is_member(other) {
            continue;
        }
        if let Some(inner) = node.deps().iter().find(|d| is_member(d) && **d != sink) {
            return Err(format!(
                "`{other}` depends on `{inner}`, which would be hidden inside the consensus body"
            ));
        }
    }
    let mut outer_deps: Vec<String> = Vec::new();
    let mut body = NodeMap::new();
    for m in members {
        if let Some(node) = nodes.remove(m) {
            for d in node.deps() {
                if !is_member(d) && !outer_deps.contains(d) {
                    outer_deps.push(d.clone());
                }
            }
            body.insert(m.clone(), node);
        }
    }
    let new_id = id.map(str::to_owned).unwrap_or_else(|| sink.clone());
    if new_id != sink && nodes.contains(&new_id) {
        return Err(format!("`{new_id}` already exists"));
    }
    let consensus = ConsensusNode {
        deps: outer_deps,
        samples,
        body: Graph { nodes: body, output: sink.clone() },
        vote: vote.clone(),
        max_concurrency: None,
        unknown: Default::default(),
    };
    nodes.insert(new_id.clone(), Node::Consensus(consensus));
    if new_id != sink {
        replace_dep(nodes, &sink, std::slice::from_ref(&new_id));
        if *output == sink {
            *output = new_id;
        }
    }
    Ok(())
}

fn unwrap(spec: &mut WorkflowSpec, node: &str) -> Result<(), String> {
    let at = locate(spec, node)?;
    let (nodes, _) = graph_mut(spec, &at.graph).ok_or("unknown graph")?;
    let Some(Node::Consensus(c)) = nodes.remove(&at.id) else {
        return Err(format!("`{node}` is not a consensus node"));
    };
    let body_output = c.body.output.clone();
    for (inner_id, inner) in c.body.nodes.iter() {
        let target = if *inner_id == body_output { at.id.clone() } else { inner_id.clone() };
        if nodes.contains(&target) {
            return Err(format!("body node `{target}` clashes with an existing node"));
        }
        nodes.insert(target, inner.clone());
    }
    Ok(())
}
