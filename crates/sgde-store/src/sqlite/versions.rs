//! [`VersionRepo`] on SQLite.
//!
//! Postgres locks the workflow row (`FOR NO KEY UPDATE`) to make the content-hash lookup and the
//! next number exact. Here creation runs in one `BEGIN IMMEDIATE` transaction on the single
//! writer connection: no other writer runs between the lookup of `latest_version` and its bump,
//! so concurrent creates still get 1, 2, 3, … without gaps and identical content posted twice at
//! the same moment is deduplicated. Readers never wait for it (WAL).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::SqliteStore;
use crate::error::{Result, StoreError};
use crate::page::{self, CursorKind, Page, PageRequest};
use crate::rows::versions::{ResolvedRow, VersionRow, selector_params};
use crate::versions::{NewVersion, Version, VersionRepo, VersionSelector};
use crate::workflows::Workflow;

/// Creates a version inside the caller's write transaction (see the module doc for why that is
/// enough), stamping it and the workflow's `updated_at` with the transaction's `now`.
pub(super) async fn create_version_in(
    conn: &mut SqliteConnection,
    workflow_id: Uuid,
    new: &NewVersion,
    now: DateTime<Utc>,
) -> Result<(Version, bool)> {
    let latest: Option<i32> =
        sqlx::query_scalar("SELECT latest_version FROM workflows WHERE id = $1 AND deleted_at IS NULL")
            .bind(workflow_id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(latest) = latest else {
        return Err(StoreError::NotFound { what: "workflow" });
    };

    let existing: Option<VersionRow> = sqlx::query_as(
        "SELECT id, workflow_id, number, spec, content_hash, parent_version_id, source, job_id, metrics,
                origin, created_at
         FROM workflow_versions WHERE workflow_id = $1 AND content_hash = $2",
    )
    .bind(workflow_id)
    .bind(&new.content_hash)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = existing {
        return Ok((row.try_into()?, false));
    }

    let number = latest.checked_add(1).ok_or(StoreError::Invalid { what: "version number (overflow)" })?;
    // The workflow is known to exist, so the only foreign key that can fail is the parent's
    // (a version of another workflow, or none at all).
    let row: VersionRow = sqlx::query_as(
        "INSERT INTO workflow_versions
            (id, workflow_id, number, spec, content_hash, parent_version_id, source, job_id, metrics,
             origin, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         RETURNING id, workflow_id, number, spec, content_hash, parent_version_id, source, job_id, metrics,
                   origin, created_at",
    )
    .bind(Uuid::now_v7())
    .bind(workflow_id)
    .bind(number)
    .bind(&new.spec)
    .bind(&new.content_hash)
    .bind(new.parent_version_id)
    .bind(new.source.as_str())
    .bind(new.job_id)
    .bind(&new.metrics)
    .bind(&new.origin)
    .bind(now)
    .fetch_one(&mut *conn)
    .await
    .map_err(StoreError::missing_parent("parent version"))?;
    sqlx::query("UPDATE workflows SET latest_version = $2, updated_at = $3 WHERE id = $1")
        .bind(workflow_id)
        .bind(number)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok((row.try_into()?, true))
}

impl SqliteStore {
    /// The one query behind `get_version` and `resolve_version`: a live workflow by id or name,
    /// and the version the selector picks.
    async fn resolve(
        &self,
        workflow_id: Option<Uuid>,
        workflow_name: Option<&str>,
        selector: &VersionSelector,
    ) -> Result<(Workflow, Version)> {
        let (number, id, label, fallback) = selector_params(selector);
        let row: Option<ResolvedRow> = sqlx::query_as(
            "SELECT v.id, v.workflow_id, v.number, v.spec, v.content_hash, v.parent_version_id, v.source,
                    v.job_id, v.metrics, v.origin, v.created_at,
                    w.id AS w_id, w.name AS w_name, w.description AS w_description,
                    w.latest_version AS w_latest_version, w.created_at AS w_created_at,
                    w.updated_at AS w_updated_at
             FROM workflows w
             JOIN workflow_versions v ON v.workflow_id = w.id
             WHERE w.deleted_at IS NULL
               AND ($1 IS NULL OR w.id = $1)
               AND ($2 IS NULL OR w.name = $2)
               AND CASE
                   WHEN $3 IS NOT NULL THEN v.number = $3
                   WHEN $4 IS NOT NULL THEN v.id = $4
                   WHEN $5 IS NOT NULL THEN v.id = (
                       SELECT l.version_id FROM workflow_labels l WHERE l.workflow_id = w.id AND l.name = $5)
                   ELSE v.id = coalesce(
                       (SELECT l.version_id FROM workflow_labels l
                        WHERE l.workflow_id = w.id AND l.name = $6),
                       (SELECT lv.id FROM workflow_versions lv
                        WHERE lv.workflow_id = w.id AND lv.number = w.latest_version))
               END",
        )
        .bind(workflow_id)
        .bind(workflow_name)
        .bind(number)
        .bind(id)
        .bind(label)
        .bind(fallback)
        .fetch_optional(&self.reader)
        .await?;

        let Some(row) = row else {
            // Say which of the two is missing; this runs only on the error path.
            let workflow_exists: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM workflows WHERE deleted_at IS NULL
                                AND ($1 IS NULL OR id = $1) AND ($2 IS NULL OR name = $2))",
            )
            .bind(workflow_id)
            .bind(workflow_name)
            .fetch_one(&self.reader)
            .await?;
            let what = if workflow_exists { "version" } else { "workflow" };
            return Err(StoreError::NotFound { what });
        };
        row.try_into()
    }
}

#[async_trait]
impl VersionRepo for SqliteStore {
    async fn create_version(&self, workflow_id: Uuid, new: &NewVersion) -> Result<(Version, bool)> {
        let mut tx = self.begin().await?;
        let created = create_version_in(&mut tx, workflow_id, new, super::now()).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn get_version(&self, workflow_id: Uuid, selector: &VersionSelector) -> Result<Version> {
        Ok(self.resolve(Some(workflow_id), None, selector).await?.1)
    }

    async fn resolve_version(
        &self,
        workflow_name: &str,
        selector: &VersionSelector,
    ) -> Result<(Workflow, Version)> {
        self.resolve(None, Some(workflow_name), selector).await
    }

    async fn list_versions(&self, workflow_id: Uuid, page: &PageRequest) -> Result<Page<Version>> {
        let before = page::decode_int(CursorKind::Versions, page.cursor.as_deref())?;
        let rows: Vec<VersionRow> = sqlx::query_as(
            "SELECT v.id, v.workflow_id, v.number, v.spec, v.content_hash, v.parent_version_id, v.source,
                    v.job_id, v.metrics, v.origin, v.created_at
             FROM workflow_versions v JOIN workflows w ON w.id = v.workflow_id
             WHERE v.workflow_id = $1 AND w.deleted_at IS NULL AND ($2 IS NULL OR v.number < $2)
             ORDER BY v.number DESC
             LIMIT $3",
        )
        .bind(workflow_id)
        .bind(before)
        .bind(page.fetch())
        .fetch_all(&self.reader)
        .await?;
        let rows = rows.into_iter().map(Version::try_from).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(rows, page, |v| page::encode_int(CursorKind::Versions, i64::from(v.number))))
    }
}
