//! Migrations for SQLite: the files in `migrations/sqlite/`, embedded at compile time.
//!
//! They run on the writer connection, so two tasks of one process never migrate at once. Two
//! processes opening a fresh file together may both start applying; SQLite's lock serialises
//! them, the loser fails on a table the winner created, and then finds every migration recorded:
//! that is success, not an error.

use sqlx::SqlitePool;
use sqlx::migrate::Migrator;

use crate::error::Result;

/// `ignore_missing` for the same reason as on Postgres: an older binary may meet a newer schema.
pub(crate) static MIGRATOR: Migrator =
    Migrator { ignore_missing: true, ..sqlx::migrate!("../../migrations/sqlite") };

pub(crate) async fn run(writer: &SqlitePool) -> Result<()> {
    let mut attempt = 0;
    loop {
        let mut conn = writer.acquire().await?;
        match MIGRATOR.run_direct(None, &mut *conn, false).await {
            Ok(()) => break,
            // Each migration is its own transaction, so a lost race leaves nothing half-done:
            // trying again applies only what the other process has not.
            Err(_) if attempt < 5 => {
                drop(conn);
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
            }
            Err(e) => {
                drop(conn);
                if all_applied(writer).await.unwrap_or(false) {
                    break;
                }
                return Err(e.into());
            }
        }
    }
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
    Ok(crate::migrations::all_recorded(&MIGRATOR, &applied))
}
