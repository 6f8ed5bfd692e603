//! Migrations for SQLite: the files in `migrations/sqlite/`, embedded at compile time.
//!
//! They run on the writer connection, so two tasks of one process never migrate at once; a
//! second process on the same file waits on SQLite's own lock (busy timeout) and then finds
//! nothing to do.

use sqlx::SqlitePool;
use sqlx::migrate::Migrator;

use crate::error::Result;

/// `ignore_missing` for the same reason as on Postgres: an older binary may meet a newer schema.
pub(crate) static MIGRATOR: Migrator =
    Migrator { ignore_missing: true, ..sqlx::migrate!("../../migrations/sqlite") };

pub(crate) async fn run(writer: &SqlitePool) -> Result<()> {
    let mut conn = writer.acquire().await?;
    MIGRATOR.run_direct(None, &mut *conn, false).await?;
    tracing::debug!(migrations = MIGRATOR.iter().count(), "sqlite schema is up to date");
    Ok(())
}

/// True if every embedded migration is recorded as applied with the same checksum.
pub(crate) async fn all_applied(reader: &SqlitePool) -> Result<bool> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
    )
    .fetch_one(reader)
    .await?;
    if !exists {
        return Ok(false);
    }
    let applied: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
            .fetch_all(reader)
            .await?;
    Ok(crate::pg::all_recorded(&MIGRATOR, &applied))
}
