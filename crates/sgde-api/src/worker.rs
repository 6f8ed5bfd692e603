//! The background workers of one replica: async runs, compile jobs (see [`crate::compile`]) and
//! webhook deliveries from the durable queue.
//!
//! Every replica runs the same loop: claim a job (`FOR UPDATE SKIP LOCKED`, with a lease), run it
//! while a heartbeat keeps the lease, and end it only if the lease is still ours — so a replica
//! that dies mid-run loses its lease and another picks the run up, and a run's outcome is
//! recorded exactly once. [`process_one`] runs a single job and is what tests drive directly.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sgde_store::{
    COMPILE_JOB_KIND, ExecutionOutcome, ExecutionStatus, ExecutionUsage, Heartbeat, Job, RUN_JOB_KIND, Retry,
    RunPayload, VersionSelector,
};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::state::AppState;
use crate::{exec, webhook};

/// Jobs this worker knows how to run.
pub const KINDS: [&str; 4] =
    [RUN_JOB_KIND, COMPILE_JOB_KIND, webhook::WEBHOOK_JOB_KIND, sgde_store::EVALUATION_JOB_KIND];

/// How often expired jobs with no attempts left are settled.
const REAP_EVERY: Duration = Duration::from_secs(10);

/// What happened to a claimed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Finished and recorded (successfully or not).
    Done,
    /// Failed; it will be retried later or has failed for good.
    Failed,
    /// Cancelled on request.
    Cancelled,
    /// The lease was lost to another replica: nothing was recorded.
    LeaseLost,
}

/// Claims and runs jobs until `shutdown`, then lets running ones finish for `grace` and hands
/// back the leases of those that did not.
pub async fn run_workers(state: AppState, shutdown: CancellationToken, grace: Duration) {
    let config = state.config().clone();
    let slots = Arc::new(Semaphore::new(config.worker_concurrency.max(1)));
    let tracker = TaskTracker::new();
    let mut last_reap = tokio::time::Instant::now() - REAP_EVERY;
    // Running jobs are stopped when the grace period is over, not when shutdown begins.
    let abort = CancellationToken::new();
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
            _ = shutdown.cancelled() => break,
        };
        if last_reap.elapsed() >= REAP_EVERY {
            last_reap = tokio::time::Instant::now();
            reap(&state).await;
        }
        match state.store().claim(&KINDS, &config.instance_id, config.job_lease).await {
            Ok(Some(job)) => {
                let state = state.clone();
                let stop = abort.child_token();
                tracker.spawn(async move {
                    let _permit = permit;
                    process_one(&state, job, stop).await;
                });
            }
            Ok(None) => {
                drop(permit);
                tokio::select! {
                    _ = tokio::time::sleep(config.poll_interval) => {}
                    _ = state.run_submitted().notified() => {}
                    _ = shutdown.cancelled() => break,
                }
            }
            Err(e) => {
                drop(permit);
                tracing::warn!(error = %e, "claiming jobs failed; backing off");
                tokio::select! {
                    _ = tokio::time::sleep(config.poll_interval * 10) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
        }
    }
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!("jobs still running after the grace period; releasing their leases");
        abort.cancel();
        tracker.wait().await;
    }
    match state.store().release_leases(&config.instance_id).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(released = n, "released job leases for other replicas"),
        Err(e) => tracing::warn!(error = %e, "could not release job leases; they expire on their own"),
    }
}

