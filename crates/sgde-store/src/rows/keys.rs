//! Rows of `api_keys`.
//!
//! Scopes are a `text[]` on Postgres and a JSON array in a TEXT column on SQLite, so the row is
//! generic over how the list of scope names decodes: [`PgKeyRow`] and [`SqliteKeyRow`] are the
//! two instances, with one conversion to [`ApiKey`].

use std::ops::Deref;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::keys::{ApiKey, Scope};

/// The columns every read of a key selects, in [`KeyRow`]'s order.
macro_rules! key_columns {
    () => {
        "id, name, prefix, scopes, bootstrap, created_at, revoked_at, last_used_at"
    };
}
pub(crate) use key_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow<S> {
    id: Uuid,
    name: String,
    prefix: String,
    scopes: S,
    bootstrap: bool,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
}

/// A key as Postgres returns it (`scopes text[]`).
pub(crate) type PgKeyRow = KeyRow<Vec<String>>;

/// A key as SQLite returns it (`scopes` a JSON array of names).
pub(crate) type SqliteKeyRow = KeyRow<Json<Vec<String>>>;

/// Both `Vec<String>` and `Json<Vec<String>>` dereference, once or twice, to a slice of names.
impl<S> TryFrom<KeyRow<S>> for ApiKey
where
    S: Deref,
    S::Target: AsRef<[String]>,
{
    type Error = StoreError;

    fn try_from(r: KeyRow<S>) -> Result<Self> {
        let scopes = r
            .scopes
            .deref()
            .as_ref()
            .iter()
            .map(|s| Scope::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown scope {s:?}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(ApiKey {
            id: r.id,
            name: r.name,
            prefix: r.prefix,
            scopes,
            bootstrap: r.bootstrap,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
            last_used_at: r.last_used_at,
        })
    }
}

/// Scope names as stored: sorted and without repeats, so equal scope sets are stored equally.
pub(crate) fn scope_names(scopes: &[Scope]) -> Vec<&'static str> {
    let mut names: Vec<_> = scopes.iter().map(|s| s.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names
}
