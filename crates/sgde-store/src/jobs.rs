//! The durable job queue: async runs now, compile jobs next.
//!
//! A job is claimed by one worker at a time under a *lease* (owner id + expiry) that the worker
//! extends by [`JobQueue::heartbeat`]. If the worker dies, the lease runs out and another worker
//! claims the job again; the attempt counts. Claiming uses `FOR UPDATE SKIP LOCKED` in a single
//! statement, so N workers polling together never block each other or claim the same job.
//!
//! Every transition out of `running` is conditional on `lease_owner = me AND status = 'running'`:
//! a worker whose lease was taken over gets `false`/[`FailOutcome::NotOwner`] and must drop its
//! result. That is what makes terminal transitions happen exactly once.
//!
//! Lifecycle:
//! ```text
//! queued ──claim──▶ running ──complete──▶ succeeded
//!   ▲                 │ │ └──fail (attempts left)──▶ queued (run_at = now + backoff)
//!   │                 │ └────fail (none left)──────▶ failed
//!   └─lease expired───┘ (re-claimed; after max_attempts only reap_expired ends it: failed)
//! queued ──cancel──▶ cancelled;  running ──cancel──▶ cancel_requested, seen at heartbeat
//! ```
//!
//! A worker loop, in short: `claim` (honour `job.cancel_requested` at once: a released job may
//! carry one) → work, calling `heartbeat` every lease/3 and stopping on `Lost` or
//! `cancel_requested` → `complete_job` / `fail_job` / `ack_cancel` (for runs:
//! [`crate::runs::RunRepo::finish_run`] / `fail_run`, which also settle the execution). Some
//! worker calls `reap_expired` periodically and settles what the returned jobs stood for; at
//! shutdown each worker calls `release_leases` for what it could not finish.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{Result, StoreError};

/// Lifecycle of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled)
    }

    pub(crate) fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            other => return Err(StoreError::Corrupt(format!("unknown job status {other:?}"))),
        })
    }
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: Uuid,
    /// What the payload means (`run`, `compile`, …); workers claim by kind.
    pub kind: String,
    pub payload: Value,
    pub status: JobStatus,
    /// Claims so far, including the current one.
    pub attempts: i32,
    pub max_attempts: i32,
    /// Not claimable before this instant (retry backoff, delayed jobs).
    pub run_at: DateTime<Utc>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub cancel_requested: bool,
    pub last_error: Option<Value>,
    pub result: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// What a caller provides to enqueue a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    pub id: Uuid,
    pub kind: String,
    pub payload: Value,
    /// At least 1.
    pub max_attempts: u32,
    /// Claimable only after this delay.
    pub delay: Duration,
}

impl NewJob {
    /// A job claimable now, with up to three attempts.
    pub fn new(kind: impl Into<String>, payload: Value) -> Self {
        Self { id: Uuid::now_v7(), kind: kind.into(), payload, max_attempts: 3, delay: Duration::ZERO }
    }

    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// Answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// The lease was extended. If `cancel_requested`, the worker should stop and call
    /// [`JobQueue::ack_cancel`].
    Extended { cancel_requested: bool },
    /// The worker no longer owns the job (its lease expired and another worker took it, or it
    /// was released): stop and drop the result.
    Lost,
}

/// Whether a failed attempt may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Requeue with `run_at = now + backoff` if attempts remain, else fail.
    After(Duration),
    /// Fail now (a permanent error: invalid payload, deleted workflow, …).
    Never,
}

/// What [`JobQueue::fail_job`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Back in the queue, claimable from `run_at`.
    Retrying { run_at: DateTime<Utc> },
    /// Terminal `failed` with the error.
    Failed,
    /// A cancel had been requested, so the job ended `cancelled` instead of retrying.
    Cancelled,
    /// The caller no longer owns the job; nothing changed.
    NotOwner,
}

/// What [`JobQueue::cancel_job`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was queued and is now `cancelled`.
    Cancelled,
    /// It is running; its worker will see the request at its next heartbeat.
    Requested,
    /// It had already ended with this status.
    AlreadyFinished(JobStatus),
}

/// Depth and lag of one kind of job, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueueStats {
    /// Queued jobs, including those waiting for a later `run_at`.
    pub queued: i64,
    /// Queued jobs whose `run_at` has passed: work waiting for a worker.
    pub ready: i64,
    pub running: i64,
    /// How long the oldest ready job has been waiting past its `run_at` (zero if none).
    pub lag: Duration,
}

#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Adds a job. To enqueue inside a caller's transaction, use [`crate::pg::enqueue_job`].
    async fn enqueue(&self, job: &NewJob) -> Result<Job>;

    async fn get_job(&self, id: Uuid) -> Result<Job>;

    /// Claims the oldest ready job of one of `kinds` (a queued job whose `run_at` has passed, or
    /// a running job whose lease expired with attempts left) for `worker` until now + `lease`.
    async fn claim(&self, kinds: &[&str], worker: &str, lease: Duration) -> Result<Option<Job>>;

    /// Extends the lease of a job `worker` still owns.
    async fn heartbeat(&self, id: Uuid, worker: &str, lease: Duration) -> Result<Heartbeat>;

    /// `running → succeeded` with `result`; false if `worker` no longer owns the job.
    async fn complete_job(&self, id: Uuid, worker: &str, result: &Value) -> Result<bool>;

    /// Records a failed attempt; retries per `retry` while attempts remain.
    async fn fail_job(&self, id: Uuid, worker: &str, error: &Value, retry: Retry) -> Result<FailOutcome>;

    /// Cancels a queued job at once; asks a running job's worker to stop.
    async fn cancel_job(&self, id: Uuid) -> Result<CancelOutcome>;

    /// `running → cancelled` after the worker saw `cancel_requested`; false if not the owner.
    async fn ack_cancel(&self, id: Uuid, worker: &str) -> Result<bool>;

    /// Puts every job `worker` holds back in the queue without counting the attempt: graceful
    /// shutdown. Returns how many were released.
    async fn release_leases(&self, worker: &str) -> Result<u64>;

    /// Ends jobs that cannot be claimed again: expired leases with no attempts left become
    /// `failed`, expired leases with a pending cancel become `cancelled`. Returns them so the
    /// caller can settle what they stood for (mark the run's execution failed, say).
    async fn reap_expired(&self) -> Result<Vec<Job>>;

    async fn queue_stats(&self, kind: &str) -> Result<QueueStats>;
}