/// Settles jobs that expired with no attempts left: their runs and compiles are marked failed
/// (or cancelled, if a cancel was pending).
async fn reap(state: &AppState) {
    let jobs = match state.store().reap_expired().await {
        Ok(jobs) => jobs,
        Err(e) => return tracing::warn!(error = %e, "reaping expired jobs failed"),
    };
    for job in jobs.iter().filter(|j| j.kind == COMPILE_JOB_KIND) {
        let cancelled = job.status == sgde_store::JobStatus::Cancelled;
        let (status, error) = if cancelled {
            (sgde_store::JobStatus::Cancelled, None)
        } else {
            let error = json!({"code": "worker_lost", "message": "the compile's worker stopped responding too many times"});
            (sgde_store::JobStatus::Failed, Some(error))
        };
        if let Err(e) = state.store().settle_compile_job(job.id, status, error.as_ref()).await {
            tracing::warn!(error = %e, job = %job.id, "could not settle a reaped compile job");
        }
    }
    for job in jobs.into_iter().filter(|j| j.kind == RUN_JOB_KIND) {
        let Ok(payload) = serde_json::from_value::<RunPayload>(job.payload.clone()) else { continue };
        let cancelled = job.status == sgde_store::JobStatus::Cancelled;
        let outcome = ExecutionOutcome {
            status: if cancelled { ExecutionStatus::Cancelled } else { ExecutionStatus::Failed },
            output: None,
            error: (!cancelled).then(|| {
                json!({"code": "worker_lost", "message": "the run's worker stopped responding too many times"})
            }),
            trace: None,
            latency_us: None,
            usage: ExecutionUsage::default(),
        };
        if let Err(e) = state.store().finish_execution(payload.execution_id, &outcome).await {
            tracing::warn!(error = %e, execution = %payload.execution_id, "could not settle a reaped run");
        }
    }
}

/// Runs one claimed job to its end (or until its lease is lost or `stop` fires).
pub async fn process_one(state: &AppState, job: Job, stop: CancellationToken) -> Outcome {
    if job.kind == COMPILE_JOB_KIND {
        // Compiles keep their own lease: a cancel request stops the compiler, not the task.
        return crate::compile::process(state, &job, stop).await;
    }
    if job.kind == sgde_store::EVALUATION_JOB_KIND {
        return crate::evaluation::process(state, &job, stop).await;
    }
    let work = async {
        match job.kind.as_str() {
            RUN_JOB_KIND => process_run(state, &job).await,
            webhook::WEBHOOK_JOB_KIND => webhook::deliver(state, &job).await,
            other => {
                let error =
                    json!({"code": "unknown_job_kind", "message": format!("no worker for `{other}`")});
                let _ =
                    state.store().fail_job(job.id, &state.config().instance_id, &error, Retry::Never).await;
                Outcome::Failed
            }
        }
    };
    tokio::select! {
        outcome = work => outcome,
        beat = keep_lease(state, job.id) => match beat {
            LeaseEnd::Lost => Outcome::LeaseLost,
            LeaseEnd::CancelRequested => cancel_run(state, &job).await,
        },
        _ = stop.cancelled() => {
            // Shutting down past the grace period: the lease is released by the caller.
            Outcome::LeaseLost
        }
    }
}

pub(crate) enum LeaseEnd {
    Lost,
    CancelRequested,
}

/// Extends the lease every third of its length; returns when it is lost or a cancel arrives.
pub(crate) async fn keep_lease(state: &AppState, job: Uuid) -> LeaseEnd {
    let config = state.config();
    let every = (config.job_lease / 3).max(Duration::from_millis(50));
    loop {
        tokio::time::sleep(every).await;
        match state.store().heartbeat(job, &config.instance_id, config.job_lease).await {
            Ok(Heartbeat::Extended { cancel_requested: false }) => {}
            Ok(Heartbeat::Extended { cancel_requested: true }) => return LeaseEnd::CancelRequested,
            Ok(Heartbeat::Lost) => return LeaseEnd::Lost,
            // A missed heartbeat is not fatal: the lease is longer than the interval.
            Err(e) => tracing::warn!(error = %e, %job, "heartbeat failed"),
        }
    }
}

