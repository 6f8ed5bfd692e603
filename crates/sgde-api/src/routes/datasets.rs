//! `/v1/datasets`: named example sets for evaluations, uploaded as JSON Lines with a field
//! mapping (for GSM-Hard: `input` → `inputs.question`, `target` → `expected`), validated line by
//! line and split into train / validation / test by seed.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value};
use sgde_store::{Dataset, DatasetRow, NewDataset, Scope, Split, SplitSpec};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::extract::{ApiJson, ApiPath as Path, ApiQuery as Query};
use crate::idempotency::idempotent;
use crate::problem::{ApiError, FieldError, Problem};
use crate::routes::Items;
use crate::routes::workflows::check_name;
use crate::state::AppState;

/// Largest upload accepted (bytes of JSON Lines).
const MAX_UPLOAD: usize = 256 * 1024 * 1024;
/// Most rows a data set holds.
const MAX_ROWS: usize = 1_000_000;
/// Field errors reported per upload; the detail gives the total.
const MAX_REPORTED: usize = 100;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_dataset, list_datasets))
        .routes(routes!(get_dataset, delete_dataset))
        .routes(routes!(upload_rows, list_rows))
}

/// A new, empty data set; upload its rows with `PUT /v1/datasets/{name}/rows`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDataset {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Field of an uploaded line → where it goes: `inputs.<name>` or `expected` (exactly one).
    /// Other fields of the line are ignored.
    #[schema(value_type = Object, example = json!({"input": "inputs.question", "target": "expected"}))]
    pub mapping: Map<String, Value>,
    /// Seed and fractions of the split; by default every row is `test`.
    #[serde(default)]
    pub split: SplitSpec,
}

/// Which rows to list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RowQuery {
    pub split: Option<Split>,
    /// Rows to skip (default 0).
    pub offset: Option<u32>,
    /// At most this many rows (1..=1000, default 100).
    pub limit: Option<u32>,
}

/// The upload body: JSON Lines bytes (documented as binary: client generators handle
/// `application/octet-stream` uploads, few handle `application/x-ndjson`).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct JsonLinesBody(#[allow(dead_code)] Vec<u8>);

/// The mapping as (source field, destination): `Some(name)` for an input, `None` for expected.
type Mapping = Vec<(String, Option<String>)>;

fn parse_mapping(mapping: &Map<String, Value>) -> Result<Mapping, ApiError> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for (source, target) in mapping {
        let pointer = format!("/mapping/{}", source.replace('~', "~0").replace('/', "~1"));
        match target.as_str() {
            Some("expected") => out.push((source.clone(), None)),
            Some(t) if t.starts_with("inputs.") && is_identifier(&t["inputs.".len()..]) => {
                out.push((source.clone(), Some(t["inputs.".len()..].to_owned())));
            }
            _ => errors.push(FieldError {
                pointer,
                message:
                    "must be `expected` or `inputs.<name>` (a letter or `_`, then letters, digits or `_`)"
                        .into(),
            }),
        }
    }
    let expected = out.iter().filter(|(_, t)| t.is_none()).count();
    if errors.is_empty() && expected != 1 {
        errors.push(FieldError {
            pointer: "/mapping".into(),
            message: "map exactly one field to `expected`".into(),
        });
    }
    if errors.is_empty() && expected == out.len() {
        errors.push(FieldError {
            pointer: "/mapping".into(),
            message: "map at least one field to `inputs.<name>`".into(),
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::Invalid { detail: "the field mapping is invalid".into(), errors })
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Create a data set (without rows).
#[utoipa::path(post, path = "/v1/datasets", tag = "datasets", request_body = CreateDataset,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = Dataset), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn create_dataset(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: ApiJson<CreateDataset>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Write)?;
    idempotent(&state, &principal, &headers, "POST /v1/datasets", &body.raw, || async {
        let request = &body.value;
        check_name(&request.name, "/name")?;
        parse_mapping(&request.mapping)?;
        let split = request.split;
        if !(0.0..=1.0).contains(&split.train) {
            return Err(ApiError::invalid("/split/train", "must be within [0, 1]"));
        }
        if !(0.0..=1.0).contains(&split.validation) || split.train + split.validation > 1.0 {
            return Err(ApiError::invalid("/split/validation", "must be within [0, 1 - train]"));
        }
        let new = NewDataset {
            name: request.name.clone(),
            description: request.description.clone(),
            mapping: Value::Object(request.mapping.clone()),
            split,
        };
        let dataset = state.store().create_dataset(&new, Some(&principal.audit_name())).await?;
        Ok((StatusCode::CREATED, Json(dataset)).into_response())
    })
    .await
}

/// Data sets by name.
#[utoipa::path(get, path = "/v1/datasets", tag = "datasets",
    responses((status = 200, body = Items<Dataset>)), security(("bearer" = [])))]
