//! Migrations: embedded at compile time, applied under an advisory lock.
//!
//! sqlx's migrator takes its own lock too, but it leaves it held on the connection if a
//! migration fails, and on a pooled connection that would block every later attempt. So this
//! takes a dedicated connection out of the pool, holds sgde's own advisory lock for the whole
//! run, and closes the connection afterwards: whatever happens, closing releases every session
//! lock.

use sqlx::migrate::Migrator;
use sqlx::{Connection, PgPool};

use crate::error::Result;

/// The SQL in the workspace's top-level `migrations/postgres/`.
///
/// `ignore_missing`: during a rolling upgrade a replica of the previous release may restart
/// after a newer one has migrated; it must still start (migrations are written to be
/// backward-compatible: expand first, contract a release later) instead of refusing a schema
/// that has migrations it does not know.
pub(crate) static MIGRATOR: Migrator =
    Migrator { ignore_missing: true, ..sqlx::migrate!("../../migrations/postgres") };

/// Advisory lock key for migrations ("sgdemigr" as big-endian bytes).
const MIGRATION_LOCK: i64 = 0x7367_6465_6d69_6772;

pub(crate) async fn run(pool: &PgPool) -> Result<()> {
    let mut conn = pool.acquire().await?.detach();
    let result = async {
        sqlx::query("SELECT pg_advisory_lock($1)").bind(MIGRATION_LOCK).execute(&mut conn).await?;
        // `run_direct` rather than `run`: `run` is generic over `Acquire`, which makes the
        // future not `Send` in callers (rustc's "not general enough"), so `migrate()` could not
        // be spawned. sqlx exposes `run_direct` for exactly this.
        MIGRATOR.run_direct(None, &mut conn, false).await?;
        sqlx::query("SELECT pg_advisory_unlock($1)").bind(MIGRATION_LOCK).execute(&mut conn).await?;
        Ok(())
    }
    .await;
    // Closing ends the session and with it any lock still held after an error.
    if let Err(e) = conn.close().await {
        tracing::debug!(error = %e, "closing the migration connection failed");
    }
    if result.is_ok() {
        tracing::info!(migrations = MIGRATOR.iter().count(), "database schema is up to date");
    }
    result
}

/// True if every embedded migration is recorded as applied with the same checksum.
pub(crate) async fn all_applied(pool: &PgPool) -> Result<bool> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(pool).await?;
    if !exists {
        return Ok(false);
    }
    let applied: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await?;
    Ok(crate::migrations::all_recorded(&MIGRATOR, &applied))
}
