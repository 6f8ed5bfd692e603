//! Feedback on executions, and the per-variant statistics A/B routing is judged by.
//!
//! Feedback is one record per execution (a repeat replaces it: the caller's latest judgement
//! counts, and retries never double-count). Statistics are computed from the execution log
//! itself, so they always equal a recount of it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::Result;

/// A judgement of one execution's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NewFeedback {
    /// Was the output right?
    pub correct: Option<bool>,
    /// A graded score in [0, 1].
    pub score: Option<f64>,
    pub comment: Option<String>,
}

/// Feedback as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Feedback {
    pub execution_id: Uuid,
    pub correct: Option<bool>,
    pub score: Option<f64>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// How a version was reached: chosen by the traffic policy, or run as its shadow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoutePath {
    Policy,
    Shadow,
}

/// Everything measured about one version on one path in a time window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VariantStats {
    pub version_id: Uuid,
    pub version_number: i32,
    pub path: RoutePath,
    pub requests: u64,
    /// Executions that failed.
    pub errors: u64,
    /// Latency percentiles in milliseconds over finished executions (linear interpolation).
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// Mean prompt + completion tokens per execution.
    pub tokens_per_run: Option<f64>,
    pub cost_per_run_usd: Option<f64>,
    /// Executions with feedback, and the mean of their feedback (the score where given, else
    /// 1 for correct and 0 for incorrect).
    pub feedback_count: u64,
    pub feedback_mean: Option<f64>,
    /// Binary feedback: how many said `correct`, out of how many.
    pub correct: u64,
    pub correct_n: u64,
    /// Graded feedback: count, mean and sample variance.
    pub score_n: u64,
    pub score_mean: Option<f64>,
    pub score_variance: Option<f64>,
}

#[async_trait]
pub trait FeedbackRepo: Send + Sync {
    /// Records (or replaces) the feedback on an execution; `NotFound { what: "execution" }` if
    /// there is no such execution. Returns the record and whether it is new.
    async fn put_feedback(
        &self,
        execution_id: Uuid,
        new: &NewFeedback,
        by: Option<&str>,
    ) -> Result<(Feedback, bool)>;

    async fn get_feedback(&self, execution_id: Uuid) -> Result<Feedback>;

    /// Statistics of the executions of `workflow_id` created in `[from, to)` that the policy
    /// routed or that ran as shadows, per version and path.
    async fn variant_stats(
        &self,
        workflow_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<VariantStats>>;
}