async fn list_datasets(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Items<Dataset>>, ApiError> {
    principal.require(Scope::Read)?;
    Ok(Json(Items { items: state.store().list_datasets().await? }))
}

/// A data set with its row counts per split.
#[utoipa::path(get, path = "/v1/datasets/{name}", tag = "datasets", params(("name" = String, Path)),
    responses((status = 200, body = Dataset), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_dataset(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<Dataset>, ApiError> {
    principal.require(Scope::Read)?;
    Ok(Json(state.store().get_dataset(&name).await?))
}

/// Delete a data set (evaluations that used it keep their examples).
#[utoipa::path(delete, path = "/v1/datasets/{name}", tag = "datasets", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn delete_dataset(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::Write)?;
    state.store().delete_dataset(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Maps one uploaded line; field errors go to `errors` with the line's number.
fn map_line(
    line: &[u8],
    number: usize,
    mapping: &Mapping,
    errors: &mut Vec<FieldError>,
) -> Option<(Value, Value)> {
    let pointer = format!("/lines/{number}");
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            errors.push(FieldError { pointer, message: format!("not JSON: {e}") });
            return None;
        }
    };
    let Value::Object(mut fields) = value else {
        errors.push(FieldError { pointer, message: "must be a JSON object".into() });
        return None;
    };
    let mut inputs = Map::new();
    let mut expected = None;
    let before = errors.len();
    for (source, target) in mapping {
        match fields.remove(source) {
            None | Some(Value::Null) => errors.push(FieldError {
                pointer: format!("{pointer}/{source}"),
                message: format!(
                    "missing `{source}` (mapped to {})",
                    target.as_ref().map_or("expected".to_owned(), |t| format!("inputs.{t}"))
                ),
            }),
            Some(v) => match target {
                Some(name) => {
                    inputs.insert(name.clone(), v);
                }
                None => expected = Some(v),
            },
        }
    }
    if errors.len() > before {
        return None;
    }
    Some((Value::Object(inputs), expected.unwrap_or(Value::Null)))
}

/// Replace the data set's rows with a JSON Lines upload (sent as `application/x-ndjson`,
/// `application/jsonl` or `application/octet-stream`), read as a stream. Every line is validated against the mapping; if any
/// is invalid nothing is stored and the answer lists the errors as `/lines/<n>/<field>`
/// (1-based line numbers). Blank lines are skipped.
#[utoipa::path(put, path = "/v1/datasets/{name}/rows", tag = "datasets", params(("name" = String, Path)),
    request_body(content = JsonLinesBody, content_type = "application/octet-stream", description = "JSON Lines: one JSON object per line"),
    responses((status = 200, body = Dataset), (status = 404, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem, description = "Invalid lines")),
    security(("bearer" = [])))]
async fn upload_rows(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Dataset>, ApiError> {
    principal.require(Scope::Write)?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let accepted =
        ["application/x-ndjson", "application/jsonl", "application/jsonlines", "application/octet-stream"];
    if !accepted.contains(&essence.as_str()) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let dataset = state.store().get_dataset(&name).await?;
    let mapping_object = dataset.mapping.as_object().cloned().unwrap_or_default();
    let mapping = parse_mapping(&mapping_object)?;

    let mut stream = body.into_data_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut error_count = 0usize;
    let (mut received, mut line_no) = (0usize, 0usize);
    let handle =
        |line: &[u8], number: usize, rows: &mut Vec<(Value, Value)>, errors: &mut Vec<FieldError>| {
            let trimmed = line.trim_ascii();
            if trimmed.is_empty() {
                return 0;
            }
            let mut mine = Vec::new();
            match map_line(trimmed, number, &mapping, &mut mine) {
                Some(row) => {
                    rows.push(row);
                    0
                }
                None => {
                    let n = mine.len();
                    errors.extend(mine.into_iter().take(MAX_REPORTED.saturating_sub(errors.len())));
                    n
                }
            }
        };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the upload failed: {e}")))?;
        received += chunk.len();
        if received > MAX_UPLOAD {
            return Err(ApiError::PayloadTooLarge { limit: MAX_UPLOAD });
        }
        pending.extend_from_slice(&chunk);
        // Complete lines are handled as they arrive; the tail waits for the next chunk.
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
            line_no += 1;
            error_count += handle(&pending[start..start + end], line_no, &mut rows, &mut errors);
            start += end + 1;
        }
        pending.drain(..start);
        if rows.len() > MAX_ROWS {
            return Err(ApiError::invalid("/lines", format!("at most {MAX_ROWS} rows")));
        }
    }
    if !pending.is_empty() {
        line_no += 1;
        error_count += handle(&pending, line_no, &mut rows, &mut errors);
    }
    if error_count > 0 {
        return Err(ApiError::Invalid {
            detail: format!(
                "{error_count} invalid field(s) in the upload; nothing was stored (the first {} are listed)",
                errors.len()
            ),
            errors,
        });
    }
    if rows.is_empty() {
        return Err(ApiError::invalid("/lines", "the upload holds no rows"));
    }
    Ok(Json(state.store().replace_dataset_rows(dataset.id, &rows).await?))
}

/// Rows of a data set, optionally of one split, in row order.
#[utoipa::path(get, path = "/v1/datasets/{name}/rows", tag = "datasets", params(("name" = String, Path), RowQuery),
    responses((status = 200, body = Items<DatasetRow>), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn list_rows(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    Query(query): Query<RowQuery>,
) -> Result<Json<Items<DatasetRow>>, ApiError> {
    principal.require(Scope::Read)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("/query/limit", format!("must be between 1 and 1000, got {limit}")));
    }
    let dataset = state.store().get_dataset(&name).await?;
    let rows = state.store().dataset_rows(dataset.id, query.split, query.offset.unwrap_or(0), limit).await?;
    Ok(Json(Items { items: rows }))
}
