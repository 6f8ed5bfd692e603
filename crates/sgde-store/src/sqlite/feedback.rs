//! [`FeedbackRepo`] on SQLite: feedback upserts and per-variant statistics computed from the
//! execution log.
//!
//! Postgres tells an inserted feedback row from a replaced one by `xmax`; here the upsert runs
//! in one write transaction after a look for the existing row, which no other writer can change
//! in between (single writer connection). SQLite has no `percentile_cont` or `var_samp`: the
//! sample variance is computed in SQL in two passes (the group's mean by a window, then the
//! squared deviations), and the latency percentiles in Rust from the group's latencies, with
//! Postgres' definition ([`crate::feedback::percentile_cont`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{SqliteStore, now};
use crate::error::{Result, StoreError};
use crate::feedback::{Feedback, FeedbackRepo, NewFeedback, VariantStats, check_feedback};
use crate::rows::feedback::{FeedbackRow, SqliteStatsRow, feedback_columns};

#[async_trait]
impl FeedbackRepo for SqliteStore {
    async fn put_feedback(
        &self,
        execution_id: Uuid,
        new: &NewFeedback,
        by: Option<&str>,
    ) -> Result<(Feedback, bool)> {
        check_feedback(new)?;
        let mut tx = self.begin().await?;
        let existed: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM execution_feedback WHERE execution_id = $1")
                .bind(execution_id)
                .fetch_optional(&mut *tx)
                .await?;
        let row: FeedbackRow = sqlx::query_as(concat!(
            "INSERT INTO execution_feedback
                 (execution_id, correct, score, comment, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (execution_id) DO UPDATE
             SET correct = excluded.correct, score = excluded.score, comment = excluded.comment,
                 created_by = excluded.created_by,
                 updated_at = CASE
                     WHEN execution_feedback.correct IS excluded.correct
                          AND execution_feedback.score IS excluded.score
                          AND execution_feedback.comment IS excluded.comment
                     THEN execution_feedback.updated_at ELSE excluded.updated_at END
             RETURNING ",
            feedback_columns!()
        ))
        .bind(execution_id)
        .bind(new.correct)
        .bind(new.score)
        .bind(&new.comment)
        .bind(by)
        .bind(now())
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::missing_parent("execution"))?;
        tx.commit().await?;
        Ok((row.into(), existed.is_none()))
    }

    async fn get_feedback(&self, execution_id: Uuid) -> Result<Feedback> {
        let row: FeedbackRow = sqlx::query_as(concat!(
            "SELECT ",
            feedback_columns!(),
            " FROM execution_feedback WHERE execution_id = $1"
        ))
        .bind(execution_id)
        .fetch_one(&self.reader)
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
        // `x / 0` is NULL in SQLite, so the variance is NULL below two scores, as `var_samp`.
        let rows: Vec<SqliteStatsRow> = sqlx::query_as(
            "WITH e AS (
                 SELECT e.version_id, e.route ->> '$.chosen_by' AS path, e.status, e.latency_us,
                        e.prompt_tokens + e.completion_tokens AS tokens, e.cost_usd,
                        f.execution_id IS NOT NULL AS has_feedback, f.correct, f.score,
                        avg(f.score) OVER (PARTITION BY e.version_id, e.route ->> '$.chosen_by')
                            AS group_score_mean
                 FROM executions e LEFT JOIN execution_feedback f ON f.execution_id = e.id
                 WHERE e.workflow_id = $1 AND e.created_at >= $2 AND e.created_at < $3
                   AND e.route ->> '$.chosen_by' IN ('policy', 'shadow'))
             SELECT e.version_id, v.number AS version_number, e.path,
                    count(*) AS requests,
                    count(*) FILTER (WHERE e.status = 'failed') AS errors,
                    json_group_array(e.latency_us) FILTER (WHERE e.latency_us IS NOT NULL) AS latencies_us,
                    avg(e.tokens) AS tokens_per_run,
                    avg(e.cost_usd) AS cost_per_run,
                    count(*) FILTER (WHERE e.has_feedback) AS feedback_count,
                    avg(coalesce(e.score, e.correct)) AS feedback_mean,
                    count(*) FILTER (WHERE e.correct) AS correct,
                    count(e.correct) AS correct_n,
                    count(e.score) AS score_n,
                    avg(e.score) AS score_mean,
                    sum((e.score - e.group_score_mean) * (e.score - e.group_score_mean)) / (count(e.score) - 1)
                        AS score_variance
             FROM e JOIN workflow_versions v ON v.id = e.version_id
             GROUP BY e.version_id, v.number, e.path
             ORDER BY e.path, v.number",
        )
        .bind(workflow_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(VariantStats::try_from).collect()
    }
}
