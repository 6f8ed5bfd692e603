//! Health, readiness, metrics and the published JSON Schema of specs. No authentication: probes
//! and scrapers must reach them (put `/metrics` behind the network boundary you trust).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::metrics;
use crate::problem::{ApiError, Problem};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(prometheus))
        .routes(routes!(workflow_schema))
}

/// Liveness or readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub uptime_seconds: f64,
}

fn health(state: &AppState) -> Health {
    Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_seconds: state.uptime().as_secs_f64(),
    }
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, body = Health)))]
async fn healthz(State(state): State<AppState>) -> Json<Health> {
    Json(health(&state))
}

/// The database is reachable and every migration is applied.
#[utoipa::path(get, path = "/readyz", tag = "system",
    responses((status = 200, body = Health), (status = 503, body = Problem)))]
async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state.store().ping().await.map_err(|_| ApiError::Unavailable("the database is unreachable".into()))?;
    match state.store().migrations_applied().await {
        Ok(true) => Ok(Json(health(&state))),
        Ok(false) => Err(ApiError::Unavailable("database migrations are not applied".into())),
        Err(_) => Err(ApiError::Unavailable("cannot read the migration state".into())),
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, content_type = "text/plain", body = String)))]
async fn prometheus(State(state): State<AppState>) -> Response {
    let mut response = (StatusCode::OK, metrics::render(&state).await).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

/// The JSON Schema (2020-12) of workflow specs, for editors and validators.
#[utoipa::path(get, path = "/v1/schemas/workflow", tag = "system",
    responses((status = 200, body = Object)))]
async fn workflow_schema() -> Json<Value> {
    Json(sgde_workflow::spec_json_schema())
}
