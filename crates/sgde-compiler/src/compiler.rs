//! [`Compiler`]: the public entry point, and the loop that drives iterations until a stop rule
//! fires.
//!
//! A compile is a `Session`: the request, the gate (budget, deadline, cancellation), the
//! evaluator, the teacher and the loop state. `run` scores the starting workflow and loops;
//! `resume` rebuilds the state from a [`Checkpoint`] and loops. Either way the session ends with
//! a [`CompileOutcome`] and a [`StopReason`] — every failure inside the loop is recorded, never
//! returned as an error.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sgde_llm::ModelClient;
use sgde_runtime::RuntimeConfig;
use sgde_sandbox::Sandbox;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{CHECKPOINT_FORMAT, Candidate, Checkpoint, CheckpointSink};
use crate::edits::calls_per_run;
use crate::error::CompileError;
use crate::evaluate::{Evaluation, Evaluator, ScoreSummary, Split};
use crate::gate::{Gate, Interrupt};
use crate::metric::Scorer;
use crate::options::CompileOptions;
use crate::outcome::{CompileOutcome, StopReason};
use crate::progress::{ProgressEvent, ProgressSink};
use crate::record::{IterationRecord, RejectedEdit};
use crate::request::CompileRequest;
use crate::teacher::Teacher;
use crate::usage::{CompileUsage, ModelRole};

/// What a compiler needs from the service: the models (the endpoint registry, whose clients
/// share the response cache), the sandbox, and the runtime's settings.
#[derive(Clone)]
pub struct CompilerDeps {
    pub models: Arc<dyn ModelClient>,
    pub sandbox: Sandbox,
    pub runtime: RuntimeConfig,
}

/// One compile job. Build it, attach sinks, then [`run`](Compiler::run) it or
/// [`resume`](Compiler::resume) it from a checkpoint.
pub struct Compiler {
    request: Arc<CompileRequest>,
    deps: CompilerDeps,
    options: CompileOptions,
    checkpoints: Option<Arc<dyn CheckpointSink>>,
    progress: Option<Arc<dyn ProgressSink>>,
    cancel: CancellationToken,
}

impl Compiler {
    /// Validates the request (not the budget: see [`crate::estimate()`]).
    pub fn new(request: CompileRequest, deps: CompilerDeps) -> Result<Self, CompileError> {
        request.check()?;
        Ok(Self {
            request: Arc::new(request),
            deps,
            options: CompileOptions::default(),
            checkpoints: None,
            progress: None,
            cancel: CancellationToken::new(),
        })
    }

    pub fn with_options(mut self, options: CompileOptions) -> Self {
        self.options = options;
        self
    }

    /// Where to save a checkpoint after the baseline and after every completed iteration.
    pub fn with_checkpoints(mut self, sink: Arc<dyn CheckpointSink>) -> Self {
        self.checkpoints = Some(sink);
        self
    }

    pub fn with_progress(mut self, sink: Arc<dyn ProgressSink>) -> Self {
        self.progress = Some(sink);
        self
    }

    /// Cancelling `token` stops the compile between model calls (calls in flight are dropped);
    /// it ends with [`StopReason::Cancelled`] and the best candidate so far.
    pub fn with_cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    pub fn request(&self) -> &CompileRequest {
        &self.request
    }

    /// Compiles from the starting workflow.
    #[tracing::instrument(skip_all, fields(seed = self.request.seed))]
    pub async fn run(&self) -> CompileOutcome {
        let session = self.session(CompileUsage::default(), 0);
        session.report(ProgressEvent::Started { iteration: 0 });
        let initial = match self.request.starting_spec() {
            Ok(spec) => spec,
            // `new` checked the request; this only guards against a broken invariant.
            Err(e) => return session.unscored_outcome(None, StopReason::Error, e.to_string()),
        };
        let baseline =
            session.guarded(session.evaluator.evaluate(&initial, &self.request.train, Split::Train)).await;
        let eval = match baseline {
            Err(stop) => return session.unscored_outcome(Some(initial), stop.reason(), stop.to_string()),
            Ok(Err(e)) => return session.unscored_outcome(Some(initial), StopReason::Error, e.to_string()),
            Ok(Ok(_)) if session.gate.refusal().is_some() => {
                let why = session.gate.refusal().map(|r| r.to_string()).unwrap_or_default();
                return session.unscored_outcome(Some(initial), StopReason::Budget, why);
            }
            Ok(Ok(eval)) if eval.model_unreachable() => {
                let why = format!("the student is unreachable: {}", eval.first_error().unwrap_or_default());
                return session.unscored_outcome(Some(initial), StopReason::Error, why);
            }
            Ok(Ok(eval)) => eval,
        };
        session.report(ProgressEvent::Baseline { train: eval.summary.clone() });
        let candidate = Candidate {
            content_hash: initial.content_hash(),
            spec: initial,
            train: eval.summary.clone(),
            iteration: 0,
        };
        let state = LoopState {
            iteration: 0,
            initial: candidate.clone(),
            best: candidate,
            best_eval: Some(eval),
            history: Vec::new(),
            rejected: Vec::new(),
            stale: 0,
            failed: 0,
        };
        if let Err(e) = session.save(&state).await {
            return session.finish(state, StopReason::Error, e).await;
        }
        session.drive(state).await
    }

