//! Running a version and turning the report into what the log stores; shared by synchronous
//! executes and the async run workers.

use std::time::Duration;

use serde_json::{Value, json};
use sgde_runtime::{PreparedWorkflow, RunError, RunOptions, RunReport};
use sgde_store::{ExecutionOutcome, ExecutionStatus, ExecutionUsage};

use crate::metrics;
use crate::state::AppState;

/// Runs `workflow` and records the run's metrics.
pub async fn run(
    state: &AppState,
    workflow_name: &str,
    workflow: &PreparedWorkflow,
    inputs: Value,
    deadline: Option<Duration>,
) -> RunReport {
    let report = state.runtime().execute(workflow, inputs, &RunOptions { deadline }).await;
    metrics::record_run(workflow_name, &report);
    report
}

/// The error of a run as stored and returned: a stable code and a message.
pub fn error_json(error: &RunError) -> Value {
    let mut value = json!({"code": error.code(), "message": error.to_string()});
    if let RunError::Node(node) = error {
        value["node"] = json!(node.node);
    }
    if let RunError::Inputs { errors } = error {
        value["errors"] = json!(errors);
    }
    value
}

/// What the execution log keeps of a run.
pub fn outcome(report: &RunReport) -> ExecutionOutcome {
    let (status, output, error) = match &report.result {
        Ok(value) => (ExecutionStatus::Succeeded, Some(value.clone()), None),
        Err(e) => (ExecutionStatus::Failed, None, Some(error_json(e))),
    };
    ExecutionOutcome {
        status,
        output,
        error,
        trace: serde_json::to_value(&report.trace).ok(),
        latency_us: Some(u64::try_from(report.elapsed.as_micros()).unwrap_or(u64::MAX)),
        usage: ExecutionUsage {
            prompt_tokens: report.usage.prompt_tokens,
            completion_tokens: report.usage.completion_tokens,
            cost_usd: report.usage.cost_usd,
        },
    }
}
