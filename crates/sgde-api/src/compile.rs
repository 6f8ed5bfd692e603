//! The compile worker: runs a claimed compile job with [`sgde_compiler::Compiler`], durably.
//!
//! - Model replies go through [`AppState::compile_models`], whose response cache has the
//!   Postgres tier: a job resumed after a crash re-sends the same requests (the compiler derives
//!   every sample index from the seed) and finds them answered, so nothing is paid twice.
//! - [`PgCheckpoints`] stores the checkpoint and the new iteration records after the baseline and
//!   after every iteration; a re-claimed job resumes from the last one.
//! - Progress events are folded into [`Progress`] and written by one task, in order.
//! - The lease is heartbeated for the whole compile; a cancel request seen at a heartbeat cancels
//!   the compiler's token, which stops it between model calls with the best candidate so far.
//! - On finish the best candidate becomes a version (source `compile`, parent, job id, metrics),
//!   the requested label moves to it, and the job ends with its stop reason; a completion webhook
//!   is queued if the request asked for one.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sgde_compiler::{
    Checkpoint, CheckpointError, CheckpointSink, CompileOutcome, CompileRequest, Compiler, CompilerDeps,
    ProgressEvent, StopReason,
};
use sgde_store::{
    CompileEnd, CompilePayload, Job, JobStatus, NewJob, NewVersion, NewWorkflow, Retry, Store, StoreError,
    VersionSource,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::state::AppState;
use crate::worker::{LeaseEnd, Outcome, backoff, keep_lease};

/// What a compile job stores as its request: the compiler's request (with the initial spec
/// resolved) and what the service does around it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredCompile {
    pub compile: CompileRequest,
    /// The version the compile started from (the result's parent), if any.
    #[serde(default)]
    pub initial_version_id: Option<Uuid>,
    /// Label to move to the result on success.
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub webhook_url: Option<String>,
}

/// Live progress of a compile, as `GET /v1/compile-jobs/{id}` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    /// Iterations completed or in progress.
    pub iteration: u32,
    /// Training score of the best candidate so far; absent until the baseline is scored.
    pub best_score: Option<f64>,
    /// The best training score after the baseline and after each iteration.
    pub score_history: Vec<f64>,
    /// Calls sent to the teacher (failed ones included, cache hits not).
    pub teacher_calls: u64,
    /// Calls sent to the student (failed ones included, cache hits not).
    pub student_calls: u64,
    /// Prompt and completion tokens of both roles.
    pub tokens: u64,
    /// Dollars at the endpoints' prices.
    pub cost_usd: f64,
    /// Compile time, summed over resumes.
    pub elapsed_ms: u64,
}

impl Progress {
    /// The progress a checkpoint stands for (when resuming).
    fn from_checkpoint(c: &Checkpoint) -> Self {
        let mut history = vec![c.initial.train.score];
        let mut best = c.initial.train.score;
        for record in &c.history {
            if record.outcome.is_accepted()
                && let Some(candidate) = &record.candidate
            {
                best = best.max(candidate.score);
            }
            history.push(best);
        }
        let mut p = Progress {
            iteration: c.iteration,
            best_score: Some(c.best.train.score),
            score_history: history,
            elapsed_ms: c.elapsed_ms,
            ..Progress::default()
        };
        p.usage(&c.usage);
        p
    }

    fn usage(&mut self, usage: &sgde_compiler::CompileUsage) {
        self.teacher_calls = usage.teacher.calls;
        self.student_calls = usage.student.calls;
        self.tokens = usage.tokens();
        self.cost_usd = usage.usd();
    }

    fn apply(&mut self, event: &ProgressEvent) {
        match event {
            ProgressEvent::Started { iteration } => self.iteration = *iteration,
            ProgressEvent::Baseline { train } => {
                self.best_score = Some(train.score);
                self.score_history = vec![train.score];
            }
            ProgressEvent::IterationStarted { iteration } => self.iteration = *iteration,
            ProgressEvent::IterationFinished { best_score, usage, .. } => {
                self.best_score = Some(*best_score);
                self.score_history.push(*best_score);
                self.usage(usage);
            }
            ProgressEvent::NewBest { train, .. } => self.best_score = Some(train.score),
            ProgressEvent::Finished { best_score, .. } => self.best_score = Some(*best_score),
        }
    }

    fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Checkpoints and iteration records into Postgres.
struct PgCheckpoints {
    store: Arc<dyn Store>,
    id: Uuid,
}

#[async_trait]
impl CheckpointSink for PgCheckpoints {
    async fn save(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let value = serde_json::to_value(checkpoint).map_err(|e| CheckpointError(e.to_string()))?;
        let records = checkpoint
            .history
            .iter()
            .map(|r| Ok((r.iteration, serde_json::to_value(r)?)))
            .collect::<Result<Vec<_>, serde_json::Error>>()
            .map_err(|e| CheckpointError(e.to_string()))?;
        self.store
            .save_compile_checkpoint(self.id, &value, &records)
            .await
            .map_err(|e| CheckpointError(e.to_string()))
    }
}

/// Runs one claimed compile job; see the module docs.
#[tracing::instrument(skip_all, fields(job = %job.id))]
pub async fn process(state: &AppState, job: &Job, stop: CancellationToken) -> Outcome {
    let worker = state.config().instance_id.clone();
    let Ok(payload) = serde_json::from_value::<CompilePayload>(job.payload.clone()) else {
        let error = json!({"code": "bad_payload", "message": "not a compile job payload"});
        let _ = state.store().fail_compile_job(job.id, &worker, &error, Retry::Never).await;
        return Outcome::Failed;
    };
    let id = payload.compile_job_id;
    let retry = |message: String| {
        let error = json!({"code": "compile_infrastructure", "message": message});
        let worker = worker.clone();
        async move {
            if let Err(e) =
                state.store().fail_compile_job(id, &worker, &error, Retry::After(backoff(job.attempts))).await
            {
                tracing::warn!(error = %e, "recording a failed compile attempt failed");
            }
            Outcome::Failed
        }
    };
    if job.cancel_requested {
        return end(state, id, cancelled_end(Progress::default().to_value())).await;
    }
    let record = match state.store().get_compile_job(id).await {
        Ok(r) => r,
        Err(e) => return retry(format!("cannot load the compile job: {e}")).await,
    };
    let stored = match serde_json::from_value::<StoredCompile>(record.request.clone()) {
        Ok(s) => s,
        Err(e) => {
            let error = json!({"code": "bad_request", "message": e.to_string()});
            let _ = state.store().fail_compile_job(id, &worker, &error, Retry::Never).await;
            return Outcome::Failed;
        }
    };
    let checkpoint = match state.store().start_compile_job(id).await {
        Ok(c) => c.and_then(|c| serde_json::from_value::<Checkpoint>(c).ok()),
        Err(e) => return retry(format!("cannot start the compile job: {e}")).await,
    };
    let deps = CompilerDeps {
        models: state.compile_models(),
        sandbox: state.sandbox().clone(),
        runtime: state.runtime().config().clone(),
    };
    let compiler = match Compiler::new(stored.compile.clone(), deps) {
        Ok(c) => c,
        Err(e) => {
            let end = CompileEnd {
                status: JobStatus::Failed,
                stop_reason: Some(StopReason::Error.as_str().to_owned()),
                stop_detail: Some(e.to_string()),
                result_version_id: None,
                error: Some(json!({"code": "invalid_request", "message": e.to_string()})),
                progress: Progress::default().to_value(),
            };
            return self::end(state, id, end).await;
        }
    };
    let (progress, writer) = progress_writer(state.store_arc(), id, checkpoint.as_ref());
    let cancel = CancellationToken::new();
    let compiler = compiler
        .with_checkpoints(Arc::new(PgCheckpoints { store: state.store_arc(), id }))
        .with_progress(Arc::new(progress))
        .with_cancellation(cancel.clone());
    let outcome = {
        let run = async {
            if let Some(checkpoint) = checkpoint {
                match compiler.resume(checkpoint).await {
                    Ok(outcome) => return outcome,
                    Err(e) => tracing::warn!(error = %e, "cannot resume; compiling from the start"),
                }
            }
            compiler.run().await
        };
        tokio::pin!(run);
        loop {
            tokio::select! {
                outcome = &mut run => break outcome,
                beat = keep_lease(state, job.id) => match beat {
                    LeaseEnd::Lost => return Outcome::LeaseLost,
                    LeaseEnd::CancelRequested => cancel.cancel(),
                },
                _ = stop.cancelled() => return Outcome::LeaseLost,
            }
        }
    };
    drop(compiler);
    let mut progress = writer.await.unwrap_or_default();
    // The events stop at the last iteration; validation comes after it, and the final progress
    // must count what the whole compile spent (the result version's `compile_cost`).
    progress.usage(&outcome.usage);
    progress.elapsed_ms = outcome.elapsed_ms;
    let progress = progress.to_value();
    let ended = match finish(state, id, &stored, &outcome, progress).await {
        Ok(end) => self::end(state, id, end).await,
        Err(e) => return retry(format!("cannot record the result: {e}")).await,
    };
    if matches!(ended, Outcome::Done | Outcome::Cancelled)
        && let Some(url) = &stored.webhook_url
    {
        notify(state, id, url).await;
    }
    ended
}

/// Queues the completion webhook of a compile job.
async fn notify(state: &AppState, id: Uuid, url: &str) {
    let job = NewJob {
        id: Uuid::now_v7(),
        kind: crate::webhook::WEBHOOK_JOB_KIND.to_owned(),
        payload: json!({"compile_job_id": id, "url": url}),
        max_attempts: state.config().webhook_max_attempts,
        delay: std::time::Duration::ZERO,
    };
    if let Err(e) = state.store().enqueue(&job).await {
        tracing::warn!(error = %e, "cannot queue a compile job's webhook");
    }
}

/// Folds progress events into [`Progress`] and writes each state; returns the last one.
fn progress_writer(
    store: Arc<dyn Store>,
    id: Uuid,
    checkpoint: Option<&Checkpoint>,
) -> (mpsc::UnboundedSender<ProgressEvent>, tokio::task::JoinHandle<Progress>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<ProgressEvent>();
    let mut progress = checkpoint.map(Progress::from_checkpoint).unwrap_or_default();
    let started = Instant::now();
    let base_ms = progress.elapsed_ms;
    let writer = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            progress.apply(&event);
            progress.elapsed_ms = base_ms + u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            if let Err(e) = store.update_compile_progress(id, &progress.to_value()).await {
                tracing::warn!(error = %e, "cannot record compile progress");
            }
        }
        progress
    });
    (tx, writer)
}

