//! Opening a store from a URL: the scheme picks the backend, and nothing else does.
//!
//! `postgres://` / `postgresql://` → [`PgStore`]; `sqlite:` → [`SqliteStore`]. There is no
//! fallback from one to the other: an unreachable Postgres is an error, never a quiet switch to
//! a local file that would split the data of a deployment in two.

use std::sync::Arc;

use crate::Store;
use crate::error::{Result, StoreError};
use crate::pg::{PgStore, StoreOptions};
use crate::sqlite::SqliteStore;

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

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        }
    }
}

/// A connected store of either backend, as the service uses it, plus what to say about it.
#[derive(Clone)]
pub struct Connected {
    pub store: Arc<dyn Store>,
    pub kind: BackendKind,
    /// How the store closes its connections at shutdown.
    closer: Closer,
}

#[derive(Clone)]
enum Closer {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

impl Connected {
    /// Closes the connections, waiting for checked-out ones to come back.
    pub async fn close(&self) {
        match &self.closer {
            Closer::Postgres(s) => s.close().await,
            Closer::Sqlite(s) => s.close().await,
        }
    }
}

/// Connects to the backend the URL names (and migrates if `options.migrate`).
pub async fn connect(url: &str, options: &StoreOptions) -> Result<Connected> {
    Ok(match BackendKind::of_url(url)? {
        BackendKind::Postgres => {
            let pg = PgStore::connect(url, options).await?;
            Connected {
                store: Arc::new(pg.clone()),
                kind: BackendKind::Postgres,
                closer: Closer::Postgres(pg),
            }
        }
        BackendKind::Sqlite => {
            let sqlite = SqliteStore::connect(url, options).await?;
            Connected {
                store: Arc::new(sqlite.clone()),
                kind: BackendKind::Sqlite,
                closer: Closer::Sqlite(sqlite),
            }
        }
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
