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

use crate::error::{Result, StoreError};

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

/// Feedback must say something (`correct`, `score` or both), and a score is in [0, 1].
pub(crate) fn check_feedback(new: &NewFeedback) -> Result<()> {
    if new.correct.is_none() && new.score.is_none() {
        return Err(StoreError::Invalid { what: "feedback" });
    }
    if new.score.is_some_and(|s| !(0.0..=1.0).contains(&s)) {
        return Err(StoreError::Invalid { what: "feedback score" });
    }
    Ok(())
}

/// The latency percentiles of [`VariantStats`] (p50, p95, p99), as fractions.
pub(crate) const LATENCY_PERCENTILES: [f64; 3] = [0.5, 0.95, 0.99];

/// Postgres' `percentile_cont(fraction) WITHIN GROUP (ORDER BY x)` over `sorted` (ascending,
/// without NULLs), computed the way Postgres does: at position `fraction * (n - 1)`, the value
/// there, or between the two neighbouring values by linear interpolation (`lo + p * (hi - lo)`).
/// `None` without values (Postgres' NULL) or for a fraction outside [0, 1].
pub(crate) fn percentile_cont(sorted: &[f64], fraction: f64) -> Option<f64> {
    if !(0.0..=1.0).contains(&fraction) {
        return None;
    }
    let last = sorted.len().checked_sub(1)?;
    let position = fraction * last as f64;
    let (first, second) = (position.floor(), position.ceil());
    // Both are integers in [0, last], so the casts are exact.
    let low = *sorted.get(first as usize)?;
    if second == first {
        return Some(low);
    }
    let high = *sorted.get(second as usize)?;
    Some(low + (position - first) * (high - low))
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

#[cfg(test)]
mod tests {
    use super::percentile_cont;

    #[test]
    fn percentiles_interpolate_like_postgres() {
        // Expected values from Postgres:
        // SELECT percentile_cont(p) WITHIN GROUP (ORDER BY x) FROM unnest(array[...]) x.
        let three = [1000.0, 2000.0, 3000.0];
        assert_eq!(percentile_cont(&three, 0.5), Some(2000.0));
        assert_eq!(percentile_cont(&three, 0.95), Some(2900.0));
        assert_eq!(percentile_cont(&three, 0.99), Some(2980.0));
        let two = [1.0, 4.0];
        assert_eq!(percentile_cont(&two, 0.5), Some(2.5));
        assert_eq!(percentile_cont(&two, 0.0), Some(1.0));
        assert_eq!(percentile_cont(&two, 1.0), Some(4.0));
        assert_eq!(percentile_cont(&[7.0], 0.99), Some(7.0));
        let ten: Vec<f64> = (1..=10).map(|x| f64::from(x * x)).collect();
        // 0.95 * 9 is 8.549999999999999 in floating point, hence not 91.45.
        assert_eq!(percentile_cont(&ten, 0.5), Some(30.5));
        assert_eq!(percentile_cont(&ten, 0.95), Some(91.44999999999997));
        assert_eq!(percentile_cont(&ten, 0.99), Some(98.29));
        assert_eq!(percentile_cont(&[], 0.5), None);
        assert_eq!(percentile_cont(&three, 1.5), None);
    }
}
