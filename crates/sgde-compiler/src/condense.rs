//! What the teacher sees of an evaluation: a few failing and passing runs, condensed.
//!
//! Raw traces are too long and too repetitive for a prompt (a 5× consensus repeats its body five
//! times per run). A condensed run shows the inputs, expected and actual output, and per node —
//! in DAG order — the rendered prompt, the raw reply and the parsed value or error, each clipped;
//! consensus bodies show their first samples and the vote. Everything here is a deterministic
//! function of the evaluation (no timings, nodes sorted, examples in order), so the same state
//! always yields the same prompt — which is what lets a resumed compile hit the response cache.

use std::collections::BTreeMap;

use serde_json::Value;
use sgde_runtime::{NodeTrace, Tally};
use sgde_workflow::{Node, NodeMap, WorkflowSpec};

use crate::evaluate::{Evaluation, RIGHT, SampleEval};
use crate::record::{Critique, RejectedEdit};
use crate::request::Example;
use crate::variance::NodeStats;

/// How much of the traces the teacher gets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ViewLimits {
    pub(crate) failing: usize,
    pub(crate) passing: usize,
    /// Longest prompt, reply or value shown, in characters.
    pub(crate) field_chars: usize,
    /// Consensus samples shown per vote.
    pub(crate) body_samples: u32,
}

/// Cuts `text` to `max` characters, saying how much was left out.
pub(crate) fn clip(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max).collect();
    format!("{kept}… [{} more characters]", count - max)
}

fn show(value: &Value, max: usize) -> String {
    clip(&value.to_string(), max)
}

/// `0.667`: scores with three decimals.
pub(crate) fn score(x: f64) -> String {
    format!("{x:.3}")
}

pub(crate) fn per_example(scores: &[f64]) -> String {
    scores.iter().enumerate().map(|(i, s)| format!("#{} {}", i + 1, score(*s))).collect::<Vec<_>>().join(", ")
}

pub(crate) fn variance_table(nodes: &BTreeMap<String, NodeStats>) -> String {
    if nodes.is_empty() {
        return "(no node ran)".to_owned();
    }
    let mut out =
        String::from("| node | kind | executions | disagreement | error rate |\n|---|---|---|---|---|\n");
    for (address, s) in nodes {
        out.push_str(&format!(
            "| {address} | {} | {} | {} | {} |\n",
            s.kind,
            s.executions,
            score(s.disagreement),
            score(s.error_rate)
        ));
    }
    out
}

pub(crate) fn rejected_view(rejected: &[RejectedEdit]) -> String {
    if rejected.is_empty() {
        return "(none yet)".to_owned();
    }
    let mut out = String::new();
    for r in rejected {
        out.push_str(&format!("- iteration {}: rejected because {}\n", r.iteration, r.reason));
        for s in &r.summaries {
            out.push_str(&format!("  - {s}\n"));
        }
    }
    out
}

/// Critiques shown to the editor, at most; a critic that rambles does not crowd out the rest of
/// the prompt (a 135M teacher once returned 33 copies of one line).
const MAX_CRITIQUES_SHOWN: usize = 12;
/// Characters of one critique (and of its suggestion) shown to the editor.
const MAX_CRITIQUE_CHARS: usize = 800;

/// Node addresses of `nodes` (`extract`, `solve/program`, ...) into `out`.
fn addresses(nodes: &NodeMap, prefix: &str, out: &mut std::collections::HashSet<String>) {
    for (id, node) in nodes.iter() {
        let address = format!("{prefix}{id}");
        if let Node::Consensus(c) = node {
            addresses(&c.body.nodes, &format!("{address}/"), out);
        }
        // A body node is also known by its bare id, which is unique in the spec.
        out.insert(id.clone());
        out.insert(address);
    }
}

