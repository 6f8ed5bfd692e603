//! Opening a store from a URL: the scheme picks the backend, and nothing else does.
//!
//! `postgres://` / `postgresql://` → [`PgStore`]; `sqlite:` → [`SqliteStore`]. There is no
//! fallback from one to the other: an unreachable Postgres is an error, never a quiet switch to
//! a local file that would split the data of a deployment in two.

use std::sync::Arc;
use std::time::Duration;

use crate::Store;
use crate::error::{Result, StoreError};
use crate::pg::PgStore;
use crate::sqlite::SqliteStore;

/// Connection settings. The binary fills this from its `Config`; the store reads no environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    pub max_connections: u32,
    pub min_connections: u32,
    /// How long a query waits for a free connection before `Unavailable`.
    pub acquire_timeout: Duration,
    /// Server-side limit per statement (Postgres' `statement_timeout`); `None` keeps the
    /// server default.
    pub statement_timeout: Option<Duration>,
    /// Shown in `pg_stat_activity` (Postgres).
    pub application_name: String,
    /// Apply pending migrations when connecting.
    pub migrate: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Some(Duration::from_secs(30)),
            application_name: "sgde".to_owned(),
            migrate: true,
        }
    }
}

/// The kinds of backend a URL can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Postgres,
    Sqlite,
}

impl BackendKind {
    /// The backend a database URL names, from its scheme alone.
    pub fn of_url(url: &str) -> Result<Self> {
        let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase()).unwrap_or_default();
        match scheme.as_str() {
            "postgres" | "postgresql" => Ok(Self::Postgres),
            "sqlite" => Ok(Self::Sqlite),
            _ => Err(StoreError::Invalid { what: "database URL scheme (expected postgres:// or sqlite://)" }),
        }
    }
}

/// Connects to the backend the URL names (and migrates if `options.migrate`).
pub async fn connect(url: &str, options: &StoreOptions) -> Result<Arc<dyn Store>> {
    Ok(match BackendKind::of_url(url)? {
        BackendKind::Postgres => Arc::new(PgStore::connect(url, options).await?),
        BackendKind::Sqlite => Arc::new(SqliteStore::connect(url, options).await?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_alone_picks_the_backend() {
        assert_eq!(BackendKind::of_url("postgres://u@h/db").unwrap(), BackendKind::Postgres);
        assert_eq!(BackendKind::of_url("postgresql://h/db").unwrap(), BackendKind::Postgres);
        assert_eq!(BackendKind::of_url("sqlite://data/sgde.db").unwrap(), BackendKind::Sqlite);
        assert_eq!(BackendKind::of_url("SQLITE:///abs/sgde.db").unwrap(), BackendKind::Sqlite);
        for bad in ["mysql://h/db", "/var/lib/sgde.db", "", "http://h"] {
            assert!(matches!(BackendKind::of_url(bad), Err(StoreError::Invalid { .. })), "{bad}");
        }
    }
}
