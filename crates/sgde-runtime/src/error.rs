//! Why a node or a run failed. Every error names its node.

use serde::{Deserialize, Serialize};

/// What went wrong in one node, serialisable into traces and API answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("node `{node}` failed ({kind}): {message}")]
pub struct NodeError {
    /// Path of the node (`solve[2]/run`).
    pub node: String,
    pub kind: NodeErrorKind,
    pub message: String,
}

/// A stable code for each way a node can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeErrorKind {
    /// A template referenced something missing or ran out of fuel.
    Template,
    /// The model call failed after retries.
    Model,
    /// The model's reply did not contain what the parser expected.
    Parse,
    /// The Python step raised, broke a limit, or returned something that is not JSON.
    Code,
    /// The node took longer than its timeout.
    Timeout,
    /// The consensus vote produced no value (quorum, majority or tie).
    Vote,
}

impl NodeErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeErrorKind::Template => "template",
            NodeErrorKind::Model => "model",
            NodeErrorKind::Parse => "parse",
            NodeErrorKind::Code => "code",
            NodeErrorKind::Timeout => "timeout",
            NodeErrorKind::Vote => "vote",
        }
    }
}

impl std::fmt::Display for NodeErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run failed as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunError {
    #[error("inputs do not match the workflow's input schema: {}", .errors.join("; "))]
    Inputs { errors: Vec<String> },
    #[error(transparent)]
    Node(NodeError),
    #[error("the run exceeded its deadline of {deadline_ms} ms")]
    Deadline { deadline_ms: u64 },
}

impl RunError {
    /// A stable code for API answers and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            RunError::Inputs { .. } => "invalid_inputs",
            RunError::Node(e) => match e.kind {
                NodeErrorKind::Template => "template_error",
                NodeErrorKind::Model => "model_error",
                NodeErrorKind::Parse => "parse_error",
                NodeErrorKind::Code => "code_error",
                NodeErrorKind::Timeout => "node_timeout",
                NodeErrorKind::Vote => "vote_failed",
            },
            RunError::Deadline { .. } => "deadline_exceeded",
        }
    }
}
