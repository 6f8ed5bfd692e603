//! [`LabelRepo`] on SQLite.
//!
//! Postgres locks the workflow row before a set or delete so that the `from` version written to
//! the history is exactly the one replaced. Here each change is one `BEGIN IMMEDIATE`
//! transaction on the single writer connection: no other writer runs between reading the label
//! and moving it, which gives the same guarantee.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::SqliteStore;
use crate::error::{Result, StoreError};
use crate::labels::{Label, LabelEvent, LabelMove, LabelRepo};
use crate::page::{self, CursorKind, Page, PageRequest};
use crate::rows::labels::{EventRow, LabelRow};

/// Checks, inside the caller's write transaction, that the workflow is live; `NotFound` if it is
/// not. Holding the write transaction is what serialises the changes that follow (the
/// counterpart of Postgres' row lock).
pub(super) async fn lock_workflow(conn: &mut SqliteConnection, workflow_id: Uuid) -> Result<()> {
    sqlx::query("SELECT 1 FROM workflows WHERE id = $1 AND deleted_at IS NULL")
        .bind(workflow_id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|_| ())
        .ok_or(StoreError::NotFound { what: "workflow" })
}

/// Appends the history row of a change made at `at`.
async fn record(
    conn: &mut SqliteConnection,
    workflow_id: Uuid,
    label: &str,
    from: Option<Uuid>,
    to: Option<Uuid>,
    moved_by: Option<&str>,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO workflow_label_history (workflow_id, label, from_version_id, to_version_id, moved_by, at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(workflow_id)
    .bind(label)
    .bind(from)
    .bind(to)
    .bind(moved_by)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn fetch_label(conn: &mut SqliteConnection, workflow_id: Uuid, name: &str) -> Result<Option<Label>> {
    let row: Option<LabelRow> = sqlx::query_as(
        "SELECT l.workflow_id, l.name, l.version_id, v.number AS version_number, l.updated_at, l.updated_by
         FROM workflow_labels l JOIN workflow_versions v ON v.id = l.version_id
         WHERE l.workflow_id = $1 AND l.name = $2",
    )
    .bind(workflow_id)
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(Label::from))
}

/// Points `name` at `version_id` and records the move at `now`, inside the caller's write
/// transaction, which must have checked the workflow ([`lock_workflow`]).
pub(super) async fn set_label_in(
    conn: &mut SqliteConnection,
    workflow_id: Uuid,
    name: &str,
    version_id: Uuid,
    moved_by: Option<&str>,
    now: DateTime<Utc>,
) -> Result<LabelMove> {
    let previous = fetch_label(conn, workflow_id, name).await?;
    let previous_version_id = previous.as_ref().map(|l| l.version_id);
    if let Some(label) = previous.filter(|l| l.version_id == version_id) {
        // Already there: nothing to change or record.
        return Ok(LabelMove { label, previous_version_id });
    }
    // The workflow is checked, so a foreign-key failure means the version is not the workflow's.
    sqlx::query(
        "INSERT INTO workflow_labels (workflow_id, name, version_id, updated_by, updated_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (workflow_id, name)
         DO UPDATE SET version_id = excluded.version_id, updated_by = excluded.updated_by,
                       updated_at = excluded.updated_at",
    )
    .bind(workflow_id)
    .bind(name)
    .bind(version_id)
    .bind(moved_by)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::missing_parent("version"))?;
    record(conn, workflow_id, name, previous_version_id, Some(version_id), moved_by, now).await?;
    let label = fetch_label(conn, workflow_id, name).await?.ok_or(StoreError::NotFound { what: "label" })?;
    Ok(LabelMove { label, previous_version_id })
}

#[async_trait]
impl LabelRepo for SqliteStore {
    async fn set_label(
        &self,
        workflow_id: Uuid,
        name: &str,
        version_id: Uuid,
        moved_by: Option<&str>,
    ) -> Result<LabelMove> {
        let mut tx = self.begin().await?;
        lock_workflow(&mut tx, workflow_id).await?;
        let moved = set_label_in(&mut tx, workflow_id, name, version_id, moved_by, super::now()).await?;
        tx.commit().await?;
        Ok(moved)
    }

    async fn delete_label(&self, workflow_id: Uuid, name: &str, moved_by: Option<&str>) -> Result<Label> {
        let mut tx = self.begin().await?;
        let now = super::now();
        lock_workflow(&mut tx, workflow_id).await?;
        let label =
            fetch_label(&mut tx, workflow_id, name).await?.ok_or(StoreError::NotFound { what: "label" })?;
        sqlx::query("DELETE FROM workflow_labels WHERE workflow_id = $1 AND name = $2")
            .bind(workflow_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        record(&mut tx, workflow_id, name, Some(label.version_id), None, moved_by, now).await?;
        tx.commit().await?;
        Ok(label)
    }

    async fn list_labels(&self, workflow_id: Uuid) -> Result<Vec<Label>> {
        let rows: Vec<LabelRow> = sqlx::query_as(
            "SELECT l.workflow_id, l.name, l.version_id, v.number AS version_number, l.updated_at, l.updated_by
             FROM workflow_labels l JOIN workflow_versions v ON v.id = l.version_id
             WHERE l.workflow_id = $1
             ORDER BY l.name",
        )
        .bind(workflow_id)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().map(Label::from).collect())
    }

    async fn label_history(
        &self,
        workflow_id: Uuid,
        label: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<LabelEvent>> {
        let before = page::decode_int(CursorKind::LabelHistory, page.cursor.as_deref())?;
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT id, workflow_id, label, from_version_id, to_version_id, moved_by, at
             FROM workflow_label_history
             WHERE workflow_id = $1 AND ($2 IS NULL OR label = $2) AND ($3 IS NULL OR id < $3)
             ORDER BY id DESC
             LIMIT $4",
        )
        .bind(workflow_id)
        .bind(label)
        .bind(before)
        .bind(page.fetch())
        .fetch_all(&self.reader)
        .await?;
        let rows = rows.into_iter().map(LabelEvent::from).collect();
        Ok(Page::from_rows(rows, page, |e| page::encode_int(CursorKind::LabelHistory, e.id)))
    }
}
