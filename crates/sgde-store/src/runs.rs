//! Asynchronous runs: an execution and the queue job that performs it, kept consistent.
//!
//! Accepting a run writes the `queued` execution and its job in one transaction, so an accepted
//! run always has a job and a job always has its execution. Finishing writes the execution's
//! outcome and completes the job in one transaction *conditional on the worker still owning the
//! job*, so after a crash and a re-claim only one worker's result is ever recorded. A run may
//! carry a [`FollowUp`] (its completion webhook): it is enqueued by the very transaction that
//! records the run's end — finished, failed for good, or cancelled — so it exists if and only if
//! the end does, and a crash in between cannot lose it.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::executions::{Execution, ExecutionMode, ExecutionOutcome, ExecutionStatus, NewExecution};
use crate::jobs::{FailOutcome, Job, JobStatus, NewJob, Retry};

/// The job kind of asynchronous runs.
pub const RUN_JOB_KIND: &str = "run";

/// The payload of a run job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunPayload {
    pub execution_id: Uuid,
    /// What to enqueue when the run ends, whatever the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_end: Option<FollowUp>,
}

/// A job to enqueue when a run ends (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowUp {
    pub kind: String,
    pub payload: Value,
    pub max_attempts: u32,
}

/// The follow-up a run job's payload carries, as the job to enqueue; `None` without one (or for
/// a payload written before follow-ups existed).
pub(crate) fn follow_up_of(run_payload: &Value) -> Option<NewJob> {
    let on_end = serde_json::from_value::<RunPayload>(run_payload.clone()).ok()?.on_end?;
    Some(NewJob::new(on_end.kind, on_end.payload).max_attempts(on_end.max_attempts))
}

/// What [`RunRepo::cancel_run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunCancel {
    /// It had not started; execution and job are `cancelled`.
    Cancelled,
    /// It is running; the worker will stop at its next heartbeat and record `cancelled`.
    Requested,
    /// It had already ended.
    AlreadyFinished,
}

#[async_trait]
pub trait RunRepo: Send + Sync {
    /// Writes the queued execution (`new.outcome` must be `None`) and a job of kind
    /// [`RUN_JOB_KIND`] with payload [`RunPayload`] atomically. `max_attempts` bounds re-claims
    /// after worker crashes; `on_end` is enqueued when the run ends.
    async fn submit_run(
        &self,
        new: NewExecution,
        max_attempts: u32,
        on_end: Option<FollowUp>,
    ) -> Result<(Execution, Job)>;

    /// Records the outcome and ends the job (`cancelled` for a cancelled outcome, else
    /// `succeeded`) if `worker` still owns job `job_id`; false otherwise (nothing written).
    async fn finish_run(
        &self,
        job_id: Uuid,
        worker: &str,
        execution_id: Uuid,
        outcome: &ExecutionOutcome,
    ) -> Result<bool>;

    /// Records a failed attempt of the run's job; when no retry remains the execution is marked
    /// `failed` with `error` in the same transaction.
    async fn fail_run(
        &self,
        job_id: Uuid,
        worker: &str,
        execution_id: Uuid,
        error: &Value,
        retry: Retry,
    ) -> Result<FailOutcome>;

    /// Cancels a run by execution id.
    async fn cancel_run(&self, execution_id: Uuid) -> Result<RunCancel>;
}

/// The job for a run; exposed for callers composing their own transaction.
pub fn run_job(execution_id: Uuid, max_attempts: u32, on_end: Option<FollowUp>) -> NewJob {
    let payload = serde_json::to_value(RunPayload { execution_id, on_end })
        .unwrap_or_else(|_| serde_json::json!({ "execution_id": execution_id }));
    NewJob::new(RUN_JOB_KIND, payload).max_attempts(max_attempts)
}

/// What [`RunRepo::submit_run`] writes: the execution, made asynchronous, and its job. A run
/// with an outcome is refused before anything is written.
pub(crate) fn run_to_submit(
    mut new: NewExecution,
    max_attempts: u32,
    on_end: Option<FollowUp>,
) -> Result<(NewExecution, NewJob)> {
    if new.outcome.is_some() {
        return Err(StoreError::Invalid { what: "run (a queued run has no outcome yet)" });
    }
    new.mode = ExecutionMode::Async;
    let job = run_job(new.id, max_attempts, on_end);
    Ok((new, job))
}

/// How [`RunRepo::finish_run`] ends the job for `outcome` (checked to be terminal): its status
/// and the result it records.
pub(crate) fn run_job_end(execution_id: Uuid, outcome: &ExecutionOutcome) -> Result<(JobStatus, Value)> {
    outcome.check()?;
    let status = if outcome.status == ExecutionStatus::Cancelled {
        JobStatus::Cancelled
    } else {
        JobStatus::Succeeded
    };
    let result =
        serde_json::json!({ "execution_id": execution_id, "execution_status": outcome.status.as_str() });
    Ok((status, result))
}
