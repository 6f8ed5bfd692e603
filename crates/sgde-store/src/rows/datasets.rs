//! Rows of `datasets`, `dataset_rows` and `evaluation_results`, and evaluation summaries read
//! from the queue's jobs.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::datasets::{
    Dataset, DatasetRow, EvaluationResult, EvaluationSummary, Split, SplitSpec, split_counts,
};
use crate::error::{Result, StoreError};
use crate::jobs::JobStatus;
use crate::pg::to_u64;

/// The columns every read of a data set record selects, in [`DatasetRowRecord`]'s order.
macro_rules! dataset_columns {
    () => {
        "id, name, description, mapping, split_seed, train_fraction, validation_fraction, row_count, \
         created_by, created_at, updated_at"
    };
}
pub(crate) use dataset_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct DatasetRowRecord {
    id: Uuid,
    name: String,
    description: Option<String>,
    mapping: Value,
    split_seed: i64,
    train_fraction: f64,
    validation_fraction: f64,
    row_count: i32,
    created_by: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<DatasetRowRecord> for Dataset {
    fn from(r: DatasetRowRecord) -> Self {
        let rows = u64::try_from(r.row_count).unwrap_or(0);
        let (train_rows, validation_rows, test_rows) =
            split_counts(rows, r.train_fraction, r.validation_fraction);
        Dataset {
            id: r.id,
            name: r.name,
            description: r.description,
            mapping: r.mapping,
            split: SplitSpec {
                seed: u64::from_ne_bytes(r.split_seed.to_ne_bytes()),
                train: r.train_fraction,
                validation: r.validation_fraction,
            },
            rows,
            train_rows,
            validation_rows,
            test_rows,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// One example of a data set, without its split.
#[derive(sqlx::FromRow)]
pub(crate) struct ExampleRow {
    pub(crate) idx: i32,
    inputs: Value,
    expected: Value,
}

impl ExampleRow {
    pub(crate) fn into_row(self, split: Split) -> DatasetRow {
        DatasetRow {
            index: u32::try_from(self.idx).unwrap_or(0),
            split,
            inputs: self.inputs,
            expected: self.expected,
        }
    }
}

/// An example with the split Postgres labelled it with.
#[derive(sqlx::FromRow)]
pub(crate) struct SplitExampleRow {
    #[sqlx(flatten)]
    example: ExampleRow,
    split: String,
}

impl From<SplitExampleRow> for DatasetRow {
    fn from(r: SplitExampleRow) -> Self {
        let split = match r.split.as_str() {
            "train" => Split::Train,
            "validation" => Split::Validation,
            _ => Split::Test,
        };
        r.example.into_row(split)
    }
}

/// The columns every read of evaluation results selects, in [`ResultRow`]'s order.
macro_rules! result_columns {
    () => {
        "evaluation_id, version_id, example, score, passed, output, expected, error, trace, tokens, \
         cost_usd, latency_us"
    };
}
pub(crate) use result_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct ResultRow {
    evaluation_id: Uuid,
    version_id: Uuid,
    example: i32,
    score: f64,
    passed: bool,
    output: Option<Value>,
    expected: Value,
    error: Option<Value>,
    trace: Option<Value>,
    tokens: i64,
    cost_usd: f64,
    latency_us: i64,
}

impl From<ResultRow> for EvaluationResult {
    fn from(r: ResultRow) -> Self {
        EvaluationResult {
            evaluation_id: r.evaluation_id,
            version_id: r.version_id,
            example: u32::try_from(r.example).unwrap_or(0),
            score: r.score,
            passed: r.passed,
            output: r.output,
            expected: r.expected,
            error: r.error,
            trace: r.trace,
            tokens: to_u64(r.tokens),
            cost_usd: r.cost_usd,
            latency_us: to_u64(r.latency_us),
        }
    }
}

/// An evaluation job with the small fields of its payload.
#[derive(sqlx::FromRow)]
pub(crate) struct SummaryRow {
    id: Uuid,
    status: String,
    workflow: Option<String>,
    version_number: Option<i32>,
    baseline_number: Option<i32>,
    examples: Option<i32>,
    source: Option<Value>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl TryFrom<SummaryRow> for EvaluationSummary {
    type Error = StoreError;

    fn try_from(r: SummaryRow) -> Result<Self> {
        Ok(EvaluationSummary {
            id: r.id,
            status: JobStatus::parse(&r.status)?,
            workflow: r.workflow.unwrap_or_default(),
            version_number: r.version_number.unwrap_or_default(),
            baseline_number: r.baseline_number,
            examples: r.examples.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
            source: r.source.unwrap_or(Value::Null),
            created_at: r.created_at,
            finished_at: r.finished_at,
        })
    }
}
