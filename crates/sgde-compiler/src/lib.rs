//! The SGDe compiler: from a task and a few solved examples to a workflow a small student model
//! runs reliably.
//!
//! Semantic Gradient Descent (arXiv 2604.17450) treats a workflow like the weights of a model.
//! Each iteration runs the current workflow on the training examples with the student, several
//! samples each (**forward**); scores every output with a metric and measures how much each node
//! disagrees with itself across samples (**loss**); shows a teacher model the failing and
//! passing traces, the per-node variance and the edits already rejected, and gets a critique per
//! node back (**backward**: the semantic gradient); asks the teacher for typed edit operations —
//! rewrite a prompt, offload a step to Python, wrap a noisy step in consensus, change the graph —
//! and applies them (**update**); then evaluates the candidate and keeps it only if its training
//! score strictly improves, ties going to the cheaper workflow. It stops at a perfect and stable
//! training score, when the budget or the deadline is spent, after `patience` iterations without
//! progress, on cancellation, or when the models keep failing — always with a [`StopReason`].
//!
//! ```no_run
//! # async fn example(deps: sgde_compiler::CompilerDeps, train: Vec<sgde_compiler::Example>) {
//! use sgde_compiler::{CompileRequest, Compiler, Metric};
//!
//! let request = CompileRequest::new(
//!     "Answer arithmetic word problems with a number.",
//!     train,
//!     Metric::Numeric { tolerance: 1e-6 },
//!     "teacher",
//!     "student",
//! );
//! let outcome = Compiler::new(request, deps).expect("valid request").run().await;
//! println!("{}: {:.3}", outcome.stop_reason, outcome.best.train.score);
//! # }
//! ```
//!
//! # Durability
//! After the baseline and after every completed iteration the loop state goes to a
//! [`CheckpointSink`] as a [`Checkpoint`] (best candidate and scores, history, rejected-edit log,
//! spend, counters — no traces). [`Compiler::resume`] continues from one. Every model request
//! carries a sample index derived from the seed and its position (example and sample for the
//! student, iteration and step for the teacher), so a resumed job sends the very requests it sent
//! before and a shared (persistent) response cache answers them: nothing is paid twice.
//!
//! # Layout
//! - [`request`]: [`CompileRequest`], [`Example`], [`Budget`], [`AllowedEdits`]; preflight checks.
//! - [`metric`]: [`Metric`] — exact, numeric, text, JSON, Python in the sandbox.
//! - [`initial`]: the single-`llm`-node workflow made from the task.
//! - [`estimate`](mod@estimate): [`estimate()`] — calls, tokens and dollars; the 422 for a budget too small.
//! - [`options`]: [`CompileOptions`], the service-level knobs (timeouts, concurrency, prompt size).
//! - [`compiler`]: [`Compiler`], the session and the loop with its stop rules.
//! - `iteration`: one iteration — critique, edit, repair, checks, evaluation, accept/reject.
//! - `evaluate`: the forward pass and the loss over m × k concurrent runs; [`ScoreSummary`].
//! - [`variance`]: per-node disagreement across samples.
//! - `condense`: the trace views the teacher reads.
//! - `teacher`: teacher calls with schema validation and one repair round.
//! - [`prompts`]: the prompt files (`prompts/*.md`) and reply schemas (`prompts/*.schema.json`).
//! - [`edits`]: edit kinds, the ablation filter, candidate checks.
//! - `client`: the per-run model client (sample indices, the student role, admission).
//! - `gate`: budget, deadline and cancellation at the door to the models.
//! - [`usage`]: [`CompileUsage`], the compile cost per role.
//! - [`record`]: [`IterationRecord`] and the rest of the iteration log.
//! - [`checkpoint`]: [`Checkpoint`], [`CheckpointSink`], [`MemoryCheckpoints`].
//! - [`progress`]: [`ProgressEvent`], [`ProgressSink`].
//! - [`outcome`]: [`CompileOutcome`], [`StopReason`].
//! - [`error`]: [`CompileError`] — only for requests and checkpoints that cannot be run.

pub mod checkpoint;
mod client;
pub mod compiler;
mod condense;
pub mod edits;
pub mod error;
pub mod estimate;
mod evaluate;
mod gate;
pub mod initial;
mod iteration;
pub mod metric;
pub mod options;
pub mod outcome;
pub mod progress;
pub mod prompts;
pub mod record;
pub mod request;
mod teacher;
pub mod usage;
pub mod variance;

pub use checkpoint::{
    CHECKPOINT_FORMAT, Candidate, Checkpoint, CheckpointError, CheckpointSink, MemoryCheckpoints,
};
pub use client::STUDENT_ROLE;
pub use compiler::{Compiler, CompilerDeps};
pub use edits::{EditKind, calls_per_run, is_allowed, kinds_of};
pub use error::CompileError;
pub use estimate::{Cost, Estimate, PriceTable, estimate};
pub use evaluate::ScoreSummary;
pub use initial::{INITIAL_NODE, initial_spec};
pub use metric::{Metric, Scorer};
pub use options::CompileOptions;
pub use outcome::{CompileOutcome, StopReason};
pub use progress::{ProgressEvent, ProgressSink};
pub use record::{
    Critique, EditAttempt, FailureKind, IterationOutcome, IterationRecord, PhaseDurations, ProposedEdit,
    RejectedEdit, StepFailure, TeacherStep,
};
pub use request::{AllowedEdits, Budget, CompileRequest, Example};
pub use usage::{CompileUsage, ModelRole, RoleUsage};
pub use variance::NodeStats;

/// Runs a compile with default options and no sinks: `Compiler::new(request, deps)?.run()`.
pub async fn compile(request: CompileRequest, deps: CompilerDeps) -> Result<CompileOutcome, CompileError> {
    Ok(Compiler::new(request, deps)?.run().await)
}
