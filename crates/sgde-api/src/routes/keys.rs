//! `/v1/keys`: API keys with scopes. The token is shown once, at creation; only its hash is kept.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sgde_store::{ApiKey, NewApiKey, Scope};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::extract::{ApiJson, ApiPath as Path};
use crate::idempotency::idempotent_stored_as;
use crate::problem::{ApiError, Problem};
use crate::routes::Items;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_key, list_keys)).routes(routes!(revoke_key))
}

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    /// Any of `admin`, `write`, `execute`, `compile`, `read`.
    pub scopes: Vec<Scope>,
}

/// A created key and its token — the only time the token is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyCreated {
    pub key: ApiKey,
    /// The secret to send as `Authorization: Bearer <token>`; null when a retried request with
    /// the same `Idempotency-Key` replays the creation (tokens are never stored).
    pub token: Option<String>,
}

/// A replayed creation answers with the key but not its token: tokens are never stored.
fn without_token(body: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(mut value) => {
            value["token"] = serde_json::Value::Null;
            value["note"] = "replayed: the token is shown only in the first answer".into();
            serde_json::to_vec(&value).unwrap_or_default()
        }
        Err(_) => Vec::new(),
    }
}

/// Create an API key.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = CreateKey,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = KeyCreated), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn create_key(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: ApiJson<CreateKey>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Admin)?;
    idempotent_stored_as(&state, &principal, &headers, "POST /v1/keys", &body.raw, without_token, || async {
        let request = &body.value;
        if request.name.trim().is_empty() || request.name.len() > 100 {
            return Err(ApiError::invalid("/name", "must be 1 to 100 characters"));
        }
        if request.scopes.is_empty() {
            return Err(ApiError::invalid("/scopes", "give at least one scope"));
        }
        let created = state
            .store()
            .create_key(&NewApiKey { name: request.name.clone(), scopes: request.scopes.clone() })
            .await?;
        let body = KeyCreated { key: created.key, token: Some(created.token.expose().to_owned()) };
        Ok((StatusCode::CREATED, Json(body)).into_response())
    })
    .await
}

/// List API keys (never their tokens).
#[utoipa::path(get, path = "/v1/keys", tag = "keys", responses((status = 200, body = Items<ApiKey>)),
    security(("bearer" = [])))]
async fn list_keys(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Items<ApiKey>>, ApiError> {
    principal.require(Scope::Admin)?;
    Ok(Json(Items { items: state.store().list_keys().await? }))
}

/// Revoke an API key; it stops working at once.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys", params(("id" = Uuid, Path)),
    responses((status = 200, body = ApiKey), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn revoke_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<ApiKey>, ApiError> {
    principal.require(Scope::Admin)?;
    let id = crate::routes::path_id(&id)?;
    let key = state.store().revoke_key(id).await?;
    state.forget_keys();
    Ok(Json(key))
}
