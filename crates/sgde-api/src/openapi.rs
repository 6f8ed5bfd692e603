//! The OpenAPI 3.1 document: generated from the handlers' annotations, plus the security scheme,
//! the shared schemas, and the conventions every operation follows. `sgde openapi` prints it;
//! `openapi/openapi.json` is its committed copy (a test fails when the two drift apart, and another
//! generates a Python client from the committed file and drives the service through it).
//!
//! Handlers document what is particular to them (success bodies, 404, domain 422s). [`finish`]
//! runs once every router is merged and adds what is common, so that no handler can forget it:
//! - every response has a `description` (OpenAPI requires one; utoipa omits empty ones, and
//!   generators such as openapi-python-client then reject the whole document);
//! - error answers are `application/problem+json` with the [`Problem`] schema;
//! - operations behind `bearer` document 401, 403 and 503 (every key check reads the database);
//!   operations with a JSON body 400, 413, 415 and 422; creating POSTs with an `Idempotency-Key`
//!   409 and 422; operations with query or id parameters 400/422; every operation 500.
//!
//! It also reshapes what utoipa emits where mainstream generators trip over it:
//! - serde's internally tagged enums (`Node` by `kind`, `OutputParser` and `Normalize` by `type`)
//!   come out as `oneOf` of `allOf[$ref, {tag}]` (rejected by openapi-python-client) or of inline
//!   objects (named `OutputParserType2`, and processed twice when nested). They become `oneOf` of
//!   named `$ref`s with a `discriminator` on the tag, each variant schema holding its tag. This is
//!   also what lets the recursive sub-graph (`Node` → `ConsensusNode` → `Graph` → `NodeMap` →
//!   `Node`) resolve in generators: every step of the cycle is a named schema.
//! - generic wrappers (`Items<T>`, `Paged<T>`) inline a copy of `T`; the copy becomes a `$ref`.
//! - `Endpoint.config` (an [`sgde_llm::EndpointConfig`], which does not depend on utoipa) refers
//!   to the documented [`EndpointConfigDoc`] schema instead of a bare object.

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayItems, Discriminator, Object, OneOf, Ref, Schema, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as OpenApi31, RefOr};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::problem::{FieldError, Problem};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sgde",
        description = "Compile agent workflows with a teacher model and serve them to a small student model. \
            Errors are RFC 9457 problem+json documents with a stable `code`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    components(schemas(Problem, FieldError, sgde_workflow::WorkflowSpec, sgde_workflow::NodeMap, EndpointConfigDoc)),
    modifiers(&Security),
    tags(
        (name = "endpoints", description = "Model endpoints workflows call by name"),
        (name = "workflows", description = "Workflows"),
        (name = "versions", description = "Immutable, content-addressed versions"),
        (name = "labels", description = "Movable names for versions"),
        (name = "routing", description = "A/B traffic policies, feedback and per-variant statistics"),
        (name = "execute", description = "Synchronous execution"),
        (name = "runs", description = "Asynchronous runs on the durable queue"),
        (name = "compile-jobs", description = "Compiling workflows with a teacher model, as durable jobs"),
        (name = "executions", description = "The execution log"),
        (name = "datasets", description = "Example sets for evaluations, uploaded as JSON Lines"),
        (name = "evaluations", description = "Accuracy of versions on data sets, with paired comparisons"),
        (name = "keys", description = "API keys"),
        (name = "system", description = "Health, readiness, metrics, schemas"),
    )
)]
pub struct ApiDoc;

/// The name of the security scheme every `/v1` operation requires.
pub const SECURITY_SCHEME: &str = "bearer";

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SECURITY_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sgde API key")
                    .description(Some("`Authorization: Bearer <API key>`"))
                    .build(),
            ),
        );
    }
}

/// Applies the shared conventions and the generator-friendly shapes to the merged document.
/// Called by the router builder once every route is merged (a `Modify` on [`ApiDoc`] would run
/// before the handlers' paths exist).
pub fn finish(openapi: &mut OpenApi31) {
    Conventions.modify(openapi);
}

