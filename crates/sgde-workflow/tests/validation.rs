//! Validation of whole specs: every error found at once, each with its JSON pointer.

use serde_json::{Value, json};
use sgde_workflow::{SpecErrors, ValidationError, WorkflowSpec};

fn reference() -> Value {
    serde_json::from_str(include_str!("../../../examples/gsm_consensus.json")).unwrap()
}

fn errors(value: Value) -> Vec<ValidationError> {
    match WorkflowSpec::from_value(value) {
        Ok(_) => Vec::new(),
        Err(SpecErrors(errors)) => errors,
    }
}

fn has(errors: &[ValidationError], pointer: &str, needle: &str) -> bool {
    errors.iter().any(|e| e.pointer == pointer && e.message.contains(needle))
}

#[track_caller]
fn assert_has(errors: &[ValidationError], pointer: &str, needle: &str) {
    assert!(has(errors, pointer, needle), "no error at `{pointer}` containing `{needle}` in {errors:#?}");
}

fn minimal(nodes: Value, output: &str) -> Value {
    json!({
        "schema": "sgde.workflow/v1",
        "inputs": {"type": "object", "properties": {"question": {"type": "string"}}, "additionalProperties": false},
        "output": output,
        "nodes": nodes,
    })
}

#[test]
fn the_reference_workflow_is_valid() {
    let spec = WorkflowSpec::from_value(reference()).unwrap();
    assert_eq!(spec.output, "answer");
    assert_eq!(spec.nodes.len(), 3);
}

#[test]
fn unknown_fields_are_rejected_with_their_pointer() {
    let mut v = reference();
    v["nodes"]["extract"]["temprature"] = json!(0.5);
    let errs = errors(v);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].pointer.starts_with("/nodes/extract"), "{errs:#?}");
    assert!(errs[0].message.contains("temprature"), "{errs:#?}");
}

#[test]
fn wrong_types_name_the_field() {
    let mut v = reference();
    v["nodes"]["solve"]["samples"] = json!("five");
    let errs = errors(v);
    assert_eq!(errs[0].pointer, "/nodes/solve/samples", "{errs:#?}");
}

#[test]
fn all_structural_errors_are_reported_at_once() {
    let v = minimal(
        json!({
            "a": {"kind": "llm", "deps": ["b", "ghost"], "prompt": "{{ b }}"},
            "b": {"kind": "llm", "deps": ["c"], "prompt": "{{ c }}"},
            "c": {"kind": "llm", "deps": ["a"], "prompt": "{{ a }} {{ inputs.nope }} {{ stranger }}"},
            "lonely": {"kind": "code", "code": "def run(inputs):\n    return 1\n"},
            "9bad": {"kind": "code", "code": "def run(:\n"},
        }),
        "missing",
    );
    let errs = errors(v);
    assert_has(&errs, "/nodes/a/deps/1", "unknown dependency `ghost`");
    assert_has(&errs, "/nodes/c/prompt", "inputs.nope");
    assert_has(&errs, "/nodes/c/prompt", "`stranger`");
    assert_has(&errs, "/nodes/9bad", "invalid node id");
    assert_has(&errs, "/nodes/9bad/code", "syntax error");
    assert_has(&errs, "/output", "`missing` does not exist");
}

#[test]
fn cycles_name_their_nodes() {
    let v = minimal(
        json!({
            "a": {"kind": "llm", "deps": ["c"], "prompt": "{{ c }}"},
            "b": {"kind": "llm", "deps": ["a"], "prompt": "{{ a }}"},
            "c": {"kind": "llm", "deps": ["b"], "prompt": "{{ b }}"},
        }),
        "c",
    );
    let errs = errors(v);
    let cycle = errs.iter().find(|e| e.message.contains("cycle")).expect("a cycle error");
    for node in ["a", "b", "c"] {
        assert!(cycle.message.contains(&node.to_string()), "{cycle:?}");
    }
    assert!(cycle.message.contains('→'));
}

#[test]
fn nodes_that_do_not_reach_the_output_are_reported() {
    let v = minimal(
        json!({
            "a": {"kind": "llm", "prompt": "{{ inputs.question }}"},
            "dead": {"kind": "llm", "prompt": "{{ inputs.question }}"},
        }),
        "a",
    );
    assert_has(&errors(v), "/nodes/dead", "does not contribute");
}

