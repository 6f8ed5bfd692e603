//! Edit operations, the content hash and the published JSON Schema.

use serde_json::{Value, json};
use sgde_workflow::{
    EditError, EditOp, Node, Normalize, OffloadMode, OutputParser, Vote, WorkflowSpec, apply,
    edit_op_json_schema, spec_json_schema,
};

fn reference() -> WorkflowSpec {
    WorkflowSpec::from_json(include_str!("../../../examples/gsm_consensus.json")).unwrap()
}

/// The starting point of a compile: one `llm` node answering the question.
fn single_node() -> WorkflowSpec {
    WorkflowSpec::from_value(json!({
        "schema": "sgde.workflow/v1",
        "inputs": {"type": "object", "properties": {"question": {"type": "string"}}, "additionalProperties": false},
        "output": "answer",
        "nodes": {"answer": {"kind": "llm", "prompt": "{{ inputs.question }}", "parser": {"type": "number"}}}
    }))
    .unwrap()
}

fn ops(value: Value) -> Vec<EditOp> {
    serde_json::from_value(value).unwrap()
}

#[test]
fn a_single_node_grows_into_the_reference_shape() {
    let edits = ops(json!([
        {"op": "insert_node", "id": "extract", "node": {"kind": "llm", "prompt": "Quantities in: {{ inputs.question }}", "parser": {"type": "json"}}, "dependents": ["answer"]},
        {"op": "set_prompt", "node": "answer", "prompt": "Write a Python expression. {{ extract | tojson }} {{ inputs.question }}"},
        {"op": "set_parser", "node": "answer", "parser": {"type": "text"}},
        {"op": "offload_to_code", "node": "answer", "mode": "insert_after", "renamed_to": "program",
         "code": "def run(program, extract):\n    return eval(program, {'__builtins__': {}}, dict(extract))\n"},
        {"op": "rewire", "node": "answer", "deps": ["program", "extract"]},
        {"op": "wrap_in_consensus", "nodes": ["program", "answer"], "samples": 5,
         "vote": {"normalize": {"type": "number", "tolerance": 1e-6}, "quorum": 3}},
    ]));
    let out = apply(&single_node(), &edits).unwrap();
    let Some(Node::Consensus(c)) = out.nodes.get("answer") else {
        panic!("answer is not a consensus: {out:#?}")
    };
    assert_eq!(c.samples, 5);
    assert_eq!(c.deps, vec!["extract"]);
    assert_eq!(c.body.output, "answer");
    assert!(matches!(c.body.nodes.get("answer"), Some(Node::Code(_))));
    assert!(matches!(c.body.nodes.get("program"), Some(Node::Llm(_))));
    assert_eq!(out.output, "answer");
    out.validate().unwrap();
    for op in &edits {
        let line = op.summary();
        assert!(!line.contains('\n') && !line.is_empty(), "{line}");
    }
    assert!(edits[5].summary().contains("5× consensus"), "{}", edits[5].summary());
}

#[test]
fn path_addressing_reaches_the_inner_node() {
    let wrapped = apply(
        &single_node(),
        &[EditOp::WrapInConsensus {
            nodes: vec!["answer".into()],
            samples: 3,
            vote: Vote::default(),
            id: None,
        }],
    )
    .unwrap();
    let out = apply(
        &wrapped,
        &[EditOp::SetParser {
            node: "answer/answer".into(),
            parser: OutputParser::Number { pick: Default::default(), integer: true },
        }],
    )
    .unwrap();
    let Some(Node::Consensus(c)) = out.nodes.get("answer") else { panic!() };
    let Some(Node::Llm(inner)) = c.body.nodes.get("answer") else { panic!() };
    assert!(matches!(inner.parser, OutputParser::Number { integer: true, .. }));
    // The plain id means the consensus node.
    let err = apply(&wrapped, &[EditOp::SetParser { node: "answer".into(), parser: OutputParser::Text }])
        .unwrap_err();
    assert!(matches!(err, EditError::Op { index: 0, .. }), "{err}");
    assert!(err.to_string().contains("not an llm node"), "{err}");
}

#[test]
fn unwrap_reverses_wrap() {
    let spec = reference();
    let out = apply(&spec, &[EditOp::Unwrap { node: "solve".into() }]).unwrap();
    assert!(matches!(out.nodes.get("solve"), Some(Node::Code(_))), "the body output takes the consensus id");
    assert!(out.nodes.contains("program"));
}

#[test]
fn failing_ops_are_named() {
    let spec = reference();
    let err = apply(
        &spec,
        &[
            EditOp::SetPrompt { node: "extract".into(), system: Some("Be careful.".into()), prompt: None },
            EditOp::SetCode { node: "ghost".into(), code: "def run():\n    return 1\n".into() },
        ],
    )
    .unwrap_err();
    match err {
        EditError::Op { index, summary, reason } => {
            assert_eq!(index, 1);
            assert!(summary.contains("ghost"));
            assert!(reason.contains("unknown node"));
        }
        other => panic!("{other}"),
    }
}

