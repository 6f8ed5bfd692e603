//! The statistics report of a workflow's variants: the store's per-version numbers, each
//! variant's weight, and significance tests against the control (the policy's first variant).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sgde_store::{RoutePath, TrafficPolicy, VariantStats};
use utoipa::ToSchema;
use uuid::Uuid;

use super::significance::{self, Comparison, Moments, Proportion};
use crate::problem::ApiError;
use crate::state::AppState;

/// One variant (or the shadow) with its numbers and how it compares with the control.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VariantReport {
    pub stats: VariantStats,
    /// Current weight in percent; absent for versions no longer in the policy and for the shadow.
    pub weight: Option<f64>,
    /// Whether this is the control the others are compared with.
    pub control: bool,
    /// Binary feedback against the control (absent for the control itself).
    pub correctness: Option<Comparison>,
    /// Scores against the control (absent for the control itself).
    pub scores: Option<Comparison>,
}

impl VariantReport {
    pub fn is_shadow(&self) -> bool {
        self.stats.path == RoutePath::Shadow
    }
}

/// Statistics of a workflow's routed traffic in a time window.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatsReport {
    pub workflow: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The policy in force, if routing is on.
    pub policy_revision: Option<i32>,
    /// The version the others are compared with.
    pub control_version_id: Option<Uuid>,
    pub variants: Vec<VariantReport>,
}

fn proportion(s: &VariantStats) -> Proportion {
    Proportion { successes: s.correct, n: s.correct_n }
}

fn moments(s: &VariantStats) -> Moments {
    Moments { n: s.score_n, mean: s.score_mean.unwrap_or(0.0), variance: s.score_variance.unwrap_or(0.0) }
}

/// Builds the report from the execution log.
pub async fn report(
    state: &AppState,
    workflow: &str,
    workflow_id: Uuid,
    policy: Option<&TrafficPolicy>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<StatsReport, ApiError> {
    let rows = state.store().variant_stats(workflow_id, from, to).await?;
    let primary = |s: &&VariantStats| s.path == RoutePath::Policy;
    // The control: the policy's first variant, else the most requested routed version.
    let control_version_id = policy
        .and_then(|p| p.variants.first())
        .map(|v| v.version_id)
        .or_else(|| rows.iter().filter(primary).max_by_key(|s| s.requests).map(|s| s.version_id));
    let control = rows.iter().filter(primary).find(|s| Some(s.version_id) == control_version_id).cloned();
    let variants = rows
        .into_iter()
        .map(|stats| {
            let is_control = stats.path == RoutePath::Policy && Some(stats.version_id) == control_version_id;
            let weight = match stats.path {
                RoutePath::Policy => policy
                    .and_then(|p| p.variants.iter().find(|v| v.version_id == stats.version_id))
                    .map(|v| v.weight),
                RoutePath::Shadow => None,
            };
            let (correctness, scores) = match (&control, is_control) {
                (Some(c), false) => (
                    Some(significance::two_proportion_z(proportion(&stats), proportion(c))),
                    Some(significance::welch_t(moments(&stats), moments(c))),
                ),
                _ => (None, None),
            };
            VariantReport { stats, weight, control: is_control, correctness, scores }
        })
        .collect();
    Ok(StatsReport {
        workflow: workflow.to_owned(),
        from,
        to,
        policy_revision: policy.map(|p| p.revision),
        control_version_id,
        variants,
    })
}