fn cancelled_end(progress: Value) -> CompileEnd {
    CompileEnd {
        status: JobStatus::Cancelled,
        stop_reason: Some(StopReason::Cancelled.as_str().to_owned()),
        stop_detail: Some("cancelled on request".to_owned()),
        result_version_id: None,
        error: None,
        progress,
    }
}

/// Records the end; the queue job ends with it if this worker still owns it.
async fn end(state: &AppState, id: Uuid, end: CompileEnd) -> Outcome {
    let cancelled = end.status == JobStatus::Cancelled;
    match state.store().finish_compile_job(id, &state.config().instance_id, &end).await {
        Ok(true) if cancelled => Outcome::Cancelled,
        Ok(true) => Outcome::Done,
        Ok(false) => Outcome::LeaseLost,
        Err(e) => {
            tracing::warn!(error = %e, "cannot record the end of a compile job");
            Outcome::Failed
        }
    }
}

/// Makes the result version (unless cancelled or failed) and moves the label.
async fn finish(
    state: &AppState,
    id: Uuid,
    stored: &StoredCompile,
    outcome: &CompileOutcome,
    progress: Value,
) -> Result<CompileEnd, StoreError> {
    let reason = outcome.stop_reason;
    let mut end = CompileEnd {
        status: JobStatus::Succeeded,
        stop_reason: Some(reason.as_str().to_owned()),
        stop_detail: Some(outcome.stop_detail.clone()),
        result_version_id: None,
        error: None,
        progress,
    };
    match reason {
        StopReason::Cancelled => {
            end.status = JobStatus::Cancelled;
            return Ok(end);
        }
        StopReason::Error => {
            end.status = JobStatus::Failed;
            end.error = Some(json!({"code": "compile_error", "message": outcome.stop_detail}));
            return Ok(end);
        }
        _ => {}
    }
    let workflow_name = state.store().get_compile_job(id).await?.workflow;
    let new = NewVersion {
        spec: serde_json::to_value(&outcome.best.spec).unwrap_or(Value::Null),
        content_hash: outcome.best.content_hash.clone(),
        parent_version_id: stored.initial_version_id,
        source: VersionSource::Compile,
        job_id: Some(id),
        origin: None,
        metrics: Some(json!({
            "train_score": outcome.best.train.score,
            "train": outcome.best.train,
            "validation_score": outcome.validation.as_ref().map(|v| v.score),
            "validation": outcome.validation,
            "compile_cost": outcome.usage,
            "compile_cost_usd": outcome.usage.usd(),
            "mean_student_tokens_per_run": outcome.mean_student_tokens_per_run(),
            "iterations": outcome.iterations,
            "stop_reason": reason.as_str(),
        })),
    };
    let (workflow, version) = match state.store().get_workflow(&workflow_name).await {
        Ok(workflow) => {
            let (version, _) = state.store().create_version(workflow.id, &new).await?;
            (workflow, version)
        }
        Err(StoreError::NotFound { .. }) => {
            let description = Some(stored.compile.task.clone());
            state
                .store()
                .create_workflow_with_version(&NewWorkflow { name: workflow_name, description }, &new)
                .await?
        }
        Err(e) => return Err(e),
    };
    if let Some(label) = &stored.label {
        let by = format!("compile job {id}");
        state.store().set_label(workflow.id, label, version.id, Some(&by)).await?;
    }
    end.result_version_id = Some(version.id);
    Ok(end)
}