#[test]
fn duplicate_ids_are_caught_in_json_and_across_bodies() {
    let text = r#"{"schema":"sgde.workflow/v1","inputs":{"type":"object"},"output":"a",
        "nodes":{"a":{"kind":"llm","prompt":"x"},"a":{"kind":"llm","prompt":"y"}}}"#;
    let errs = WorkflowSpec::from_json(text).unwrap_err().0;
    assert_has(&errs, "/nodes/a", "duplicate node id");

    let mut v = reference();
    v["nodes"]["solve"]["body"]["nodes"]["extract"] = json!({"kind": "llm", "prompt": "x"});
    v["nodes"]["solve"]["body"]["nodes"]["run"]["deps"] = json!(["program", "extract"]);
    let errs = errors(v);
    assert!(errs.iter().any(|e| e.message.contains("duplicate node id `extract`")), "{errs:#?}");
}

#[test]
fn body_output_may_share_the_consensus_id() {
    let mut v = reference();
    let body = v["nodes"]["solve"]["body"].clone();
    let mut nodes = body["nodes"].clone();
    let run = nodes.as_object_mut().unwrap().remove("run").unwrap();
    nodes["solve"] = run;
    v["nodes"]["solve"]["body"] = json!({"nodes": nodes, "output": "solve"});
    WorkflowSpec::from_value(v).unwrap();
}

#[test]
fn vote_configuration_is_checked() {
    let mut v = reference();
    v["nodes"]["solve"]["samples"] = json!(3);
    v["nodes"]["solve"]["vote"]["quorum"] = json!(4);
    v["nodes"]["solve"]["vote"]["over"] = json!("nowhere");
    v["nodes"]["solve"]["vote"]["normalize"] = json!({"type": "number", "tolerance": -1.0});
    let errs = errors(v);
    assert_has(&errs, "/nodes/solve/vote/quorum", "larger than samples");
    assert_has(&errs, "/nodes/solve/vote/over", "not a node of the body");
    assert_has(&errs, "/nodes/solve/vote/normalize/tolerance", "≥ 0");

    let mut v = reference();
    v["nodes"]["solve"]["samples"] = json!(0);
    v["nodes"]["solve"]["vote"]["quorum"] = json!(0);
    let errs = errors(v);
    assert_has(&errs, "/nodes/solve/samples", "between 1");
    assert_has(&errs, "/nodes/solve/vote/quorum", "at least 1");
}

#[test]
fn body_nodes_may_only_use_the_consensus_deps() {
    let mut v = reference();
    v["nodes"]["solve"]["deps"] = json!([]);
    let errs = errors(v);
    assert_has(&errs, "/nodes/solve/body/nodes/program/deps/0", "unknown dependency `extract`");
}

#[test]
fn parser_and_decoding_config_is_checked() {
    let v = minimal(
        json!({
            "a": {"kind": "llm", "prompt": "{{ inputs.question }}",
                  "decoding": {"temperature": 3.5, "top_p": 0.0, "max_tokens": 0},
                  "parser": {"type": "regex", "pattern": "(unclosed"}},
            "b": {"kind": "llm", "deps": ["a"], "prompt": "{{ a }}",
                  "parser": {"type": "json", "schema": {"type": "no-such-type"}}},
        }),
        "b",
    );
    let errs = errors(v);
    assert_has(&errs, "/nodes/a/decoding/temperature", "between 0 and 2");
    assert_has(&errs, "/nodes/a/decoding/top_p", "(0, 1]");
    assert_has(&errs, "/nodes/a/decoding/max_tokens", "at least 1");
    assert_has(&errs, "/nodes/a/parser", "regular expression");
    assert_has(&errs, "/nodes/b/parser", "JSON Schema");
}

#[test]
fn template_syntax_errors_and_code_parameters_are_checked() {
    let v = minimal(
        json!({
            "a": {"kind": "llm", "prompt": "{% if %}"},
            "b": {"kind": "code", "deps": ["a"], "code": "def run(a, b_missing):\n    return a\n"},
            "c": {"kind": "code", "deps": ["b"], "code": "def solve(b):\n    return b\n"},
        }),
        "c",
    );
    let errs = errors(v);
    assert_has(&errs, "/nodes/a/prompt", "template syntax error");
    assert_has(&errs, "/nodes/b/code", "`b_missing`");
    assert_has(&errs, "/nodes/c/code", "def run");
}

#[test]
fn inputs_schema_and_schema_id_are_checked() {
    let mut v = reference();
    v["schema"] = json!("sgde.workflow/v0");
    v["inputs"] = json!({"type": "array"});
    let errs = errors(v);
    assert_has(&errs, "/schema", "unsupported schema");
    assert_has(&errs, "/inputs/type", "object");
}

#[test]
fn pointers_escape_special_characters() {
    let v = minimal(json!({"a/b": {"kind": "llm", "prompt": "x"}}), "a/b");
    let errs = errors(v);
    assert_has(&errs, "/nodes/a~1b", "invalid node id");
}
