//! Compile jobs: a queue job of kind [`COMPILE_JOB_KIND`] plus the compile's own state — the
//! request, the preflight estimate, live progress, the last checkpoint, the iteration log and
//! the result.
//!
//! Submitting writes the job and its state in one transaction; finishing ends the queue job and
//! records the result in one transaction conditional on the worker still owning the job, so a
//! compile's result is recorded exactly once even after crashes and re-claims. The records hold
//! the compiler's types as JSON: the store does not depend on the compiler.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::Result;
use crate::jobs::{CancelOutcome, FailOutcome, JobStatus, Retry};
use crate::page::{Page, PageRequest};

/// The job kind of compile jobs.
pub const COMPILE_JOB_KIND: &str = "compile";

/// The payload of a compile job in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompilePayload {
    pub compile_job_id: Uuid,
}

/// What a caller provides to submit a compile job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewCompileJob {
    pub id: Uuid,
    /// Name of the workflow the result becomes a version of (created on success if new).
    pub workflow: String,
    /// The API's request, as submitted (it holds the compiler's request and the service extras).
    pub request: Value,
    /// The preflight estimate.
    pub estimate: Value,
    /// Claims of the queue job (re-claims after crashed workers count).
    pub max_attempts: u32,
}

/// A stored compile job. The JSON columns hold the compiler's and the service's types; the API
/// reads them back into those types to document and serve them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompileJob {
    pub id: Uuid,
    pub workflow: String,
    pub request: Value,
    pub status: JobStatus,
    /// `perfect`, `budget`, `deadline`, `cancelled`, `no_progress` or `error`, once finished.
    pub stop_reason: Option<String>,
    /// The stop reason in words.
    pub stop_detail: Option<String>,
    /// Iteration, best score, score history, calls, tokens, cost, elapsed.
    pub progress: Value,
    pub estimate: Value,
    /// The compiled version, once succeeded.
    pub result_version_id: Option<Uuid>,
    pub error: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Filters of [`CompileJobRepo::list_compile_jobs`]; all optional, combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompileJobFilter {
    pub workflow: Option<String>,
    pub status: Option<JobStatus>,
}

/// How a compile ended, recorded by [`CompileJobRepo::finish_compile_job`].
#[derive(Debug, Clone, PartialEq)]
pub struct CompileEnd {
    /// `succeeded`, `failed` or `cancelled`.
    pub status: JobStatus,
    pub stop_reason: Option<String>,
    pub stop_detail: Option<String>,
    pub result_version_id: Option<Uuid>,
    pub error: Option<Value>,
    pub progress: Value,
}

#[async_trait]
pub trait CompileJobRepo: Send + Sync {
    /// Writes the compile job's state and its queue job atomically.
    async fn submit_compile_job(&self, new: &NewCompileJob) -> Result<CompileJob>;

    async fn get_compile_job(&self, id: Uuid) -> Result<CompileJob>;

    /// Newest first, a page at a time (keyset on `(created_at, id)`, so jobs submitted while a
    /// client pages through neither shift nor repeat the pages it has yet to read).
    async fn list_compile_jobs(
        &self,
        filter: &CompileJobFilter,
        page: &PageRequest,
    ) -> Result<Page<CompileJob>>;

    /// Marks the job running; returns its last checkpoint (to resume from), if any. The
    /// checkpoint comes back with its object keys in the order they were saved in.
    async fn start_compile_job(&self, id: Uuid) -> Result<Option<Value>>;

    /// Stores the latest checkpoint and the iteration records it contains (records already
    /// stored are kept as they are).
    async fn save_compile_checkpoint(
        &self,
        id: Uuid,
        checkpoint: &Value,
        records: &[(u32, Value)],
    ) -> Result<()>;

    async fn update_compile_progress(&self, id: Uuid, progress: &Value) -> Result<()>;

    /// The iteration records, in order.
    async fn list_compile_iterations(&self, id: Uuid) -> Result<Vec<Value>>;

    /// Ends the queue job and records the end if `worker` still owns it; false otherwise.
    async fn finish_compile_job(&self, id: Uuid, worker: &str, end: &CompileEnd) -> Result<bool>;

    /// Records a failed attempt; the compile reads `failed` (or `cancelled`) when no retry is left.
    async fn fail_compile_job(
        &self,
        id: Uuid,
        worker: &str,
        error: &Value,
        retry: Retry,
    ) -> Result<FailOutcome>;

    /// Settles a compile whose queue job ended without its worker ([`crate::JobQueue::reap_expired`]):
    /// `failed` with `error`, or `cancelled`. A compile that already ended is left alone.
    async fn settle_compile_job(&self, id: Uuid, status: JobStatus, error: Option<&Value>) -> Result<()>;

    /// Cancels a queued compile at once; asks a running one to stop.
    async fn cancel_compile_job(&self, id: Uuid) -> Result<CancelOutcome>;
}