/// The [`Modify`] that [`finish`] applies.
pub struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut OpenApi31) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations_mut(item) {
                complete_responses(operation);
            }
        }
        // Inline copies are found by equality, so before anything else changes the components.
        reference_inlined_components(openapi);
        let Some(components) = openapi.components.as_mut() else { return };
        let names: Vec<String> = components.schemas.keys().cloned().collect();
        for name in names {
            tagged_union_to_discriminator(&mut components.schemas, &name);
        }
        if let Some(RefOr::T(Schema::Object(endpoint))) = components.schemas.get_mut("Endpoint")
            && let Some(config) = endpoint.properties.get_mut("config")
        {
            *config = RefOr::Ref(Ref::from_schema_name("EndpointConfig"));
        }
    }
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
    .chain(item.additional_operations.values_mut())
}

/// What an error status means wherever it is not described more precisely.
fn error_description(status: &str) -> &'static str {
    match status {
        "400" => "The request cannot be read: malformed JSON (`malformed_json`) or bad parameters",
        "401" => "Missing or invalid API key (`unauthorized`)",
        "403" => "The API key lacks the scope this operation needs (`forbidden`)",
        "404" => "Not found (`not_found`)",
        "409" => "Conflict (`conflict`), or a request with this `Idempotency-Key` is still in progress",
        "413" => "The request body is larger than the configured limit (`payload_too_large`)",
        "415" => "The request body is not `application/json` (`unsupported_media_type`)",
        "422" => "The request is invalid (`invalid_request`); `errors` names each field by JSON pointer",
        "429" => "This API key is over its request rate (`rate_limited`); retry after `Retry-After` seconds",
        "500" => "Internal error (`internal`); the cause is logged, never returned",
        "503" => "The service cannot reach its database (`unavailable`)",
        "504" => "The request took longer than the configured timeout (`timeout`)",
        _ => "Error",
    }
}

fn success_description(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "Created",
        "202" => "Accepted",
        "204" => "No content",
        _ => "Response",
    }
}

/// The content type of every error answer (RFC 9457).
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

fn problem_response(status: &str) -> Response {
    let mut response = Response::new(error_description(status));
    let body = Content::new(Some(Ref::from_schema_name("Problem")));
    response.content.insert(PROBLEM_CONTENT_TYPE.to_owned(), RefOr::T(body));
    if status == "401" {
        let mut header = Header::new(Object::with_type(Type::String));
        header.description = Some("`Bearer`".to_owned());
        response.headers.insert("WWW-Authenticate".to_owned(), RefOr::T(header));
    }
    if status == "429" {
        let mut header = Header::new(Object::with_type(Type::Integer));
        header.description = Some("Seconds until the key's next request is accepted".to_owned());
        response.headers.insert("Retry-After".to_owned(), RefOr::T(header));
    }
    response
}

/// The error statuses an operation can answer besides those its handler documents.
fn implied_errors(operation: &Operation) -> Vec<&'static str> {
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let params: Vec<Value> =
        operation.parameters.iter().flatten().filter_map(|p| serde_json::to_value(p).ok()).collect();
    let idempotent = params.iter().any(|p| p["name"] == "Idempotency-Key");
    let in_path = params.iter().any(|p| p["in"] == "path");
    let checked = params.iter().any(|p| p["in"] == "query" || p["schema"]["format"] == "uuid");
    let mut statuses = vec!["500"];
    if secured {
        // 429: when per-key rate limits are configured (`SGDE_RATE_LIMIT_PER_SECOND`).
        statuses.extend(["401", "403", "429", "503"]);
    }
    if operation.request_body.is_some() {
        statuses.extend(["400", "413", "415", "422"]);
    }
    if idempotent {
        statuses.extend(["409", "422"]);
    }
    if in_path {
        statuses.push("400"); // a segment that does not decode (`%FF`)
    }
    if checked {
        statuses.push("422"); // a query value of the wrong type, an id that is not a UUID
    }
    statuses
}

