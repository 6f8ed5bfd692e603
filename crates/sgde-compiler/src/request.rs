//! What a compile is asked to do: the task, the examples, the metric, the endpoints, the budget
//! and the ablation flags.
//!
//! The request is plain data (serde), because the API stores it with the job and a replica that
//! resumes the job after a crash rebuilds the compiler from it. [`CompileRequest::check`] is the
//! preflight validation: everything that can be known to be wrong before a model is called.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sgde_runtime::PreparedWorkflow;
use sgde_workflow::WorkflowSpec;
use utoipa::ToSchema;

use crate::edits::check_candidate;
use crate::error::CompileError;
use crate::initial::initial_spec;
use crate::metric::Metric;

/// Most samples per example: beyond this the variance estimate stops improving and the cost
/// keeps growing.
pub const MAX_SAMPLES_PER_EXAMPLE: u32 = 16;

/// One solved example: the workflow's inputs and the output the metric compares against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Example {
    /// The inputs object, as the workflow receives it (e.g. `{"question": "..."}`).
    #[schema(value_type = Object)]
    pub inputs: Value,
    /// The expected output: any JSON value (a number, a string, an object, ...).
    pub expected: Value,
}

/// A compile job's description. See the crate docs for what each part drives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompileRequest {
    /// What the workflow must do, in words; the teacher reads it, and without an initial spec it
    /// becomes the single node's system prompt.
    pub task: String,
    /// Where to start; `None` starts from a single `llm` node made from the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<WorkflowSpec>,
    /// Training examples (at least one; three is the usual case).
    pub train: Vec<Example>,
    /// Held-out examples, scored once on the final best candidate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation: Vec<Example>,
    pub metric: Metric,
    /// Endpoint name (or role) of the teacher model.
    pub teacher: String,
    /// Endpoint name of the student; `llm` nodes whose `model` is `student` run on it.
    pub student: String,
    #[serde(default)]
    pub budget: Budget,
    /// Runs per example per evaluation (k), for the variance the teacher sees and for a
    /// "perfect" that is stable rather than lucky.
    #[serde(default = "default_samples")]
    pub samples_per_example: u32,
    /// Which structures the teacher may change (ablation flags).
    #[serde(default)]
    pub allowed: AllowedEdits,
    /// Seeds every sample index, so a compile is reproducible given the same model replies.
    #[serde(default)]
    pub seed: u64,
    /// Stop after this many consecutive iterations without an accepted candidate.
    #[serde(default = "default_patience")]
    pub patience: u32,
}

fn default_samples() -> u32 {
    3
}

fn default_patience() -> u32 {
    3
}

/// Limits on what a compile may spend. Unset limits are unlimited, except iterations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Teacher iterations (critique + edit + evaluation), at least 1.
    #[serde(default = "default_iterations")]
    pub max_iterations: u32,
    /// Teacher calls actually sent (cache hits are free and do not count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_teacher_calls: Option<u64>,
    /// Student calls actually sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_student_calls: Option<u64>,
    /// Teacher plus student tokens (prompt and completion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Teacher plus student cost in US dollars, as the endpoints price it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_usd: Option<f64>,
    /// Compile time in milliseconds, summed over resumes (time spent dead does not count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration_ms: Option<u64>,
    /// Absolute wall-clock deadline, Unix epoch milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_unix_ms: Option<u64>,
}

fn default_iterations() -> u32 {
    10
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            max_iterations: default_iterations(),
            max_teacher_calls: None,
            max_student_calls: None,
            max_tokens: None,
            max_usd: None,
            max_duration_ms: None,
            deadline_unix_ms: None,
        }
    }
}

/// The ablation flags: which kinds of edit the compiler applies. Ops of a kind that is not
/// allowed are dropped (and recorded); the teacher is told the allowed kinds up front.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowedEdits {
    /// Prompts, decoding parameters and output parsers of `llm` nodes.
    #[serde(default = "yes")]
    pub prompts: bool,
    /// Python: `offload_to_code`, `set_code`, inserting `code` nodes.
    #[serde(default = "yes")]
    pub offloading: bool,
    /// Structural consensus: wrapping, re-voting and unwrapping.
    #[serde(default = "yes")]
    pub consensus: bool,
    /// The DAG: inserting and removing nodes, rewiring, changing the output.
    #[serde(default = "yes")]
    pub topology: bool,
}

