//! [`FeedbackRepo`] on Postgres: feedback upserts and per-variant statistics computed in SQL
//! straight from the execution log.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{PgStore, to_u64};
use crate::error::{Result, StoreError};
use crate::feedback::{Feedback, FeedbackRepo, NewFeedback, RoutePath, VariantStats};

#[derive(sqlx::FromRow)]
struct FeedbackRow {
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

#[derive(sqlx::FromRow)]
struct StatsRow {
    version_id: Uuid,
    version_number: i32,
    path: String,
    requests: i64,
    errors: i64,
    p50_us: Option<f64>,
    p95_us: Option<f64>,
    p99_us: Option<f64>,
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

#[async_trait]
impl FeedbackRepo for PgStore {
    async fn put_feedback(
        &self,
        execution_id: Uuid,
        new: &NewFeedback,
        by: Option<&str>,
    ) -> Result<(Feedback, bool)> {
        if new.correct.is_none() && new.score.is_none() {
            return Err(StoreError::Invalid { what: "feedback" });
        }
        if new.score.is_some_and(|s| !(0.0..=1.0).contains(&s)) {
            return Err(StoreError::Invalid { what: "feedback score" });
        }
        // `xmax = 0` tells an inserted row from an updated one.
        let (row, inserted): (FeedbackRow, bool) = {
            #[derive(sqlx::FromRow)]
            struct Upserted {
                #[sqlx(flatten)]
                row: FeedbackRow,
                inserted: bool,
            }
            let u: Upserted = sqlx::query_as(
                "INSERT INTO execution_feedback (execution_id, correct, score, comment, created_by)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (execution_id) DO UPDATE
                 SET correct = excluded.correct, score = excluded.score, comment = excluded.comment,
                     created_by = excluded.created_by,
                     updated_at = CASE
                         WHEN (execution_feedback.correct, execution_feedback.score, execution_feedback.comment)
                              IS NOT DISTINCT FROM (excluded.correct, excluded.score, excluded.comment)
                         THEN execution_feedback.updated_at ELSE now() END
                 RETURNING execution_id, correct, score, comment, created_by, created_at, updated_at,
                           (xmax = 0) AS inserted",
            )
            .bind(execution_id)
            .bind(new.correct)
            .bind(new.score)
            .bind(&new.comment)
            .bind(by)
            .fetch_one(&self.pool)
            .await?;
            (u.row, u.inserted)
        };
        Ok((row.into(), inserted))
    }

    async fn get_feedback(&self, execution_id: Uuid) -> Result<Feedback> {
        let row: FeedbackRow = sqlx::query_as(
            "SELECT execution_id, correct, score, comment, created_by, created_at, updated_at
             FROM execution_feedback WHERE execution_id = $1",
        )
        .bind(execution_id)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::not_found("feedback"))?;
        Ok(row.into())
    }

    async fn variant_stats(
        &self,
        workflow_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<VariantStats>> {
        let rows: Vec<StatsRow> = sqlx::query_as(
            "WITH e AS (
                 SELECT e.version_id, e.route ->> 'chosen_by' AS path, e.status, e.latency_us,
                        e.prompt_tokens + e.completion_tokens AS tokens, e.cost_usd,
                        f.execution_id IS NOT NULL AS has_feedback, f.correct, f.score
                 FROM executions e LEFT JOIN execution_feedback f ON f.execution_id = e.id
                 WHERE e.workflow_id = $1 AND e.created_at >= $2 AND e.created_at < $3
                   AND e.route ->> 'chosen_by' IN ('policy', 'shadow'))
             SELECT e.version_id, v.number AS version_number, e.path,
                    count(*) AS requests,
                    count(*) FILTER (WHERE e.status = 'failed') AS errors,
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY e.latency_us) AS p50_us,
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY e.latency_us) AS p95_us,
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY e.latency_us) AS p99_us,
                    avg(e.tokens)::float8 AS tokens_per_run,
                    avg(e.cost_usd) AS cost_per_run,
                    count(*) FILTER (WHERE e.has_feedback) AS feedback_count,
                    avg(coalesce(e.score, e.correct::int::float8)) AS feedback_mean,
                    count(*) FILTER (WHERE e.correct) AS correct,
                    count(e.correct) AS correct_n,
                    count(e.score) AS score_n,
                    avg(e.score) AS score_mean,
                    var_samp(e.score) AS score_variance
             FROM e JOIN workflow_versions v ON v.id = e.version_id
             GROUP BY e.version_id, v.number, e.path
             ORDER BY e.path, v.number",
        )
        .bind(workflow_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let path = match r.path.as_str() {
                    "policy" => RoutePath::Policy,
                    "shadow" => RoutePath::Shadow,
                    other => return Err(StoreError::Corrupt(format!("unknown route path {other:?}"))),
                };
                let ms = |us: Option<f64>| us.map(|v| v / 1000.0);
                Ok(VariantStats {
                    version_id: r.version_id,
                    version_number: r.version_number,
                    path,
                    requests: to_u64(r.requests),
                    errors: to_u64(r.errors),
                    latency_p50_ms: ms(r.p50_us),
                    latency_p95_ms: ms(r.p95_us),
                    latency_p99_ms: ms(r.p99_us),
                    tokens_per_run: r.tokens_per_run,
                    cost_per_run_usd: r.cost_per_run,
                    feedback_count: to_u64(r.feedback_count),
                    feedback_mean: r.feedback_mean,
                    correct: to_u64(r.correct),
                    correct_n: to_u64(r.correct_n),
                    score_n: to_u64(r.score_n),
                    score_mean: r.score_mean,
                    score_variance: r.score_variance,
                })
            })
            .collect()
    }
}