fn complete_responses(operation: &mut Operation) {
    for status in implied_errors(operation) {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(problem_response(status)));
    }
    for (status, response) in &mut operation.responses.responses {
        let RefOr::T(response) = response else { continue };
        let is_error = status.starts_with('4') || status.starts_with('5');
        if response.description.is_empty() {
            let description = if is_error { error_description(status) } else { success_description(status) };
            response.description = description.to_owned();
        }
        if is_error && let Some(body) = response.content.shift_remove("application/json") {
            response.content.insert(PROBLEM_CONTENT_TYPE.to_owned(), body);
        }
    }
}

fn camel_case(value: &str) -> String {
    value
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w[..1].to_ascii_uppercase() + &w[1..])
        .collect()
}

/// The tag property of a variant and its value: the one property that is a single-value enum.
fn tag_of(object: &Object) -> Option<(String, String)> {
    let mut tags = object.properties.iter().filter_map(|(name, property)| match property {
        RefOr::T(Schema::Object(p)) => match p.enum_values.as_deref() {
            Some([Value::String(value)]) => Some((name.clone(), value.clone())),
            _ => None,
        },
        _ => None,
    });
    let found = tags.next()?;
    tags.next().is_none().then_some(found)
}

/// One variant of a serde internally tagged enum as utoipa writes it: `allOf[$ref, {tag}]` for a
/// newtype variant, an inline object for a struct variant.
enum Variant {
    Named { tag: String, value: String, reference: Ref, tag_schema: RefOr<Schema> },
    Inline { tag: String, value: String, schema: Object },
}

impl Variant {
    fn read(item: &RefOr<Schema>) -> Option<Self> {
        match item {
            RefOr::T(Schema::AllOf(all)) => match all.items.as_slice() {
                [RefOr::Ref(reference), RefOr::T(Schema::Object(tagged))] => {
                    let (tag, value) = tag_of(tagged)?;
                    let tag_schema = tagged.properties.get(&tag)?.clone();
                    Some(Variant::Named { tag, value, reference: reference.clone(), tag_schema })
                }
                _ => None,
            },
            RefOr::T(Schema::Object(object)) => {
                let (tag, value) = tag_of(object)?;
                Some(Variant::Inline { tag, value, schema: object.clone() })
            }
            _ => None,
        }
    }

    fn tag(&self) -> &str {
        match self {
            Variant::Named { tag, .. } | Variant::Inline { tag, .. } => tag,
        }
    }
}

/// Puts the tag first among an object's properties and its required fields.
fn put_tag_first(object: &mut Object, tag: &str, tag_schema: RefOr<Schema>) {
    let rest = std::mem::take(&mut object.properties);
    object.properties.insert(tag.to_owned(), tag_schema);
    object.properties.extend(rest.into_iter().filter(|(name, _)| name != tag));
    object.required.retain(|r| r != tag);
    object.required.insert(0, tag.to_owned());
}

