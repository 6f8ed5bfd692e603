//! API keys: random bearer tokens, stored only as their sha256, with scopes.
//!
//! A token is `sgde_` followed by 64 hex digits (32 bytes from the operating system's CSPRNG
//! via `rand`'s thread generator). With 256 random bits there is nothing to brute-force, so a
//! single unsalted sha256 is the right hash: lookups by hash are one index probe and need no
//! constant-time comparison (an attacker learns nothing from timing a B-tree search for a hash
//! of their own guess). The plaintext exists only in the [`CreatedApiKey`] returned once.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{Result, StoreError};

/// The prefix of every generated token, so leaked tokens are recognisable by secret scanners.
pub const TOKEN_PREFIX: &str = "sgde_";
/// Characters of the token kept for display (`sgde_` plus 8 hex digits).
const DISPLAY_PREFIX_LEN: usize = 13;
/// The shortest admin token accepted from the environment.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// What a key may do. `admin` implies every other scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Admin,
    Write,
    Execute,
    Compile,
    Read,
}

impl Scope {
    pub const ALL: [Scope; 5] = [Scope::Admin, Scope::Write, Scope::Execute, Scope::Compile, Scope::Read];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Write => "write",
            Scope::Execute => "execute",
            Scope::Compile => "compile",
            Scope::Read => "read",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

/// A stored API key (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    /// The token's first characters, to recognise it.
    pub prefix: String,
    pub scopes: Vec<Scope>,
    /// Created from `SGDE_ADMIN_TOKEN` at start; recreated (un-revoked) at every start while
    /// the environment holds that token.
    pub bootstrap: bool,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Updated at most once a minute per key, to keep verification read-only on the hot path.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Whether the key grants `scope` (`admin` grants everything).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|s| *s == scope || *s == Scope::Admin)
    }
}

/// What a caller provides to create a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewApiKey {
    pub name: String,
    pub scopes: Vec<Scope>,
}

/// A bearer token in plaintext. Prints as `sgde_…***` so it cannot end up in logs by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// A fresh random token.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
    }

    /// Wraps a token received from a client or the environment.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The plaintext, to hand to the client exactly once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub(crate) fn hash(&self) -> Vec<u8> {
        Sha256::digest(self.0.as_bytes()).to_vec()
    }

    /// What lists show of the token. Generated tokens reveal 32 of their 256 random bits; a
    /// token chosen by an operator (the environment's admin token) reveals nothing, since it may
    /// be short.
    pub(crate) fn display_prefix(&self) -> String {
        let generated = self.0.len() == TOKEN_PREFIX.len() + 64 && self.0.starts_with(TOKEN_PREFIX);
        if generated { self.0.chars().take(DISPLAY_PREFIX_LEN).collect() } else { "****".to_owned() }
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiToken({}***)", self.0.chars().take(TOKEN_PREFIX.len()).collect::<String>())
    }
}

/// A newly created key and its token, which is not stored and cannot be shown again.
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    pub key: ApiKey,
    pub token: ApiToken,
}

#[async_trait]
pub trait KeyRepo: Send + Sync {
    /// Creates a key with a fresh token. `Invalid { what: "scopes" }` if none are given.
    async fn create_key(&self, new: &NewApiKey) -> Result<CreatedApiKey>;

    /// The live (not revoked) key with this token, if any.
    async fn verify_key(&self, token: &ApiToken) -> Result<Option<ApiKey>>;

    async fn get_key(&self, id: Uuid) -> Result<ApiKey>;

    /// All keys, revoked ones included, oldest first.
    async fn list_keys(&self) -> Result<Vec<ApiKey>>;

    /// Revokes the key (idempotent: revoking twice keeps the first time).
    async fn revoke_key(&self, id: Uuid) -> Result<ApiKey>;

    /// Makes `token` a live admin key flagged `bootstrap`, revoking any other bootstrap key (so
    /// rotating the environment token retires the old one). Safe to call from replicas
    /// starting together.
    async fn ensure_admin_key(&self, token: &ApiToken) -> Result<ApiKey>;
}

/// How often at most `last_used_at` is written per key. Verification is on every request, and a
/// write per request would serialise all of a key's traffic on one row.
pub(crate) const LAST_USED_EVERY: Duration = Duration::from_secs(60);

/// Whether verifying `key` now should record the use (see [`LAST_USED_EVERY`]).
pub(crate) fn last_use_is_stale(key: &ApiKey) -> bool {
    let every = chrono::TimeDelta::from_std(LAST_USED_EVERY).unwrap_or(chrono::TimeDelta::MAX);
    key.last_used_at.is_none_or(|at| Utc::now() - at > every)
}

pub(crate) fn check_admin_token(token: &ApiToken) -> Result<()> {
    if token.expose().chars().count() < MIN_ADMIN_TOKEN_LEN {
        return Err(StoreError::Invalid { what: "admin token (shorter than 16 characters)" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_do_not_print() {
        let a = ApiToken::generate();
        let b = ApiToken::generate();
        assert_ne!(a, b);
        assert!(a.expose().starts_with(TOKEN_PREFIX));
        assert_eq!(a.expose().len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(a.display_prefix().len(), DISPLAY_PREFIX_LEN);
        assert!(!format!("{a:?}").contains(&a.expose()[5..]));
        assert_eq!(a.hash().len(), 32);
        assert_eq!(ApiToken::new("operator-chosen-admin-token").display_prefix(), "****");
    }

    #[test]
    fn admin_allows_everything() {
        let key = ApiKey {
            id: Uuid::nil(),
            name: "k".into(),
            prefix: "sgde_".into(),
            scopes: vec![Scope::Admin],
            bootstrap: false,
            created_at: Utc::now(),
            revoked_at: None,
            last_used_at: None,
        };
        assert!(Scope::ALL.iter().all(|s| key.allows(*s)));
        let reader = ApiKey { scopes: vec![Scope::Read], ..key };
        assert!(reader.allows(Scope::Read) && !reader.allows(Scope::Write));
        assert_eq!(Scope::parse("compile"), Some(Scope::Compile));
    }
}
