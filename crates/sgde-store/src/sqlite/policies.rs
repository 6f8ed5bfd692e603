//! [`PolicyRepo`] on SQLite.
//!
//! Postgres locks the workflow row for every change (as label moves do), reads the revision in
//! force and inserts the next one. Here each change is one `BEGIN IMMEDIATE` transaction on the
//! single writer connection, so no other change runs between reading the revision in force and
//! inserting the next: changes queue up instead of interleaving, and revisions stay 1, 2, 3, ….
//! The weights are checked again by the trigger `traffic_policies_weights_check` (SQLite allows
//! no subquery in a CHECK constraint).
//!
//! `default_target`, on the path of every execute without an explicit version, is one read on
//! the reader pool; the newest revision is found through the primary key with a correlated
//! `max(revision)` (SQLite has no `LATERAL`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
use sqlx::types::Json;
use uuid::Uuid;

use super::SqliteStore;
use super::labels::{lock_workflow, set_label_in};
use crate::error::{Result, StoreError};
use crate::page::{self, CursorKind, Page, PageRequest};
use crate::policies::{DefaultTarget, PolicyDraft, PolicyRepo, Promotion, TrafficPolicy};
use crate::rows::policies::{NamedPolicyRow, PolicyRow, Revision, TargetRow, check_draft, numbers_in_order};
use crate::versions::DEFAULT_LABEL;

