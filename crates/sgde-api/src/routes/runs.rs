//! `/v1/runs`: asynchronous runs on the durable queue — accepted now, executed by any replica,
//! polled by id, optionally announced by a signed webhook.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sgde_store::{Execution, NewExecution, RunCancel, Scope};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Principal;
use crate::extract::{ApiJson, ApiPath as Path};
use crate::idempotency::idempotent;
use crate::problem::{ApiError, Problem};
use crate::routes::execute::{check_inputs, header_routing_key, input_errors};
use crate::routing;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(submit_run)).routes(routes!(get_run)).routes(routes!(cancel_run))
}

/// A run to perform in the background.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Workflow name.
    pub workflow: String,
    #[schema(value_type = Object)]
    pub inputs: Value,
    /// Version number, id or `latest`; without `version` or `label`: the traffic policy, else
    /// `production`, else latest.
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    /// Sticky routing under the workflow's traffic policy (alternatively the
    /// `X-Sgde-Routing-Key` header).
    #[serde(default)]
    pub routing_key: Option<String>,
    /// Called with the finished run (POST, JSON, signed with HMAC-SHA256 when the service has a
    /// webhook secret), retried with backoff.
    #[serde(default)]
    pub webhook_url: Option<String>,
}

/// What cancelling did.
#[derive(Debug, Serialize, ToSchema)]
pub struct CancelResult {
    /// `cancelled` (it had not started), `cancel_requested` (it stops at its next heartbeat) or
    /// `already_finished`.
    pub status: String,
}

fn check_webhook(url: &str) -> Result<(), ApiError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(ApiError::invalid("/webhook_url", "must be an absolute http(s) URL")),
    }
}

/// Accept a run; poll `Location` for its outcome.
#[utoipa::path(post, path = "/v1/runs", tag = "runs", request_body = RunRequest,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 202, body = Execution, headers(("Location" = String))),
        (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn submit_run(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: ApiJson<RunRequest>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Execute)?;
    idempotent(&state, &principal, &headers, "POST /v1/runs", &body.raw, || async {
        let request = &body.value;
        check_inputs(&request.inputs)?;
        if let Some(url) = &request.webhook_url {
            check_webhook(url)?;
        }
        let key = routing::routing_key(header_routing_key(&headers)?, request.routing_key.as_deref())?;
        let chosen = routing::choose(
            &state,
            &request.workflow,
            request.version.as_deref(),
            request.label.as_deref(),
            key,
        )
        .await?;
        // Validate inputs now, so a bad request is a 422 and not a failed run later.
        let prepared = chosen.prepared(&state).await?;
        if let Some(errors) = input_errors(&prepared, &request.inputs) {
            return Err(ApiError::Invalid {
                detail: "the inputs do not match the workflow's input schema".into(),
                errors,
            });
        }
        let mut route = chosen.route.clone();
        if let Some(url) = &request.webhook_url {
            route["webhook_url"] = json!(url);
        }
        let id = Uuid::now_v7();
        let webhook = request.webhook_url.as_deref().map(|url| crate::webhook::run_webhook(&state, id, url));
        let new = NewExecution {
            id,
            workflow_id: chosen.workflow_id,
            version_id: chosen.version_id,
            mode: sgde_store::ExecutionMode::Async,
            inputs: request.inputs.clone(),
            route: Some(route),
            outcome: None,
            started_at: None,
        };
        let (execution, _job) =
            state.store().submit_run(new, state.config().run_max_attempts, webhook).await?;
        state.run_submitted().notify_one();
        let mut response = (StatusCode::ACCEPTED, Json(&execution)).into_response();
        if let Ok(location) = HeaderValue::from_str(&format!("/v1/runs/{}", execution.id)) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        Ok(response)
    })
    .await
}

/// A run's status, and its output, error and trace once finished.
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs", params(("id" = Uuid, Path)),
    responses((status = 200, body = Execution), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_run(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Execution>, ApiError> {
    principal.require(Scope::Read)?;
    let id = crate::routes::path_id(&id)?;
    let execution = state.store().get_execution(id).await?;
    if execution.mode != sgde_store::ExecutionMode::Async {
        return Err(ApiError::not_found("run"));
    }
    Ok(Json(execution))
}

/// Cancel a run.
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", tag = "runs", params(("id" = Uuid, Path)),
    responses((status = 200, body = CancelResult), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn cancel_run(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<CancelResult>, ApiError> {
    principal.require(Scope::Execute)?;
    let id = crate::routes::path_id(&id)?;
    let status = match state.store().cancel_run(id).await? {
        RunCancel::Cancelled => "cancelled",
        RunCancel::Requested => "cancel_requested",
        RunCancel::AlreadyFinished => "already_finished",
    };
    Ok(Json(CancelResult { status: status.to_owned() }))
}
