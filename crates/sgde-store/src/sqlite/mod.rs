//! [`SqliteStore`]: every repository trait implemented on an SQLite file, for the embedded
//! single-node default.
//!
//! One file per repository, mirroring [`crate::pg`]; the row structs and their conversions to
//! the public records live in `crate::rows` and are shared with Postgres.
//!
//! How Postgres' guarantees are kept on one file:
//! - **One writer.** SQLite allows one write transaction at a time; instead of letting
//!   connections spin on `SQLITE_BUSY`, every statement that writes goes through `writer`, a pool
//!   of exactly one connection, so writers queue fairly in the pool and never deadlock on a lock
//!   upgrade. Reads go through `reader` and, thanks to WAL, never wait for the writer. Because
//!   the writer is alone, a write transaction sees no concurrent writer at all: that is what
//!   `FOR UPDATE`, `FOR NO KEY UPDATE` and `SKIP LOCKED` give on Postgres.
//! - **Durability.** WAL journal with `synchronous = NORMAL`: a committed transaction survives
//!   the process being killed (kill -9); only an operating-system crash may lose the last
//!   commits. Leases in the job queue work as on Postgres, so a run whose process died is
//!   claimed again after its lease expires.
//! - **Types.** See `migrations/sqlite/`: uuids are 16-byte blobs, timestamps RFC 3339 text in
//!   UTC (bound from Rust, see `now()`), JSON is text.
//!
//! Conventions here: SQL is `&'static str` with `$n` parameters (sqlx maps `$n` to the n-th
//! bind); SQLite has no `::type` casts, so optional filters are `($n IS NULL OR …)`; the current
//! time is bound from Rust rather than read with SQL, so every timestamp has the same text shape.

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

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::Health;
use crate::connect::StoreOptions;
use crate::error::{Result, StoreError};

/// How long a statement waits for a lock held by another process on the same file (another
/// `sgde` command, a backup) before failing as unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite backend. Cheap to clone (two pool handles).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Exactly one connection: every write goes here (see the module docs).
    writer: SqlitePool,
    /// Read-only work; as many connections as `StoreOptions::max_connections`.
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating the file and its directory if missing) and, if `options.migrate`,
    /// migrates. `url` is `sqlite://path/to/file.db` (relative to the working directory) or
    /// `sqlite:///absolute/path.db`.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self> {
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|_| StoreError::Invalid { what: "database URL" })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        if let Some(dir) = connect.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
            create_dir(dir)?;
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await
            .map_err(unavailable)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(unavailable)?;
        let store = Self { writer, reader };
        if options.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// The file a `sqlite:` URL names (without opening it), so a caller can check that a store
    /// it means to read from exists instead of creating an empty one.
    pub fn file_of(url: &str) -> Result<std::path::PathBuf> {
        let options =
            SqliteConnectOptions::from_str(url).map_err(|_| StoreError::Invalid { what: "database URL" })?;
        Ok(options.get_filename().to_path_buf())
    }

    /// Applies pending migrations (through the writer, so never concurrently in one process).
    pub async fn migrate(&self) -> Result<()> {
        migrate::run(&self.writer).await
    }

    /// The pool that takes writes. Tests and `migrate-store` use it for raw statements.
    pub fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// The pool for reads.
    pub fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// A write transaction on the writer connection. `BEGIN IMMEDIATE` takes the write lock at
    /// once, so a transaction that reads before it writes cannot fail half-way on a lock upgrade
    /// when another process holds the file.
    pub async fn begin(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Closes both pools, waiting for checked-out connections to come back.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))
}

fn unavailable(e: sqlx::Error) -> StoreError {
    match StoreError::from(e) {
        StoreError::Database(e) => StoreError::Unavailable(e),
        other => other,
    }
}

#[async_trait]
impl Health for SqliteStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn migrations_applied(&self) -> Result<bool> {
        migrate::all_applied(&self.reader).await
    }

    async fn close(&self) {
        SqliteStore::close(self).await;
    }
}

/// The current time, for binding. All timestamps are written from Rust so that they share one
/// text shape and compare correctly as text; they are cut to microseconds, Postgres' precision,
/// so that a store moved to Postgres (`sgde migrate-store`) reads back the very same instants.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// `now() + d`, saturating.
pub(crate) fn after(d: Duration) -> DateTime<Utc> {
    let now = now();
    chrono::Duration::from_std(d).ok().and_then(|d| now.checked_add_signed(d)).unwrap_or(now).trunc_subsecs(6)
}

/// `now() - d`, saturating.
pub(crate) fn before(d: Duration) -> DateTime<Utc> {
    let now = now();
    chrono::Duration::from_std(d).ok().and_then(|d| now.checked_sub_signed(d)).unwrap_or(now).trunc_subsecs(6)
}
