//! The committed OpenAPI document (`openapi/openapi.json`) is the code's, and it follows the
//! conventions clients rely on: OpenAPI 3.1, an operationId and a tag on every operation, the
//! `bearer` scheme on everything but the system routes, problem+json on every error, and schemas
//! a generator can turn into types (see also the root `tests/generated_client.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{Value, json};

const REGENERATE: &str = "cargo run -- openapi > openapi/openapi.json";
const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../openapi/openapi.json")
}

fn generated() -> Value {
    serde_json::to_value(sgde_api::openapi()).expect("the document serialises")
}

/// Every operation as (method, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                out.push((method.to_uppercase(), path.clone(), operation.clone()));
            }
        }
    }
    out
}

fn is_system(operation: &Value) -> bool {
    operation["tags"].as_array().is_some_and(|t| t.iter().any(|t| t == "system"))
}

#[test]
fn committed_document_matches_the_code() {
    let path = committed_path();
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("cannot read {}: {e}\nGenerate it with `{REGENERATE}` and commit it.", path.display())
    });
    let current = sgde_api::openapi().to_pretty_json().expect("the document serialises");
    if committed.trim_end() != current.trim_end() {
        let first_difference = committed
            .lines()
            .zip(current.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(n, (a, b))| {
                format!("first difference at line {}:\n  committed: {a}\n  code:      {b}", n + 1)
            })
            .unwrap_or_else(|| "one is a prefix of the other".to_owned());
        panic!(
            "openapi/openapi.json is out of date with the API's annotations ({first_difference}).\n\
             Regenerate it from the repository root with\n\n    {REGENERATE}\n\nand commit the result."
        );
    }
}

#[test]
fn the_document_is_openapi_3_1() {
    let doc = generated();
    let version = doc["openapi"].as_str().expect("`openapi` field");
    assert!(version.starts_with("3.1."), "OpenAPI {version}, expected 3.1.x");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
}

#[test]
fn every_operation_has_a_unique_operation_id_and_a_declared_tag() {
    let doc = generated();
    let declared: BTreeSet<&str> =
        doc["tags"].as_array().expect("top-level tags").iter().filter_map(|t| t["name"].as_str()).collect();
    let mut ids = BTreeMap::new();
    for (method, path, operation) in operations(&doc) {
        let id =
            operation["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}: no operationId"));
        assert!(!id.is_empty(), "{method} {path}: empty operationId");
        if let Some(other) = ids.insert(id.to_owned(), format!("{method} {path}")) {
            panic!("operationId `{id}` is used by both {other} and {method} {path}");
        }
        let tags = operation["tags"].as_array().filter(|t| !t.is_empty());
        let tags = tags.unwrap_or_else(|| panic!("{method} {path}: no tags"));
        for tag in tags {
            let tag = tag.as_str().unwrap_or_default();
            assert!(declared.contains(tag), "{method} {path}: tag `{tag}` is not declared at the top level");
        }
        assert!(
            operation["summary"].is_string(),
            "{method} {path}: no summary (a doc comment on the handler)"
        );
    }
    assert!(ids.len() >= 25, "only {} operations: are routers missing from the document?", ids.len());
}

#[test]
fn every_operation_but_the_system_ones_requires_the_bearer_scheme() {
    let doc = generated();
    for (method, path, operation) in operations(&doc) {
        let security = operation["security"].as_array().cloned().unwrap_or_default();
        let bearer = security.iter().any(|requirement| requirement.get("bearer").is_some());
        if is_system(&operation) {
            continue;
        }
        assert!(bearer, "{method} {path}: no `bearer` security requirement");
        assert!(
            security.iter().all(|r| r.as_object().is_some_and(|r| !r.is_empty())),
            "{method} {path}: an empty security requirement makes authentication optional"
        );
        for status in ["401", "403"] {
            assert!(operation["responses"].get(status).is_some(), "{method} {path}: no {status} response");
        }
    }
}