    /// Continues a compile from `checkpoint` (written by a run of the same request).
    #[tracing::instrument(skip_all, fields(seed = self.request.seed, iteration = checkpoint.iteration))]
    pub async fn resume(&self, checkpoint: Checkpoint) -> Result<CompileOutcome, CompileError> {
        if checkpoint.format != CHECKPOINT_FORMAT {
            return Err(CompileError::CheckpointMismatch(format!(
                "format {} (this build reads {CHECKPOINT_FORMAT})",
                checkpoint.format
            )));
        }
        if checkpoint.request_fingerprint != self.request.fingerprint() {
            return Err(CompileError::CheckpointMismatch("it was written for another request".into()));
        }
        let session = self.session(checkpoint.usage.clone(), checkpoint.elapsed_ms);
        session.report(ProgressEvent::Started { iteration: checkpoint.iteration });
        let state = LoopState {
            iteration: checkpoint.iteration,
            initial: checkpoint.initial,
            best: checkpoint.best,
            best_eval: None,
            history: checkpoint.history,
            rejected: checkpoint.rejected,
            stale: checkpoint.stale_iterations,
            failed: checkpoint.failed_iterations,
        };
        Ok(session.drive(state).await)
    }

    fn session(&self, usage: CompileUsage, elapsed_ms: u64) -> Session {
        let budget = self.request.budget.clone();
        let deadline = deadline(budget.max_duration_ms, budget.deadline_unix_ms, elapsed_ms);
        let gate = Gate::new(budget, usage, self.cancel.clone(), deadline);
        let evaluator = Evaluator {
            models: Arc::clone(&self.deps.models),
            sandbox: self.deps.sandbox.clone(),
            runtime: self.deps.runtime.clone(),
            gate: Arc::clone(&gate),
            scorer: Scorer::new(self.request.metric.clone(), self.deps.sandbox.clone()),
            student: Arc::from(self.request.student.as_str()),
            samples: self.request.samples_per_example,
            seed: self.request.seed,
            concurrency: self.options.max_concurrent_runs,
            run_deadline: self.options.run_deadline,
        };
        let teacher = Teacher {
            models: Arc::clone(&self.deps.models),
            gate: Arc::clone(&gate),
            endpoint: self.request.teacher.clone(),
            seed: self.request.seed,
            timeout: self.options.teacher_timeout,
            max_tokens: self.options.teacher_max_tokens,
        };
        Session {
            request: Arc::clone(&self.request),
            options: self.options.clone(),
            gate,
            evaluator,
            teacher,
            checkpoints: self.checkpoints.clone(),
            progress: self.progress.clone(),
            started: Instant::now(),
            elapsed_before: Duration::from_millis(elapsed_ms),
            student_unreachable: AtomicBool::new(false),
        }
    }
}

/// The earlier of "compile time left" and the absolute deadline, as an instant.
fn deadline(max_duration_ms: Option<u64>, deadline_unix_ms: Option<u64>, elapsed_ms: u64) -> Option<Instant> {
    let now = Instant::now();
    let by_duration = max_duration_ms.map(|max| now + Duration::from_millis(max.saturating_sub(elapsed_ms)));
    let by_clock = deadline_unix_ms.map(|at| {
        let now_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        now + Duration::from_millis(at.saturating_sub(now_unix))
    });
    match (by_duration, by_clock) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The loop's state between iterations (what a checkpoint stores, plus the best's traces).
