//! [`PolicyRepo`] on Postgres.
//!
//! Every change locks the workflow row (as label moves do), reads the revision in force and
//! inserts the next one, so concurrent changes queue up instead of interleaving, and the
//! weights are checked again by the table's CHECK constraint.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::PgStore;
use super::labels::{lock_workflow, set_label_in};
use crate::buckets::{self, BUCKETS, BucketRange};
use crate::error::{Result, StoreError};
use crate::page::{self, CursorKind, Page, PageRequest};
use crate::policies::{
    DefaultTarget, PolicyChange, PolicyDraft, PolicyRepo, PolicyVariant, Promotion, ShadowVariant,
    TrafficPolicy,
};
use crate::versions::DEFAULT_LABEL;

/// A variant as the `variants` column holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredVariant {
    version_id: Uuid,
    version_number: i32,
    weight_bp: u32,
    buckets: Vec<BucketRange>,
}

impl From<StoredVariant> for PolicyVariant {
    fn from(v: StoredVariant) -> Self {
        PolicyVariant {
            version_id: v.version_id,
            version_number: v.version_number,
            weight: f64::from(v.weight_bp) / 100.0,
            buckets: v.buckets,
        }
    }
}

#[derive(sqlx::FromRow)]
struct PolicyRow {
    workflow_id: Uuid,
    revision: i32,
    variants: Value,
    shadow_version_id: Option<Uuid>,
    shadow_version_number: Option<i32>,
    salt: String,
    change: String,
    created_by: Option<String>,
    created_at: DateTime<Utc>,
}

fn parse_change(s: &str) -> Result<PolicyChange> {
    Ok(match s {
        "set" => PolicyChange::Set,
        "rollback" => PolicyChange::Rollback,
        "promote" => PolicyChange::Promote,
        "clear" => PolicyChange::Clear,
        other => return Err(StoreError::Corrupt(format!("unknown policy change {other:?}"))),
    })
}

fn stored_variants(value: Value) -> Result<Vec<StoredVariant>> {
    serde_json::from_value(value).map_err(|e| StoreError::Corrupt(format!("policy variants: {e}")))
}

impl TryFrom<PolicyRow> for TrafficPolicy {
    type Error = StoreError;

    fn try_from(r: PolicyRow) -> Result<Self> {
        Ok(TrafficPolicy {
            workflow_id: r.workflow_id,
            revision: r.revision,
            variants: stored_variants(r.variants)?.into_iter().map(PolicyVariant::from).collect(),
            shadow: match (r.shadow_version_id, r.shadow_version_number) {
                (Some(version_id), Some(version_number)) => {
                    Some(ShadowVariant { version_id, version_number })
                }
                _ => None,
            },
            salt: r.salt,
            change: parse_change(&r.change)?,
            created_by: r.created_by,
            created_at: r.created_at,
        })
    }
}

/// The newest revision of a workflow (routing on or off), with its raw variants.
async fn latest(conn: &mut PgConnection, workflow_id: Uuid) -> Result<Option<PolicyRow>> {
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
/// not the workflow's.
async fn version_numbers(conn: &mut PgConnection, workflow_id: Uuid, ids: &[Uuid]) -> Result<Vec<i32>> {
    let rows: Vec<(Uuid, i32)> =
        sqlx::query_as("SELECT id, number FROM workflow_versions WHERE workflow_id = $1 AND id = ANY($2)")
            .bind(workflow_id)
            .bind(ids)
            .fetch_all(&mut *conn)
            .await?;
    ids.iter()
        .map(|id| {
            rows.iter()
                .find(|(v, _)| v == id)
                .map(|(_, n)| *n)
                .ok_or(StoreError::NotFound { what: "version" })
        })
        .collect()
}

struct Revision<'a> {
    variants: &'a [StoredVariant],
    shadow: Option<(Uuid, i32)>,
    change: PolicyChange,
}

