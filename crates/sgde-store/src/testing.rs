//! A fresh, migrated database per test, on either backend, so tests run in parallel without
//! seeing each other.
//!
//! Enabled by the `testing` feature; other crates' integration tests use it too. Which backend a
//! test gets is decided by [`BACKEND`], a task-local set by `#[sgde_test_macros::both_backends]`
//! (which runs the test once per backend); outside it, tests get Postgres.
//!
//! - Postgres: a database created on `SGDE_TEST_DATABASE_URL` (default
//!   `postgres://postgres@127.0.0.1:5432/postgres`), which must allow `CREATE DATABASE`.
//! - SQLite: a file in a fresh directory under the system's temporary directory.
//!
//! Reading the environment is fine here: this is test support, not the library proper.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection};
use uuid::Uuid;

use crate::Store;
use crate::connect::StoreOptions;
use crate::error::{Result, StoreError};
use crate::pg::PgStore;
use crate::sqlite::SqliteStore;

/// The maintenance database URL used when `SGDE_TEST_DATABASE_URL` is unset.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A store implementation a test can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Postgres, Backend::Sqlite];

    /// The backend of the running test: [`BACKEND`] if set, else Postgres.
    pub fn current() -> Backend {
        BACKEND.try_with(|b| *b).unwrap_or(Backend::Postgres)
    }
}

tokio::task_local! {
    /// The backend the current test runs on (see the module docs).
    pub static BACKEND: Backend;
}

enum Place {
    Postgres { name: String, admin: Box<PgConnectOptions>, store: PgStore },
    Sqlite { dir: PathBuf, store: SqliteStore },
}

/// A database created for one test. Call [`TestDatabase::drop_database`] at the end; a test that
/// panics leaves its database behind (Postgres: named `sgde_test_*`, safe to drop; SQLite: a
/// `sgde_test_*` directory in the temporary directory).
pub struct TestDatabase {
    /// The store, as the service sees it.
    pub store: Arc<dyn Store>,
    /// URL of the test database, for code that connects by itself (the service under test).
    pub url: String,
    place: Place,
}

impl TestDatabase {
    /// Creates and migrates a database with a small pool (tests share one server).
    pub async fn new() -> Result<Self> {
        Self::with_options(StoreOptions { max_connections: 8, ..StoreOptions::default() }).await
    }

    /// On the backend of the running test ([`Backend::current`]).
    pub async fn with_options(options: StoreOptions) -> Result<Self> {
        Self::on(Backend::current(), options).await
    }

    pub async fn on(backend: Backend, options: StoreOptions) -> Result<Self> {
        let name = format!("sgde_test_{}", Uuid::new_v4().simple());
        match backend {
            Backend::Postgres => {
                let admin_url =
                    std::env::var("SGDE_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
                let admin: PgConnectOptions =
                    admin_url.parse().map_err(|_| StoreError::Invalid { what: "SGDE_TEST_DATABASE_URL" })?;
                let mut conn = admin.connect().await?;
                create_database(&mut conn, &name).await?;
                conn.close().await?;
                let url = admin.clone().database(&name).to_url_lossy().to_string();
                let pg = PgStore::connect(&url, &options).await?;
                Ok(Self {
                    store: Arc::new(pg.clone()),
                    url,
                    place: Place::Postgres { name, admin: Box::new(admin), store: pg },
                })
            }
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(&name);
                let url = format!("sqlite://{}", dir.join("sgde.db").display());
                let sqlite = SqliteStore::connect(&url, &options).await?;
                Ok(Self { store: Arc::new(sqlite.clone()), url, place: Place::Sqlite { dir, store: sqlite } })
            }
        }
    }

    pub fn backend(&self) -> Backend {
        match self.place {
            Place::Postgres { .. } => Backend::Postgres,
            Place::Sqlite { .. } => Backend::Sqlite,
        }
    }

    /// The Postgres store, for Postgres-only checks; `None` on SQLite.
    pub fn pg(&self) -> Option<&PgStore> {
        match &self.place {
            Place::Postgres { store, .. } => Some(store),
            Place::Sqlite { .. } => None,
        }
    }

    /// The SQLite store; `None` on Postgres.
    pub fn sqlite(&self) -> Option<&SqliteStore> {
        match &self.place {
            Place::Sqlite { store, .. } => Some(store),
            Place::Postgres { .. } => None,
        }
    }

    /// Postgres database name or SQLite directory name.
    pub fn name(&self) -> String {
        match &self.place {
            Place::Postgres { name, .. } => name.clone(),
            Place::Sqlite { dir, .. } => dir.display().to_string(),
        }
    }

    /// Runs one statement with a single uuid parameter (`$1`), written once per backend: for
    /// tests that fake what only time or a crash would do (an expired lease, say).
    pub async fn execute_for(&self, id: Uuid, postgres: &'static str, sqlite: &'static str) -> Result<u64> {
        let done = match &self.place {
            Place::Postgres { store, .. } => {
                sqlx::query(postgres).bind(id).execute(store.pool()).await?.rows_affected()
            }
            Place::Sqlite { store, .. } => {
                sqlx::query(sqlite).bind(id).execute(store.writer()).await?.rows_affected()
            }
        };
        Ok(done)
    }

    /// Moves a job's lease expiry into the past: a worker that died a while ago.
    pub async fn expire_lease(&self, job: Uuid) -> Result<()> {
        self.execute_for(
            job,
            "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
            "UPDATE jobs SET lease_expires_at = strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', '-1 second') WHERE id = $1",
        )
        .await?;
        Ok(())
    }

    /// Closes the store's connections (the database stays): what a store whose database went
    /// away looks like to its callers.
    pub async fn close(&self) {
        self.store.close().await;
    }

    /// Closes the pool and drops the database (or deletes the file).
    pub async fn drop_database(self) -> Result<()> {
        match self.place {
            Place::Postgres { name, admin, store } => {
                store.close().await;
                let mut conn = admin.connect().await?;
                // The name is ours (a UUID in hex), so formatting it into the statement is safe;
                // identifiers cannot be bound as parameters.
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await?;
                conn.close().await?;
            }
            Place::Sqlite { dir, store } => {
                store.close().await;
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(error = %e, dir = %dir.display(), "removing a test database failed");
                }
            }
        }
        Ok(())
    }
}

async fn create_database(conn: &mut PgConnection, name: &str) -> Result<()> {
    // See `drop_database` on why this is formatted. Creating databases concurrently can fail
    // with "source database template1 is being accessed by other users"; retry briefly.
    let sql = format!("CREATE DATABASE \"{name}\"");
    let mut attempt = 0;
    loop {
        match sqlx::query(AssertSqlSafe(sql.clone())).execute(&mut *conn).await {
            Ok(_) => return Ok(()),
            Err(e)
                if attempt < 20
                    && e.as_database_error().is_some_and(|d| d.code().as_deref() == Some("55006")) =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
