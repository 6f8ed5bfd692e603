//! Rows of `execution_feedback`, and the per-variant statistics read from the execution log.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::feedback::{Feedback, LATENCY_PERCENTILES, RoutePath, VariantStats, percentile_cont};
use crate::pg::to_u64;

/// The columns every read of feedback selects, in [`FeedbackRow`]'s order.
macro_rules! feedback_columns {
    () => {
        "execution_id, correct, score, comment, created_by, created_at, updated_at"
    };
}
pub(crate) use feedback_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct FeedbackRow {
    execution_id: Uuid,
    correct: Option<bool>,
    score: Option<f64>,
    comment: Option<String>,
    created_by: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<FeedbackRow> for Feedback {
    fn from(r: FeedbackRow) -> Self {
        Feedback {
            execution_id: r.execution_id,
            correct: r.correct,
            score: r.score,
            comment: r.comment,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// What both backends aggregate in SQL for one version and path; the latency percentiles come
/// separately (see [`PgStatsRow`] and [`SqliteStatsRow`]).
#[derive(sqlx::FromRow)]
pub(crate) struct StatsRow {
    version_id: Uuid,
    version_number: i32,
    path: String,
    requests: i64,
    errors: i64,
    tokens_per_run: Option<f64>,
    cost_per_run: Option<f64>,
    feedback_count: i64,
    feedback_mean: Option<f64>,
    correct: i64,
    correct_n: i64,
    score_n: i64,
    score_mean: Option<f64>,
    score_variance: Option<f64>,
}

impl StatsRow {
    /// The record, with latency percentiles (p50, p95, p99) in microseconds.
    fn into_stats(self, [p50_us, p95_us, p99_us]: [Option<f64>; 3]) -> Result<VariantStats> {
        let path = match self.path.as_str() {
            "policy" => RoutePath::Policy,
            "shadow" => RoutePath::Shadow,
            other => return Err(StoreError::Corrupt(format!("unknown route path {other:?}"))),
        };
        let ms = |us: Option<f64>| us.map(|v| v / 1000.0);
        Ok(VariantStats {
            version_id: self.version_id,
            version_number: self.version_number,
            path,
            requests: to_u64(self.requests),
            errors: to_u64(self.errors),
            latency_p50_ms: ms(p50_us),
            latency_p95_ms: ms(p95_us),
            latency_p99_ms: ms(p99_us),
            tokens_per_run: self.tokens_per_run,
            cost_per_run_usd: self.cost_per_run,
            feedback_count: to_u64(self.feedback_count),
            feedback_mean: self.feedback_mean,
            correct: to_u64(self.correct),
            correct_n: to_u64(self.correct_n),
            score_n: to_u64(self.score_n),
            score_mean: self.score_mean,
            score_variance: self.score_variance,
        })
    }
}

/// Statistics with the percentiles Postgres computed (`percentile_cont`).
#[derive(sqlx::FromRow)]
pub(crate) struct PgStatsRow {
    #[sqlx(flatten)]
    stats: StatsRow,
    p50_us: Option<f64>,
    p95_us: Option<f64>,
    p99_us: Option<f64>,
}

impl TryFrom<PgStatsRow> for VariantStats {
    type Error = StoreError;

    fn try_from(r: PgStatsRow) -> Result<Self> {
        r.stats.into_stats([r.p50_us, r.p95_us, r.p99_us])
    }
}

/// Statistics with the group's latencies (a JSON array of microseconds, NULLs left out), from
/// which the percentiles are computed in Rust: SQLite has no `percentile_cont`.
#[derive(sqlx::FromRow)]
pub(crate) struct SqliteStatsRow {
    #[sqlx(flatten)]
    stats: StatsRow,
    latencies_us: Json<Vec<i64>>,
}

impl TryFrom<SqliteStatsRow> for VariantStats {
    type Error = StoreError;

    fn try_from(r: SqliteStatsRow) -> Result<Self> {
        // Postgres orders `bigint` latencies as `float8`; so does this (the conversion rounds
        // the same way).
        let mut latencies: Vec<f64> = r.latencies_us.0.into_iter().map(|us| us as f64).collect();
        latencies.sort_by(f64::total_cmp);
        r.stats.into_stats(LATENCY_PERCENTILES.map(|p| percentile_cont(&latencies, p)))
    }
}