async fn cancel_run(state: &AppState, job: &Job) -> Outcome {
    let Ok(payload) = serde_json::from_value::<RunPayload>(job.payload.clone()) else {
        return Outcome::Failed;
    };
    let outcome = ExecutionOutcome {
        status: ExecutionStatus::Cancelled,
        output: None,
        error: Some(json!({"code": "cancelled", "message": "the run was cancelled"})),
        trace: None,
        latency_us: None,
        usage: ExecutionUsage::default(),
    };
    match state.store().finish_run(job.id, &state.config().instance_id, payload.execution_id, &outcome).await
    {
        // The run's webhook, if any, was queued with the cancellation.
        Ok(true) => Outcome::Cancelled,
        Ok(false) => Outcome::LeaseLost,
        Err(e) => {
            tracing::warn!(error = %e, "recording a cancellation failed");
            Outcome::Failed
        }
    }
}

/// Backoff before retrying an attempt that failed for infrastructure reasons.
pub(crate) fn backoff(attempts: i32) -> Duration {
    Duration::from_secs(2u64.saturating_pow(u32::try_from(attempts.clamp(0, 8)).unwrap_or(8)))
}

async fn process_run(state: &AppState, job: &Job) -> Outcome {
    let worker = state.config().instance_id.clone();
    let payload = match serde_json::from_value::<RunPayload>(job.payload.clone()) {
        Ok(p) => p,
        Err(e) => {
            let error = json!({"code": "bad_payload", "message": e.to_string()});
            let _ = state.store().fail_job(job.id, &worker, &error, Retry::Never).await;
            return Outcome::Failed;
        }
    };
    let fail = |message: String| {
        let error = json!({"code": "run_infrastructure", "message": message});
        async move {
            let retry = Retry::After(backoff(job.attempts));
            match state.store().fail_run(job.id, &worker, payload.execution_id, &error, retry).await {
                Ok(_) => Outcome::Failed,
                Err(e) => {
                    tracing::warn!(error = %e, "recording a failed run attempt failed");
                    Outcome::Failed
                }
            }
        }
    };
    let execution = match state.store().get_execution(payload.execution_id).await {
        Ok(e) => e,
        Err(e) => return fail(format!("cannot load the execution: {e}")).await,
    };
    match state.store().start_execution(execution.id).await {
        Ok(true) => {}
        Ok(false) => {
            // Already ended (cancelled while queued): close the job without a second outcome.
            let _ = state
                .store()
                .complete_job(job.id, &state.config().instance_id, &json!({"skipped": true}))
                .await;
            return Outcome::Done;
        }
        Err(e) => return fail(format!("cannot start the execution: {e}")).await,
    }
    let workflow = match state.store().get_workflow_by_id(execution.workflow_id).await {
        Ok(w) => w,
        Err(e) => return fail(format!("cannot load the workflow: {e}")).await,
    };
    let version =
        match state.store().get_version(workflow.id, &VersionSelector::Id(execution.version_id)).await {
            Ok(v) => v,
            Err(e) => return fail(format!("cannot load the version: {e}")).await,
        };
    let prepared = match state.prepared(&version) {
        Ok(p) => p,
        Err(e) => return fail(e.to_string()).await,
    };
    let report = exec::run(state, &workflow.name, &prepared, execution.inputs.clone(), None).await;
    let outcome = exec::outcome(&report);
    match state.store().finish_run(job.id, &state.config().instance_id, execution.id, &outcome).await {
        Ok(true) => {
            if let Some(shadow) = execution.route.as_ref().and_then(crate::routing::shadow_of) {
                let route = execution.route.clone().unwrap_or_default();
                crate::routing::spawn_shadow(
                    state,
                    workflow.id,
                    &workflow.name,
                    shadow,
                    execution.inputs.clone(),
                    &route,
                    execution.id,
                );
            }
            // The run's webhook, if any, was queued with the outcome.
            Outcome::Done
        }
        Ok(false) => Outcome::LeaseLost,
        Err(e) => fail(format!("cannot record the outcome: {e}")).await,
    }
}
