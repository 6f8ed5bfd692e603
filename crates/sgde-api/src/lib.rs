//! The sgde REST API: routers, OpenAPI, auth, problem+json errors, and the background workers
//! that run async jobs.
//!
//! [`app`] builds the router from an [`AppState`]; [`serve`] runs it on a listener until the
//! shutdown token fires, then lets in-flight requests finish. Dependencies point one way: this
//! crate uses the runtime and the store; neither knows HTTP.
//!
//! # Layout
//! - [`state`]: [`AppState`] and [`ApiConfig`].
//! - [`problem`]: [`ApiError`], the one place where errors become HTTP statuses and problem+json.
//! - [`extract`]: the JSON body extractor whose failures name the field.
//! - [`auth`]: bearer API keys with scopes ([`auth::Principal`]); [`rate_limit`]: per-key limits.
//! - [`idempotency`]: `Idempotency-Key` handling for creating POSTs.
//! - [`routes`]: one module per resource under `/v1`, plus health, readiness and metrics.
//! - [`exec`]: running a version and recording it; shared by execute and the workers.
//! - [`worker`]: async runs and webhooks from the durable queue; [`webhook`]: signed delivery.
//! - [`compile`]: the compile worker (checkpoints, progress, resume, result version);
//!   [`compile_view`]: a stored compile job read back into typed, documented records.
//! - [`models`]: model endpoints from the store as a `ModelClient`.
//! - [`diff`]: structural diff of two versions.
//! - [`metrics`]: Prometheus metrics; [`openapi`]: the OpenAPI document.

pub mod auth;
pub mod compile;
pub mod compile_view;
pub mod diff;
pub mod evaluation;
pub mod exec;
pub mod extract;
pub mod idempotency;
pub mod metrics;
pub mod models;
pub mod openapi;
pub mod problem;
pub mod rate_limit;
pub mod routes;
pub mod routing;
pub mod state;
pub mod webhook;
pub mod worker;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderName;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

pub use problem::ApiError;
pub use state::{ApiConfig, AppState};

use crate::extract::BodyLimit;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn api_router() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(routes::system::router())
        .merge(routes::endpoints::router())
        .merge(routes::workflows::router())
        .merge(routes::apply::router())
        .merge(routes::labels::router())
        .merge(routes::policies::router())
        .merge(routes::execute::router())
        .merge(routes::runs::router())
        .merge(routes::compile_jobs::router())
        .merge(routes::datasets::router())
        .merge(routes::evaluations::router())
        .merge(routes::executions::router())
        .merge(routes::feedback::router())
        .merge(routes::keys::router());
    openapi::finish(router.get_openapi_mut());
    router
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().into_openapi()
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let config = state.config().clone();
    let (router, api) = api_router().split_for_parts();
    let timeout = config.request_timeout;
    router
        .route_layer(middleware::from_fn(metrics::track_http))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", api))
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(Extension(BodyLimit(config.body_limit)))
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            request_timeout(timeout, request, next)
        }))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a request handler panicked");
            ApiError::internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default();
            tracing::info_span!("request", method = %request.method(), uri = %request.uri(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

async fn request_timeout(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

/// Serves `app` on `listener` until `shutdown` fires, then waits for in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = app(state);
    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}
