//! `Idempotency-Key` on every POST that creates something.
//!
//! The same key with the same body replays the first response (status, body and the headers that
//! matter) instead of creating twice; the same key with another body is a 422; a retry that
//! arrives while the first attempt is still running gets a 409. Server errors are not
//! remembered, so a retry after a 5xx runs again.

use std::future::Future;

use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sgde_store::{IdempotencyBegin, IdempotencyKey, IdempotencyPolicy, IdempotentRequest, StoredResponse};
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::problem::ApiError;
use crate::state::AppState;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
const REPLAYED: &str = "idempotent-replayed";
const MAX_KEY_LEN: usize = 255;
/// Headers worth replaying; others (dates, request ids) belong to the new request.
const KEPT_HEADERS: [&str; 2] = ["content-type", "location"];

/// Runs `handler` at most once per (caller, key, route); see the module docs.
pub async fn idempotent<F, Fut>(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    route: &str,
    body: &[u8],
    handler: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Response, ApiError>>,
{
    idempotent_stored_as(state, principal, headers, route, body, |bytes| bytes.to_vec(), handler).await
}

/// Like [`idempotent`], but what is remembered for replays is `stored(body)`: for answers that
/// carry a secret shown only once (a new API key's token), which must not sit in the database.
pub async fn idempotent_stored_as<F, Fut>(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    route: &str,
    body: &[u8],
    stored: impl FnOnce(&[u8]) -> Vec<u8>,
    handler: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Response, ApiError>>,
{
    let Some(key) = headers.get(IDEMPOTENCY_KEY) else {
        return handler().await;
    };
    let key =
        key.to_str().ok().map(str::trim).filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN).ok_or_else(
            || ApiError::invalid("/headers/Idempotency-Key", "must be 1 to 255 visible ASCII characters"),
        )?;
    let request = IdempotentRequest {
        key: IdempotencyKey {
            principal: principal.key_id.to_string(),
            key: key.to_owned(),
            scope: route.to_owned(),
        },
        request_hash: Sha256::digest(body).into(),
    };
    let policy = IdempotencyPolicy { ttl: state.config().idempotency_ttl, ..IdempotencyPolicy::default() };
    match state.store().begin_idempotent(&request, &policy).await? {
        IdempotencyBegin::Completed(stored) => Ok(replay(stored)),
        IdempotencyBegin::InProgress => Err(ApiError::IdempotencyInProgress),
        IdempotencyBegin::Mismatch => Err(ApiError::IdempotencyMismatch),
        IdempotencyBegin::Started => {
            let response = match handler().await {
                Ok(response) => response,
                Err(e) => e.into_response(),
            };
            if response.status().is_server_error() {
                state.store().abandon_idempotent(&request.key).await?;
                return Ok(response);
            }
            let (parts, body) = response.into_parts();
            let bytes =
                to_bytes(body, usize::MAX).await.map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?;
            let stored = StoredResponse {
                status: parts.status.as_u16(),
                headers: parts
                    .headers
                    .iter()
                    .filter(|(name, _)| KEPT_HEADERS.contains(&name.as_str()))
                    .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
                    .collect(),
                body: if parts.status.is_success() { stored(&bytes) } else { bytes.to_vec() },
            };
            state.store().complete_idempotent(&request.key, &stored).await?;
            Ok(Response::from_parts(parts, Body::from(bytes)))
        }
    }
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            response.headers_mut().insert(name, value);
        }
    }
    if !response.headers().contains_key(header::CONTENT_TYPE) {
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    response.headers_mut().insert(REPLAYED, HeaderValue::from_static("true"));
    response
}
