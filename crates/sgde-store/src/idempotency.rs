//! Idempotency keys: the same POST with the same `Idempotency-Key` gets the same response.
//!
//! A record is keyed by (principal, key, scope), where the scope is the method and path, so one
//! client's key never collides with another's and a key reused on another route is a new key.
//! [`IdempotencyRepo::begin_idempotent`] atomically either claims the key for this request
//! (insert a placeholder) or reports what happened before. The handler then does its work and
//! calls [`IdempotencyRepo::complete_idempotent`] with the response, or
//! [`IdempotencyRepo::abandon_idempotent`] if it failed in a way a retry may fix (a 5xx). A
//! placeholder left by a server that died mid-request can be taken over after
//! [`IdempotencyPolicy::lock_timeout`], so a crash never blocks a key until expiry.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Result;

/// Identifies one idempotent request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey {
    /// Who is asking: the API key id.
    pub principal: String,
    /// The client's `Idempotency-Key` header.
    pub key: String,
    /// Method and path, e.g. `POST /v1/runs`.
    pub scope: String,
}

/// A request under an idempotency key: its identity and a hash of its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentRequest {
    pub key: IdempotencyKey,
    pub request_hash: [u8; 32],
}

impl IdempotentRequest {
    /// Hashes the body as received (clients retry with identical bytes).
    pub fn new(key: IdempotencyKey, body: &[u8]) -> Self {
        Self { key, request_hash: Sha256::digest(body).into() }
    }
}

/// The response sent the first time, replayed byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    /// Headers worth replaying (`content-type`, `location`, …).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What [`IdempotencyRepo::begin_idempotent`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// The key is new (or expired, or abandoned): this request owns it and must complete or
    /// abandon it.
    Started,
    /// The same request already completed: send this response again.
    Completed(StoredResponse),
    /// The same request is being handled right now (answer 409 and let the client retry).
    InProgress,
    /// The key was used with a different body (answer 422).
    Mismatch,
}

/// Timing rules for idempotency records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencyPolicy {
    /// Records older than this are forgotten: the key may be reused.
    pub ttl: Duration,
    /// An in-progress placeholder older than this is assumed abandoned by a dead server.
    /// Should exceed the request timeout.
    pub lock_timeout: Duration,
}

impl Default for IdempotencyPolicy {
    fn default() -> Self {
        Self { ttl: Duration::from_secs(24 * 3600), lock_timeout: Duration::from_secs(300) }
    }
}

#[async_trait]
pub trait IdempotencyRepo: Send + Sync {
    async fn begin_idempotent(
        &self,
        request: &IdempotentRequest,
        policy: &IdempotencyPolicy,
    ) -> Result<IdempotencyBegin>;

    /// Stores the response of a request that began with `Started`; a no-op if the record was
    /// meanwhile taken over or already completed.
    async fn complete_idempotent(&self, key: &IdempotencyKey, response: &StoredResponse) -> Result<()>;

    /// Deletes an in-progress placeholder so that a retry starts afresh.
    async fn abandon_idempotent(&self, key: &IdempotencyKey) -> Result<()>;

    /// Deletes records older than `ttl`; returns how many.
    async fn purge_idempotency(&self, ttl: Duration) -> Result<u64>;
}
