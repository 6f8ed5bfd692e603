//! The starting point when no workflow is given: one `llm` node that answers from the inputs.
//!
//! It is deliberately the naive baseline — the task as the system prompt, the inputs in the
//! user message, a parser matching the metric — so that everything the compiled workflow does
//! better is visible in the iteration log as an accepted edit.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sgde_workflow::{DecodingParams, LlmNode, Node, NodeMap, OutputParser, SCHEMA_ID, WorkflowSpec};

use crate::error::CompileError;
use crate::metric::Metric;
use crate::request::Example;

/// Id of the single node of a workflow made from the task.
pub const INITIAL_NODE: &str = "answer";

/// A one-node workflow for `task`, with inputs declared from the training examples' keys.
pub fn initial_spec(task: &str, train: &[Example], metric: &Metric) -> Result<WorkflowSpec, CompileError> {
    let first = train.first().ok_or_else(|| CompileError::invalid("train", "give at least one example"))?;
    let inputs = inputs_schema(train)?;
    let names: Vec<String> =
        inputs["properties"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default();
    let required = |name: &String| inputs["required"].as_array().is_some_and(|r| r.contains(&json!(name)));
    // Templates are strict about undefined variables: an input some examples lack needs a default.
    let reference = |name: &String| {
        if required(name) {
            format!("{{{{ inputs.{name} }}}}")
        } else {
            format!("{{{{ inputs.{name} | default(\"\") }}}}")
        }
    };
    let prompt = match names.as_slice() {
        [only] => reference(only),
        many => many.iter().map(|n| format!("{n}: {}", reference(n))).collect::<Vec<_>>().join("\n"),
    };
    let parser = metric.natural_parser(&first.expected);
    let closing = match parser {
        OutputParser::Number { .. } => "End your reply with the final answer as a number.",
        OutputParser::Json { .. } => "Reply with a JSON value.",
        _ => "Reply with the answer only.",
    };
    let node = LlmNode {
        deps: Vec::new(),
        model: "student".to_owned(),
        system: Some(format!("{}\n\n{closing}", task.trim())),
        prompt,
        decoding: DecodingParams::default(),
        parser,
        timeout_ms: None,
        unknown: BTreeMap::new(),
    };
    let mut nodes = NodeMap::new();
    nodes.insert(INITIAL_NODE, Node::Llm(node));
    let spec = WorkflowSpec {
        schema: SCHEMA_ID.to_owned(),
        description: Some(task.trim().to_owned()),
        inputs,
        output: INITIAL_NODE.to_owned(),
        nodes,
    };
    spec.validate()
        .map_err(|e| CompileError::invalid("task", format!("cannot make a workflow from it: {e}")))?;
    Ok(spec)
}

/// An object schema with one property per input key seen, typed from the values; keys present
/// in every example are required.
fn inputs_schema(train: &[Example]) -> Result<Value, CompileError> {
    let mut properties: Map<String, Value> = Map::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (i, example) in train.iter().enumerate() {
        let Value::Object(inputs) = &example.inputs else {
            return Err(CompileError::invalid(format!("train[{i}].inputs"), "must be a JSON object"));
        };
        for (key, value) in inputs {
            if !is_identifier(key) {
                return Err(CompileError::invalid(
                    format!("train[{i}].inputs.{key}"),
                    "input names must be identifiers ([A-Za-z_][A-Za-z0-9_]*)",
                ));
            }
            *counts.entry(key.clone()).or_default() += 1;
            let ty = json_type(value);
            match properties.get(key) {
                Some(existing) if existing["type"] != ty => {
                    properties.insert(key.clone(), json!({}));
                }
                Some(_) => {}
                None => {
                    properties.insert(key.clone(), json!({ "type": ty }));
                }
            }
        }
    }
    if properties.is_empty() {
        return Err(CompileError::invalid("train[0].inputs", "give at least one input"));
    }
    let required: Vec<&String> = counts.iter().filter(|(_, n)| **n == train.len()).map(|(k, _)| k).collect();
    Ok(json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    }))
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(inputs: Value, expected: Value) -> Example {
        Example { inputs, expected }
    }

    #[test]
    fn one_input_becomes_the_prompt_and_the_metric_picks_the_parser() {
        let train = vec![example(json!({"question": "2+2?"}), json!(4))];
        let spec = initial_spec("Answer the question.", &train, &Metric::Numeric { tolerance: 0.0 }).unwrap();
        let Some(Node::Llm(node)) = spec.nodes.get(INITIAL_NODE) else { panic!("{spec:?}") };
        assert_eq!(node.prompt, "{{ inputs.question }}");
        assert!(matches!(node.parser, OutputParser::Number { .. }));
        assert_eq!(spec.inputs["required"], json!(["question"]));
    }

    #[test]
    fn several_inputs_are_labelled_and_optional_ones_not_required() {
        let train =
            vec![example(json!({"a": "x", "b": 1}), json!("y")), example(json!({"a": "z"}), json!("w"))];
        let spec = initial_spec("Combine.", &train, &Metric::Text { case_sensitive: false }).unwrap();
        let Some(Node::Llm(node)) = spec.nodes.get(INITIAL_NODE) else { panic!() };
        assert!(node.prompt.contains("a: {{ inputs.a }}"), "{}", node.prompt);
        assert!(node.prompt.contains("b: {{ inputs.b | default(\"\") }}"), "{}", node.prompt);
        assert_eq!(spec.inputs["required"], json!(["a"]));
        let bad = vec![example(json!("not an object"), json!(1))];
        assert!(initial_spec("x", &bad, &Metric::Exact).is_err());
    }
}