/// The critiques as the editor sees them: those about nodes of `spec` (or the whole
/// `workflow`), without repeats, clipped, at most [`MAX_CRITIQUES_SHOWN`]; how many were left
/// out is said, so the editor knows the critic was noisy. The iteration record keeps them all.
pub(crate) fn critiques_view(critiques: &[Critique], spec: &WorkflowSpec) -> String {
    if critiques.is_empty() {
        return "(the critic found nothing to criticise)".to_owned();
    }
    let mut known = std::collections::HashSet::new();
    addresses(&spec.nodes, "", &mut known);
    let mut shown: Vec<&Critique> = Vec::new();
    let (mut unknown, mut repeated) = (0usize, 0usize);
    for c in critiques {
        if c.node != "workflow" && !known.contains(c.node.as_str()) {
            unknown += 1;
        } else if shown.iter().any(|s| s.node == c.node && s.critique == c.critique) {
            repeated += 1;
        } else {
            shown.push(c);
        }
    }
    let over = shown.len().saturating_sub(MAX_CRITIQUES_SHOWN);
    let mut out = String::new();
    for c in shown.iter().take(MAX_CRITIQUES_SHOWN) {
        let severity = c.severity.as_deref().map(|s| format!(" [{s}]")).unwrap_or_default();
        out.push_str(&format!("- `{}`{severity}: {}\n", c.node, clip(&c.critique, MAX_CRITIQUE_CHARS)));
        if let Some(s) = &c.suggestion {
            out.push_str(&format!("  suggestion: {}\n", clip(s, MAX_CRITIQUE_CHARS)));
        }
    }
    for (n, what) in [
        (unknown, "about nodes the workflow does not have"),
        (repeated, "repeated"),
        (over, "beyond the first"),
    ] {
        if n > 0 {
            out.push_str(&format!("({n} more critique(s) {what} left out)\n"));
        }
    }
    if out.is_empty() {
        return "(the critic named no node of this workflow)".to_owned();
    }
    out
}

#[cfg(test)]
mod critique_view_tests {
    use super::*;

    fn critique(node: &str, text: &str) -> Critique {
        Critique { node: node.into(), critique: text.into(), severity: None, suggestion: None }
    }

    #[test]
    fn unknown_nodes_repeats_and_floods_are_left_out() {
        let spec: WorkflowSpec = serde_json::from_value(serde_json::json!({
            "schema": "sgde.workflow/v1", "inputs": {"type": "object"}, "output": "solve",
            "nodes": {"extract": {"kind": "llm", "prompt": "x"},
                      "solve": {"kind": "consensus", "samples": 3, "deps": ["extract"],
                                "body": {"output": "program", "nodes": {"program": {"kind": "llm", "deps": ["extract"], "prompt": "y"}}}}}
        }))
        .expect("a spec");
        let mut critiques = vec![critique("extract", "misses units"), critique("solve/program", "bad math")];
        critiques.extend((0..33).map(|_| critique("{{ inputs.question }}", "{{ warnings.warn(")));
        critiques.push(critique("extract", "misses units"));
        critiques.push(critique("workflow", &"long ".repeat(1000)));
        let view = critiques_view(&critiques, &spec);
        assert!(
            view.contains("`extract`: misses units") && view.contains("`solve/program`: bad math"),
            "{view}"
        );
        assert!(!view.contains("warnings.warn"), "{view}");
        assert!(view.contains("33 more critique(s) about nodes the workflow does not have"), "{view}");
        assert!(view.contains("1 more critique(s) repeated"), "{view}");
        assert!(view.len() < 2_000, "{}", view.len());
        let only_noise = critiques_view(&[critique("nope", "x")], &spec);
        assert!(
            only_noise.contains("the critic named no node of this workflow") || only_noise.contains("1 more"),
            "{only_noise}"
        );
    }
}

/// Failing or passing runs, one per example (its first such sample), in example order.
pub(crate) fn runs_view(
    eval: &Evaluation,
    spec: &WorkflowSpec,
    examples: &[Example],
    failing: bool,
    limits: &ViewLimits,
) -> String {
    let max = if failing { limits.failing } else { limits.passing };
    let mut shown = Vec::new();
    let mut seen = Vec::new();
    for s in &eval.samples {
        let wanted = if failing { s.score < RIGHT } else { s.score >= RIGHT };
        if wanted && !seen.contains(&s.example) && shown.len() < max {
            seen.push(s.example);
            shown.push(s);
        }
    }
    if shown.is_empty() {
        return if failing { "(none: every run was right)" } else { "(none: every run was wrong)" }
            .to_owned();
    }
    let k = eval.samples.iter().filter(|s| s.example == 0).count();
    shown.iter().map(|s| run_view(s, spec, &examples[s.example], k, limits)).collect::<Vec<_>>().join("\n")
}

fn run_view(s: &SampleEval, spec: &WorkflowSpec, example: &Example, k: usize, limits: &ViewLimits) -> String {
    let max = limits.field_chars;
    let mut out = format!(
        "### Example {}, sample {} of {k}: score {}\ninputs: {}\nexpected: {}\n",
        s.example + 1,
        s.sample + 1,
        score(s.score),
        show(&example.inputs, max),
        show(&example.expected, max)
    );
    match &s.output {
        Ok(v) => out.push_str(&format!("output: {}\n", show(v, max))),
        Err(e) => out.push_str(&format!("output: none, the run failed: {}\n", clip(&e.to_string(), max))),
    }
    if let Some(e) = &s.metric_error {
        out.push_str(&format!("metric error: {}\n", clip(e, max)));
    }
    let mut nodes: Vec<&NodeTrace> = s
        .trace
        .nodes
        .iter()
        .filter(|n| sample_indices(&n.path).iter().all(|i| *i < limits.body_samples))
        .collect();
    nodes.sort_by_cached_key(|n| order_key(spec, &n.path));
    out.push_str("nodes:\n");
    for n in nodes {
        out.push_str(&node_view(n, max));
    }
    out
}

