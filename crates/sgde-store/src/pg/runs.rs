//! [`RunRepo`] on Postgres: executions and jobs written in one transaction.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::PgStore;
use super::executions::{finish_in, insert_with_job};
use super::jobs::{cancel_in, end_job, enqueue_job, fail_in};
use crate::error::{Result, StoreError};
use crate::executions::{Execution, ExecutionOutcome, ExecutionStatus, NewExecution};
use crate::jobs::{CancelOutcome, FailOutcome, Job, Retry};
use crate::runs::{FollowUp, RunCancel, RunRepo, follow_up_of, run_job_end, run_to_submit};

#[async_trait]
impl RunRepo for PgStore {
    async fn submit_run(
        &self,
        new: NewExecution,
        max_attempts: u32,
        on_end: Option<FollowUp>,
    ) -> Result<(Execution, Job)> {
        let (new, job) = run_to_submit(new, max_attempts, on_end)?;
        let mut tx = self.pool.begin().await?;
        let execution = insert_with_job(&mut *tx, new, Some(job.id)).await?;
        let job = enqueue_job(&mut *tx, &job).await?;
        tx.commit().await?;
        Ok((execution, job))
    }

    async fn finish_run(
        &self,
        job_id: Uuid,
        worker: &str,
        execution_id: Uuid,
        outcome: &ExecutionOutcome,
    ) -> Result<bool> {
        let (job_status, result) = run_job_end(execution_id, outcome)?;
        let mut tx = self.pool.begin().await?;
        if !end_job(&mut *tx, job_id, worker, job_status, Some(&result)).await? {
            // Another worker owns the job now; its result is the one that counts.
            return Ok(false);
        }
        let recorded = finish_in(&mut *tx, execution_id, outcome).await?;
        if recorded {
            enqueue_follow_up(&mut tx, job_id).await?;
        }
        tx.commit().await?;
        Ok(recorded)
    }

    async fn fail_run(
        &self,
        job_id: Uuid,
        worker: &str,
        execution_id: Uuid,
        error: &Value,
        retry: Retry,
    ) -> Result<FailOutcome> {
        let mut tx = self.pool.begin().await?;
        let outcome = fail_in(&mut *tx, job_id, worker, error, retry).await?;
        match outcome {
            FailOutcome::NotOwner => return Ok(outcome),
            FailOutcome::Failed => {
                if finish_in(&mut *tx, execution_id, &ExecutionOutcome::failed(error.clone())).await? {
                    enqueue_follow_up(&mut tx, job_id).await?;
                }
            }
            FailOutcome::Cancelled => {
                if finish_in(&mut *tx, execution_id, &ExecutionOutcome::cancelled()).await? {
                    enqueue_follow_up(&mut tx, job_id).await?;
                }
            }
            FailOutcome::Retrying { .. } => {
                // Waiting for its next attempt, the run reads as queued again.
                sqlx::query("UPDATE executions SET status = 'queued' WHERE id = $1 AND status = 'running'")
                    .bind(execution_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(outcome)
    }

    async fn cancel_run(&self, execution_id: Uuid) -> Result<RunCancel> {
        let mut tx = self.pool.begin().await?;
        let (status, job_id): (String, Option<Uuid>) =
            sqlx::query_as("SELECT status, job_id FROM executions WHERE id = $1 FOR UPDATE")
                .bind(execution_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::not_found("execution"))?;
        if ExecutionStatus::parse(&status)?.is_terminal() {
            return Ok(RunCancel::AlreadyFinished);
        }
        let job = match job_id {
            Some(job_id) => cancel_in(&mut tx, job_id).await?,
            // Not terminal and no job: nothing will ever run it.
            None => CancelOutcome::Cancelled,
        };
        let result = match job {
            CancelOutcome::Requested => RunCancel::Requested,
            // Queued: nobody will run it. Already ended: the job was settled (reaped, say) without
            // its execution; settle that now.
            CancelOutcome::Cancelled | CancelOutcome::AlreadyFinished(_) => {
                if finish_in(&mut *tx, execution_id, &ExecutionOutcome::cancelled()).await?
                    && let Some(job_id) = job_id
                {
                    enqueue_follow_up(&mut tx, job_id).await?;
                }
                RunCancel::Cancelled
            }
        };
        tx.commit().await?;
        Ok(result)
    }
}

/// Enqueues the follow-up the run job `job_id` carries, if any, inside the transaction that
/// records the run's end.
async fn enqueue_follow_up(conn: &mut PgConnection, job_id: Uuid) -> Result<()> {
    let payload: Value = sqlx::query_scalar("SELECT payload FROM jobs WHERE id = $1")
        .bind(job_id)
        .fetch_one(&mut *conn)
        .await?;
    if let Some(job) = follow_up_of(&payload) {
        enqueue_job(&mut *conn, &job).await?;
    }
    Ok(())
}