pub(crate) struct LoopState {
    pub(crate) iteration: u32,
    pub(crate) initial: Candidate,
    pub(crate) best: Candidate,
    /// The best candidate's training evaluation with traces, when this process has it.
    pub(crate) best_eval: Option<Evaluation>,
    pub(crate) history: Vec<IterationRecord>,
    pub(crate) rejected: Vec<RejectedEdit>,
    pub(crate) stale: u32,
    pub(crate) failed: u32,
}

/// One run or resume of a compile.
pub(crate) struct Session {
    pub(crate) request: Arc<CompileRequest>,
    pub(crate) options: CompileOptions,
    pub(crate) gate: Arc<Gate>,
    pub(crate) evaluator: Evaluator,
    pub(crate) teacher: Teacher,
    checkpoints: Option<Arc<dyn CheckpointSink>>,
    progress: Option<Arc<dyn ProgressSink>>,
    started: Instant,
    elapsed_before: Duration,
    /// An evaluation found every run failing on the model: validation would only fail again.
    pub(crate) student_unreachable: AtomicBool,
}

impl Interrupt {
    pub(crate) fn reason(&self) -> StopReason {
        match self {
            Interrupt::Cancelled => StopReason::Cancelled,
            Interrupt::Deadline => StopReason::Deadline,
            Interrupt::Budget(_) => StopReason::Budget,
        }
    }
}