#[test]
fn every_error_response_is_a_problem_document() {
    let doc = generated();
    let problem = json!({"$ref": "#/components/schemas/Problem"});
    for (method, path, operation) in operations(&doc) {
        let responses = operation["responses"].as_object().expect("responses");
        assert!(responses.keys().any(|s| s.starts_with('2')), "{method} {path}: no success response");
        assert!(responses.contains_key("500"), "{method} {path}: no 500 response");
        for (status, response) in responses {
            let description = response["description"].as_str().unwrap_or_default();
            assert!(
                !description.is_empty(),
                "{method} {path} {status}: no description (OpenAPI requires one)"
            );
            if !(status.starts_with('4') || status.starts_with('5')) {
                continue;
            }
            let content = response["content"].as_object().expect("error content");
            assert_eq!(
                content.keys().collect::<Vec<_>>(),
                ["application/problem+json"],
                "{method} {path} {status}: errors are application/problem+json only"
            );
            assert_eq!(
                content["application/problem+json"]["schema"], problem,
                "{method} {path} {status}: the error body must be the Problem schema"
            );
        }
        if operation.get("requestBody").is_some() {
            for status in ["400", "413", "415", "422"] {
                assert!(responses.contains_key(status), "{method} {path}: takes a body but has no {status}");
            }
        }
    }
}

/// Every `$ref` in `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves() {
    let doc = generated();
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("external reference {r}"));
        assert!(doc.pointer(pointer).is_some(), "dangling reference {r}");
    }
}

/// Generators (openapi-python-client, openapi-ts, openapi-generator) need tagged unions as `oneOf`
/// of named schemas with a discriminator, not `allOf` tricks or anonymous inline variants.
#[test]
fn unions_are_discriminated_oneofs_of_named_schemas() {
    let doc = generated();
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    fn check(name: &str, value: &Value) {
        match value {
            Value::Object(map) => {
                if let Some(Value::Array(items)) = map.get("oneOf") {
                    let nullable = items.len() == 2 && items.iter().any(|i| i == &json!({"type": "null"}));
                    let all_refs = items.iter().all(|i| i.get("$ref").is_some());
                    let discriminated = map.get("discriminator").is_some();
                    assert!(
                        nullable || (all_refs && discriminated),
                        "{name}: a oneOf that is neither `[$ref, null]` nor discriminated named schemas"
                    );
                }
                if let Some(Value::Array(items)) = map.get("allOf") {
                    panic!("{name}: allOf ({} items) trips client generators", items.len());
                }
                map.values().for_each(|v| check(name, v));
            }
            Value::Array(items) => items.iter().for_each(|v| check(name, v)),
            _ => {}
        }
    }
    for (name, schema) in schemas {
        check(name, schema);
    }
    for (union, tag, variants) in [
        ("Node", "kind", ["LlmNode", "CodeNode", "ConsensusNode"].as_slice()),
        (
            "OutputParser",
            "type",
            &["OutputParserText", "OutputParserNumber", "OutputParserJson", "OutputParserRegex"],
        ),
        ("Normalize", "type", &["NormalizeNumber", "NormalizeText", "NormalizeJson"]),
    ] {
        assert_eq!(schemas[union]["discriminator"]["propertyName"], tag, "{union}");
        for variant in variants {
            let schema = &schemas[*variant];
            assert!(
                schema["required"].as_array().unwrap().contains(&json!(tag)),
                "{variant} must require `{tag}`"
            );
            assert_eq!(
                schema["properties"][tag]["enum"].as_array().map(Vec::len),
                Some(1),
                "{variant}.{tag}"
            );
        }
    }
}

