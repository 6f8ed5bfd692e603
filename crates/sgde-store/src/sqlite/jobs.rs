//! [`JobQueue`] on SQLite.
//!
//! As on Postgres, every transition is a single `UPDATE … WHERE <guard> RETURNING`, and every
//! way out of `running` requires `lease_owner = $worker AND status = 'running'`, so endings
//! happen exactly once. What `FOR UPDATE SKIP LOCKED` gives the claim on Postgres comes here from
//! the single writer connection: claimers queue for it one at a time, and each claim selects
//! the oldest ready job and takes it in one statement, so no two claimers ever see the same job
//! as ready. Lease expiry is compared with the time bound from Rust, so a job whose lease ran
//! out is claimable again exactly as on Postgres.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{SqliteConnection, SqliteExecutor};
use uuid::Uuid;

use super::{SqliteStore, after, now};
use crate::error::{Result, StoreError};
use crate::jobs::{
    CancelOutcome, FailOutcome, Heartbeat, Job, JobQueue, JobStatus, NewJob, QueueStats, Retry,
};
use crate::rows::jobs::{JobRow, cancel_outcome, fail_outcome, heartbeat, max_attempts, retry_parts};

/// Enqueues a job on the writer or inside a transaction of [`SqliteStore::begin`], so that the
/// job exists if and only if the caller's other writes commit.
pub(super) async fn enqueue_in<'e>(executor: impl SqliteExecutor<'e>, job: &NewJob) -> Result<Job> {
    let max_attempts = max_attempts(job)?;
    let row: JobRow = sqlx::query_as(
        "INSERT INTO jobs (id, kind, payload, max_attempts, run_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6)
         RETURNING id, kind, payload, status, attempts, max_attempts, run_at, lease_owner, lease_expires_at,
                   cancel_requested, last_error, result, created_at, updated_at, started_at, finished_at",
    )
    .bind(job.id)
    .bind(&job.kind)
    .bind(&job.payload)
    .bind(max_attempts)
    .bind(after(job.delay))
    .bind(now())
    .fetch_one(executor)
    .await?;
    row.try_into()
}

/// Ends a running job the worker owns with `status` (`succeeded` or `cancelled`); false if the
/// worker is no longer the owner.
pub(super) async fn end_job<'e>(
    executor: impl SqliteExecutor<'e>,
    id: Uuid,
    worker: &str,
    status: JobStatus,
    result: Option<&Value>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE jobs
         SET status = $3, result = $4, lease_owner = NULL, lease_expires_at = NULL,
             finished_at = $5, updated_at = $5
         WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(worker)
    .bind(status.as_str())
    .bind(result)
    .bind(now())
    .execute(executor)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a failed attempt (see [`JobQueue::fail_job`]).
pub(super) async fn fail_in<'e>(
    executor: impl SqliteExecutor<'e>,
    id: Uuid,
    worker: &str,
    error: &Value,
    retry: Retry,
) -> Result<FailOutcome> {
    let (may_retry, backoff) = retry_parts(retry);
    let row: Option<(String, DateTime<Utc>)> = sqlx::query_as(
        "UPDATE jobs
         SET status = CASE WHEN cancel_requested THEN 'cancelled'
                           WHEN $4 AND attempts < max_attempts THEN 'queued'
                           ELSE 'failed' END,
             run_at = CASE WHEN NOT cancel_requested AND $4 AND attempts < max_attempts
                           THEN $5 ELSE run_at END,
             finished_at = CASE WHEN NOT cancel_requested AND $4 AND attempts < max_attempts
                                THEN NULL ELSE $6 END,
             last_error = $3, lease_owner = NULL, lease_expires_at = NULL, updated_at = $6
         WHERE id = $1 AND lease_owner = $2 AND status = 'running'
         RETURNING status, run_at",
    )
    .bind(id)
    .bind(worker)
    .bind(error)
    .bind(may_retry)
    .bind(after(backoff))
    .bind(now())
    .fetch_optional(executor)
    .await?;
    fail_outcome(row)
}

/// Cancels a job (see [`JobQueue::cancel_job`]). On the writer connection, so nothing can
/// change the job between the update and the read of a finished job's status.
pub(super) async fn cancel_in(conn: &mut SqliteConnection, id: Uuid) -> Result<CancelOutcome> {
    let status: Option<String> = sqlx::query_scalar(
        "UPDATE jobs
         SET status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
             finished_at = CASE WHEN status = 'queued' THEN $2 ELSE finished_at END,
             cancel_requested = true, updated_at = $2
         WHERE id = $1 AND status IN ('queued', 'running')
         RETURNING status",
    )
    .bind(id)
    .bind(now())
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(status) = status {
        return cancel_outcome(&status);
    }
    let status: String = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *conn)
        .await
        .map_err(StoreError::not_found("job"))?;
    Ok(CancelOutcome::AlreadyFinished(JobStatus::parse(&status)?))
}

#[async_trait]
impl JobQueue for SqliteStore {
    async fn enqueue(&self, job: &NewJob) -> Result<Job> {
        enqueue_in(&self.writer, job).await
    }

    async fn get_job(&self, id: Uuid) -> Result<Job> {
        let row: JobRow = sqlx::query_as(
            "SELECT id, kind, payload, status, attempts, max_attempts, run_at, lease_owner, lease_expires_at,
                    cancel_requested, last_error, result, created_at, updated_at, started_at, finished_at
             FROM jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&self.reader)
        .await
        .map_err(StoreError::not_found("job"))?;
        row.try_into()
    }

