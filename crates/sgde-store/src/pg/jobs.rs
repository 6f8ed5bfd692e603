//! [`JobQueue`] on Postgres.
//!
//! Every statement here is a single `UPDATE … WHERE <guard> RETURNING`, so each transition is
//! atomic without explicit transactions, and each guard states who may make it: claims take
//! only ready rows (`SKIP LOCKED`, so concurrent claimers pass each other), and every way out of
//! `running` requires `lease_owner = $worker AND status = 'running'`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{PgStore, micros};
use crate::error::{Result, StoreError};
use crate::jobs::{
    CancelOutcome, FailOutcome, Heartbeat, Job, JobQueue, JobStatus, NewJob, QueueStats, Retry,
};
use crate::rows::jobs::{JobRow, cancel_outcome, fail_outcome, heartbeat, max_attempts, retry_parts};

/// Enqueues a job on a pool or inside the caller's transaction, so that the job exists if and
/// only if the caller's other writes commit.
pub async fn enqueue_job<'e>(executor: impl PgExecutor<'e>, job: &NewJob) -> Result<Job> {
    let max_attempts = max_attempts(job)?;
    let row: JobRow = sqlx::query_as(
        "INSERT INTO jobs (id, kind, payload, max_attempts, run_at)
         VALUES ($1, $2, $3, $4, now() + $5 * interval '1 microsecond')
         RETURNING id, kind, payload, status, attempts, max_attempts, run_at, lease_owner, lease_expires_at,
                   cancel_requested, last_error, result, created_at, updated_at, started_at, finished_at",
    )
    .bind(job.id)
    .bind(&job.kind)
    .bind(&job.payload)
    .bind(max_attempts)
    .bind(micros(job.delay))
    .fetch_one(executor)
    .await?;
    row.try_into()
}

/// Ends a running job the worker owns with `status` (`succeeded` or `cancelled`); false if the
/// worker is no longer the owner.
pub(super) async fn end_job<'e>(
    executor: impl PgExecutor<'e>,
    id: Uuid,
    worker: &str,
    status: JobStatus,
    result: Option<&Value>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE jobs
         SET status = $3, result = $4, lease_owner = NULL, lease_expires_at = NULL,
             finished_at = now(), updated_at = now()
         WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(worker)
    .bind(status.as_str())
    .bind(result)
    .execute(executor)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a failed attempt (see [`JobQueue::fail_job`]).
pub(super) async fn fail_in<'e>(
    executor: impl PgExecutor<'e>,
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
                           THEN now() + $5 * interval '1 microsecond' ELSE run_at END,
             finished_at = CASE WHEN NOT cancel_requested AND $4 AND attempts < max_attempts
                                THEN NULL ELSE now() END,
             last_error = $3, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
         WHERE id = $1 AND lease_owner = $2 AND status = 'running'
         RETURNING status, run_at",
    )
    .bind(id)
    .bind(worker)
    .bind(error)
    .bind(may_retry)
    .bind(micros(backoff))
    .fetch_optional(executor)
    .await?;
    fail_outcome(row)
}