#[test]
fn the_recursive_sub_graph_is_a_cycle_of_named_schemas() {
    let doc = generated();
    let s = &doc["components"]["schemas"];
    let reference = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    assert!(s["Node"]["oneOf"].as_array().unwrap().contains(&reference("ConsensusNode")));
    assert_eq!(s["ConsensusNode"]["properties"]["body"], reference("Graph"));
    assert_eq!(s["Graph"]["properties"]["nodes"]["$ref"], reference("NodeMap")["$ref"]);
    assert_eq!(s["NodeMap"]["additionalProperties"], reference("Node"));
    assert_eq!(s["WorkflowSpec"]["properties"]["nodes"]["$ref"], reference("NodeMap")["$ref"]);
}

/// Generic wrappers refer to their item schema instead of carrying a copy of it.
#[test]
fn list_wrappers_refer_to_their_items() {
    let doc = generated();
    let s = doc["components"]["schemas"].as_object().unwrap();
    for (name, schema) in s.iter().filter(|(n, _)| n.starts_with("Items_") || n.starts_with("Paged_")) {
        let items = &schema["properties"]["items"]["items"];
        assert!(items.get("$ref").is_some(), "{name}.items is an inline copy: {items}");
    }
}

/// `EndpointConfig` is documented by hand (sgde-llm does not depend on utoipa): every field the
/// real type serialises must be in the schema, and the schema must not invent fields.
#[test]
fn the_endpoint_config_schema_covers_the_real_type() {
    let doc = generated();
    let schemas = &doc["components"]["schemas"];
    let mut config = sgde_llm::EndpointConfig::new("student", "http://127.0.0.1:8080/v1", "smollm2");
    config.api_key_env = Some("OPENAI_API_KEY".into());
    config.extra_headers.insert("OpenAI-Organization".into(), "org".into());
    config.rate_limit.requests_per_minute = Some(60);
    config.rate_limit.tokens_per_minute = Some(10_000);
    config.decoding.temperature = Some(0.2);
    config.decoding.top_p = Some(0.9);
    config.decoding.max_tokens = Some(64);
    config.decoding.seed = Some(7);
    config.decoding.stop = vec!["\n".into()];
    let value = serde_json::to_value(&config).unwrap();
    fn resolve<'a>(schemas: &'a Value, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(r) => &schemas[r.rsplit('/').next().unwrap()],
            None => schema,
        }
    }
    fn compare(schemas: &Value, schema: &Value, value: &Value, at: &str) {
        let schema = resolve(schemas, schema);
        let Some(object) = value.as_object() else { return };
        let properties = schema["properties"].as_object();
        let Some(properties) = properties else { return };
        for (key, field) in object {
            let documented = properties.get(key).unwrap_or_else(|| panic!("{at}/{key} is not in the schema"));
            compare(schemas, documented, field, &format!("{at}/{key}"));
        }
        let listed: BTreeSet<&String> = properties.keys().collect();
        let real: BTreeSet<&String> = object.keys().collect();
        assert_eq!(listed, real, "{at}: the schema lists fields the type does not have (or misses some)");
    }
    compare(schemas, &schemas["EndpointConfig"], &value, "EndpointConfig");
    let required: Vec<&str> =
        schemas["EndpointConfig"]["required"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(required, ["name", "base_url", "model"]);
    // The minimal document the schema promises is accepted, with defaults filled in.
    let minimal: sgde_llm::EndpointConfig =
        serde_json::from_value(json!({"name": "e", "base_url": "http://h/v1", "model": "m"})).unwrap();
    assert_eq!(
        serde_json::to_value(&minimal).unwrap()["timeout_ms"],
        schemas["EndpointConfig"]["properties"]["timeout_ms"]["default"]
    );
    assert_eq!(schemas["Endpoint"]["properties"]["config"]["$ref"], "#/components/schemas/EndpointConfig");
    for operation in ["post", "put"] {
        let path = if operation == "post" { "/v1/endpoints" } else { "/v1/endpoints/{name}" };
        let body = &doc["paths"][path][operation]["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(body["$ref"], "#/components/schemas/EndpointConfig", "{operation} {path}");
    }
}
