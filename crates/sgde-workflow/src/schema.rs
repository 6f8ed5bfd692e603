//! The spec's own JSON Schema, published by the API and usable in editors.
//!
//! It is generated from the same utoipa derives that feed the OpenAPI document, so the two never
//! disagree. OpenAPI component references are rewritten to `$defs` to make a standalone
//! JSON Schema (draft 2020-12).

use serde_json::{Value, json};
use utoipa::{PartialSchema, ToSchema};

use crate::edit::EditOp;
use crate::node_map::NodeMap;
use crate::spec::{SCHEMA_ID, WorkflowSpec};

/// JSON Schema (2020-12) of a workflow spec.
pub fn spec_json_schema() -> Value {
    standalone::<WorkflowSpec>(&format!("https://sgde.dev/schemas/{SCHEMA_ID}.json"))
}

/// JSON Schema (2020-12) of one edit operation, for the teacher's structured output.
pub fn edit_op_json_schema() -> Value {
    standalone::<EditOp>("https://sgde.dev/schemas/sgde.edit-op/v1.json")
}

fn standalone<T: ToSchema>(id: &str) -> Value {
    let mut collected = Vec::new();
    T::schemas(&mut collected);
    // Consensus bodies refer to `NodeMap` without recursing into it (to break the cycle), so it
    // is added here for documents whose root does not reach it otherwise.
    collected.push((NodeMap::name().into_owned(), NodeMap::schema()));
    let mut defs = serde_json::Map::new();
    for (name, schema) in collected {
        defs.insert(name, serde_json::to_value(schema).unwrap_or(Value::Null));
    }
    defs.insert(T::name().into_owned(), serde_json::to_value(T::schema()).unwrap_or(Value::Null));
    let mut schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": id,
        "$ref": format!("#/$defs/{}", T::name()),
        "$defs": defs,
    });
    rewrite_refs(&mut schema);
    schema
}

fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "$ref" {
                    if let Value::String(s) = v
                        && let Some(name) = s.strip_prefix("#/components/schemas/")
                    {
                        *s = format!("#/$defs/{name}");
                    }
                } else {
                    rewrite_refs(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}