fn node_view(n: &NodeTrace, max: usize) -> String {
    let mut out = format!("- `{}` ({})\n", n.path, n.kind);
    if let Some(p) = &n.prompt {
        out.push_str(&format!("  prompt: {}\n", indent(&clip(p, max))));
    }
    if let Some(r) = &n.raw_output {
        out.push_str(&format!("  reply: {}\n", indent(&clip(r, max))));
    }
    if let Some(t) = &n.tally {
        out.push_str(&format!("  vote: {}\n", tally_view(t, max)));
    }
    match (&n.error, &n.value) {
        (Some(e), _) => out.push_str(&format!("  error ({}): {}\n", e.kind, indent(&clip(&e.message, max)))),
        (None, Some(v)) => out.push_str(&format!("  value: {}\n", show(v, max))),
        (None, None) => {}
    }
    if let Some(stdout) = n.stdout.as_deref().filter(|s| !s.is_empty()) {
        out.push_str(&format!("  printed: {}\n", indent(&clip(stdout, max))));
    }
    out
}

fn indent(text: &str) -> String {
    text.replace('\n', "\n    ")
}

fn tally_view(t: &Tally, max: usize) -> String {
    let mut parts: Vec<String> =
        t.entries.iter().map(|e| format!("{} ×{}", show(&e.value, max / 4), e.count)).collect();
    if t.abstained > 0 {
        parts.push(format!("{} abstained", t.abstained));
    }
    let winner = t
        .winner
        .and_then(|w| t.entries.get(w))
        .map_or("no winner".to_owned(), |e| format!("winner {}", show(&e.value, max / 4)));
    format!("{} → {winner}", parts.join(", "))
}

/// Sample indices along a trace path (`solve[2]/program` → `[2]`).
fn sample_indices(path: &str) -> Vec<u32> {
    path.split('/')
        .filter_map(|seg| seg.split_once('['))
        .filter_map(|(_, rest)| rest.trim_end_matches(']').parse().ok())
        .collect()
}

/// Sort key of a trace path: per segment, the node's topological rank in its graph and the
/// sample index, so that traces read in DAG order whatever order they completed in.
fn order_key(spec: &WorkflowSpec, path: &str) -> Vec<(usize, u32, String)> {
    let mut key = Vec::new();
    let mut graph: Option<&NodeMap> = Some(&spec.nodes);
    for segment in path.split('/') {
        let (id, sample) = match segment.split_once('[') {
            Some((id, rest)) => (id, rest.trim_end_matches(']').parse().unwrap_or(0)),
            None => (segment, 0),
        };
        let rank = graph.and_then(|g| topo_rank(g, id)).unwrap_or(usize::MAX);
        key.push((rank, sample, id.to_owned()));
        graph = match graph.and_then(|g| g.get(id)) {
            Some(Node::Consensus(c)) => Some(&c.body.nodes),
            _ => None,
        };
    }
    key
}

/// Position of `id` in a deterministic topological order of `nodes` (ids order breaks ties).
fn topo_rank(nodes: &NodeMap, id: &str) -> Option<usize> {
    let mut placed: Vec<&str> = Vec::with_capacity(nodes.len());
    while placed.len() < nodes.len() {
        let next = nodes.iter().find(|(nid, node)| {
            !placed.contains(&nid.as_str())
                && node.deps().iter().all(|d| !nodes.contains(d) || placed.contains(&d.as_str()))
        });
        match next {
            Some((nid, _)) => placed.push(nid),
            None => break,
        }
    }
    placed.iter().position(|p| *p == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_says_how_much_is_missing() {
        assert_eq!(clip("abcdef", 3), "abc… [3 more characters]");
        assert_eq!(clip("ab", 3), "ab");
    }

    #[test]
    fn traces_sort_in_dag_order() {
        let spec = WorkflowSpec::from_json(include_str!("../../../examples/gsm_consensus.json")).unwrap();
        let mut paths =
            vec!["answer", "solve[1]/run", "solve", "solve[0]/program", "extract", "solve[0]/run"];
        paths.sort_by_cached_key(|p| order_key(&spec, p));
        assert_eq!(
            paths,
            vec!["extract", "solve", "solve[0]/program", "solve[0]/run", "solve[1]/run", "answer"]
        );
        assert_eq!(sample_indices("a[3]/b[12]/c"), vec![3, 12]);
    }
}
