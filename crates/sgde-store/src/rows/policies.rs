//! Rows of `traffic_policies` (shared by both backends), and the pure logic of a policy change
//! that both backends run between their reads and their insert: checking a draft, deriving the
//! next revision from the one in force, and turning the default-target row into its record.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::buckets::{self, BUCKETS, BucketRange};
use crate::error::{Result, StoreError};
use crate::policies::{
    DefaultTarget, PolicyChange, PolicyDraft, PolicyVariant, ShadowVariant, TrafficPolicy,
};

/// A variant as the `variants` column holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredVariant {
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
pub(crate) struct PolicyRow {
    workflow_id: Uuid,
    pub(crate) revision: i32,
    variants: Value,
    shadow_version_id: Option<Uuid>,
    shadow_version_number: Option<i32>,
    salt: String,
    change: String,
    created_by: Option<String>,
    created_at: DateTime<Utc>,
}

impl PolicyRow {
    /// Whether this revision routes anything (a cleared policy does not).
    pub(crate) fn routes(&self) -> bool {
        self.variants.as_array().is_some_and(|v| !v.is_empty())
    }

    /// Whether this revision already has `draft`'s split and shadow, so that setting the draft
    /// would change nothing. Variants that cannot be read count as different (and the new
    /// revision built from them then reports the corruption).
    pub(crate) fn has_split(&self, draft: &PolicyDraft) -> bool {
        let Ok(before) = stored_variants(self.variants.clone()) else {
            return false;
        };
        before.len() == draft.variants.len()
            && before.iter().zip(&draft.variants).all(|(b, (v, w))| b.version_id == *v && b.weight_bp == *w)
            && self.shadow_version_id == draft.shadow
    }
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

/// A live workflow's name and its newest revision, as `active_policies` reads them.
#[derive(sqlx::FromRow)]
pub(crate) struct NamedPolicyRow {
    name: String,
    #[sqlx(flatten)]
    policy: PolicyRow,
}

impl TryFrom<NamedPolicyRow> for (String, TrafficPolicy) {
    type Error = StoreError;

    fn try_from(r: NamedPolicyRow) -> Result<Self> {
        Ok((r.name, TrafficPolicy::try_from(r.policy)?))
    }
}

/// Checks a draft: weights in (0, 10,000] summing to 10,000, no version twice.
pub(crate) fn check_draft(draft: &PolicyDraft) -> Result<()> {
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

/// The numbers of `ids`, in order, from the `(id, number)` rows of the workflow's versions that
/// a backend read; `NotFound { what: "version" }` if any id is not among them.
pub(crate) fn numbers_in_order(ids: &[Uuid], rows: &[(Uuid, i32)]) -> Result<Vec<i32>> {
    ids.iter()
        .map(|id| {
            rows.iter()
                .find(|(v, _)| v == id)
                .map(|(_, n)| *n)
                .ok_or(StoreError::NotFound { what: "version" })
        })
        .collect()
}

/// What a change writes: the split, the shadow and why.
pub(crate) struct Revision {
    variants: Vec<StoredVariant>,
    shadow: Option<(Uuid, i32)>,
    change: PolicyChange,
}

/// The column values of the revision inserted after `previous`, ready to bind.
pub(crate) struct RevisionColumns {
    pub(crate) revision: i32,
    pub(crate) variants: Value,
    pub(crate) shadow_version_id: Option<Uuid>,
    pub(crate) shadow_version_number: Option<i32>,
    pub(crate) salt: String,
    pub(crate) change: &'static str,
}

impl Revision {
    /// The revision `draft` makes after `previous`, with buckets reallocated from it so that
    /// as few routing keys as possible change variant. `numbers` are the numbers of the draft's
    /// variants and then of its shadow, in order ([`numbers_in_order`]).
    pub(crate) fn set(previous: Option<&PolicyRow>, draft: &PolicyDraft, numbers: &[i32]) -> Result<Self> {
        let before = match previous {
            Some(p) => stored_variants(p.variants.clone())?,
            None => Vec::new(),
        };
        let owners: Vec<(Uuid, Vec<BucketRange>)> =
            before.into_iter().map(|b| (b.version_id, b.buckets)).collect();
        let ranges = buckets::reallocate(&owners, &draft.variants);
        let variants = draft
            .variants
            .iter()
            .zip(ranges)
            .zip(numbers)
            .map(|(((version_id, weight_bp), buckets), number)| StoredVariant {
                version_id: *version_id,
                version_number: *number,
                weight_bp: *weight_bp,
                buckets,
            })
            .collect();
        let shadow = draft.shadow.zip(numbers.last().copied());
        Ok(Revision { variants, shadow, change: PolicyChange::Set })
    }

    /// The split of `before` again, bucket for bucket.
    pub(crate) fn rollback(before: &PolicyRow) -> Result<Self> {
        Ok(Revision {
            variants: stored_variants(before.variants.clone())?,
            shadow: before.shadow_version_id.zip(before.shadow_version_number),
            change: PolicyChange::Rollback,
        })
    }

    /// All traffic to one version, no shadow.
    pub(crate) fn promote(version_id: Uuid, version_number: i32) -> Self {
        let variants = vec![StoredVariant {
            version_id,
            version_number,
            weight_bp: BUCKETS,
            buckets: vec![BucketRange { start: 0, end: BUCKETS }],
        }];
        Revision { variants, shadow: None, change: PolicyChange::Promote }
    }

    /// Routing off.
    pub(crate) fn clear() -> Self {
        Revision { variants: Vec::new(), shadow: None, change: PolicyChange::Clear }
    }

    /// The row inserted after `previous`: the next revision number, keeping the salt (or drawing
    /// a new one for a workflow's first policy), so routing keys stick across revisions.
    pub(crate) fn columns(self, previous: Option<&PolicyRow>) -> Result<RevisionColumns> {
        let revision = match previous {
            Some(p) => {
                p.revision.checked_add(1).ok_or(StoreError::Invalid { what: "policy revision (overflow)" })?
            }
            None => 1,
        };
        let salt = previous.map_or_else(|| Uuid::new_v4().simple().to_string(), |p| p.salt.clone());
        let variants =
            serde_json::to_value(&self.variants).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(RevisionColumns {
            revision,
            variants,
            shadow_version_id: self.shadow.map(|(id, _)| id),
            shadow_version_number: self.shadow.map(|(_, n)| n),
            salt,
            change: self.change.as_str(),
        })
    }
}

/// The row of the default-target query: the workflow, the default version (absent when the
/// workflow has none) and the newest policy revision (all columns null when there is none).
#[derive(sqlx::FromRow)]
pub(crate) struct TargetRow {
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

impl TryFrom<TargetRow> for DefaultTarget {
    type Error = StoreError;

    /// `NotFound { what: "version" }` when the workflow has no version to run.
    fn try_from(row: TargetRow) -> Result<Self> {
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
