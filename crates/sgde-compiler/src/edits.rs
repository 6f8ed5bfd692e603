//! Edit kinds, the ablation filter and the checks a candidate passes before it is evaluated.
//!
//! Every [`EditOp`] is classified into the kinds of change it makes. An op is applied only if
//! every kind it needs is allowed, so "prompts only" really never offloads: inserting a `code`
//! node needs both *topology* and *offloading*, wrapping needs *consensus*.

use serde::{Deserialize, Serialize};
use sgde_workflow::{EditOp, Node, NodeMap, WorkflowSpec};
use utoipa::ToSchema;

use crate::client::STUDENT_ROLE;
use crate::request::AllowedEdits;

/// A kind of change to a workflow; the unit of the ablation flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EditKind {
    Prompts,
    Offloading,
    Consensus,
    Topology,
}

impl EditKind {
    fn allowed_by(self, allowed: &AllowedEdits) -> bool {
        match self {
            EditKind::Prompts => allowed.prompts,
            EditKind::Offloading => allowed.offloading,
            EditKind::Consensus => allowed.consensus,
            EditKind::Topology => allowed.topology,
        }
    }
}

/// The kinds of change `op` makes.
pub fn kinds_of(op: &EditOp) -> Vec<EditKind> {
    match op {
        EditOp::SetPrompt { .. } | EditOp::SetDecoding { .. } | EditOp::SetParser { .. } => {
            vec![EditKind::Prompts]
        }
        EditOp::SetCode { .. } | EditOp::OffloadToCode { .. } => vec![EditKind::Offloading],
        EditOp::WrapInConsensus { .. } | EditOp::SetConsensus { .. } | EditOp::Unwrap { .. } => {
            vec![EditKind::Consensus]
        }
        EditOp::InsertNode { node, .. } => {
            let mut kinds = vec![EditKind::Topology];
            let mut body_kinds = Vec::new();
            node_kinds(node, &mut body_kinds);
            for kind in body_kinds {
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
            kinds.sort();
            kinds
        }
        EditOp::RemoveNode { .. } | EditOp::Rewire { .. } | EditOp::SetOutput { .. } => {
            vec![EditKind::Topology]
        }
    }
}

/// Kinds a new node brings with it: Python is offloading, a vote is consensus.
fn node_kinds(node: &Node, out: &mut Vec<EditKind>) {
    match node {
        Node::Llm(_) => {}
        Node::Code(_) => out.push(EditKind::Offloading),
        Node::Consensus(c) => {
            out.push(EditKind::Consensus);
            for (_, inner) in c.body.nodes.iter() {
                node_kinds(inner, out);
            }
        }
    }
}

/// Whether every kind `op` needs is allowed.
pub fn is_allowed(op: &EditOp, allowed: &AllowedEdits) -> bool {
    kinds_of(op).iter().all(|k| k.allowed_by(allowed))
}

/// The ops, names of the kinds, as the teacher is told them.
pub(crate) fn allowed_description(allowed: &AllowedEdits) -> String {
    let rows = [
        (allowed.prompts, "prompts", "set_prompt, set_decoding, set_parser"),
        (allowed.offloading, "offloading", "offload_to_code, set_code, insert_node of a `code` node"),
        (
            allowed.consensus,
            "consensus",
            "wrap_in_consensus, set_consensus, unwrap, insert_node of a `consensus` node",
        ),
        (allowed.topology, "topology", "insert_node, remove_node, rewire, set_output"),
    ];
    let mut out = String::new();
    for (on, name, ops) in rows {
        let state = if on { "ALLOWED" } else { "NOT ALLOWED" };
        out.push_str(&format!("- {name} ({ops}): {state}\n"));
    }
    out.push_str(
        "An op that needs a kind that is not allowed is dropped (inserting a code node needs both \
         topology and offloading).",
    );
    out
}

/// Checks beyond validity that a candidate must pass to be evaluated: every `llm` node runs on
/// the student. A compiled workflow that quietly calls the teacher would score well and then be
/// unaffordable (or unavailable) in production.
pub(crate) fn check_candidate(spec: &WorkflowSpec, student: &str) -> Result<(), String> {
    fn walk(nodes: &NodeMap, prefix: &str, student: &str) -> Result<(), String> {
        for (id, node) in nodes.iter() {
            match node {
                Node::Llm(llm) if llm.model != STUDENT_ROLE && llm.model != student => {
                    return Err(format!(
                        "node `{prefix}{id}` uses model `{}`; every llm node must use `{STUDENT_ROLE}`",
                        llm.model
                    ));
                }
                Node::Consensus(c) => walk(&c.body.nodes, &format!("{prefix}{id}/"), student)?,
                _ => {}
            }
        }
        Ok(())
    }
    walk(&spec.nodes, "", student)
}

/// Model calls one run of `spec` makes (consensus bodies times their samples).
pub fn calls_per_run(spec: &WorkflowSpec) -> u64 {
    fn count(nodes: &NodeMap) -> u64 {
        nodes
            .iter()
            .map(|(_, node)| match node {
                Node::Llm(_) => 1,
                Node::Code(_) => 0,
                Node::Consensus(c) => u64::from(c.samples) * count(&c.body.nodes),
            })
            .sum()
    }
    count(&spec.nodes)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn op(value: serde_json::Value) -> EditOp {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn inserting_code_needs_offloading_and_topology() {
        let insert = op(json!({"op": "insert_node", "id": "calc",
            "node": {"kind": "code", "code": "def run():\n    return 1\n"}}));
        assert_eq!(kinds_of(&insert), vec![EditKind::Offloading, EditKind::Topology]);
        assert!(!is_allowed(&insert, &AllowedEdits::prompts_only()));
        let prompt = op(json!({"op": "set_prompt", "node": "a", "prompt": "x"}));
        assert!(is_allowed(&prompt, &AllowedEdits::prompts_only()));
        let no_offload = AllowedEdits { offloading: false, ..AllowedEdits::default() };
        assert!(!is_allowed(&op(json!({"op": "offload_to_code", "node": "a", "code": "x"})), &no_offload));
        assert!(allowed_description(&no_offload).contains("offloading (offload_to_code"));
    }

    #[test]
    fn calls_count_consensus_samples() {
        let spec = WorkflowSpec::from_json(include_str!("../../../examples/gsm_consensus.json")).unwrap();
        assert_eq!(calls_per_run(&spec), 6);
        assert!(check_candidate(&spec, "tiny").is_ok());
    }
}
