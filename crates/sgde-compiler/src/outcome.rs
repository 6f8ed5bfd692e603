//! How a compile ended.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::checkpoint::Candidate;
use crate::evaluate::ScoreSummary;
use crate::record::IterationRecord;
use crate::usage::CompileUsage;

/// Why the loop stopped. Every compile ends with exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Every sample of every training example is right.
    Perfect,
    /// An iteration, call, token or dollar limit was reached.
    Budget,
    /// The wall-clock limit or deadline passed.
    Deadline,
    Cancelled,
    /// `patience` iterations in a row without an accepted candidate.
    NoProgress,
    /// The models kept failing (teacher steps, an unreachable student) or progress could not be
    /// saved.
    Error,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Perfect => "perfect",
            StopReason::Budget => "budget",
            StopReason::Deadline => "deadline",
            StopReason::Cancelled => "cancelled",
            StopReason::NoProgress => "no_progress",
            StopReason::Error => "error",
        }
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of a compile: the best workflow, its scores, the log and the cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompileOutcome {
    pub stop_reason: StopReason,
    /// The stop reason in words (which limit, which error).
    pub stop_detail: String,
    /// The best candidate: the compiled workflow.
    pub best: Candidate,
    /// The starting workflow and its baseline scores.
    pub initial: Candidate,
    /// The best candidate's scores on the validation examples, if any were given and the compile
    /// was not cancelled or out of time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<ScoreSummary>,
    /// Iterations run (interrupted ones included).
    pub iterations: u32,
    pub history: Vec<IterationRecord>,
    /// The compile cost: teacher and student calls, tokens and dollars.
    pub usage: CompileUsage,
    pub elapsed_ms: u64,
}

impl CompileOutcome {
    /// Expected student tokens per run of the compiled workflow.
    pub fn mean_student_tokens_per_run(&self) -> f64 {
        self.best.train.mean_student_tokens
    }
}
