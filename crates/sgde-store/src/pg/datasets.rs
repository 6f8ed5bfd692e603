//! [`DatasetRepo`] on Postgres.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::{PgStore, to_i64, to_u64};
use crate::datasets::{
    Dataset, DatasetRepo, DatasetRow, EVALUATION_JOB_KIND, EvaluationResult, EvaluationSummary, NewDataset,
    Split, SplitSpec,
};
use crate::error::{Result, StoreError};
use crate::jobs::JobStatus;
use crate::page::{self, CursorKind, Page, PageRequest};

/// Rows written per INSERT when replacing a data set's rows.
const INSERT_BATCH: usize = 500;

/// The columns every read of a data set record selects, in `DatasetRowRecord`'s order.
macro_rules! dataset_columns {
    () => {
        "id, name, description, mapping, split_seed, train_fraction, validation_fraction, row_count, \
         created_by, created_at, updated_at"
    };
}

#[derive(sqlx::FromRow)]
struct DatasetRowRecord {
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

/// Rows per split for `n` rows: train and train + validation rounded, test the rest. The one
/// definition of the cut: the record's counts and the rows listed per split both come from it.
fn split_counts(n: u64, train: f64, validation: f64) -> (u64, u64, u64) {
    let cut = |fraction: f64| ((n as f64) * fraction).round().clamp(0.0, n as f64) as u64;
    let t = cut(train);
    let tv = cut(train + validation).max(t);
    (t, tv - t, n - tv)
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

#[derive(sqlx::FromRow)]
struct ExampleRow {
    idx: i32,
    split: String,
    inputs: Value,
    expected: Value,
}

#[derive(sqlx::FromRow)]
struct ResultRow {
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

#[derive(sqlx::FromRow)]
struct SummaryRow {
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

#[async_trait]
impl DatasetRepo for PgStore {
    async fn create_dataset(&self, new: &NewDataset, by: Option<&str>) -> Result<Dataset> {
        let split = &new.split;
        if !(0.0..=1.0).contains(&split.train)
            || !(0.0..=1.0).contains(&split.validation)
            || split.train + split.validation > 1.0
        {
            return Err(StoreError::Invalid { what: "split fractions" });
        }
        let row: DatasetRowRecord = sqlx::query_as(
            concat!("INSERT INTO datasets (id, name, description, mapping, split_seed, train_fraction, validation_fraction,
                                   created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             RETURNING ", dataset_columns!()),
        )
        .bind(Uuid::now_v7())
        .bind(&new.name)
        .bind(&new.description)
        .bind(&new.mapping)
        .bind(i64::from_ne_bytes(split.seed.to_ne_bytes()))
        .bind(split.train)
        .bind(split.validation)
        .bind(by)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    async fn get_dataset(&self, name: &str) -> Result<Dataset> {
        let row: DatasetRowRecord = sqlx::query_as(concat!(
            "SELECT ",
            dataset_columns!(),
            " FROM datasets WHERE name = $1 AND deleted_at IS NULL"
        ))
        .bind(name)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::not_found("dataset"))?;
        Ok(row.into())
    }

    async fn list_datasets(&self) -> Result<Vec<Dataset>> {
        let rows: Vec<DatasetRowRecord> = sqlx::query_as(concat!(
            "SELECT ",
            dataset_columns!(),
            " FROM datasets WHERE deleted_at IS NULL ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Dataset::from).collect())
    }

    async fn delete_dataset(&self, name: &str) -> Result<()> {
        let done =
            sqlx::query("UPDATE datasets SET deleted_at = now() WHERE name = $1 AND deleted_at IS NULL")
                .bind(name)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "dataset" });
        }
        Ok(())
    }

    async fn replace_dataset_rows(&self, dataset_id: Uuid, rows: &[(Value, Value)]) -> Result<Dataset> {
        let count = i32::try_from(rows.len()).map_err(|_| StoreError::Invalid { what: "row count" })?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT 1 FROM datasets WHERE id = $1 AND deleted_at IS NULL FOR UPDATE")
            .bind(dataset_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound { what: "dataset" })?;
        sqlx::query("DELETE FROM dataset_rows WHERE dataset_id = $1")
            .bind(dataset_id)
            .execute(&mut *tx)
            .await?;
        for (batch_no, batch) in rows.chunks(INSERT_BATCH).enumerate() {
            let first = i32::try_from(batch_no * INSERT_BATCH).unwrap_or(i32::MAX);
            let inputs: Vec<&Value> = batch.iter().map(|(i, _)| i).collect();
            let expected: Vec<&Value> = batch.iter().map(|(_, e)| e).collect();
            sqlx::query(
                "INSERT INTO dataset_rows (dataset_id, idx, inputs, expected)
                 SELECT $1, $2 + ord::int - 1, i, e
                 FROM unnest($3::jsonb[], $4::jsonb[]) WITH ORDINALITY AS t(i, e, ord)",
            )
            .bind(dataset_id)
            .bind(first)
            .bind(inputs)
            .bind(expected)
            .execute(&mut *tx)
            .await?;
        }
        let row: DatasetRowRecord = sqlx::query_as(concat!(
            "UPDATE datasets SET row_count = $2, updated_at = now() WHERE id = $1
             RETURNING ",
            dataset_columns!()
        ))
        .bind(dataset_id)
        .bind(count)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row.into())
    }

    async fn dataset_rows(
        &self,
        dataset_id: Uuid,
        split: Option<Split>,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<DatasetRow>> {
        let d: DatasetRowRecord =
            sqlx::query_as(concat!("SELECT ", dataset_columns!(), " FROM datasets WHERE id = $1"))
                .bind(dataset_id)
                .fetch_one(&self.pool)
                .await
                .map_err(StoreError::not_found("dataset"))?;
        let dataset = Dataset::from(d);
        let n_train = to_i64(dataset.train_rows);
        let n_train_val = to_i64(dataset.train_rows + dataset.validation_rows);
        // Rank rows by a seeded hash of their number; the first `train` rows are train, the
        // next `validation` rows validation, the rest test.
        let rows: Vec<ExampleRow> = sqlx::query_as(
            "WITH ranked AS (
                 SELECT idx, inputs, expected,
                        row_number() OVER (ORDER BY md5($2::text || ':' || idx::text), idx) - 1 AS rk
                 FROM dataset_rows WHERE dataset_id = $1),
             labelled AS (
                 SELECT idx, inputs, expected,
                        CASE WHEN rk < $3 THEN 'train' WHEN rk < $4 THEN 'validation' ELSE 'test' END AS split
                 FROM ranked)
             SELECT idx, split, inputs, expected FROM labelled
             WHERE ($5::text IS NULL OR split = $5)
             ORDER BY idx
             OFFSET $6 LIMIT $7",
        )
        .bind(dataset_id)
        .bind(i64::from_ne_bytes(dataset.split.seed.to_ne_bytes()))
        .bind(n_train)
        .bind(n_train_val)
        .bind(split.map(Split::as_str))
        .bind(i64::from(offset))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let split = match r.split.as_str() {
                    "train" => Split::Train,
                    "validation" => Split::Validation,
                    _ => Split::Test,
                };
                Ok(DatasetRow {
                    index: u32::try_from(r.idx).unwrap_or(0),
                    split,
                    inputs: r.inputs,
                    expected: r.expected,
                })
            })
            .collect()
    }

    async fn record_evaluation_result(&self, r: &EvaluationResult) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO evaluation_results
                (evaluation_id, version_id, example, score, passed, output, expected, error, trace, tokens, cost_usd,
                 latency_us)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT DO NOTHING",
        )
        .bind(r.evaluation_id)
        .bind(r.version_id)
        .bind(i32::try_from(r.example).unwrap_or(i32::MAX))
        .bind(r.score)
        .bind(r.passed)
        .bind(&r.output)
        .bind(&r.expected)
        .bind(&r.error)
        .bind(&r.trace)
        .bind(to_i64(r.tokens))
        .bind(r.cost_usd)
        .bind(to_i64(r.latency_us))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_evaluations(
        &self,
        workflow: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<EvaluationSummary>> {
        let after = page::decode_time(CursorKind::Evaluations, page.cursor.as_deref())?;
        // The payload holds the frozen examples; only its small fields are read here.
        let rows: Vec<SummaryRow> = sqlx::query_as(
            "SELECT id, status, payload ->> 'workflow' AS workflow,
                    (payload -> 'version' ->> 'version_number')::int AS version_number,
                    (payload -> 'baseline' ->> 'version_number')::int AS baseline_number,
                    jsonb_array_length(payload -> 'examples') AS examples, payload -> 'source' AS source,
                    created_at, finished_at
             FROM jobs
             WHERE kind = $1 AND ($2::text IS NULL OR payload ->> 'workflow' = $2)
               AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
             ORDER BY created_at DESC, id DESC
             LIMIT $5",
        )
        .bind(EVALUATION_JOB_KIND)
        .bind(workflow)
        .bind(after.map(|(at, _)| at))
        .bind(after.map(|(_, id)| id))
        .bind(page.fetch())
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .into_iter()
            .map(|r| {
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
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, page, |e| page::encode_time(CursorKind::Evaluations, e.created_at, e.id)))
    }

    async fn evaluation_results(&self, evaluation_id: Uuid) -> Result<Vec<EvaluationResult>> {
        let rows: Vec<ResultRow> = sqlx::query_as(
            "SELECT evaluation_id, version_id, example, score, passed, output, expected, error, trace, tokens,
                    cost_usd, latency_us
             FROM evaluation_results WHERE evaluation_id = $1 ORDER BY version_id, example",
        )
        .bind(evaluation_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| EvaluationResult {
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
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::split_counts;

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
}