/// Inserts the revision after `previous` (keeping its salt, or drawing a new one).
async fn insert_revision(
    conn: &mut PgConnection,
    workflow_id: Uuid,
    previous: Option<&PolicyRow>,
    revision: Revision<'_>,
    by: Option<&str>,
) -> Result<TrafficPolicy> {
    let number = previous.map_or(1, |p| p.revision + 1);
    let salt = previous.map_or_else(|| Uuid::new_v4().simple().to_string(), |p| p.salt.clone());
    let variants = serde_json::to_value(revision.variants).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let row: PolicyRow = sqlx::query_as(
        "INSERT INTO traffic_policies
            (workflow_id, revision, variants, shadow_version_id, shadow_version_number, salt, change, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING workflow_id, revision, variants, shadow_version_id, shadow_version_number, salt, change,
                   created_by, created_at",
    )
    .bind(workflow_id)
    .bind(number)
    .bind(variants)
    .bind(revision.shadow.map(|(id, _)| id))
    .bind(revision.shadow.map(|(_, n)| n))
    .bind(salt)
    .bind(revision.change.as_str())
    .bind(by)
    .fetch_one(&mut *conn)
    .await?;
    row.try_into()
}

/// Checks a draft: weights in (0, 10,000] summing to 10,000, no version twice.
fn check_draft(draft: &PolicyDraft) -> Result<()> {
    let sum: u64 = draft.variants.iter().map(|(_, w)| u64::from(*w)).sum();
    let distinct =
        draft.variants.iter().enumerate().all(|(i, (v, _))| draft.variants[..i].iter().all(|(u, _)| u != v));
    if draft.variants.is_empty() || sum != u64::from(BUCKETS) || draft.variants.iter().any(|(_, w)| *w == 0) {
        return Err(StoreError::Invalid { what: "policy weights" });
    }
    if !distinct {
        return Err(StoreError::Invalid { what: "policy variants" });
    }
    Ok(())
}

#[async_trait]
impl PolicyRepo for PgStore {
    async fn set_policy(
        &self,
        workflow_id: Uuid,
        draft: &PolicyDraft,
        by: Option<&str>,
    ) -> Result<TrafficPolicy> {
        check_draft(draft)?;
        let mut tx = self.pool.begin().await?;
        lock_workflow(&mut tx, workflow_id).await?;
        let ids: Vec<Uuid> = draft.variants.iter().map(|(v, _)| *v).chain(draft.shadow).collect();
        let numbers = version_numbers(&mut tx, workflow_id, &ids).await?;
        let previous = latest(&mut tx, workflow_id).await?;
        let before = match &previous {
            Some(p) => stored_variants(p.variants.clone())?,
            None => Vec::new(),
        };
        let unchanged = before.len() == draft.variants.len()
            && before.iter().zip(&draft.variants).all(|(b, (v, w))| b.version_id == *v && b.weight_bp == *w)
            && previous.as_ref().and_then(|p| p.shadow_version_id) == draft.shadow;
        if unchanged && let Some(p) = previous {
            tx.commit().await?;
            return p.try_into();
        }
        let owners: Vec<(Uuid, Vec<BucketRange>)> =
            before.iter().map(|b| (b.version_id, b.buckets.clone())).collect();
        let ranges = buckets::reallocate(&owners, &draft.variants);
        let variants: Vec<StoredVariant> = draft
            .variants
            .iter()
            .zip(ranges)
            .zip(&numbers)
            .map(|(((version_id, weight_bp), buckets), number)| StoredVariant {
                version_id: *version_id,
                version_number: *number,
                weight_bp: *weight_bp,
                buckets,
            })
            .collect();
        let shadow = draft.shadow.zip(numbers.last().copied());
        let revision = Revision { variants: &variants, shadow, change: PolicyChange::Set };
        let policy = insert_revision(&mut tx, workflow_id, previous.as_ref(), revision, by).await?;
        tx.commit().await?;
        Ok(policy)
    }

    async fn rollback_policy(&self, workflow_id: Uuid, by: Option<&str>) -> Result<TrafficPolicy> {
        let mut tx = self.pool.begin().await?;
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
        let variants = stored_variants(before.variants.clone())?;
        let shadow = before.shadow_version_id.zip(before.shadow_version_number);
        let revision = Revision { variants: &variants, shadow, change: PolicyChange::Rollback };
        let policy = insert_revision(&mut tx, workflow_id, Some(&current), revision, by).await?;
        tx.commit().await?;
        Ok(policy)
    }

    async fn promote_variant(
        &self,
        workflow_id: Uuid,
        version_id: Uuid,
        by: Option<&str>,
    ) -> Result<Promotion> {
        let mut tx = self.pool.begin().await?;
        lock_workflow(&mut tx, workflow_id).await?;
        let numbers = version_numbers(&mut tx, workflow_id, &[version_id]).await?;
        let previous = latest(&mut tx, workflow_id).await?;
        let variants = [StoredVariant {
            version_id,
            version_number: numbers[0],
            weight_bp: BUCKETS,
            buckets: vec![BucketRange { start: 0, end: BUCKETS }],
        }];
        let revision = Revision { variants: &variants, shadow: None, change: PolicyChange::Promote };
        let policy = insert_revision(&mut tx, workflow_id, previous.as_ref(), revision, by).await?;
        let label = set_label_in(&mut tx, workflow_id, DEFAULT_LABEL, version_id, by).await?;
        tx.commit().await?;
        Ok(Promotion { policy, label })
    }

    async fn clear_policy(&self, workflow_id: Uuid, by: Option<&str>) -> Result<TrafficPolicy> {
        let mut tx = self.pool.begin().await?;
        lock_workflow(&mut tx, workflow_id).await?;
        let current = latest(&mut tx, workflow_id).await?;
        let Some(current) = current.filter(|p| p.variants.as_array().is_some_and(|v| !v.is_empty())) else {
            return Err(StoreError::NotFound { what: "policy" });
        };
        let revision = Revision { variants: &[], shadow: None, change: PolicyChange::Clear };
        let policy = insert_revision(&mut tx, workflow_id, Some(&current), revision, by).await?;
        tx.commit().await?;
        Ok(policy)
    }

    async fn current_policy(&self, workflow_id: Uuid) -> Result<Option<TrafficPolicy>> {
        let mut conn = self.pool.acquire().await?;
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
             WHERE workflow_id = $1 AND ($2::int8 IS NULL OR revision < $2)
             ORDER BY revision DESC
             LIMIT $3",
        )
        .bind(workflow_id)
        .bind(before)
        .bind(page.fetch())
        .fetch_all(&self.pool)
        .await?;
        let rows = rows.into_iter().map(TrafficPolicy::try_from).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(rows, page, |p| page::encode_int(CursorKind::Policies, i64::from(p.revision))))
    }

    async fn active_policies(&self) -> Result<Vec<(String, TrafficPolicy)>> {
        #[derive(sqlx::FromRow)]
        struct Named {
            name: String,
            #[sqlx(flatten)]
            policy: PolicyRow,
        }
        let rows: Vec<Named> = sqlx::query_as(
            "SELECT w.name, p.workflow_id, p.revision, p.variants, p.shadow_version_id, p.shadow_version_number,
                    p.salt, p.change, p.created_by, p.created_at
             FROM workflows w
             JOIN LATERAL (
                 SELECT * FROM traffic_policies tp WHERE tp.workflow_id = w.id ORDER BY tp.revision DESC LIMIT 1
             ) p ON true
             WHERE w.deleted_at IS NULL AND jsonb_array_length(p.variants) > 0
             ORDER BY w.name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|r| Ok((r.name, TrafficPolicy::try_from(r.policy)?))).collect()
    }

    async fn default_target(&self, workflow_name: &str) -> Result<DefaultTarget> {
        #[derive(sqlx::FromRow)]
        struct TargetRow {
            w_id: Uuid,
            w_name: String,
            v_id: Option<Uuid>,
            v_number: Option<i32>,
            #[sqlx(flatten)]
            policy: OptionalPolicyRow,
        }
        #[derive(sqlx::FromRow)]
        struct OptionalPolicyRow {
            revision: Option<i32>,
            variants: Option<Value>,
            shadow_version_id: Option<Uuid>,
            shadow_version_number: Option<i32>,
            salt: Option<String>,
            change: Option<String>,
            created_by: Option<String>,
            created_at: Option<DateTime<Utc>>,
        }
        let row: TargetRow = sqlx::query_as(
            "SELECT w.id AS w_id, w.name AS w_name, v.id AS v_id, v.number AS v_number,
                    p.revision, p.variants, p.shadow_version_id, p.shadow_version_number, p.salt, p.change,
                    p.created_by, p.created_at
             FROM workflows w
             LEFT JOIN workflow_versions v ON v.workflow_id = w.id AND v.id = coalesce(
                 (SELECT l.version_id FROM workflow_labels l WHERE l.workflow_id = w.id AND l.name = $2),
                 (SELECT lv.id FROM workflow_versions lv
                  WHERE lv.workflow_id = w.id AND lv.number = w.latest_version))
             LEFT JOIN LATERAL (
                 SELECT * FROM traffic_policies tp WHERE tp.workflow_id = w.id ORDER BY tp.revision DESC LIMIT 1
             ) p ON true
             WHERE w.deleted_at IS NULL AND w.name = $1",
        )
        .bind(workflow_name)
        .bind(DEFAULT_LABEL)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound { what: "workflow" })?;
        let (Some(version_id), Some(version_number)) = (row.v_id, row.v_number) else {
            return Err(StoreError::NotFound { what: "version" });
        };
        let p = row.policy;
        let policy = match (p.revision, p.variants, p.salt, p.change, p.created_at) {
            (Some(revision), Some(variants), Some(salt), Some(change), Some(created_at)) => {
                Some(TrafficPolicy::try_from(PolicyRow {
                    workflow_id: row.w_id,
                    revision,
                    variants,
                    shadow_version_id: p.shadow_version_id,
                    shadow_version_number: p.shadow_version_number,
                    salt,
                    change,
                    created_by: p.created_by,
                    created_at,
                })?)
            }
            _ => None,
        };
        Ok(DefaultTarget {
            workflow_id: row.w_id,
            workflow_name: row.w_name,
            version_id,
            version_number,
            policy: policy.filter(TrafficPolicy::is_active),
        })
    }
}
