//! Bearer API keys with scopes, as an extractor.
//!
//! Handlers take a [`Principal`] and call [`Principal::require`] with the scope the route needs;
//! `admin` implies every scope. Keys are looked up by the hash of the token (the store never
//! holds the token itself). Each authenticated request also takes one from its key's rate budget
//! (see [`crate::rate_limit`]).

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use sgde_store::{ApiKey, ApiToken, Scope};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::problem::ApiError;
use crate::state::AppState;

/// The caller, authenticated.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: Uuid,
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl Principal {
    /// Fails with 403 unless the key has `scope` (or `admin`).
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(scope.as_str()))
        }
    }

    /// A stable name for audit fields (`moved_by`, idempotency records).
    pub fn audit_name(&self) -> String {
        format!("{} ({})", self.name, self.key_id)
    }
}

impl From<ApiKey> for Principal {
    fn from(key: ApiKey) -> Self {
        Self { key_id: key.id, name: key.name, scopes: key.scopes }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(header::AUTHORIZATION).ok_or(ApiError::Unauthorized)?;
        let value = header.to_str().map_err(|_| ApiError::Unauthorized)?;
        let (scheme, token) = value.trim().split_once(' ').ok_or(ApiError::Unauthorized)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(ApiError::Unauthorized);
        }
        let token = token.trim();
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(principal) = state.cached_key(&hash) {
            state.check_rate(principal.key_id)?;
            return Ok(principal);
        }
        let key = state
            .store()
            .verify_key(&ApiToken::new(token))
            .await
            .map_err(crate::problem::store_error)?
            .ok_or(ApiError::Unauthorized)?;
        let principal = Principal::from(key);
        state.remember_key(hash, principal.clone());
        state.check_rate(principal.key_id)?;
        Ok(principal)
    }
}
