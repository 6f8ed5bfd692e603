//! [`PgStore`]: every repository trait implemented on Postgres with sqlx.
//!
//! One file per repository, mirroring the trait modules; `migrate` applies the embedded
//! migrations under an advisory lock; `cache` is the persistent response-cache tier.
//!
//! Conventions here: SQL is `&'static str` with bound parameters only; optional filters are
//! `($n::type IS NULL OR …)`; rows are read into private `FromRow` structs and converted to the
//! public records, so the records stay free of sqlx; durations are bound as microseconds
//! (`$n * interval '1 microsecond'`) so that no interval encoding is involved.

mod cache;
mod compile_jobs;
mod datasets;
mod endpoints;
mod executions;
mod feedback;
mod idempotency;
mod jobs;
mod keys;
mod labels;
mod migrate;
mod policies;
mod runs;
mod versions;
mod workflows;

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use crate::Health;
use crate::connect::StoreOptions;
use crate::error::{Result, StoreError};

pub use executions::insert_execution;
pub use jobs::enqueue_job;

/// A pooled connection idle at least this long is pinged before use.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

/// The Postgres backend. Cheap to clone (a pool handle).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects (verifying that the database answers) and, if `options.migrate`, migrates.
    ///
    /// A malformed URL is `Invalid { what: "database URL" }` (the URL is not echoed: it may
    /// contain a password); an unreachable server is `Unavailable`.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self> {
        let mut connect: PgConnectOptions =
            url.parse().map_err(|_| StoreError::Invalid { what: "database URL" })?;
        connect = connect.application_name(&options.application_name);
        if let Some(timeout) = options.statement_timeout {
            connect = connect.options([("statement_timeout", format!("{}ms", timeout.as_millis()))]);
        }
        let pool = match PgPoolOptions::new()
            .max_connections(options.max_connections)
            .min_connections(options.min_connections)
            .acquire_timeout(options.acquire_timeout)
            // Pinging on every acquire costs a round trip per query on the hot path; a
            // connection that was just in use is known good. Only one idle for a while (which a
            // database restart or a firewall may have cut) is pinged before it is handed out.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_BEFORE_PING {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(connect.clone())
            .await
        {
            Ok(pool) => pool,
            Err(sqlx::Error::PoolTimedOut) => {
                // The pool only says it timed out; one direct attempt says why (refused,
                // unknown host, authentication, missing database).
                let cause = match sqlx::ConnectOptions::connect(&connect).await {
                    Err(e) => e,
                    Ok(_) => sqlx::Error::PoolTimedOut,
                };
                return Err(StoreError::Unavailable(cause));
            }
            Err(e) => {
                return Err(match StoreError::from(e) {
                    StoreError::Database(e) => StoreError::Unavailable(e),
                    other => other,
                });
            }
        };
        let store = Self { pool };
        if options.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Wraps an existing pool (no migration).
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations. Replicas may call this concurrently: one applies, the others
    /// wait on an advisory lock and then find nothing to do.
    pub async fn migrate(&self) -> Result<()> {
        migrate::run(&self.pool).await
    }

    /// A transaction for composing the executor-generic functions of this module
    /// ([`enqueue_job`], [`insert_execution`]) with the caller's own writes.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// Closes the pool, waiting for checked-out connections to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl Health for PgStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn migrations_applied(&self) -> Result<bool> {
        migrate::all_applied(&self.pool).await
    }

    async fn close(&self) {
        PgStore::close(self).await;
    }
}

/// A duration as whole microseconds for binding (saturating: centuries do not matter here).
pub(crate) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A non-negative count from the database as `u64`.
pub(crate) fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A `u64` for a `bigint` column (saturating).
pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
