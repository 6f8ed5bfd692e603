//! Rows of `compile_jobs`, the stored checkpoint, and the queue job behind a compile, shared by
//! both backends.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::compile_jobs::{COMPILE_JOB_KIND, CompileEnd, CompileJob, NewCompileJob};
use crate::error::{Result, StoreError};
use crate::jobs::{JobStatus, NewJob};

#[derive(sqlx::FromRow)]
pub(crate) struct CompileJobRow {
    id: Uuid,
    workflow: String,
    request: Value,
    status: String,
    stop_reason: Option<String>,
    stop_detail: Option<String>,
    progress: Value,
    estimate: Value,
    result_version_id: Option<Uuid>,
    error: Option<Value>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl TryFrom<CompileJobRow> for CompileJob {
    type Error = StoreError;

    fn try_from(r: CompileJobRow) -> Result<Self> {
        Ok(CompileJob {
            id: r.id,
            workflow: r.workflow,
            request: r.request,
            status: JobStatus::parse(&r.status)?,
            stop_reason: r.stop_reason,
            stop_detail: r.stop_detail,
            progress: r.progress,
            estimate: r.estimate,
            result_version_id: r.result_version_id,
            error: r.error,
            created_at: r.created_at,
            updated_at: r.updated_at,
            finished_at: r.finished_at,
        })
    }
}

/// The queue job of a compile: same id, kind [`COMPILE_JOB_KIND`], claimable now.
pub(crate) fn queue_job(new: &NewCompileJob) -> NewJob {
    NewJob {
        id: new.id,
        kind: COMPILE_JOB_KIND.to_owned(),
        payload: json!({ "compile_job_id": new.id }),
        max_attempts: new.max_attempts,
        delay: std::time::Duration::ZERO,
    }
}

/// How a finished compile ends its queue job: the job's status and the result it records.
pub(crate) fn queue_job_end(end: &CompileEnd) -> (JobStatus, Value) {
    let status = match end.status {
        JobStatus::Cancelled => JobStatus::Cancelled,
        _ => JobStatus::Succeeded,
    };
    (status, json!({ "result_version_id": end.result_version_id, "stop_reason": end.stop_reason }))
}

/// A checkpoint as stored: text, not a JSON column, so that its object keys keep the order they
/// were saved in (see the migration).
pub(crate) fn checkpoint_text(id: Uuid, checkpoint: &Value) -> Result<String> {
    serde_json::to_string(checkpoint)
        .map_err(|e| StoreError::Corrupt(format!("compile checkpoint of {id}: {e}")))
}

/// What `start_compile_job`'s `UPDATE … RETURNING checkpoint` returned: no row (an unknown
/// compile), no checkpoint yet, or the checkpoint text.
pub(crate) fn stored_checkpoint(id: Uuid, returned: Option<Option<String>>) -> Result<Option<Value>> {
    match returned {
        Some(Some(text)) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("compile checkpoint of {id}: {e}"))),
        Some(None) => Ok(None),
        None => Err(StoreError::NotFound { what: "compile job" }),
    }
}

/// An iteration number for the `integer` column (saturating).
pub(crate) fn iteration(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
