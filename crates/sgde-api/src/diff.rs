//! Structural diff of two workflow versions: which nodes were added, removed or changed, with
//! unified text diffs of the prompts and the code — what a reviewer needs to see.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use sgde_workflow::{Node, NodeMap, WorkflowSpec};
use similar::TextDiff;
use utoipa::ToSchema;

/// What changed between two versions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct SpecDiff {
    /// Node paths (`solve/program` for body nodes) only in the newer version.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<NodeChange>,
    /// Top-level fields other than nodes that differ (`output`, `inputs`, `description`).
    pub fields: Vec<String>,
}

/// One node present in both versions but different.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct NodeChange {
    pub node: String,
    /// `llm → code` when the kind changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Changed top-level fields of the node (`deps`, `parser`, `samples`, ...).
    pub fields: Vec<String>,
    /// Unified diffs of changed text fields (`prompt`, `system`, `code`), keyed by field.
    pub text: BTreeMap<String, String>,
}

pub fn diff(old: &WorkflowSpec, new: &WorkflowSpec) -> SpecDiff {
    let mut out = SpecDiff::default();
    for (field, a, b) in [
        ("output", Value::from(old.output.clone()), Value::from(new.output.clone())),
        ("inputs", old.inputs.clone(), new.inputs.clone()),
        ("description", Value::from(old.description.clone()), Value::from(new.description.clone())),
    ] {
        if a != b {
            out.fields.push(field.to_owned());
        }
    }
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten(&old.nodes, "", &mut a);
    flatten(&new.nodes, "", &mut b);
    for path in b.keys().filter(|p| !a.contains_key(*p)) {
        out.added.push(path.clone());
    }
    for (path, before) in &a {
        match b.get(path) {
            None => out.removed.push(path.clone()),
            Some(after) if before != after => out.changed.push(node_change(path, before, after)),
            Some(_) => {}
        }
    }
    out
}

/// Every node by path, with a consensus node's body left out of its own entry.
fn flatten<'a>(nodes: &'a NodeMap, prefix: &str, out: &mut BTreeMap<String, &'a Node>) {
    for (id, node) in nodes.iter() {
        let path = format!("{prefix}{id}");
        if let Node::Consensus(c) = node {
            flatten(&c.body.nodes, &format!("{path}/"), out);
        }
        out.insert(path, node);
    }
}

fn as_object(node: &Node) -> serde_json::Map<String, Value> {
    let mut value = serde_json::to_value(node).unwrap_or(Value::Null);
    if let Some(body) = value.get_mut("body").and_then(Value::as_object_mut) {
        // Body nodes are compared one by one under their own paths.
        body.remove("nodes");
    }
    value.as_object().cloned().unwrap_or_default()
}

fn node_change(path: &str, before: &Node, after: &Node) -> NodeChange {
    let (a, b) = (as_object(before), as_object(after));
    let kind = (before.kind() != after.kind()).then(|| format!("{} → {}", before.kind(), after.kind()));
    let mut fields: Vec<String> =
        a.keys().chain(b.keys()).filter(|k| a.get(*k) != b.get(*k)).cloned().collect();
    fields.sort();
    fields.dedup();
    let mut text = BTreeMap::new();
    for field in ["system", "prompt", "code"] {
        let old = a.get(field).and_then(Value::as_str).unwrap_or_default();
        let new = b.get(field).and_then(Value::as_str).unwrap_or_default();
        if old != new {
            let diff = TextDiff::from_lines(old, new)
                .unified_diff()
                .header(&format!("a/{path}/{field}"), &format!("b/{path}/{field}"))
                .to_string();
            text.insert(field.to_owned(), diff);
        }
    }
    NodeChange { node: path.to_owned(), kind, fields, text }
}
