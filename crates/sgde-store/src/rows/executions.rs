//! Rows of `executions`, and the record an INSERT returns without reading it back.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::executions::{
    Execution, ExecutionMode, ExecutionOutcome, ExecutionStatus, ExecutionUsage, NewExecution,
};
use crate::pg::to_u64;

#[derive(sqlx::FromRow)]
pub(crate) struct ExecutionRow {
    id: Uuid,
    workflow_id: Uuid,
    version_id: Uuid,
    mode: String,
    status: String,
    inputs: Value,
    output: Option<Value>,
    error: Option<Value>,
    trace: Option<Value>,
    latency_us: Option<i64>,
    prompt_tokens: i64,
    completion_tokens: i64,
    cost_usd: f64,
    route: Option<Value>,
    job_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl TryFrom<ExecutionRow> for Execution {
    type Error = StoreError;

    fn try_from(r: ExecutionRow) -> Result<Self> {
        Ok(Execution {
            id: r.id,
            workflow_id: r.workflow_id,
            version_id: r.version_id,
            mode: ExecutionMode::parse(&r.mode)?,
            status: ExecutionStatus::parse(&r.status)?,
            inputs: r.inputs,
            output: r.output,
            error: r.error,
            trace: r.trace,
            latency_us: r.latency_us.map(to_u64),
            usage: ExecutionUsage {
                prompt_tokens: to_u64(r.prompt_tokens),
                completion_tokens: to_u64(r.completion_tokens),
                cost_usd: r.cost_usd,
            },
            route: r.route,
            job_id: r.job_id,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
        })
    }
}

/// `created_at, started_at, finished_at` of a new execution, as stored.
pub(crate) type Stamps = (DateTime<Utc>, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// The outcome a new execution is written with: its own, which must be terminal, or for a
/// queued run an empty `queued` one.
pub(crate) fn initial_outcome(new: &NewExecution) -> Result<Cow<'_, ExecutionOutcome>> {
    match &new.outcome {
        Some(outcome) => {
            outcome.check()?;
            Ok(Cow::Borrowed(outcome))
        }
        None => Ok(Cow::Owned(pending())),
    }
}

fn pending() -> ExecutionOutcome {
    ExecutionOutcome {
        status: ExecutionStatus::Queued,
        output: None,
        error: None,
        trace: None,
        latency_us: None,
        usage: ExecutionUsage::default(),
    }
}

/// The record of an inserted execution, built from what the caller wrote and the timestamps
/// as stored, so that it equals what a later read returns without reading the large JSON
/// columns back.
pub(crate) fn recorded(new: NewExecution, job_id: Option<Uuid>, stamps: Stamps) -> Execution {
    let (created_at, started_at, finished_at) = stamps;
    let NewExecution { id, workflow_id, version_id, mode, inputs, route, outcome, started_at: _ } = new;
    let outcome = outcome.unwrap_or_else(pending);
    Execution {
        id,
        workflow_id,
        version_id,
        mode,
        status: outcome.status,
        inputs,
        output: outcome.output,
        error: outcome.error,
        trace: outcome.trace,
        latency_us: outcome.latency_us,
        usage: outcome.usage,
        route,
        job_id,
        created_at,
        started_at,
        finished_at,
    }
}
