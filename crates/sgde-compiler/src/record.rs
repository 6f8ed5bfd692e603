//! The iteration log: what the teacher said, what was tried, what happened and what it cost.
//!
//! Records are plain serde data because they are checkpointed with the job and served by the
//! API (`GET /v1/compile-jobs/{id}/iterations`). They hold summaries and scores, never traces:
//! traces are large and can be replayed from the response cache.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sgde_workflow::EditOp;
use utoipa::ToSchema;

use crate::edits::EditKind;
use crate::evaluate::ScoreSummary;
use crate::usage::CompileUsage;
use crate::variance::NodeStats;

/// One node's critique: the semantic gradient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Critique {
    /// Node address (`extract`, `solve/program`), or `workflow` for the whole graph.
    pub node: String,
    /// What the node does wrong, with evidence from the traces.
    pub critique: String,
    /// `high`, `medium` or `low`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// The change the critic would make.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
}

/// The teacher's reply to the critique step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CritiqueReply {
    #[serde(default)]
    pub(crate) diagnosis: Option<String>,
    pub(crate) critiques: Vec<Critique>,
}

/// The teacher's reply to the edit step (and to a repair request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EditReply {
    #[serde(default)]
    pub(crate) rationale: Option<String>,
    pub(crate) edits: Vec<EditOp>,
}

/// One proposed edit operation and whether the ablation flags let it through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProposedEdit {
    pub op: EditOp,
    /// One line, for logs and the teacher's rejected-edit log.
    pub summary: String,
    /// Kinds of change the op makes.
    pub kinds: Vec<EditKind>,
    /// False when a kind it needs is not allowed: the op was dropped, not applied.
    pub allowed: bool,
}

/// One list of edits the teacher proposed (the first, or the one after a repair request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EditAttempt {
    pub edits: Vec<ProposedEdit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
    /// Why applying the allowed edits failed (unknown node, invalid result, ...), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Which teacher step a failure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TeacherStep {
    Critique,
    Edit,
    /// The edit step again, after an edit list that could not be applied.
    Repair,
}

/// How a teacher step went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The endpoint failed (HTTP errors after retries, unreachable, refused).
    Model,
    /// No reply within the teacher timeout.
    Timeout,
    /// The reply was not JSON of the required shape, even after a repair round.
    InvalidReply,
}

/// A teacher step that did not produce a usable reply, or needed a repair round to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepFailure {
    pub step: TeacherStep,
    pub kind: FailureKind,
    pub message: String,
    /// The repair round fixed it; the step went on.
    #[serde(default)]
    pub recovered: bool,
}

/// How an iteration ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum IterationOutcome {
    /// The candidate became the best.
    Accepted { reason: String },
    /// The candidate was evaluated (or found invalid, empty or a repeat) and not kept.
    Rejected { reason: String },
    /// A teacher step failed; there was no candidate.
    Failed { reason: String },
    /// Budget, deadline or cancellation cut the iteration short; it did not count.
    Interrupted { reason: String },
}

impl IterationOutcome {
    pub fn is_accepted(&self) -> bool {
        matches!(self, IterationOutcome::Accepted { .. })
    }
}

/// Wall time of the phases of an iteration, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PhaseDurations {
    /// Running the current best on the training examples (zero when its traces were at hand).
    pub forward_ms: u64,
    pub critique_ms: u64,
    /// The edit step, its repair round, applying and checking.
    pub edit_ms: u64,
    pub evaluate_ms: u64,
    pub total_ms: u64,
}

/// Everything about one iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IterationRecord {
    /// 1-based.
    pub iteration: u32,
    /// Training score of the best candidate when the iteration started.
    pub best_score_before: f64,
    /// Per-node variance of the best candidate's forward pass, by node address.
    pub node_variance: BTreeMap<String, NodeStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<String>,
    pub critiques: Vec<Critique>,
    /// The edit list, and the repaired one if the first could not be applied.
    pub attempts: Vec<EditAttempt>,
    /// Content hash of the candidate, if edits produced one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_hash: Option<String>,
    /// The candidate's training scores, if it was evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<ScoreSummary>,
    pub outcome: IterationOutcome,
    /// Teacher steps that failed or needed a repair round.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<StepFailure>,
    /// What this iteration spent.
    pub usage: CompileUsage,
    pub durations: PhaseDurations,
}

/// An edit list that was not kept, as the teacher sees it in later iterations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RejectedEdit {
    pub iteration: u32,
    pub summaries: Vec<String>,
    pub reason: String,
    /// Content hash of the rejected candidate, so a repeat is rejected without a new evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_hash: Option<String>,
}