fn tagged_union_to_discriminator(schemas: &mut BTreeMap<String, RefOr<Schema>>, name: &str) {
    let Some(RefOr::T(Schema::OneOf(union))) = schemas.get(name) else { return };
    if union.discriminator.is_some() {
        return;
    }
    let Some(variants) = union.items.iter().map(Variant::read).collect::<Option<Vec<_>>>() else { return };
    let Some(tag) = variants.first().map(|v| v.tag().to_owned()) else { return };
    if variants.iter().any(|v| v.tag() != tag) {
        return;
    }
    // Every named variant must exist and be an object before anything changes.
    let target_of =
        |reference: &Ref| reference.ref_location.rsplit('/').next().unwrap_or_default().to_owned();
    let named_ok = variants.iter().all(|v| match v {
        Variant::Named { reference, .. } => {
            matches!(schemas.get(&target_of(reference)), Some(RefOr::T(Schema::Object(_))))
        }
        Variant::Inline { .. } => true,
    });
    if !named_ok {
        return;
    }
    let mut result = OneOf::new();
    result.description = union.description.clone();
    let mut discriminator = Discriminator::new(tag.clone());
    for variant in variants {
        let (value, target) = match variant {
            Variant::Named { value, reference, tag_schema, .. } => {
                let target = target_of(&reference);
                if let Some(RefOr::T(Schema::Object(object))) = schemas.get_mut(&target) {
                    put_tag_first(object, &tag, tag_schema);
                }
                (value, target)
            }
            Variant::Inline { value, mut schema, .. } => {
                let target = format!("{name}{}", camel_case(&value));
                if let Some(tag_schema) = schema.properties.get(&tag).cloned() {
                    put_tag_first(&mut schema, &tag, tag_schema);
                }
                schemas.insert(target.clone(), RefOr::T(Schema::Object(schema)));
                (value, target)
            }
        };
        let reference = Ref::from_schema_name(&target);
        discriminator.mapping.insert(value, reference.ref_location.clone());
        result.items.push(RefOr::Ref(reference));
    }
    result.discriminator = Some(discriminator);
    schemas.insert(name.to_owned(), RefOr::T(Schema::OneOf(result)));
}

/// Replaces inline copies of component schemas (what utoipa writes for the `T` of a generic
/// such as `Items<T>`) with `$ref`s to them.
fn reference_inlined_components(openapi: &mut OpenApi31) {
    let Some(components) = openapi.components.as_mut() else { return };
    // Only objects with properties: a bare `{"type": "object"}` is not a copy of anything.
    let named: Vec<(String, Schema)> = components
        .schemas
        .iter()
        .filter_map(|(name, schema)| match schema {
            RefOr::T(s @ Schema::Object(o)) if !o.properties.is_empty() => Some((name.clone(), s.clone())),
            _ => None,
        })
        .collect();
    for schema in components.schemas.values_mut() {
        if let RefOr::T(schema) = schema {
            walk_schema_children(schema, &named);
        }
    }
    for item in openapi.paths.paths.values_mut() {
        for operation in operations_mut(item) {
            if let Some(RefOr::T(body)) = operation.request_body.as_mut() {
                for content in body.content.values_mut() {
                    walk_content(content, &named);
                }
            }
            for response in operation.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    for content in response.content.values_mut() {
                        walk_content(content, &named);
                    }
                }
            }
        }
    }
}

fn walk_content(content: &mut RefOr<Content>, named: &[(String, Schema)]) {
    if let RefOr::T(content) = content
        && let Some(schema) = content.schema.as_mut()
    {
        walk_schema(schema, named);
    }
}

fn walk_schema(schema: &mut RefOr<Schema>, named: &[(String, Schema)]) {
    let RefOr::T(inner) = schema else { return };
    if let Some((name, _)) = named.iter().find(|(_, candidate)| candidate == inner) {
        *schema = RefOr::Ref(Ref::from_schema_name(name));
        return;
    }
    walk_schema_children(inner, named);
}

fn walk_schema_children(schema: &mut Schema, named: &[(String, Schema)]) {
    match schema {
        Schema::Object(object) => {
            for property in object.properties.values_mut() {
                walk_schema(property, named);
            }
            if let Some(additional) = object.additional_properties.as_deref_mut()
                && let AdditionalProperties::RefOr(value) = additional
            {
                walk_schema(value, named);
            }
        }
        Schema::Array(array) => {
            if let ArrayItems::RefOrSchema(items) = &mut array.items {
                walk_schema(items, named);
            }
        }
        Schema::OneOf(one) => one.items.iter_mut().for_each(|s| walk_schema(s, named)),
        Schema::AllOf(all) => all.items.iter_mut().for_each(|s| walk_schema(s, named)),
        Schema::AnyOf(any) => any.items.iter_mut().for_each(|s| walk_schema(s, named)),
        _ => {}
    }
}