impl Session {
    pub(crate) fn report(&self, event: ProgressEvent) {
        if let Some(sink) = &self.progress {
            sink.report(event);
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from((self.elapsed_before + self.started.elapsed()).as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs `work` unless the compile is cancelled or out of time first; then `work` is dropped
    /// with every model call and sandbox call it had in flight.
    pub(crate) async fn guarded<T>(&self, work: impl Future<Output = T>) -> Result<T, Interrupt> {
        if let Some(halt) = self.gate.halted() {
            return Err(halt);
        }
        tokio::select! {
            biased;
            halt = self.gate.halted_wait() => Err(halt),
            out = work => Ok(out),
        }
    }

    /// Iterates until a stop rule fires.
    async fn drive(&self, mut state: LoopState) -> CompileOutcome {
        loop {
            if let Some((reason, detail)) = self.stop_rule(&state) {
                return self.finish(state, reason, detail).await;
            }
            state.iteration += 1;
            self.report(ProgressEvent::IterationStarted { iteration: state.iteration });
            let (record, stop) = self.iterate(&mut state).await;
            let accepted = record.outcome.is_accepted();
            state.history.push(record.clone());
            self.report(ProgressEvent::IterationFinished {
                record: Box::new(record),
                best_score: state.best.train.score,
                usage: self.gate.usage(),
            });
            if accepted {
                self.report(ProgressEvent::NewBest {
                    iteration: state.iteration,
                    train: state.best.train.clone(),
                    content_hash: state.best.content_hash.clone(),
                });
            }
            if let Some((reason, detail)) = stop {
                return self.finish(state, reason, detail).await;
            }
            if let Err(e) = self.save(&state).await {
                return self.finish(state, StopReason::Error, e).await;
            }
        }
    }

    /// The first stop rule that holds before another iteration, if any.
    fn stop_rule(&self, state: &LoopState) -> Option<(StopReason, String)> {
        let budget = &self.request.budget;
        if state.best.train.stable {
            return Some((StopReason::Perfect, "every sample of every training example is right".into()));
        }
        if let Some(halt) = self.gate.halted() {
            return Some((halt.reason(), halt.to_string()));
        }
        if state.iteration >= budget.max_iterations {
            return Some((
                StopReason::Budget,
                format!("iteration limit ({}) reached", budget.max_iterations),
            ));
        }
        if state.failed >= self.options.max_failed_iterations {
            let last = state.history.last().and_then(|r| r.failures.last()).map(|f| f.message.clone());
            return Some((
                StopReason::Error,
                format!(
                    "the teacher failed {} iterations in a row; last: {}",
                    state.failed,
                    last.unwrap_or_default()
                ),
            ));
        }
        if state.stale >= self.request.patience {
            return Some((StopReason::NoProgress, format!("no improvement in {} iterations", state.stale)));
        }
        if let Some(what) = self.gate.spent_out() {
            return Some((StopReason::Budget, what));
        }
        if self.gate.calls_left(ModelRole::Teacher).is_some_and(|left| left < 2) {
            return Some((StopReason::Budget, "teacher calls: not enough left for an iteration".into()));
        }
        let size = calls_per_run(&state.best.spec);
        let forward = if state.best_eval.is_some() { 0 } else { self.runs(Split::Train) * size };
        let needed = forward + self.runs(Split::Train) * size + self.runs(Split::Validation) * size;
        if self.gate.calls_left(ModelRole::Student).is_some_and(|left| left < needed) {
            return Some((
                StopReason::Budget,
                format!("student calls: fewer than the {needed} an iteration needs"),
            ));
        }
        None
    }

    /// Workflow runs of one evaluation on `split`.
    pub(crate) fn runs(&self, split: Split) -> u64 {
        let examples = match split {
            Split::Train => self.request.train.len(),
            Split::Validation => self.request.validation.len(),
        };
        examples as u64 * u64::from(self.request.samples_per_example)
    }

    pub(crate) async fn save(&self, state: &LoopState) -> Result<(), String> {
        let Some(sink) = &self.checkpoints else { return Ok(()) };
        let checkpoint = Checkpoint {
            format: CHECKPOINT_FORMAT,
            request_fingerprint: self.request.fingerprint(),
            seed: self.request.seed,
            iteration: state.iteration,
            initial: state.initial.clone(),
            best: state.best.clone(),
            history: state.history.clone(),
            rejected: state.rejected.clone(),
            usage: self.gate.usage(),
            elapsed_ms: self.elapsed_ms(),
            stale_iterations: state.stale,
            failed_iterations: state.failed,
        };
        sink.save(&checkpoint).await.map_err(|e| e.to_string())
    }

    /// Scores the best on the validation examples (unless stopped by the user or the clock) and
    /// builds the outcome.
    async fn finish(&self, state: LoopState, reason: StopReason, detail: String) -> CompileOutcome {
        let mut detail = detail;
        // Not when the user or the clock stopped the compile, nor against a student that is down.
        let wants_validation = !self.request.validation.is_empty()
            && !matches!(reason, StopReason::Cancelled | StopReason::Deadline)
            && !self.student_unreachable.load(Ordering::Relaxed);
        let validation = if wants_validation {
            self.gate.clear_refusal();
            let work = self.evaluator.evaluate(&state.best.spec, &self.request.validation, Split::Validation);
            match self.guarded(work).await {
                Ok(Ok(eval)) if self.gate.refusal().is_none() => Some(eval.summary),
                Ok(Ok(_)) => {
                    detail.push_str("; validation skipped: the budget ran out");
                    None
                }
                Ok(Err(e)) => {
                    detail.push_str(&format!("; validation failed: {e}"));
                    None
                }
                Err(halt) => {
                    detail.push_str(&format!("; validation skipped: {halt}"));
                    None
                }
            }
        } else {
            None
        };
        tracing::info!(%reason, %detail, best = state.best.train.score, "compile finished");
        self.report(ProgressEvent::Finished { stop_reason: reason, best_score: state.best.train.score });
        CompileOutcome {
            stop_reason: reason,
            stop_detail: detail,
            iterations: state.iteration,
            best: state.best,
            initial: state.initial,
            validation,
            history: state.history,
            usage: self.gate.usage(),
            elapsed_ms: self.elapsed_ms(),
        }
    }

    /// The outcome of a compile stopped before the starting workflow was scored.
    fn unscored_outcome(
        &self,
        spec: Option<sgde_workflow::WorkflowSpec>,
        reason: StopReason,
        detail: String,
    ) -> CompileOutcome {
        let spec = spec.unwrap_or_else(|| sgde_workflow::WorkflowSpec {
            schema: sgde_workflow::SCHEMA_ID.to_owned(),
            description: None,
            inputs: serde_json::json!({"type": "object"}),
            output: String::new(),
            nodes: sgde_workflow::NodeMap::new(),
        });
        let candidate =
            Candidate { content_hash: spec.content_hash(), spec, train: unscored(), iteration: 0 };
        self.report(ProgressEvent::Finished { stop_reason: reason, best_score: 0.0 });
        CompileOutcome {
            stop_reason: reason,
            stop_detail: format!("stopped before the starting workflow was scored: {detail}"),
            best: candidate.clone(),
            initial: candidate,
            validation: None,
            iterations: 0,
            history: Vec::new(),
            usage: self.gate.usage(),
            elapsed_ms: self.elapsed_ms(),
        }
    }
}

/// Scores of a workflow that was never evaluated (`runs` is 0).
fn unscored() -> ScoreSummary {
    ScoreSummary {
        score: 0.0,
        per_example: Vec::new(),
        right: 0,
        runs: 0,
        failed_runs: 0,
        stable: false,
        mean_student_tokens: 0.0,
    }
}
