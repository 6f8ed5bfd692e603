//! Data sets: named collections of (inputs, expected) examples that evaluations and compile jobs
//! draw from, and the results of evaluations.
//!
//! The split of a row (train, validation or test) is derived, not stored: rows are ordered by a
//! hash of (seed, row number) and cut by the data set's fractions, so every reader computes the
//! same split, and the counts are exact.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{Result, StoreError};
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

impl SplitSpec {
    /// The fractions are each in [0, 1] and add up to at most 1.
    pub(crate) fn check(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.train)
            || !(0.0..=1.0).contains(&self.validation)
            || self.train + self.validation > 1.0
        {
            return Err(StoreError::Invalid { what: "split fractions" });
        }
        Ok(())
    }

    /// The seed as stored: the `bigint` with the same bits.
    pub(crate) fn stored_seed(&self) -> i64 {
        i64::from_ne_bytes(self.seed.to_ne_bytes())
    }

    /// The split of each of `rows` rows, by row number: the first rows of [`split_order`] are
    /// train, the next validation, the rest test, as many of each as [`split_counts`] says.
    pub(crate) fn row_splits(&self, rows: u32) -> Vec<Split> {
        let (train, validation, _) = split_counts(u64::from(rows), self.train, self.validation);
        let mut splits = vec![Split::Test; rows as usize];
        for (rank, idx) in split_order(self.seed, rows).into_iter().enumerate() {
            let rank = rank as u64;
            splits[idx as usize] = if rank < train {
                Split::Train
            } else if rank < train + validation {
                Split::Validation
            } else {
                Split::Test
            };
        }
        splits
    }
}

/// Rows per split for `n` rows: train and train + validation rounded, test the rest. The one
/// definition of the cut: the record's counts and the rows listed per split both come from it.
pub(crate) fn split_counts(n: u64, train: f64, validation: f64) -> (u64, u64, u64) {
    let cut = |fraction: f64| ((n as f64) * fraction).round().clamp(0.0, n as f64) as u64;
    let t = cut(train);
    let tv = cut(train + validation).max(t);
    (t, tv - t, n - tv)
}

/// Row numbers `0..rows` in split order: by the md5 of `"{seed}:{row}"`, where the seed is
/// written as the signed 64-bit integer it is stored as (`-1` for `u64::MAX`), ties by row
/// number. This is exactly Postgres' `ORDER BY md5(seed::text || ':' || idx::text), idx`
/// (lowercase hex digits order like the digest's bytes, under any collation), so a data set
/// keeps its split on either backend and when moved between them.
pub fn split_order(seed: u64, rows: u32) -> Vec<u32> {
    let seed = i64::from_ne_bytes(seed.to_ne_bytes());
    let mut keyed: Vec<([u8; 16], u32)> =
        (0..rows).map(|idx| (Md5::digest(format!("{seed}:{idx}")).into(), idx)).collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, idx)| idx).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_counts_add_up() {
        assert_eq!(split_counts(100, 0.6, 0.2), (60, 20, 20));
        assert_eq!(split_counts(1319, 0.0, 0.0), (0, 0, 1319));
        assert_eq!(split_counts(3, 0.5, 0.5), (2, 1, 0));
        for n in 0..50 {
            let (t, v, s) = split_counts(n, 0.33, 0.33);
            assert_eq!(t + v + s, n);
        }
    }

    #[test]
    fn split_order_follows_the_md5_of_seed_and_row() {
        // md5("7:0") = dd27b8f2…, md5("7:1") = 6dd6c9f6…, md5("7:2") = 60e5d275…
        assert_eq!(split_order(7, 3), [2, 1, 0]);
        assert!(split_order(7, 0).is_empty());
        let mut all = split_order(u64::MAX, 1000);
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn row_splits_cut_the_order_by_the_counts() {
        let spec = SplitSpec { seed: 7, train: 0.34, validation: 0.33 };
        assert_eq!(spec.row_splits(3), [Split::Test, Split::Validation, Split::Train]);
        let spec = SplitSpec { seed: 42, train: 0.6, validation: 0.2 };
        let splits = spec.row_splits(100);
        let count = |s| splits.iter().filter(|x| **x == s).count() as u64;
        assert_eq!((count(Split::Train), count(Split::Validation), count(Split::Test)), (60, 20, 20));
    }
}
