//! [`FeedbackRepo`] on Postgres: feedback upserts and per-variant statistics computed in SQL
//! straight from the execution log.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::PgStore;
use crate::error::{Result, StoreError};
use crate::feedback::{Feedback, FeedbackRepo, NewFeedback, VariantStats, check_feedback};
use crate::rows::feedback::{FeedbackRow, PgStatsRow, feedback_columns};

#[async_trait]
impl FeedbackRepo for PgStore {
    async fn put_feedback(
        &self,
        execution_id: Uuid,
        new: &NewFeedback,
        by: Option<&str>,
    ) -> Result<(Feedback, bool)> {
        check_feedback(new)?;
        // `xmax = 0` tells an inserted row from an updated one.
        let (row, inserted): (FeedbackRow, bool) = {
            #[derive(sqlx::FromRow)]
            struct Upserted {
                #[sqlx(flatten)]
                row: FeedbackRow,
                inserted: bool,
            }
            let u: Upserted = sqlx::query_as(concat!(
                "INSERT INTO execution_feedback (execution_id, correct, score, comment, created_by)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (execution_id) DO UPDATE
                 SET correct = excluded.correct, score = excluded.score, comment = excluded.comment,
                     created_by = excluded.created_by,
                     updated_at = CASE
                         WHEN (execution_feedback.correct, execution_feedback.score, execution_feedback.comment)
                              IS NOT DISTINCT FROM (excluded.correct, excluded.score, excluded.comment)
                         THEN execution_feedback.updated_at ELSE now() END
                 RETURNING ", feedback_columns!(), ", (xmax = 0) AS inserted"),
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
        let row: FeedbackRow = sqlx::query_as(concat!(
            "SELECT ",
            feedback_columns!(),
            " FROM execution_feedback WHERE execution_id = $1"
        ))
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
        let rows: Vec<PgStatsRow> = sqlx::query_as(
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
        rows.into_iter().map(VariantStats::try_from).collect()
    }
}
