//! A fresh, migrated database per test, so tests run in parallel without seeing each other.
//!
//! Enabled by the `testing` feature; other crates' integration tests use it too. The server is
//! `SGDE_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`), which must
//! allow `CREATE DATABASE`. Reading the environment is fine here: this is test support, not the
//! library proper.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection};
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::pg::{PgStore, StoreOptions};

/// The maintenance database URL used when `SGDE_TEST_DATABASE_URL` is unset.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database created for one test. Call [`TestDatabase::drop_database`] at the end; a test that
/// panics leaves its database behind (named `sgde_test_*`, safe to drop).
pub struct TestDatabase {
    pub store: PgStore,
    /// URL of the test database, for code that connects by itself (the service under test).
    pub url: String,
    name: String,
    admin: PgConnectOptions,
}

impl TestDatabase {
    /// Creates and migrates a database with a small pool (tests share one server).
    pub async fn new() -> Result<Self> {
        Self::with_options(StoreOptions { max_connections: 8, ..StoreOptions::default() }).await
    }

    pub async fn with_options(options: StoreOptions) -> Result<Self> {
        let admin_url =
            std::env::var("SGDE_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
        let admin: PgConnectOptions =
            admin_url.parse().map_err(|_| StoreError::Invalid { what: "SGDE_TEST_DATABASE_URL" })?;
        let name = format!("sgde_test_{}", Uuid::new_v4().simple());
        let mut conn = admin.connect().await?;
        create_database(&mut conn, &name).await?;
        conn.close().await?;
        let url = admin.clone().database(&name).to_url_lossy().to_string();
        let store = PgStore::connect(&url, &options).await?;
        Ok(Self { store, url, name, admin })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Closes the pool and drops the database.
    pub async fn drop_database(self) -> Result<()> {
        self.store.close().await;
        let mut conn = self.admin.connect().await?;
        // The name is ours (a UUID in hex), so formatting it into the statement is safe;
        // identifiers cannot be bound as parameters.
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await?;
        conn.close().await?;
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