    async fn claim(&self, kinds: &[&str], worker: &str, lease: Duration) -> Result<Option<Job>> {
        // One statement on the one writer: the job the subquery picks is taken before any other
        // claimer runs, which is what SKIP LOCKED achieves on Postgres. The partial indexes on
        // queued and running jobs serve the two halves of the OR.
        let row: Option<JobRow> = sqlx::query_as(
            "UPDATE jobs
             SET status = 'running', attempts = attempts + 1, lease_owner = $2,
                 lease_expires_at = $3, updated_at = $4, started_at = coalesce(started_at, $4)
             WHERE id = (
                 SELECT id FROM jobs
                 WHERE kind IN (SELECT value FROM json_each($1))
                   AND ((status = 'queued' AND run_at <= $4)
                     OR (status = 'running' AND lease_expires_at < $4
                         AND attempts < max_attempts AND NOT cancel_requested))
                 ORDER BY run_at, id
                 LIMIT 1)
             RETURNING id, kind, payload, status, attempts, max_attempts, run_at, lease_owner,
                       lease_expires_at, cancel_requested, last_error, result, created_at, updated_at,
                       started_at, finished_at",
        )
        .bind(Json(kinds))
        .bind(worker)
        .bind(after(lease))
        .bind(now())
        .fetch_optional(&self.writer)
        .await?;
        row.map(Job::try_from).transpose()
    }

    async fn heartbeat(&self, id: Uuid, worker: &str, lease: Duration) -> Result<Heartbeat> {
        let cancel_requested: Option<bool> = sqlx::query_scalar(
            "UPDATE jobs SET lease_expires_at = $3, updated_at = $4
             WHERE id = $1 AND lease_owner = $2 AND status = 'running'
             RETURNING cancel_requested",
        )
        .bind(id)
        .bind(worker)
        .bind(after(lease))
        .bind(now())
        .fetch_optional(&self.writer)
        .await?;
        Ok(heartbeat(cancel_requested))
    }

    async fn complete_job(&self, id: Uuid, worker: &str, result: &Value) -> Result<bool> {
        end_job(&self.writer, id, worker, JobStatus::Succeeded, Some(result)).await
    }

    async fn fail_job(&self, id: Uuid, worker: &str, error: &Value, retry: Retry) -> Result<FailOutcome> {
        fail_in(&self.writer, id, worker, error, retry).await
    }

    async fn cancel_job(&self, id: Uuid) -> Result<CancelOutcome> {
        let mut conn = self.writer.acquire().await?;
        cancel_in(&mut conn, id).await
    }

    async fn ack_cancel(&self, id: Uuid, worker: &str) -> Result<bool> {
        end_job(&self.writer, id, worker, JobStatus::Cancelled, None).await
    }

    async fn release_leases(&self, worker: &str) -> Result<u64> {
        // The attempt is given back: a graceful shutdown is not the job's fault. A pending
        // cancel stays set, so whoever claims the job next sees it at once.
        let done = sqlx::query(
            "UPDATE jobs
             SET status = 'queued', attempts = max(attempts - 1, 0), run_at = $2,
                 lease_owner = NULL, lease_expires_at = NULL, updated_at = $2
             WHERE lease_owner = $1 AND status = 'running'",
        )
        .bind(worker)
        .bind(now())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    async fn reap_expired(&self) -> Result<Vec<Job>> {
        // `json(last_error)` nests the previous error as JSON rather than as a string.
        let rows: Vec<JobRow> = sqlx::query_as(
            "UPDATE jobs
             SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'failed' END,
                 last_error = CASE WHEN cancel_requested THEN last_error
                                   ELSE json_object(
                                       'code', 'lease_expired',
                                       'message', 'the worker stopped heartbeating and no attempts remain',
                                       'previous', json(last_error)) END,
                 lease_owner = NULL, lease_expires_at = NULL, finished_at = $1, updated_at = $1
             WHERE status = 'running' AND lease_expires_at < $1
               AND (attempts >= max_attempts OR cancel_requested)
             RETURNING id, kind, payload, status, attempts, max_attempts, run_at, lease_owner,
                       lease_expires_at, cancel_requested, last_error, result, created_at, updated_at,
                       started_at, finished_at",
        )
        .bind(now())
        .fetch_all(&self.writer)
        .await?;
        rows.into_iter().map(Job::try_from).collect()
    }

    async fn queue_stats(&self, kind: &str) -> Result<QueueStats> {
        // SQLite cannot subtract timestamps: the oldest ready `run_at` comes back and the lag is
        // computed here, against the same instant the query compared with.
        let now = now();
        let (queued, ready, running, oldest): (i64, i64, i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'queued'),
                    count(*) FILTER (WHERE status = 'queued' AND run_at <= $2),
                    count(*) FILTER (WHERE status = 'running'),
                    min(run_at) FILTER (WHERE status = 'queued' AND run_at <= $2)
             FROM jobs WHERE kind = $1 AND status IN ('queued', 'running')",
        )
        .bind(kind)
        .bind(now)
        .fetch_one(&self.reader)
        .await?;
        let lag = oldest.and_then(|oldest| (now - oldest).to_std().ok()).unwrap_or(Duration::ZERO);
        Ok(QueueStats { queued, ready, running, lag })
    }
}