/// The newest revision of a workflow (routing on or off), with its raw variants.
async fn latest(conn: &mut SqliteConnection, workflow_id: Uuid) -> Result<Option<PolicyRow>> {
    Ok(sqlx::query_as(
        "SELECT workflow_id, revision, variants, shadow_version_id, shadow_version_number, salt, change,
                created_by, created_at
         FROM traffic_policies WHERE workflow_id = $1 ORDER BY revision DESC LIMIT 1",
    )
    .bind(workflow_id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Numbers of the workflow's versions among `ids`; `NotFound { what: "version" }` if any is
/// not the workflow's. The ids travel as a JSON array of hyphenated strings, which `unhex`
/// turns back into the 16-byte blobs the `id` column holds.
async fn version_numbers(conn: &mut SqliteConnection, workflow_id: Uuid, ids: &[Uuid]) -> Result<Vec<i32>> {
    let rows: Vec<(Uuid, i32)> = sqlx::query_as(
        "SELECT id, number FROM workflow_versions
         WHERE workflow_id = $1 AND id IN (SELECT unhex(value, '-') FROM json_each($2))",
    )
    .bind(workflow_id)
    .bind(Json(ids))
    .fetch_all(&mut *conn)
    .await?;
    numbers_in_order(ids, &rows)
}

/// The number of the workflow's version `id`; `NotFound { what: "version" }` if it is not the
/// workflow's.
async fn version_number(conn: &mut SqliteConnection, workflow_id: Uuid, id: Uuid) -> Result<i32> {
    let numbers = version_numbers(conn, workflow_id, &[id]).await?;
    numbers.first().copied().ok_or(StoreError::NotFound { what: "version" })
}

/// Inserts the revision after `previous` (keeping its salt, or drawing a new one), created at
/// `now`. The caller has checked the workflow and every version the revision names.
async fn insert_revision(
    conn: &mut SqliteConnection,
    workflow_id: Uuid,
    previous: Option<&PolicyRow>,
    revision: Revision,
    by: Option<&str>,
    now: DateTime<Utc>,
) -> Result<TrafficPolicy> {
    let columns = revision.columns(previous)?;
    let row: PolicyRow = sqlx::query_as(
        "INSERT INTO traffic_policies
            (workflow_id, revision, variants, shadow_version_id, shadow_version_number, salt, change, created_by,
             created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         RETURNING workflow_id, revision, variants, shadow_version_id, shadow_version_number, salt, change,
                   created_by, created_at",
    )
    .bind(workflow_id)
    .bind(columns.revision)
    .bind(columns.variants)
    .bind(columns.shadow_version_id)
    .bind(columns.shadow_version_number)
    .bind(columns.salt)
    .bind(columns.change)
    .bind(by)
    .bind(now)
    .fetch_one(&mut *conn)
    .await
    .map_err(StoreError::missing_parent("version"))?;
    row.try_into()
}

#[async_trait]
impl PolicyRepo for SqliteStore {
    async fn set_policy(
        &self,
        workflow_id: Uuid,
        draft: &PolicyDraft,
        by: Option<&str>,
    ) -> Result<TrafficPolicy> {
        check_draft(draft)?;
        let mut tx = self.begin().await?;
        let now = super::now();
        lock_workflow(&mut tx, workflow_id).await?;
        let ids: Vec<Uuid> = draft.variants.iter().map(|(v, _)| *v).chain(draft.shadow).collect();
        let numbers = version_numbers(&mut tx, workflow_id, &ids).await?;
        let mut previous = latest(&mut tx, workflow_id).await?;
        if let Some(current) = previous.take_if(|p| p.has_split(draft)) {
            tx.commit().await?;
            return current.try_into();
        }
        let revision = Revision::set(previous.as_ref(), draft, &numbers)?;
        let policy = insert_revision(&mut tx, workflow_id, previous.as_ref(), revision, by, now).await?;
        tx.commit().await?;
        Ok(policy)
    }

    async fn rollback_policy(&self, workflow_id: Uuid, by: Option<&str>) -> Result<TrafficPolicy> {
        let mut tx = self.begin().await?;
        let now = super::now();
        lock_workflow(&mut tx, workflow_id).await?;
        let current =
            latest(&mut tx, workflow_id).await?.ok_or(StoreError::NotFound { what: "previous policy" })?;
        let before: PolicyRow = sqlx::query_as(
            "SELECT workflow_id, revision, variants, shadow_version_id, shadow_version_number, salt, change,
                    created_by, created_at
             FROM traffic_policies WHERE workflow_id = $1 AND revision = $2",
        )
        .bind(workflow_id)
        .bind(current.revision - 1)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound { what: "previous policy" })?;
        let revision = Revision::rollback(&before)?;
        let policy = insert_revision(&mut tx, workflow_id, Some(&current), revision, by, now).await?;
        tx.commit().await?;
        Ok(policy)
    }

    async fn promote_variant(
        &self,
        workflow_id: Uuid,
        version_id: Uuid,
        by: Option<&str>,
    ) -> Result<Promotion> {
        let mut tx = self.begin().await?;
        let now = super::now();
        lock_workflow(&mut tx, workflow_id).await?;
        let number = version_number(&mut tx, workflow_id, version_id).await?;
        let previous = latest(&mut tx, workflow_id).await?;
        let revision = Revision::promote(version_id, number);
        let policy = insert_revision(&mut tx, workflow_id, previous.as_ref(), revision, by, now).await?;
        let label = set_label_in(&mut tx, workflow_id, DEFAULT_LABEL, version_id, by, now).await?;
        tx.commit().await?;
        Ok(Promotion { policy, label })
    }

    async fn clear_policy(&self, workflow_id: Uuid, by: Option<&str>) -> Result<TrafficPolicy> {
        let mut tx = self.begin().await?;
        let now = super::now();
        lock_workflow(&mut tx, workflow_id).await?;
        let current = latest(&mut tx, workflow_id).await?;
        let Some(current) = current.filter(PolicyRow::routes) else {
            return Err(StoreError::NotFound { what: "policy" });
        };
        let policy =
            insert_revision(&mut tx, workflow_id, Some(&current), Revision::clear(), by, now).await?;
        tx.commit().await?;
        Ok(policy)
    }

    async fn current_policy(&self, workflow_id: Uuid) -> Result<Option<TrafficPolicy>> {
        let mut conn = self.reader.acquire().await?;
        let row = latest(&mut conn, workflow_id).await?;
        let policy = row.map(TrafficPolicy::try_from).transpose()?;
        Ok(policy.filter(TrafficPolicy::is_active))
    }

    async fn policy_history(&self, workflow_id: Uuid, page: &PageRequest) -> Result<Page<TrafficPolicy>> {
        let before = page::decode_int(CursorKind::Policies, page.cursor.as_deref())?;
        let rows: Vec<PolicyRow> = sqlx::query_as(
            "SELECT workflow_id, revision, variants, shadow_version_id, shadow_version_number, salt, change,
                    created_by, created_at
             FROM traffic_policies
             WHERE workflow_id = $1 AND ($2 IS NULL OR revision < $2)
             ORDER BY revision DESC
             LIMIT $3",
        )
        .bind(workflow_id)
        .bind(before)
        .bind(page.fetch())
        .fetch_all(&self.reader)
        .await?;
        let rows = rows.into_iter().map(TrafficPolicy::try_from).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(rows, page, |p| page::encode_int(CursorKind::Policies, i64::from(p.revision))))
    }

    async fn active_policies(&self) -> Result<Vec<(String, TrafficPolicy)>> {
        let rows: Vec<NamedPolicyRow> = sqlx::query_as(
            "SELECT w.name, p.workflow_id, p.revision, p.variants, p.shadow_version_id, p.shadow_version_number,
                    p.salt, p.change, p.created_by, p.created_at
             FROM workflows w
             JOIN traffic_policies p ON p.workflow_id = w.id
                 AND p.revision = (SELECT max(tp.revision) FROM traffic_policies tp WHERE tp.workflow_id = w.id)
             WHERE w.deleted_at IS NULL AND json_array_length(p.variants) > 0
             ORDER BY w.name",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(<(String, TrafficPolicy)>::try_from).collect()
    }

    async fn default_target(&self, workflow_name: &str) -> Result<DefaultTarget> {
        let row: TargetRow = sqlx::query_as(
            "SELECT w.id AS w_id, w.name AS w_name, v.id AS v_id, v.number AS v_number,
                    p.revision, p.variants, p.shadow_version_id, p.shadow_version_number, p.salt, p.change,
                    p.created_by, p.created_at
             FROM workflows w
             LEFT JOIN workflow_versions v ON v.workflow_id = w.id AND v.id = coalesce(
                 (SELECT l.version_id FROM workflow_labels l WHERE l.workflow_id = w.id AND l.name = $2),
                 (SELECT lv.id FROM workflow_versions lv
                  WHERE lv.workflow_id = w.id AND lv.number = w.latest_version))
             LEFT JOIN traffic_policies p ON p.workflow_id = w.id
                 AND p.revision = (SELECT max(tp.revision) FROM traffic_policies tp WHERE tp.workflow_id = w.id)
             WHERE w.deleted_at IS NULL AND w.name = $1",
        )
        .bind(workflow_name)
        .bind(DEFAULT_LABEL)
        .fetch_optional(&self.reader)
        .await?
        .ok_or(StoreError::NotFound { what: "workflow" })?;
        row.try_into()
    }
}