fn yes() -> bool {
    true
}

impl Default for AllowedEdits {
    fn default() -> Self {
        Self { prompts: true, offloading: true, consensus: true, topology: true }
    }
}

impl AllowedEdits {
    /// Only prompt edits: the "prompt-only optimiser" baseline of the paper.
    pub fn prompts_only() -> Self {
        Self { prompts: true, offloading: false, consensus: false, topology: false }
    }

    pub fn any(&self) -> bool {
        self.prompts || self.offloading || self.consensus || self.topology
    }
}

impl CompileRequest {
    /// A request with the defaults for everything but the essentials.
    pub fn new(
        task: impl Into<String>,
        train: Vec<Example>,
        metric: Metric,
        teacher: impl Into<String>,
        student: impl Into<String>,
    ) -> Self {
        Self {
            task: task.into(),
            initial: None,
            train,
            validation: Vec::new(),
            metric,
            teacher: teacher.into(),
            student: student.into(),
            budget: Budget::default(),
            samples_per_example: default_samples(),
            allowed: AllowedEdits::default(),
            seed: 0,
            patience: default_patience(),
        }
    }

    /// The spec the compile starts from: the given one, or one made from the task.
    pub fn starting_spec(&self) -> Result<WorkflowSpec, CompileError> {
        match &self.initial {
            Some(spec) => Ok(spec.clone()),
            None => initial_spec(&self.task, &self.train, &self.metric),
        }
    }

    /// Preflight validation of everything but the budget (see [`crate::estimate()`] for that).
    pub fn check(&self) -> Result<(), CompileError> {
        if self.task.trim().is_empty() {
            return Err(CompileError::invalid("task", "describe the task"));
        }
        if self.train.is_empty() {
            return Err(CompileError::invalid("train", "give at least one training example"));
        }
        if !(1..=MAX_SAMPLES_PER_EXAMPLE).contains(&self.samples_per_example) {
            return Err(CompileError::invalid(
                "samples_per_example",
                format!("must be between 1 and {MAX_SAMPLES_PER_EXAMPLE}"),
            ));
        }
        for (field, name) in [("teacher", &self.teacher), ("student", &self.student)] {
            if name.trim().is_empty() {
                return Err(CompileError::invalid(field, "name an endpoint"));
            }
        }
        if self.budget.max_iterations == 0 {
            return Err(CompileError::invalid("budget.max_iterations", "must be at least 1"));
        }
        if self.budget.max_usd.is_some_and(|usd| !usd.is_finite() || usd < 0.0) {
            return Err(CompileError::invalid("budget.max_usd", "must be a non-negative number"));
        }
        if self.patience == 0 {
            return Err(CompileError::invalid("patience", "must be at least 1"));
        }
        if !self.allowed.any() {
            return Err(CompileError::invalid("allowed", "allow at least one kind of edit"));
        }
        self.metric.check()?;
        let spec = self.starting_spec()?;
        check_candidate(&spec, &self.student).map_err(|e| CompileError::invalid("initial", e))?;
        let prepared = PreparedWorkflow::new(spec)
            .map_err(|e| CompileError::invalid("initial", format!("the workflow is not runnable: {e}")))?;
        for (split, examples) in [("train", &self.train), ("validation", &self.validation)] {
            for (i, example) in examples.iter().enumerate() {
                let errors = prepared.input_errors(&example.inputs);
                if let Some((at, message)) = errors.first() {
                    let at = if at.is_empty() { String::new() } else { format!(" at {at}") };
                    return Err(CompileError::invalid(
                        format!("{split}[{i}].inputs"),
                        format!("does not match the workflow's inputs{at}: {message}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// sha256 of the request's canonical JSON: a checkpoint records it so that it is never
    /// resumed under a different request.
    pub fn fingerprint(&self) -> String {
        sgde_workflow::canonical::content_hash(self)
    }
}
