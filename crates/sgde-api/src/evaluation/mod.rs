//! Evaluations: a version (and optionally a baseline) run on a data set's split or on inline
//! examples, scored with a metric, as a durable queue job.
//!
//! The examples are frozen into the job when it is submitted, so a later upload to the data set
//! does not change what an evaluation measures. Each example's outcome is stored as it
//! completes; a job re-claimed after a crash skips the examples already stored, and the report
//! is recomputed from the stored outcomes on every read.

pub mod report;

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sgde_compiler::{Example, Metric, Scorer};
use sgde_store::{EvaluationResult, Job, Retry};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::exec;
use crate::state::AppState;
use crate::worker::{LeaseEnd, Outcome, keep_lease};

/// Runs evaluated at once when the request does not say.
pub const DEFAULT_CONCURRENCY: u32 = 8;
/// Upper bound of a request's concurrency.
pub const MAX_CONCURRENCY: u32 = 64;

/// One version under evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub version_id: Uuid,
    pub version_number: i32,
}

/// The queue payload of an evaluation: everything needed to run it on any replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationPayload {
    pub workflow_id: Uuid,
    pub workflow: String,
    pub version: Target,
    pub baseline: Option<Target>,
    pub examples: Vec<Example>,
    pub metric: Metric,
    pub concurrency: u32,
    /// Where the examples came from (`{"dataset", "split"}` or `{"inline": n}`), for display.
    pub source: Value,
}

/// Runs a claimed evaluation job to its end, keeping its lease.
pub async fn process(state: &AppState, job: &Job, stop: CancellationToken) -> Outcome {
    let worker = state.config().instance_id.clone();
    let payload = match serde_json::from_value::<EvaluationPayload>(job.payload.clone()) {
        Ok(p) => p,
        Err(e) => {
            let error = json!({"code": "bad_payload", "message": e.to_string()});
            let _ = state.store().fail_job(job.id, &worker, &error, Retry::Never).await;
            return Outcome::Failed;
        }
    };
    tokio::select! {
        result = run(state, job.id, &payload) => match result {
            Ok(()) => match state.store().complete_job(job.id, &worker, &json!({"examples": payload.examples.len()})).await {
                Ok(true) => Outcome::Done,
                Ok(false) => Outcome::LeaseLost,
                Err(e) => {
                    tracing::warn!(error = %e, "recording a finished evaluation failed");
                    Outcome::Failed
                }
            },
            Err(message) => {
                let error = json!({"code": "evaluation_infrastructure", "message": message});
                let retry = Retry::After(crate::worker::backoff(job.attempts));
                let _ = state.store().fail_job(job.id, &worker, &error, retry).await;
                Outcome::Failed
            }
        },
        beat = keep_lease(state, job.id) => match beat {
            LeaseEnd::Lost => Outcome::LeaseLost,
            LeaseEnd::CancelRequested => {
                let _ = state.store().ack_cancel(job.id, &worker).await;
                Outcome::Cancelled
            }
        },
        _ = stop.cancelled() => Outcome::LeaseLost,
    }
}

/// Evaluates every target on every example not yet recorded.
async fn run(state: &AppState, evaluation_id: Uuid, payload: &EvaluationPayload) -> Result<(), String> {
    let done: HashSet<(Uuid, u32)> = state
        .store()
        .evaluation_results(evaluation_id)
        .await
        .map_err(|e| format!("cannot read the results so far: {e}"))?
        .into_iter()
        .map(|r| (r.version_id, r.example))
        .collect();
    let scorer = Arc::new(Scorer::new(payload.metric.clone(), state.sandbox().clone()));
    let concurrency = usize::try_from(payload.concurrency.clamp(1, MAX_CONCURRENCY)).unwrap_or(1);
    for target in std::iter::once(&payload.version).chain(payload.baseline.as_ref()) {
        let prepared = state
            .prepared_for(payload.workflow_id, target.version_id)
            .await
            .map_err(|e| format!("cannot load version {}: {e}", target.version_number))?;
        let todo: Vec<(u32, Example)> = payload
            .examples
            .iter()
            .enumerate()
            .filter_map(|(i, e)| u32::try_from(i).ok().map(|i| (i, e.clone())))
            .filter(|(i, _)| !done.contains(&(target.version_id, *i)))
            .collect();
        // Owned values per task: the futures are spawned-safe (`Send` without borrowed state).
        let mut results = futures::stream::iter(todo)
            .map(|(example, item)| {
                evaluate_one(
                    state.clone(),
                    Arc::clone(&prepared),
                    Arc::clone(&scorer),
                    payload.workflow.clone(),
                    (evaluation_id, target.version_id, example),
                    item,
                )
            })
            .buffer_unordered(concurrency);
        while let Some(result) = results.next().await {
            state
                .store()
                .record_evaluation_result(&result)
                .await
                .map_err(|e| format!("cannot record a result: {e}"))?;
        }
    }
    Ok(())
}

/// Runs and scores one example.
async fn evaluate_one(
    state: AppState,
    prepared: Arc<sgde_runtime::PreparedWorkflow>,
    scorer: Arc<Scorer>,
    workflow: String,
    (evaluation_id, version_id, index): (Uuid, Uuid, u32),
    example: Example,
) -> EvaluationResult {
    let report = exec::run(&state, &workflow, &prepared, example.inputs, None).await;
    let (score, output, error) = match &report.result {
        Ok(output) => match scorer.score(output, &example.expected).await {
            Ok(score) => (score, Some(output.clone()), None),
            Err(message) => {
                (0.0, Some(output.clone()), Some(json!({"code": "metric_failed", "message": message})))
            }
        },
        Err(e) => (0.0, None, Some(exec::error_json(e))),
    };
    let passed = score >= 1.0 - 1e-9;
    EvaluationResult {
        evaluation_id,
        version_id,
        example: index,
        score,
        passed,
        output,
        expected: example.expected,
        error,
        // Traces of failures only: they are what a reviewer opens.
        trace: if passed { None } else { serde_json::to_value(&report.trace).ok() },
        tokens: report.usage.prompt_tokens + report.usage.completion_tokens,
        cost_usd: report.usage.cost_usd,
        latency_us: u64::try_from(report.elapsed.as_micros()).unwrap_or(u64::MAX),
    }
}
