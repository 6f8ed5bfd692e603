//! `/v1/endpoints`: the model endpoints workflows call by name.
//!
//! An endpoint stores where and how to call a model, and the *name* of the environment variable
//! holding its API key — never the key. Values of extra headers are masked in answers, since
//! people put tokens there too.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sgde_llm::EndpointConfig;
use sgde_store::{Endpoint, Scope};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::extract::{ApiJson, ApiPath as Path};
use crate::idempotency::idempotent;
use crate::openapi::EndpointConfigDoc;
use crate::problem::{ApiError, Problem};
use crate::routes::Items;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_endpoint, list_endpoints)).routes(routes!(
        get_endpoint,
        update_endpoint,
        delete_endpoint
    ))
}

fn masked(mut endpoint: Endpoint) -> Endpoint {
    for value in endpoint.config.extra_headers.values_mut() {
        *value = "***".to_owned();
    }
    endpoint
}

fn check(config: &EndpointConfig) -> Result<(), ApiError> {
    if let Some(field) = config.name.chars().find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c))) {
        return Err(ApiError::invalid(
            "/name",
            format!("`{field}` is not allowed in a name: use letters, digits, `-`, `_`, `.`"),
        ));
    }
    if config.name.is_empty() || config.name.len() > 64 {
        return Err(ApiError::invalid("/name", "must be 1 to 64 characters"));
    }
    config.validate().map_err(|e| ApiError::invalid("", e.to_string()))
}

/// Register a model endpoint.
#[utoipa::path(post, path = "/v1/endpoints", tag = "endpoints",
    request_body = EndpointConfigDoc,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    responses((status = 201, body = Endpoint), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn create_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: ApiJson<EndpointConfig>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Write)?;
    idempotent(&state, &principal, &headers, "POST /v1/endpoints", &body.raw, || async {
        check(&body.value)?;
        let endpoint = state.store().create_endpoint(&body.value).await?;
        state.models().invalidate(&endpoint.name);
        Ok((StatusCode::CREATED, Json(masked(endpoint))).into_response())
    })
    .await
}

/// List model endpoints.
#[utoipa::path(get, path = "/v1/endpoints", tag = "endpoints",
    responses((status = 200, body = Items<Endpoint>)), security(("bearer" = [])))]
async fn list_endpoints(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Items<Endpoint>>, ApiError> {
    principal.require(Scope::Read)?;
    let items = state.store().list_endpoints().await?.into_iter().map(masked).collect();
    Ok(Json(Items { items }))
}

/// Get one model endpoint.
#[utoipa::path(get, path = "/v1/endpoints/{name}", tag = "endpoints",
    params(("name" = String, Path)), responses((status = 200, body = Endpoint), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn get_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<Endpoint>, ApiError> {
    principal.require(Scope::Read)?;
    Ok(Json(masked(state.store().get_endpoint(&name).await?)))
}

/// Replace a model endpoint's config (the name in the body must match the path).
#[utoipa::path(put, path = "/v1/endpoints/{name}", tag = "endpoints",
    params(("name" = String, Path)), request_body = EndpointConfigDoc,
    responses((status = 200, body = Endpoint), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn update_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    body: ApiJson<EndpointConfig>,
) -> Result<Json<Endpoint>, ApiError> {
    principal.require(Scope::Write)?;
    if body.value.name != name {
        return Err(ApiError::invalid("/name", format!("must be `{name}`, the endpoint in the path")));
    }
    check(&body.value)?;
    let endpoint = state.store().update_endpoint(&name, &body.value).await?;
    state.models().invalidate(&name);
    Ok(Json(masked(endpoint)))
}

/// Delete a model endpoint.
#[utoipa::path(delete, path = "/v1/endpoints/{name}", tag = "endpoints",
    params(("name" = String, Path)), responses((status = 204), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn delete_endpoint(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::Write)?;
    state.store().delete_endpoint(&name).await?;
    state.models().invalidate(&name);
    Ok(StatusCode::NO_CONTENT)
}
