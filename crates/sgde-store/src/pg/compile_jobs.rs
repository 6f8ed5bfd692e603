//! [`CompileJobRepo`] on Postgres: table `compile_jobs` beside its queue job in `jobs`.

use async_trait::async_trait;
use serde_json::Value;
use uuid::Uuid;

use super::PgStore;
use super::jobs::{cancel_in, end_job, enqueue_job, fail_in};
use crate::compile_jobs::{CompileEnd, CompileJob, CompileJobFilter, CompileJobRepo, NewCompileJob};
use crate::error::{Result, StoreError};
use crate::jobs::{CancelOutcome, FailOutcome, JobStatus, Retry};
use crate::page::{self, CursorKind, Page, PageRequest};
use crate::rows::compile_jobs::{
    CompileJobRow, checkpoint_text, iteration, queue_job, queue_job_end, stored_checkpoint,
};

/// Sets the compile's status after its queue job ended without a result.
async fn settle<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    id: Uuid,
    status: JobStatus,
    error: Option<&Value>,
) -> Result<()> {
    sqlx::query(
        "UPDATE compile_jobs SET status = $2, error = coalesce($3, error),
             stop_reason = coalesce(stop_reason, CASE WHEN $2 = 'cancelled' THEN 'cancelled' ELSE 'error' END),
             updated_at = now(), finished_at = now()
         WHERE id = $1 AND status IN ('queued', 'running')",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(error)
    .execute(executor)
    .await?;
    Ok(())
}

#[async_trait]
impl CompileJobRepo for PgStore {
    async fn submit_compile_job(&self, new: &NewCompileJob) -> Result<CompileJob> {
        let mut tx = self.pool.begin().await?;
        enqueue_job(&mut *tx, &queue_job(new)).await?;
        let row: CompileJobRow = sqlx::query_as(
            "INSERT INTO compile_jobs (id, workflow, request, estimate) VALUES ($1, $2, $3, $4)
             RETURNING id, workflow, request, status, stop_reason, stop_detail, progress, estimate,
                       result_version_id, error, created_at, updated_at, finished_at",
        )
        .bind(new.id)
        .bind(&new.workflow)
        .bind(&new.request)
        .bind(&new.estimate)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        row.try_into()
    }

    async fn get_compile_job(&self, id: Uuid) -> Result<CompileJob> {
        let row: CompileJobRow = sqlx::query_as(
            "SELECT id, workflow, request, status, stop_reason, stop_detail, progress, estimate,
                    result_version_id, error, created_at, updated_at, finished_at
             FROM compile_jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::not_found("compile job"))?;
        row.try_into()
    }

    async fn list_compile_jobs(
        &self,
        filter: &CompileJobFilter,
        page: &PageRequest,
    ) -> Result<Page<CompileJob>> {
        let after = page::decode_time(CursorKind::CompileJobs, page.cursor.as_deref())?;
        let rows: Vec<CompileJobRow> = sqlx::query_as(
            "SELECT id, workflow, request, status, stop_reason, stop_detail, progress, estimate,
                    result_version_id, error, created_at, updated_at, finished_at
             FROM compile_jobs
             WHERE ($1::text IS NULL OR workflow = $1)
               AND ($2::text IS NULL OR status = $2)
               AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
             ORDER BY created_at DESC, id DESC
             LIMIT $5",
        )
        .bind(filter.workflow.as_deref())
        .bind(filter.status.map(JobStatus::as_str))
        .bind(after.map(|(at, _)| at))
        .bind(after.map(|(_, id)| id))
        .bind(page.fetch())
        .fetch_all(&self.pool)
        .await?;
        let jobs = rows.into_iter().map(CompileJob::try_from).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(jobs, page, |j| page::encode_time(CursorKind::CompileJobs, j.created_at, j.id)))
    }

    async fn start_compile_job(&self, id: Uuid) -> Result<Option<Value>> {
        let checkpoint: Option<Option<String>> = sqlx::query_scalar(
            "UPDATE compile_jobs SET status = 'running', updated_at = now()
             WHERE id = $1 AND status IN ('queued', 'running') RETURNING checkpoint",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        stored_checkpoint(id, checkpoint)
    }

    async fn save_compile_checkpoint(
        &self,
        id: Uuid,
        checkpoint: &Value,
        records: &[(u32, Value)],
    ) -> Result<()> {
        // As text: see the migration for why key order matters.
        let text = checkpoint_text(id, checkpoint)?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE compile_jobs SET checkpoint = $2, updated_at = now() WHERE id = $1")
            .bind(id)
            .bind(text)
            .execute(&mut *tx)
            .await?;
        for (n, record) in records {
            sqlx::query(
                "INSERT INTO compile_iterations (job_id, iteration, record) VALUES ($1, $2, $3)
                 ON CONFLICT (job_id, iteration) DO NOTHING",
            )
            .bind(id)
            .bind(iteration(*n))
            .bind(record)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn update_compile_progress(&self, id: Uuid, progress: &Value) -> Result<()> {
        sqlx::query("UPDATE compile_jobs SET progress = $2, updated_at = now() WHERE id = $1")
            .bind(id)
            .bind(progress)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn list_compile_iterations(&self, id: Uuid) -> Result<Vec<Value>> {
        // A 404 for an unknown job rather than an empty list.
        self.get_compile_job(id).await?;
        let records: Vec<Value> =
            sqlx::query_scalar("SELECT record FROM compile_iterations WHERE job_id = $1 ORDER BY iteration")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        Ok(records)
    }

    async fn finish_compile_job(&self, id: Uuid, worker: &str, end: &CompileEnd) -> Result<bool> {
        let (job_status, result) = queue_job_end(end);
        let mut tx = self.pool.begin().await?;
        if !end_job(&mut *tx, id, worker, job_status, Some(&result)).await? {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE compile_jobs SET status = $2, stop_reason = $3, stop_detail = $4,
                 result_version_id = $5, error = $6, progress = $7, updated_at = now(),
                 finished_at = now()
             WHERE id = $1",
        )
        .bind(id)
        .bind(end.status.as_str())
        .bind(end.stop_reason.as_deref())
        .bind(end.stop_detail.as_deref())
        .bind(end.result_version_id)
        .bind(end.error.as_ref())
        .bind(&end.progress)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn fail_compile_job(
        &self,
        id: Uuid,
        worker: &str,
        error: &Value,
        retry: Retry,
    ) -> Result<FailOutcome> {
        let mut tx = self.pool.begin().await?;
        let outcome = fail_in(&mut *tx, id, worker, error, retry).await?;
        match outcome {
            FailOutcome::NotOwner => return Ok(outcome),
            FailOutcome::Failed => settle(&mut *tx, id, JobStatus::Failed, Some(error)).await?,
            FailOutcome::Cancelled => settle(&mut *tx, id, JobStatus::Cancelled, None).await?,
            FailOutcome::Retrying { .. } => {
                sqlx::query(
                    "UPDATE compile_jobs SET status = 'queued', error = $2, updated_at = now()
                     WHERE id = $1 AND status = 'running'",
                )
                .bind(id)
                .bind(error)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(outcome)
    }

    async fn settle_compile_job(&self, id: Uuid, status: JobStatus, error: Option<&Value>) -> Result<()> {
        settle(&self.pool, id, status, error).await
    }

    async fn cancel_compile_job(&self, id: Uuid) -> Result<CancelOutcome> {
        let mut tx = self.pool.begin().await?;
        // Lock the compile's row first so that a concurrent finish waits for us.
        let _: Uuid = sqlx::query_scalar("SELECT id FROM compile_jobs WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::not_found("compile job"))?;
        let outcome = cancel_in(&mut tx, id).await?;
        if outcome == CancelOutcome::Cancelled {
            settle(&mut *tx, id, JobStatus::Cancelled, None).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }
}
