//! [`ExecutionRepo`] on SQLite.
//!
//! Every write is one guarded statement on the single writer connection (`queued → running →
//! terminal` is decided by the `WHERE` of the `UPDATE`), so concurrent finishers cannot both
//! win, as on Postgres. A synchronous execute costs one INSERT: the timestamps are bound from
//! Rust, so nothing needs to be read back.

use async_trait::async_trait;
use chrono::SubsecRound;
use sqlx::SqliteExecutor;
use uuid::Uuid;

use super::{SqliteStore, now};
use crate::error::{Result, StoreError};
use crate::executions::{
    Execution, ExecutionFilter, ExecutionMode, ExecutionOutcome, ExecutionRepo, ExecutionStatus, NewExecution,
};
use crate::page::{self, CursorKind, Page, PageRequest};
use crate::pg::to_i64;
use crate::rows::executions::{ExecutionRow, initial_outcome, recorded};

/// The INSERT behind [`ExecutionRepo::insert_execution`] and `submit_run` (which sets
/// `job_id`), on the writer or inside a transaction of [`SqliteStore::begin`].
pub(super) async fn insert_with_job<'e>(
    executor: impl SqliteExecutor<'e>,
    new: NewExecution,
    job_id: Option<Uuid>,
) -> Result<Execution> {
    let outcome = initial_outcome(&new)?;
    let created_at = now();
    let finished_at = outcome.status.is_terminal().then_some(created_at);
    // The caller's clock reading, at the precision every stored instant has.
    let started_at = new.started_at.map(|t| t.trunc_subsecs(6));
    sqlx::query(
        "INSERT INTO executions
            (id, workflow_id, version_id, mode, status, inputs, output, error, trace, latency_us,
             prompt_tokens, completion_tokens, cost_usd, route, job_id, created_at, started_at, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
    )
    .bind(new.id)
    .bind(new.workflow_id)
    .bind(new.version_id)
    .bind(new.mode.as_str())
    .bind(outcome.status.as_str())
    .bind(&new.inputs)
    .bind(&outcome.output)
    .bind(&outcome.error)
    .bind(&outcome.trace)
    .bind(outcome.latency_us.map(to_i64))
    .bind(to_i64(outcome.usage.prompt_tokens))
    .bind(to_i64(outcome.usage.completion_tokens))
    .bind(outcome.usage.cost_usd)
    .bind(&new.route)
    .bind(job_id)
    .bind(created_at)
    .bind(started_at)
    .bind(finished_at)
    .execute(executor)
    .await
    // The only foreign key is the (workflow, version) pair, as on Postgres.
    .map_err(StoreError::missing_parent("version"))?;
    Ok(recorded(new, job_id, (created_at, started_at, finished_at)))
}

/// `queued | running → terminal`, at most once; on the writer or inside a transaction.
pub(super) async fn finish_in<'e>(
    executor: impl SqliteExecutor<'e>,
    id: Uuid,
    outcome: &ExecutionOutcome,
) -> Result<bool> {
    outcome.check()?;
    let done = sqlx::query(
        "UPDATE executions
         SET status = $2, output = $3, error = $4, trace = $5, latency_us = $6,
             prompt_tokens = $7, completion_tokens = $8, cost_usd = $9, finished_at = $10
         WHERE id = $1 AND status IN ('queued', 'running')",
    )
    .bind(id)
    .bind(outcome.status.as_str())
    .bind(&outcome.output)
    .bind(&outcome.error)
    .bind(&outcome.trace)
    .bind(outcome.latency_us.map(to_i64))
    .bind(to_i64(outcome.usage.prompt_tokens))
    .bind(to_i64(outcome.usage.completion_tokens))
    .bind(outcome.usage.cost_usd)
    .bind(now())
    .execute(executor)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[async_trait]
impl ExecutionRepo for SqliteStore {
    async fn insert_execution(&self, new: NewExecution) -> Result<Execution> {
        insert_with_job(&self.writer, new, None).await
    }

    async fn get_execution(&self, id: Uuid) -> Result<Execution> {
        let row: ExecutionRow = sqlx::query_as(
            "SELECT id, workflow_id, version_id, mode, status, inputs, output, error, trace, latency_us,
                    prompt_tokens, completion_tokens, cost_usd, route, job_id, created_at, started_at,
                    finished_at
             FROM executions WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&self.reader)
        .await
        .map_err(StoreError::not_found("execution"))?;
        row.try_into()
    }

    async fn list_executions(&self, filter: &ExecutionFilter, page: &PageRequest) -> Result<Page<Execution>> {
        let after = page::decode_time(CursorKind::Executions, page.cursor.as_deref())?;
        let rows: Vec<ExecutionRow> = sqlx::query_as(
            "SELECT id, workflow_id, version_id, mode, status, inputs, output, error, NULL AS trace,
                    latency_us, prompt_tokens, completion_tokens, cost_usd, route, job_id, created_at,
                    started_at, finished_at
             FROM executions
             WHERE ($1 IS NULL OR workflow_id = $1)
               AND ($2 IS NULL OR version_id = $2)
               AND ($3 IS NULL OR status = $3)
               AND ($4 IS NULL OR mode = $4)
               AND ($5 IS NULL OR created_at >= $5)
               AND ($6 IS NULL OR created_at < $6)
               AND ($7 IS NULL OR (created_at, id) < ($7, $8))
             ORDER BY created_at DESC, id DESC
             LIMIT $9",
        )
        .bind(filter.workflow_id)
        .bind(filter.version_id)
        .bind(filter.status.map(ExecutionStatus::as_str))
        .bind(filter.mode.map(ExecutionMode::as_str))
        .bind(filter.created_after)
        .bind(filter.created_before)
        .bind(after.map(|(at, _)| at))
        .bind(after.map(|(_, id)| id))
        .bind(page.fetch())
        .fetch_all(&self.reader)
        .await?;
        let rows = rows.into_iter().map(Execution::try_from).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(rows, page, |e| page::encode_time(CursorKind::Executions, e.created_at, e.id)))
    }

    async fn start_execution(&self, id: Uuid) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE executions SET status = 'running', started_at = coalesce(started_at, $2)
             WHERE id = $1 AND status IN ('queued', 'running')",
        )
        .bind(id)
        .bind(now())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish_execution(&self, id: Uuid, outcome: &ExecutionOutcome) -> Result<bool> {
        finish_in(&self.writer, id, outcome).await
    }
}
