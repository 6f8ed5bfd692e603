//! Traffic policies: how a workflow's default traffic is split between versions (A/B routing).
//!
//! A policy is a list of variants — a version and its weight — plus an optional shadow version
//! that sees a copy of live traffic. Every change (set, rollback, promote, clear) appends a new
//! revision; the newest revision is the policy in force, and one without variants means routing
//! is off. Changes of one workflow are serialised by the same row lock labels take, and the
//! weights are checked before anything is written, so no reader ever sees a policy whose
//! weights do not sum to 100%.
//!
//! Each variant owns bucket ranges of the key space ([`crate::buckets`]); a new revision is
//! allocated from the previous one so that as few routing keys as possible change variant.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::buckets::BucketRange;
use crate::error::Result;
use crate::labels::LabelMove;
use crate::page::{Page, PageRequest};

/// One version in a policy and its share of the traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PolicyVariant {
    pub version_id: Uuid,
    pub version_number: i32,
    /// Share of the traffic in percent (hundredths of a percent are the resolution).
    pub weight: f64,
    /// The buckets (of 10,000) whose keys this variant serves.
    pub buckets: Vec<BucketRange>,
}

/// The version that runs on a copy of live traffic, for comparison only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShadowVariant {
    pub version_id: Uuid,
    pub version_number: i32,
}

/// What a revision did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyChange {
    Set,
    Rollback,
    Promote,
    Clear,
}

impl PolicyChange {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyChange::Set => "set",
            PolicyChange::Rollback => "rollback",
            PolicyChange::Promote => "promote",
            PolicyChange::Clear => "clear",
        }
    }
}

/// One revision of a workflow's traffic policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TrafficPolicy {
    pub workflow_id: Uuid,
    /// 1, 2, 3, … per workflow; the highest is in force.
    pub revision: i32,
    /// Empty when routing is off (a cleared policy).
    pub variants: Vec<PolicyVariant>,
    pub shadow: Option<ShadowVariant>,
    /// Mixed into the routing-key hash; fixed for the life of the workflow, so keys stick
    /// across revisions.
    pub salt: String,
    pub change: PolicyChange,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl TrafficPolicy {
    /// Whether this revision routes anything.
    pub fn is_active(&self) -> bool {
        !self.variants.is_empty()
    }

    /// Index of the variant that serves `bucket`.
    pub fn variant_for(&self, bucket: u32) -> Option<usize> {
        self.variants.iter().position(|v| v.buckets.iter().any(|r| r.start <= bucket && bucket < r.end))
    }
}

/// A new split: versions (of the workflow) with weights in hundredths of a percent, which
/// must sum to 10,000, and an optional shadow version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDraft {
    pub variants: Vec<(Uuid, u32)>,
    pub shadow: Option<Uuid>,
}

/// The result of a promotion: the new policy and the `production` label's move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Promotion {
    pub policy: TrafficPolicy,
    pub label: LabelMove,
}

/// What a request without an explicit version runs on: the workflow, the version the
/// default selector picks (the `production` label, else the latest), and the policy in force.
#[derive(Debug, Clone, PartialEq)]
pub struct DefaultTarget {
    pub workflow_id: Uuid,
    pub workflow_name: String,
    pub version_id: Uuid,
    pub version_number: i32,
    pub policy: Option<TrafficPolicy>,
}

#[async_trait]
pub trait PolicyRepo: Send + Sync {
    /// Writes a new revision with `draft`'s split (buckets reallocated from the revision in
    /// force). `Invalid` if the weights do not sum to 10,000 or a version repeats;
    /// `NotFound { what: "version" }` if a version is not the workflow's. A draft equal to the
    /// policy in force writes nothing and returns it.
    async fn set_policy(
        &self,
        workflow_id: Uuid,
        draft: &PolicyDraft,
        by: Option<&str>,
    ) -> Result<TrafficPolicy>;

    /// A new revision with the split of the revision before the one in force, bucket for
    /// bucket. `NotFound { what: "previous policy" }` when there is none.
    async fn rollback_policy(&self, workflow_id: Uuid, by: Option<&str>) -> Result<TrafficPolicy>;

    /// In one transaction: a revision sending 100% to `version_id` (no shadow) and the
    /// `production` label moved to it.
    async fn promote_variant(
        &self,
        workflow_id: Uuid,
        version_id: Uuid,
        by: Option<&str>,
    ) -> Result<Promotion>;

    /// A revision without variants: routing off, default traffic follows `production` again.
    /// `NotFound { what: "policy" }` when no policy is in force.
    async fn clear_policy(&self, workflow_id: Uuid, by: Option<&str>) -> Result<TrafficPolicy>;

    /// The revision in force, if routing is on.
    async fn current_policy(&self, workflow_id: Uuid) -> Result<Option<TrafficPolicy>>;

    /// Revisions newest first.
    async fn policy_history(&self, workflow_id: Uuid, page: &PageRequest) -> Result<Page<TrafficPolicy>>;

    /// Live workflows whose policy routes traffic, by name, with that policy.
    async fn active_policies(&self) -> Result<Vec<(String, TrafficPolicy)>>;

    /// The hot path of a request without an explicit version: workflow, default version and
    /// policy in force, in one round trip.
    async fn default_target(&self, workflow_name: &str) -> Result<DefaultTarget>;
}