#[test]
fn an_edit_that_breaks_the_spec_is_blamed() {
    let spec = reference();
    let err = apply(
        &spec,
        &[
            EditOp::SetPrompt {
                node: "extract".into(),
                system: None,
                prompt: Some("{{ inputs.question }}".into()),
            },
            EditOp::SetCode { node: "answer".into(), code: "def run(solve):\n    return (solve +\n".into() },
        ],
    )
    .unwrap_err();
    let EditError::Invalid { index, errors, .. } = err else { panic!("{err}") };
    assert_eq!(index, 1);
    assert!(errors.iter().any(|e| e.pointer == "/nodes/answer/code"), "{errors:#?}");
}

#[test]
fn remove_rewires_dependents() {
    let spec = reference();
    let out = apply(
        &spec,
        &[
            EditOp::InsertNode {
                id: "check".into(),
                node: Box::new(serde_json::from_value(json!({"kind": "code", "deps": ["solve"], "code": "def run(solve):\n    return solve\n"})).unwrap()),
                within: None,
                dependents: vec!["answer".into()],
            },
            EditOp::RemoveNode { node: "check".into() },
        ],
    )
    .unwrap();
    assert_eq!(out.nodes.get("answer").unwrap().deps(), ["solve".to_owned()]);
    assert_eq!(out, spec, "insert then remove is a no-op");
    assert!(apply(&spec, &[EditOp::RemoveNode { node: "answer".into() }]).is_err(), "the output cannot go");
}

#[test]
fn offload_replace_keeps_the_id_and_deps() {
    let spec = reference();
    let out = apply(
        &spec,
        &[EditOp::OffloadToCode {
            node: "extract".into(),
            code: "def run(inputs):\n    return {'n': len(inputs['question'])}\n".into(),
            mode: OffloadMode::Replace,
            renamed_to: None,
        }],
    )
    .unwrap();
    assert!(matches!(out.nodes.get("extract"), Some(Node::Code(_))));
}

#[test]
fn wrap_refuses_sets_with_two_sinks_or_hidden_members() {
    let spec = reference();
    let err = apply(
        &spec,
        &[EditOp::WrapInConsensus {
            nodes: vec!["extract".into(), "answer".into()],
            samples: 3,
            vote: Vote::default(),
            id: None,
        }],
    )
    .unwrap_err();
    assert!(err.to_string().contains("hidden") || err.to_string().contains("sink"), "{err}");
}

#[test]
fn set_consensus_changes_samples_and_vote() {
    let out = apply(
        &reference(),
        &[EditOp::SetConsensus {
            node: "solve".into(),
            samples: Some(7),
            vote: Some(Vote { normalize: Normalize::Text { case_sensitive: false }, ..Vote::default() }),
        }],
    )
    .unwrap();
    let Some(Node::Consensus(c)) = out.nodes.get("solve") else { panic!() };
    assert_eq!(c.samples, 7);
}

#[test]
fn content_hash_ignores_key_order_and_spelt_out_defaults() {
    let text = include_str!("../../../examples/gsm_consensus.json");
    let spec = reference();
    let mut value: Value = serde_json::from_str(text).unwrap();
    // Reorder keys by round-tripping through a sorted map, and spell out a default.
    let sorted: std::collections::BTreeMap<String, Value> = serde_json::from_value(value.clone()).unwrap();
    let reordered = WorkflowSpec::from_value(serde_json::to_value(sorted).unwrap()).unwrap();
    assert_eq!(spec.content_hash(), reordered.content_hash());
    value["nodes"]["extract"]["decoding"]["stop"] = json!([]);
    value["nodes"]["solve"]["body"]["nodes"]["program"]["model"] = json!("student");
    assert_eq!(spec.content_hash(), WorkflowSpec::from_value(value.clone()).unwrap().content_hash());
    assert!(spec.content_hash().starts_with("sha256:"));
    assert_eq!(spec.content_hash().len(), "sha256:".len() + 64);

    // Any semantic change changes the hash.
    for (pointer, new) in [
        ("/nodes/extract/prompt", json!("Extract. {{ inputs.question }}")),
        ("/nodes/solve/samples", json!(6)),
        ("/nodes/extract/decoding/temperature", json!(0.1)),
        ("/description", json!("another")),
    ] {
        let mut changed = value.clone();
        *changed.pointer_mut(pointer).unwrap() = new;
        let changed = WorkflowSpec::from_value(changed).unwrap();
        assert_ne!(spec.content_hash(), changed.content_hash(), "{pointer}");
    }
}

#[test]
fn canonical_form_round_trips() {
    let spec = reference();
    let again = WorkflowSpec::from_json(&spec.canonical_json()).unwrap();
    assert_eq!(spec, again);
    assert_eq!(spec.canonical_json(), again.canonical_json());
}

#[test]
fn the_spec_json_schema_accepts_the_reference_and_rejects_garbage() {
    let schema = spec_json_schema();
    assert_eq!(schema["$ref"], "#/$defs/WorkflowSpec");
    assert!(!schema.to_string().contains("#/components/"), "refs are rewritten");
    let validator = jsonschema::validator_for(&schema).unwrap();
    let example: Value = serde_json::from_str(include_str!("../../../examples/gsm_consensus.json")).unwrap();
    let errors: Vec<String> = validator.iter_errors(&example).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(!validator.is_valid(&json!({"schema": "sgde.workflow/v1", "nodes": 3})));

    let op_schema = edit_op_json_schema();
    let validator = jsonschema::validator_for(&op_schema).unwrap();
    assert!(validator.is_valid(&json!({"op": "remove_node", "node": "x"})));
    assert!(!validator.is_valid(&json!({"op": "explode"})));
}
