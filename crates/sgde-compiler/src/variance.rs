//! Per-node variance: how much a node disagrees with itself across the samples of one example.
//!
//! For each node and example, every execution's value (or its error, which counts as a value of
//! its own) is compared with the most common one; the node's *disagreement* is the fraction that
//! differ, averaged over examples. Zero means the node always says the same thing (it may still
//! be wrong — consistently); a high value marks a node where structural consensus can help.
//! Executions inside consensus bodies count individually, so the teacher sees the variance the
//! vote absorbs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sgde_workflow::canonical_json;
use utoipa::ToSchema;

use crate::evaluate::SampleEval;

/// What the samples say about one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeStats {
    /// `llm`, `code` or `consensus`.
    pub kind: String,
    /// Executions across all runs (consensus bodies count each sample).
    pub executions: u32,
    /// Mean over examples of the fraction of executions whose value differs from the modal one.
    pub disagreement: f64,
    /// Fraction of executions that failed.
    pub error_rate: f64,
}

/// The address of a traced node as edits name it: sample indices dropped
/// (`solve[2]/program` → `solve/program`).
pub fn node_address(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            _ if !in_index => out.push(c),
            _ => {}
        }
    }
    out
}

#[derive(Default)]
struct Acc {
    kind: String,
    /// Per example: value key → count.
    per_example: BTreeMap<usize, BTreeMap<String, u32>>,
    executions: u32,
    errors: u32,
}

pub(crate) fn node_stats(samples: &[SampleEval]) -> BTreeMap<String, NodeStats> {
    let mut acc: BTreeMap<String, Acc> = BTreeMap::new();
    for sample in samples {
        for node in &sample.trace.nodes {
            let entry = acc.entry(node_address(&node.path)).or_default();
            entry.kind.clone_from(&node.kind);
            entry.executions += 1;
            let key = match (&node.error, &node.value) {
                (Some(e), _) => {
                    entry.errors += 1;
                    format!("error:{}", e.kind)
                }
                (None, Some(v)) => canonical_json(v),
                (None, None) => "null".to_owned(),
            };
            *entry.per_example.entry(sample.example).or_default().entry(key).or_default() += 1;
        }
    }
    acc.into_iter()
        .map(|(address, a)| {
            let fractions: Vec<f64> = a
                .per_example
                .values()
                .map(|counts| {
                    let total: u32 = counts.values().sum();
                    let modal = counts.values().copied().max().unwrap_or(0);
                    if total == 0 { 0.0 } else { 1.0 - f64::from(modal) / f64::from(total) }
                })
                .collect();
            let disagreement = if fractions.is_empty() {
                0.0
            } else {
                fractions.iter().sum::<f64>() / fractions.len() as f64
            };
            let error_rate =
                if a.executions == 0 { 0.0 } else { f64::from(a.errors) / f64::from(a.executions) };
            (address, NodeStats { kind: a.kind, executions: a.executions, disagreement, error_rate })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sgde_runtime::{NodeTrace, Trace};

    use super::*;

    fn sample(example: usize, values: &[(&str, serde_json::Value)]) -> SampleEval {
        let nodes = values
            .iter()
            .map(|(path, value)| {
                let mut t: NodeTrace = serde_json::from_value(
                    json!({"path": path, "node": "n", "kind": "llm", "start_us": 0, "end_us": 0}),
                )
                .unwrap();
                t.value = Some(value.clone());
                t
            })
            .collect();
        SampleEval {
            example,
            sample: 0,
            output: Ok(json!(null)),
            score: 0.0,
            metric_error: None,
            trace: Trace { nodes },
        }
    }

    #[test]
    fn addresses_drop_sample_indices() {
        assert_eq!(node_address("solve[12]/program"), "solve/program");
        assert_eq!(node_address("a[0]/b[3]/c"), "a/b/c");
        assert_eq!(node_address("extract"), "extract");
    }

    #[test]
    fn disagreement_is_per_example_then_averaged() {
        let samples = vec![
            sample(0, &[("x", json!(1)), ("s[0]/y", json!(1)), ("s[1]/y", json!(2))]),
            sample(0, &[("x", json!(1))]),
            sample(1, &[("x", json!(5))]),
            sample(1, &[("x", json!(6))]),
        ];
        let stats = node_stats(&samples);
        assert_eq!(stats["x"].executions, 4);
        assert!((stats["x"].disagreement - 0.25).abs() < 1e-12, "{:?}", stats["x"]);
        assert!((stats["s/y"].disagreement - 0.5).abs() < 1e-12);
    }
}
