//! Durable loop state: what a compile job needs to continue on another replica.
//!
//! A [`Checkpoint`] is written after the baseline evaluation and after every completed
//! iteration. It holds the best candidate with its scores, the history, the rejected-edit log,
//! the spend so far and the counters of the stopping rules — but no traces: resuming re-runs the
//! best candidate's forward pass, which the response cache answers without a paid model call
//! (every sample index is a function of the seed and the example, never of the process).
//!
//! The loop never holds a "current" candidate apart from the best: SGDe as implemented here is
//! greedy (a candidate is kept only if it beats the best), so the next iteration always starts
//! from the best.

use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sgde_workflow::WorkflowSpec;
use utoipa::ToSchema;

use crate::evaluate::ScoreSummary;
use crate::record::{IterationRecord, RejectedEdit};
use crate::usage::CompileUsage;

/// Version of the checkpoint format this crate writes and reads.
pub const CHECKPOINT_FORMAT: u32 = 1;

/// A workflow with its training scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Candidate {
    pub spec: WorkflowSpec,
    /// `sha256:…` of the spec's canonical form.
    pub content_hash: String,
    pub train: ScoreSummary,
    /// The iteration that produced it (0 = the starting workflow).
    pub iteration: u32,
}

/// The loop state after a completed iteration; see the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Checkpoint {
    /// [`CHECKPOINT_FORMAT`] of the writer.
    pub format: u32,
    /// [`crate::CompileRequest::fingerprint`] of the request it belongs to.
    pub request_fingerprint: String,
    /// The request's seed; with the example and sample indices it determines every sample index.
    pub seed: u64,
    /// Iterations completed (0 = only the baseline was evaluated).
    pub iteration: u32,
    pub initial: Candidate,
    pub best: Candidate,
    pub history: Vec<IterationRecord>,
    pub rejected: Vec<RejectedEdit>,
    /// Spend so far, which the budget keeps counting from.
    pub usage: CompileUsage,
    /// Compile time so far (time between a crash and the resume does not count).
    pub elapsed_ms: u64,
    /// Consecutive iterations without an accepted candidate.
    pub stale_iterations: u32,
    /// Consecutive iterations in which a teacher step failed.
    pub failed_iterations: u32,
}

/// A checkpoint could not be stored.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint not saved: {0}")]
pub struct CheckpointError(pub String);

/// Where checkpoints go (the API implements it on Postgres). A failed save stops the compile
/// with `error`: a job that cannot record its progress should not keep spending money.
#[async_trait]
pub trait CheckpointSink: Send + Sync {
    async fn save(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError>;
}

/// Keeps every checkpoint in memory, for tests and single-process use.
#[derive(Debug, Default)]
pub struct MemoryCheckpoints {
    saved: Mutex<Vec<Checkpoint>>,
}

impl MemoryCheckpoints {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn all(&self) -> Vec<Checkpoint> {
        self.saved.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn last(&self) -> Option<Checkpoint> {
        self.saved.lock().unwrap_or_else(PoisonError::into_inner).last().cloned()
    }
}

#[async_trait]
impl CheckpointSink for MemoryCheckpoints {
    async fn save(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        self.saved.lock().unwrap_or_else(PoisonError::into_inner).push(checkpoint.clone());
        Ok(())
    }
}
