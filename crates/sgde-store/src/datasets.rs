//! Data sets: named collections of (inputs, expected) examples that evaluations and compile jobs
//! draw from, and the results of evaluations.
//!
//! The split of a row (train, validation or test) is derived, not stored: rows are ordered by a
//! hash of (seed, row number) and cut by the data set's fractions, so every reader computes the
//! same split, and the counts are exact.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::Result;
use crate::jobs::JobStatus;
use crate::page::{Page, PageRequest};

/// The queue job kind of evaluations.
pub const EVALUATION_JOB_KIND: &str = "evaluation";

/// Which part of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Validation,
    Test,
}

impl Split {
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }
}

/// How a data set is split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    pub seed: u64,
    /// Fraction of rows in `train`; default 0.
    #[serde(default)]
    pub train: f64,
    /// Fraction of rows in `validation`; default 0. The rest is `test`.
    #[serde(default)]
    pub validation: f64,
}

impl Default for SplitSpec {
    fn default() -> Self {
        Self { seed: 0, train: 0.0, validation: 0.0 }
    }
}

/// What creating a data set takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDataset {
    pub name: String,
    pub description: Option<String>,
    /// Source field → destination (`inputs.<name>` or `expected`), as uploaded.
    pub mapping: Value,
    pub split: SplitSpec,
}

/// A data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Dataset {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// Source field of an uploaded line → `inputs.<name>` or `expected`.
    #[schema(value_type = Object)]
    pub mapping: Value,
    pub split: SplitSpec,
    pub rows: u64,
    /// Rows per split.
    pub train_rows: u64,
    pub validation_rows: u64,
    pub test_rows: u64,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DatasetRow {
    /// Row number (0-based, upload order).
    pub index: u32,
    pub split: Split,
    #[schema(value_type = Object)]
    pub inputs: Value,
    #[schema(value_type = Object)]
    pub expected: Value,
}

/// One example's outcome in an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EvaluationResult {
    pub evaluation_id: Uuid,
    pub version_id: Uuid,
    /// Position of the example in the evaluation.
    pub example: u32,
    /// The metric's score in [0, 1]; `passed` when it is 1.
    pub score: f64,
    pub passed: bool,
    #[schema(value_type = Option<Object>)]
    pub output: Option<Value>,
    #[schema(value_type = Object)]
    pub expected: Value,
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    /// The run's trace, kept for failures only.
    #[schema(value_type = Option<Object>)]
    pub trace: Option<Value>,
    pub tokens: u64,
    pub cost_usd: f64,
    pub latency_us: u64,
}

/// An evaluation in a list: what it measures and where it stands, without its examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EvaluationSummary {
    pub id: Uuid,
    pub status: JobStatus,
    pub workflow: String,
    pub version_number: i32,
    pub baseline_number: Option<i32>,
    pub examples: u64,
    /// Where the examples came from (`{"dataset", "split", "rows"}` or `{"inline": n}`).
    #[schema(value_type = Object)]
    pub source: Value,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait DatasetRepo: Send + Sync {
    /// `Conflict { what: "dataset name" }` if a live data set has the name.
    async fn create_dataset(&self, new: &NewDataset, by: Option<&str>) -> Result<Dataset>;

    async fn get_dataset(&self, name: &str) -> Result<Dataset>;

    async fn list_datasets(&self) -> Result<Vec<Dataset>>;

    /// Soft delete; the name becomes free.
    async fn delete_dataset(&self, name: &str) -> Result<()>;

    /// Replaces all rows of the data set (in one transaction) with `rows` (inputs, expected).
    async fn replace_dataset_rows(&self, dataset_id: Uuid, rows: &[(Value, Value)]) -> Result<Dataset>;

    /// Rows of one split (or all), in row order; `offset`/`limit` page through them.
    async fn dataset_rows(
        &self,
        dataset_id: Uuid,
        split: Option<Split>,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<DatasetRow>>;

    /// Records one example's outcome; a second record for the same example is ignored (a
    /// resumed evaluation never counts an example twice). Returns whether it was new.
    async fn record_evaluation_result(&self, result: &EvaluationResult) -> Result<bool>;

    /// Every outcome of an evaluation, by version and example.
    async fn evaluation_results(&self, evaluation_id: Uuid) -> Result<Vec<EvaluationResult>>;

    /// Evaluations newest first, optionally of one workflow.
    async fn list_evaluations(
        &self,
        workflow: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<EvaluationSummary>>;
}