/// Cancels a job (see [`JobQueue::cancel_job`]).
pub(super) async fn cancel_in(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<CancelOutcome> {
    let status: Option<String> = sqlx::query_scalar(
        "UPDATE jobs
         SET status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
             finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END,
             cancel_requested = true, updated_at = now()
         WHERE id = $1 AND status IN ('queued', 'running')
         RETURNING status",
    )
    .bind(id)
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
impl JobQueue for PgStore {
    async fn enqueue(&self, job: &NewJob) -> Result<Job> {
        enqueue_job(&self.pool, job).await
    }

    async fn get_job(&self, id: Uuid) -> Result<Job> {
        let row: JobRow = sqlx::query_as(
            "SELECT id, kind, payload, status, attempts, max_attempts, run_at, lease_owner, lease_expires_at,
                    cancel_requested, last_error, result, created_at, updated_at, started_at, finished_at
             FROM jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::not_found("job"))?;
        row.try_into()
    }

    async fn claim(&self, kinds: &[&str], worker: &str, lease: Duration) -> Result<Option<Job>> {
        // The inner SELECT is evaluated once (an InitPlan); SKIP LOCKED makes concurrent
        // claimers skip rows another claimer is about to take instead of queueing behind it.
        let row: Option<JobRow> = sqlx::query_as(
            "UPDATE jobs
             SET status = 'running', attempts = attempts + 1, lease_owner = $2,
                 lease_expires_at = now() + $3 * interval '1 microsecond', updated_at = now(),
                 started_at = coalesce(started_at, now())
             WHERE id = (
                 SELECT id FROM jobs
                 WHERE kind = ANY($1)
                   AND ((status = 'queued' AND run_at <= now())
                     OR (status = 'running' AND lease_expires_at < now()
                         AND attempts < max_attempts AND NOT cancel_requested))
                 ORDER BY run_at, id
                 LIMIT 1
                 FOR UPDATE SKIP LOCKED)
             RETURNING id, kind, payload, status, attempts, max_attempts, run_at, lease_owner,
                       lease_expires_at, cancel_requested, last_error, result, created_at, updated_at,
                       started_at, finished_at",
        )
        .bind(kinds)
        .bind(worker)
        .bind(micros(lease))
        .fetch_optional(&self.pool)
        .await?;
        row.map(Job::try_from).transpose()
    }

    async fn heartbeat(&self, id: Uuid, worker: &str, lease: Duration) -> Result<Heartbeat> {
        let cancel_requested: Option<bool> = sqlx::query_scalar(
            "UPDATE jobs SET lease_expires_at = now() + $3 * interval '1 microsecond', updated_at = now()
             WHERE id = $1 AND lease_owner = $2 AND status = 'running'
             RETURNING cancel_requested",
        )
        .bind(id)
        .bind(worker)
        .bind(micros(lease))
        .fetch_optional(&self.pool)
        .await?;
        Ok(heartbeat(cancel_requested))
    }

    async fn complete_job(&self, id: Uuid, worker: &str, result: &Value) -> Result<bool> {
        end_job(&self.pool, id, worker, JobStatus::Succeeded, Some(result)).await
    }

    async fn fail_job(&self, id: Uuid, worker: &str, error: &Value, retry: Retry) -> Result<FailOutcome> {
        fail_in(&self.pool, id, worker, error, retry).await
    }

    async fn cancel_job(&self, id: Uuid) -> Result<CancelOutcome> {
        let mut conn = self.pool.acquire().await?;
        cancel_in(&mut conn, id).await
    }

    async fn ack_cancel(&self, id: Uuid, worker: &str) -> Result<bool> {
        end_job(&self.pool, id, worker, JobStatus::Cancelled, None).await
    }

    async fn release_leases(&self, worker: &str) -> Result<u64> {
        // The attempt is given back: a graceful shutdown is not the job's fault. A pending
        // cancel stays set, so whoever claims the job next sees it at once.
        let done = sqlx::query(
            "UPDATE jobs
             SET status = 'queued', attempts = greatest(attempts - 1, 0), run_at = now(),
                 lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
             WHERE lease_owner = $1 AND status = 'running'",
        )
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn reap_expired(&self) -> Result<Vec<Job>> {
        let rows: Vec<JobRow> = sqlx::query_as(
            "UPDATE jobs
             SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'failed' END,
                 last_error = CASE WHEN cancel_requested THEN last_error
                                   ELSE jsonb_build_object(
                                       'code', 'lease_expired',
                                       'message', 'the worker stopped heartbeating and no attempts remain',
                                       'previous', last_error) END,
                 lease_owner = NULL, lease_expires_at = NULL, finished_at = now(), updated_at = now()
             WHERE id IN (
                 SELECT id FROM jobs
                 WHERE status = 'running' AND lease_expires_at < now()
                   AND (attempts >= max_attempts OR cancel_requested)
                 FOR UPDATE SKIP LOCKED)
             RETURNING id, kind, payload, status, attempts, max_attempts, run_at, lease_owner,
                       lease_expires_at, cancel_requested, last_error, result, created_at, updated_at,
                       started_at, finished_at",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Job::try_from).collect()
    }

    async fn queue_stats(&self, kind: &str) -> Result<QueueStats> {
        let (queued, ready, running, lag_us): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'queued'),
                    count(*) FILTER (WHERE status = 'queued' AND run_at <= now()),
                    count(*) FILTER (WHERE status = 'running'),
                    coalesce((extract(epoch FROM now() - min(run_at) FILTER (
                        WHERE status = 'queued' AND run_at <= now())) * 1000000)::int8, 0)
             FROM jobs WHERE kind = $1 AND status IN ('queued', 'running')",
        )
        .bind(kind)
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueStats {
            queued,
            ready,
            running,
            lag: Duration::from_micros(u64::try_from(lag_us).unwrap_or(0)),
        })
    }
}
