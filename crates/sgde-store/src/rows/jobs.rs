//! Rows of `jobs`, and what the queue's guarded statements return, read the same way on both
//! backends.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::jobs::{CancelOutcome, FailOutcome, Heartbeat, Job, JobStatus, NewJob, Retry};

#[derive(sqlx::FromRow)]
pub(crate) struct JobRow {
    id: Uuid,
    kind: String,
    payload: Value,
    status: String,
    attempts: i32,
    max_attempts: i32,
    run_at: DateTime<Utc>,
    lease_owner: Option<String>,
    lease_expires_at: Option<DateTime<Utc>>,
    cancel_requested: bool,
    last_error: Option<Value>,
    result: Option<Value>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl TryFrom<JobRow> for Job {
    type Error = StoreError;

    fn try_from(r: JobRow) -> Result<Self> {
        Ok(Job {
            id: r.id,
            kind: r.kind,
            payload: r.payload,
            status: JobStatus::parse(&r.status)?,
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            run_at: r.run_at,
            lease_owner: r.lease_owner,
            lease_expires_at: r.lease_expires_at,
            cancel_requested: r.cancel_requested,
            last_error: r.last_error,
            result: r.result,
            created_at: r.created_at,
            updated_at: r.updated_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
        })
    }
}

/// `job.max_attempts` for the `integer` column: at least 1, or `Invalid` before any SQL runs.
pub(crate) fn max_attempts(job: &NewJob) -> Result<i32> {
    i32::try_from(job.max_attempts)
        .ok()
        .filter(|n| *n > 0)
        .ok_or(StoreError::Invalid { what: "max_attempts" })
}

/// Whether a failed attempt may go back to the queue, and after how long.
pub(crate) fn retry_parts(retry: Retry) -> (bool, Duration) {
    match retry {
        Retry::After(backoff) => (true, backoff),
        Retry::Never => (false, Duration::ZERO),
    }
}

/// What a guarded fail statement returned (`status, run_at` of the job it changed, or no row
/// when the caller no longer owned the job) as a [`FailOutcome`].
pub(crate) fn fail_outcome(row: Option<(String, DateTime<Utc>)>) -> Result<FailOutcome> {
    Ok(match row {
        None => FailOutcome::NotOwner,
        Some((status, run_at)) => match JobStatus::parse(&status)? {
            JobStatus::Queued => FailOutcome::Retrying { run_at },
            JobStatus::Cancelled => FailOutcome::Cancelled,
            _ => FailOutcome::Failed,
        },
    })
}

/// The status a cancel statement left a queued or running job in, as a [`CancelOutcome`].
pub(crate) fn cancel_outcome(status: &str) -> Result<CancelOutcome> {
    Ok(match JobStatus::parse(status)? {
        JobStatus::Cancelled => CancelOutcome::Cancelled,
        _ => CancelOutcome::Requested,
    })
}

/// What a guarded heartbeat returned (the job's `cancel_requested`, or no row when the caller
/// no longer owned the job) as a [`Heartbeat`].
pub(crate) fn heartbeat(cancel_requested: Option<bool>) -> Heartbeat {
    match cancel_requested {
        Some(cancel_requested) => Heartbeat::Extended { cancel_requested },
        None => Heartbeat::Lost,
    }
}
