//! [`DatasetRepo`] on SQLite.
//!
//! Postgres locks the data set (`FOR UPDATE`) while replacing its rows; here the replacement is
//! one `BEGIN IMMEDIATE` transaction on the single writer connection, which no other writer can
//! interleave with. SQLite has no `md5`, so the split of the rows is computed in Rust with
//! [`crate::datasets::split_order`], which orders rows exactly as Postgres' query does: a data
//! set has the same split on both backends. It depends only on the seed and the row count, so
//! only the rows of the page asked for are read, in one read transaction with the data set's
//! record (so that the count and the rows agree).

use async_trait::async_trait;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::{SqliteStore, now};
use crate::datasets::{
    Dataset, DatasetRepo, DatasetRow, EVALUATION_JOB_KIND, EvaluationResult, EvaluationSummary, NewDataset,
    Split,
};
use crate::error::{Result, StoreError};
use crate::page::{self, CursorKind, Page, PageRequest};
use crate::pg::to_i64;
use crate::rows::datasets::{
    DatasetRowRecord, ExampleRow, ResultRow, SummaryRow, dataset_columns, result_columns,
};

/// Rows written per INSERT when replacing a data set's rows (each batch is one JSON array).
const INSERT_BATCH: usize = 500;

#[async_trait]
impl DatasetRepo for SqliteStore {
    async fn create_dataset(&self, new: &NewDataset, by: Option<&str>) -> Result<Dataset> {
        let split = &new.split;
        split.check()?;
        let row: DatasetRowRecord = sqlx::query_as(concat!(
            "INSERT INTO datasets (id, name, description, mapping, split_seed, train_fraction,
                                   validation_fraction, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
             RETURNING ",
            dataset_columns!()
        ))
        .bind(Uuid::now_v7())
        .bind(&new.name)
        .bind(&new.description)
        .bind(&new.mapping)
        .bind(split.stored_seed())
        .bind(split.train)
        .bind(split.validation)
        .bind(by)
        .bind(now())
        .fetch_one(&self.writer)
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
        .fetch_one(&self.reader)
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
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().map(Dataset::from).collect())
    }

    async fn delete_dataset(&self, name: &str) -> Result<()> {
        let done = sqlx::query("UPDATE datasets SET deleted_at = $2 WHERE name = $1 AND deleted_at IS NULL")
            .bind(name)
            .bind(now())
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "dataset" });
        }
        Ok(())
    }

    async fn replace_dataset_rows(&self, dataset_id: Uuid, rows: &[(Value, Value)]) -> Result<Dataset> {
        let count = i32::try_from(rows.len()).map_err(|_| StoreError::Invalid { what: "row count" })?;
        let mut tx = self.begin().await?;
        sqlx::query("SELECT 1 FROM datasets WHERE id = $1 AND deleted_at IS NULL")
            .bind(dataset_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound { what: "dataset" })?;
        sqlx::query("DELETE FROM dataset_rows WHERE dataset_id = $1")
            .bind(dataset_id)
            .execute(&mut *tx)
            .await?;
        for (batch_no, batch) in rows.chunks(INSERT_BATCH).enumerate() {
            let first = i64::try_from(batch_no * INSERT_BATCH).unwrap_or(i64::MAX);
            // `->` keeps each value's JSON text as given (numbers are not re-rendered).
            sqlx::query(
                "INSERT INTO dataset_rows (dataset_id, idx, inputs, expected)
                 SELECT $1, $2 + t.key, t.value -> '$[0]', t.value -> '$[1]' FROM json_each($3) AS t",
            )
            .bind(dataset_id)
            .bind(first)
            .bind(Json(batch))
            .execute(&mut *tx)
            .await?;
        }
        let row: DatasetRowRecord = sqlx::query_as(concat!(
            "UPDATE datasets SET row_count = $2, updated_at = $3 WHERE id = $1
             RETURNING ",
            dataset_columns!()
        ))
        .bind(dataset_id)
        .bind(count)
        .bind(now())
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
        let mut tx = self.reader.begin().await?;
        let d: DatasetRowRecord =
            sqlx::query_as(concat!("SELECT ", dataset_columns!(), " FROM datasets WHERE id = $1"))
                .bind(dataset_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::not_found("dataset"))?;
        let dataset = Dataset::from(d);
        let n = u32::try_from(dataset.rows).map_err(|_| StoreError::Corrupt("data set row count".into()))?;
        let splits = dataset.split.row_splits(n);
        let page: Vec<u32> = (0..n)
            .filter(|&idx| split.is_none_or(|s| splits[idx as usize] == s))
            .skip(offset as usize)
            .take(limit as usize)
            .collect();
        if page.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<ExampleRow> = sqlx::query_as(
            "SELECT idx, inputs, expected FROM dataset_rows
             WHERE dataset_id = $1 AND idx IN (SELECT value FROM json_each($2))
             ORDER BY idx",
        )
        .bind(dataset_id)
        .bind(Json(&page))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter()
            .map(|r| {
                let split =
                    usize::try_from(r.idx).ok().and_then(|i| splits.get(i)).copied().ok_or_else(|| {
                        StoreError::Corrupt(format!("data set row {} beyond its row count {n}", r.idx))
                    })?;
                Ok(r.into_row(split))
            })
            .collect()
    }

    async fn record_evaluation_result(&self, r: &EvaluationResult) -> Result<bool> {
        let done = sqlx::query(concat!(
            "INSERT INTO evaluation_results (",
            result_columns!(),
            ", created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT DO NOTHING"
        ))
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
        .bind(now())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_evaluations(
        &self,
        workflow: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<EvaluationSummary>> {
        let after = page::decode_time(CursorKind::Evaluations, page.cursor.as_deref())?;
        // The payload holds the frozen examples; only its small fields are returned.
        let rows: Vec<SummaryRow> = sqlx::query_as(
            "SELECT id, status, payload ->> '$.workflow' AS workflow,
                    CAST(payload ->> '$.version.version_number' AS INTEGER) AS version_number,
                    CAST(payload ->> '$.baseline.version_number' AS INTEGER) AS baseline_number,
                    json_array_length(payload, '$.examples') AS examples, payload -> '$.source' AS source,
                    created_at, finished_at
             FROM jobs
             WHERE kind = $1 AND ($2 IS NULL OR payload ->> '$.workflow' = $2)
               AND ($3 IS NULL OR (created_at, id) < ($3, $4))
             ORDER BY created_at DESC, id DESC
             LIMIT $5",
        )
        .bind(EVALUATION_JOB_KIND)
        .bind(workflow)
        .bind(after.map(|(at, _)| at))
        .bind(after.map(|(_, id)| id))
        .bind(page.fetch())
        .fetch_all(&self.reader)
        .await?;
        let items = rows.into_iter().map(EvaluationSummary::try_from).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, page, |e| page::encode_time(CursorKind::Evaluations, e.created_at, e.id)))
    }

    async fn evaluation_results(&self, evaluation_id: Uuid) -> Result<Vec<EvaluationResult>> {
        let rows: Vec<ResultRow> = sqlx::query_as(concat!(
            "SELECT ",
            result_columns!(),
            " FROM evaluation_results WHERE evaluation_id = $1 ORDER BY version_id, example"
        ))
        .bind(evaluation_id)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().map(EvaluationResult::from).collect())
    }
}
