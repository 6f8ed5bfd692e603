//! `POST /v1/workflows/{name}/execute`: run a version now and answer with its output.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sgde_store::{ExecutionMode, ExecutionUsage, NewExecution, Scope};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Principal;
use crate::exec;
use crate::extract::{ApiJson, ApiPath as Path};
use crate::idempotency::idempotent;
use crate::problem::{ApiError, FieldError, Problem};
use crate::routing;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(execute))
}

/// Inputs and which version to run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteRequest {
    /// The workflow's inputs; validated against its input schema.
    #[schema(value_type = Object)]
    pub inputs: Value,
    /// A version number, id or `latest`. Without `version` or `label`: the `production` label,
    /// else the latest version.
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    /// Return the full trace in the answer (it is stored in the execution log either way).
    #[serde(default)]
    pub trace: bool,
    /// Deadline for this run in milliseconds (capped by the service's).
    #[serde(default)]
    pub deadline_ms: Option<u64>,
    /// Sticky routing under the workflow's traffic policy: the same key gets the same variant
    /// while the weights stand (alternatively the `X-Sgde-Routing-Key` header).
    #[serde(default)]
    pub routing_key: Option<String>,
}

/// Which version ran.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionUsed {
    pub id: Uuid,
    pub number: i32,
    /// How it was chosen: `version`, `label`, `policy` (the traffic policy) or `default` (the
    /// `production` label, else the latest version).
    pub chosen_by: String,
}

/// A successful run.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecuteResponse {
    pub execution_id: Uuid,
    /// The output node's value: any JSON value (a number, a string, an object, ...).
    pub output: Value,
    pub version: VersionUsed,
    pub usage: ExecutionUsage,
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub trace: Option<Value>,
}

/// The inputs' schema violations as field errors under `/inputs`, if any.
pub(crate) fn input_errors(
    prepared: &sgde_runtime::PreparedWorkflow,
    inputs: &Value,
) -> Option<Vec<FieldError>> {
    let errors = prepared.input_errors(inputs);
    if errors.is_empty() {
        return None;
    }
    Some(
        errors
            .into_iter()
            .map(|(pointer, message)| FieldError { pointer: format!("/inputs{pointer}"), message })
            .collect(),
    )
}

/// The `X-Sgde-Routing-Key` header, if present; it must be visible ASCII.
pub(crate) fn header_routing_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    headers
        .get(routing::ROUTING_KEY_HEADER)
        .map(|v| {
            v.to_str().map_err(|_| ApiError::invalid("/header/x-sgde-routing-key", "must be visible ASCII"))
        })
        .transpose()
}

pub(crate) fn check_inputs(inputs: &Value) -> Result<(), ApiError> {
    if inputs.is_object() { Ok(()) } else { Err(ApiError::invalid("/inputs", "must be a JSON object")) }
}

/// Run a workflow version and wait for its output.
#[utoipa::path(post, path = "/v1/workflows/{name}/execute", tag = "execute", request_body = ExecuteRequest,
    params(("name" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = ExecuteResponse),
        (status = 404, body = Problem, description = "Unknown workflow, version or label"),
        (status = 422, body = Problem, description = "Invalid inputs, or the run failed (the problem names the node and the execution)")),
    security(("bearer" = [])))]
async fn execute(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: ApiJson<ExecuteRequest>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Execute)?;
    let route = format!("POST /v1/workflows/{name}/execute");
    idempotent(&state, &principal, &headers, &route, &body.raw, || run(&state, &headers, &name, &body.value))
        .await
}

async fn run(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    request: &ExecuteRequest,
) -> Result<Response, ApiError> {
    check_inputs(&request.inputs)?;
    let header_key = header_routing_key(headers)?;
    let key = routing::routing_key(header_key, request.routing_key.as_deref())?;
    let chosen =
        routing::choose(state, name, request.version.as_deref(), request.label.as_deref(), key).await?;
    let prepared = chosen.prepared(state).await?;
    // Nothing runs on bad inputs: a bad request, not an execution.
    if let Some(errors) = input_errors(&prepared, &request.inputs) {
        return Err(ApiError::Invalid {
            detail: "the inputs do not match the workflow's input schema".into(),
            errors,
        });
    }
    let started_at = Utc::now();
    let deadline = request.deadline_ms.map(Duration::from_millis);
    let report = exec::run(state, &chosen.workflow_name, &prepared, request.inputs.clone(), deadline).await;
    let outcome = exec::outcome(&report);
    // The trace is copied only when the caller asked for it; the log takes the outcome itself.
    let (usage, trace) = (outcome.usage, if request.trace { outcome.trace.clone() } else { None });
    let execution = state
        .store()
        .insert_execution(NewExecution {
            id: Uuid::now_v7(),
            workflow_id: chosen.workflow_id,
            version_id: chosen.version_id,
            mode: ExecutionMode::Sync,
            inputs: request.inputs.clone(),
            route: Some(chosen.route.clone()),
            outcome: Some(outcome),
            started_at: Some(started_at),
        })
        .await?;
    if let Some(shadow) = chosen.shadow_version() {
        // After the primary is recorded and before it is answered: the shadow runs detached.
        routing::spawn_shadow(
            state,
            chosen.workflow_id,
            &chosen.workflow_name,
            shadow,
            request.inputs.clone(),
            &chosen.route,
            execution.id,
        );
    }
    match report.result {
        Ok(output) => Ok((
            StatusCode::OK,
            Json(ExecuteResponse {
                execution_id: execution.id,
                output,
                version: VersionUsed {
                    id: chosen.version_id,
                    number: chosen.version_number,
                    chosen_by: chosen.chosen_by.to_owned(),
                },
                usage,
                latency_ms: report.elapsed.as_secs_f64() * 1000.0,
                trace,
            }),
        )
            .into_response()),
        Err(e) => Err(ApiError::RunFailed {
            code: e.code().to_owned(),
            detail: e.to_string(),
            execution_id: Some(execution.id),
        }),
    }
}
