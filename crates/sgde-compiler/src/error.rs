//! What can go wrong before a compile starts.
//!
//! Once the loop runs, nothing is an error in this sense: teacher failures, invalid edits,
//! budget exhaustion and even a student endpoint that is down are recorded and end the job with a
//! [`StopReason`](crate::StopReason). A [`CompileError`] means the request (or the checkpoint
//! handed to [`Compiler::resume`](crate::Compiler::resume)) is unusable, which the API turns into
//! a 422 rather than a failed job.

use crate::estimate::Estimate;

/// A compile request or checkpoint that cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// A field of the request is missing, out of range or inconsistent with another.
    #[error("invalid compile request: {field}: {message}")]
    InvalidRequest { field: String, message: String },
    /// Preflight: the budget cannot pay for the baseline evaluation plus one full iteration.
    #[error(
        "the budget cannot fit one full iteration: {resource} needs about {needed}, the budget allows {limit}"
    )]
    BudgetTooSmall { resource: &'static str, needed: f64, limit: f64, estimate: Box<Estimate> },
    /// The checkpoint was written by another request or by an incompatible version.
    #[error("cannot resume from this checkpoint: {0}")]
    CheckpointMismatch(String),
}

impl CompileError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidRequest { field: field.into(), message: message.into() }
    }
}
