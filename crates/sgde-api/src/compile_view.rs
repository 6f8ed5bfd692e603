//! A stored compile job as the API and its completion webhook show it.
//!
//! The store keeps a compile's records as JSON, because it does not depend on the compiler. This
//! module reads them back into their types — [`Progress`], [`Estimate`], [`StopReason`],
//! [`IterationRecord`] — so that the OpenAPI document describes every field and generated clients
//! get types instead of bare objects. The worker wrote those records from the same types, so they
//! always read back; one that does not is corrupt, and the request fails with a logged 500 rather
//! than serve a body the document does not describe.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sgde_compiler::{Estimate, IterationRecord, StopReason};
use sgde_store::{CompileJob, JobStatus};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::compile::Progress;
use crate::problem::ApiError;

/// A stored compile record that does not read back into its type.
#[derive(Debug, thiserror::Error)]
#[error("compile job {id}: stored {what} does not read back: {source}")]
pub struct CorruptRecord {
    pub id: Uuid,
    pub what: &'static str,
    #[source]
    pub source: serde_json::Error,
}

impl From<CorruptRecord> for ApiError {
    fn from(e: CorruptRecord) -> Self {
        ApiError::internal(e)
    }
}

/// A compile job: status, stop reason, live progress, preflight estimate and result version.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = CompileJob)]
pub struct CompileJobView {
    pub id: Uuid,
    /// Workflow the result becomes a version of.
    pub workflow: String,
    /// The request as the job keeps it: the compiler's request (with the initial version's spec
    /// resolved), the initial version id, the label and the webhook URL.
    #[schema(value_type = Object)]
    pub request: Value,
    pub status: JobStatus,
    /// Why the compile stopped, once it has.
    pub stop_reason: Option<StopReason>,
    /// The stop reason in words (which limit, which error).
    pub stop_detail: Option<String>,
    pub progress: Progress,
    /// The preflight estimate of calls, tokens and dollars.
    pub estimate: Estimate,
    /// The compiled version, once succeeded.
    pub result_version_id: Option<Uuid>,
    /// What went wrong, for a failed job (`code` and `message`).
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

fn read<T: DeserializeOwned>(id: Uuid, what: &'static str, value: Value) -> Result<T, CorruptRecord> {
    serde_json::from_value(value).map_err(|source| CorruptRecord { id, what, source })
}

/// A job that has not started has no progress yet (`{}`, the column's default): all zeros.
fn progress(id: Uuid, value: Value) -> Result<Progress, CorruptRecord> {
    match &value {
        Value::Object(fields) if fields.is_empty() => Ok(Progress::default()),
        _ => read(id, "progress", value),
    }
}

impl TryFrom<CompileJob> for CompileJobView {
    type Error = CorruptRecord;

    fn try_from(job: CompileJob) -> Result<Self, CorruptRecord> {
        let id = job.id;
        let stop_reason = match job.stop_reason {
            Some(reason) => Some(read(id, "stop reason", Value::String(reason))?),
            None => None,
        };
        Ok(CompileJobView {
            id,
            workflow: job.workflow,
            request: job.request,
            status: job.status,
            stop_reason,
            stop_detail: job.stop_detail,
            progress: progress(id, job.progress)?,
            estimate: read(id, "estimate", job.estimate)?,
            result_version_id: job.result_version_id,
            error: job.error,
            created_at: job.created_at,
            updated_at: job.updated_at,
            finished_at: job.finished_at,
        })
    }
}

/// The iteration log of compile job `id`, read back from its stored records.
pub fn iterations(id: Uuid, records: Vec<Value>) -> Result<Vec<IterationRecord>, CorruptRecord> {
    records.into_iter().map(|record| read(id, "iteration record", record)).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn stored(progress: Value, stop_reason: Option<&str>) -> CompileJob {
        let estimate = sgde_compiler::Estimate {
            baseline: Default::default(),
            per_iteration: Default::default(),
            validation: Default::default(),
            first_iteration: Default::default(),
            full_budget: Default::default(),
        };
        CompileJob {
            id: Uuid::now_v7(),
            workflow: "w".into(),
            request: json!({}),
            status: JobStatus::Queued,
            stop_reason: stop_reason.map(str::to_owned),
            stop_detail: None,
            progress,
            estimate: serde_json::to_value(estimate).expect("an estimate serialises"),
            result_version_id: None,
            error: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            finished_at: None,
        }
    }

    #[test]
    fn stored_records_read_back_into_their_types() {
        let queued = CompileJobView::try_from(stored(json!({}), None)).expect("a queued job");
        assert_eq!(queued.progress.iteration, 0);
        assert_eq!(queued.progress.best_score, None);
        let progress = json!({"iteration": 2, "best_score": 0.5, "score_history": [0.0, 0.5],
            "teacher_calls": 4, "student_calls": 30, "tokens": 900, "cost_usd": 0.0, "elapsed_ms": 12});
        let done = CompileJobView::try_from(stored(progress, Some("no_progress"))).expect("a finished job");
        assert_eq!(done.stop_reason, Some(StopReason::NoProgress));
        assert_eq!(done.progress.score_history, vec![0.0, 0.5]);
    }

    #[test]
    fn a_record_that_does_not_read_back_is_corrupt() {
        let e = CompileJobView::try_from(stored(json!({}), Some("bored"))).expect_err("unknown stop reason");
        assert_eq!(e.what, "stop reason");
        let e =
            CompileJobView::try_from(stored(json!({"iteration": "two"}), None)).expect_err("bad progress");
        assert_eq!(e.what, "progress");
        let e = iterations(Uuid::now_v7(), vec![json!({"iteration": 1})]).expect_err("a partial record");
        assert_eq!(e.what, "iteration record");
    }
}