/// How an endpoint can be asked for JSON output (default `json_schema`); the client steps down
/// (`json_schema` → `json_object` → `none`) when the server rejects a `response_format`.
#[derive(ToSchema)]
#[schema(as = StructuredOutput)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // documentation only: the wire type is `sgde_llm::StructuredOutput`
pub enum StructuredOutputDoc {
    None,
    JsonObject,
    JsonSchema,
}

/// Default decoding parameters of an endpoint; unset = the server's default.
#[derive(ToSchema)]
#[schema(as = EndpointDecoding)]
#[allow(dead_code)]
pub struct EndpointDecodingDoc {
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<u32>,
    seed: Option<u64>,
    #[serde(default)]
    stop: Vec<String>,
}

/// Client-side rate limits; unset = unlimited.
#[derive(ToSchema)]
#[schema(as = RateLimit)]
#[allow(dead_code)]
pub struct RateLimitDoc {
    #[schema(minimum = 1)]
    requests_per_minute: Option<u32>,
    /// Approximated: a call is charged its estimated prompt tokens (chars / 4) plus `max_tokens`.
    #[schema(minimum = 1)]
    tokens_per_minute: Option<u32>,
}

/// Prices in US dollars per million tokens.
#[derive(ToSchema)]
#[schema(as = Prices)]
#[allow(dead_code)]
pub struct PricesDoc {
    #[serde(default)]
    #[schema(default = 0.0, minimum = 0.0)]
    input_per_million_usd: f64,
    #[serde(default)]
    #[schema(default = 0.0, minimum = 0.0)]
    output_per_million_usd: f64,
}

/// Retry bounds: exponential backoff with jitter on 429, 5xx and timeouts, honouring Retry-After.
#[derive(ToSchema)]
#[schema(as = RetryPolicy)]
#[allow(dead_code)]
pub struct RetryPolicyDoc {
    /// HTTP attempts per call, the first included.
    #[serde(default)]
    #[schema(default = 4, minimum = 1)]
    max_attempts: u32,
    /// Cap of the first backoff; doubles per retry.
    #[serde(default)]
    #[schema(default = 500)]
    initial_backoff_ms: u64,
    /// Largest computed backoff.
    #[serde(default)]
    #[schema(default = 20000)]
    max_backoff_ms: u64,
    /// No retry starts later than this after the call began.
    #[serde(default)]
    #[schema(default = 120000)]
    max_elapsed_ms: u64,
}

/// One OpenAI-compatible model endpoint (OpenAI, vLLM, Ollama, llama.cpp server, LM Studio, ...).
/// The API key is never part of it: `api_key_env` names the environment variable of the service
/// that holds it.
#[derive(ToSchema)]
#[schema(as = EndpointConfig)]
#[allow(dead_code)]
pub struct EndpointConfigDoc {
    /// The name workflows use (`student`, `teacher`, `gpt-4o-mini`, ...): 1 to 64 letters,
    /// digits, `-`, `_` or `.`.
    name: String,
    /// API root including the version prefix, e.g. `http://127.0.0.1:8080/v1`; a URL without a
    /// path gets `/v1`.
    base_url: String,
    /// The `model` field sent to the server.
    model: String,
    /// Name of the environment variable holding the API key; unset for local servers.
    api_key_env: Option<String>,
    #[serde(default)]
    decoding: EndpointDecodingDoc,
    /// Per HTTP attempt, from connecting to the last byte of the body.
    #[serde(default)]
    #[schema(default = 60000, minimum = 1)]
    timeout_ms: u64,
    /// HTTP requests in flight to this endpoint at once.
    #[serde(default)]
    #[schema(default = 8, minimum = 1)]
    max_concurrency: u32,
    #[serde(default)]
    rate_limit: RateLimitDoc,
    #[serde(default)]
    structured_output: StructuredOutputDoc,
    /// Whether the server honours `n` (several choices per request).
    #[serde(default)]
    supports_n: bool,
    #[serde(default)]
    prices: PricesDoc,
    /// Sent with every request; answered masked (`***`).
    #[serde(default)]
    extra_headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    retry: RetryPolicyDoc,
}
