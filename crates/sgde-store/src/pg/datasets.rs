//! [`DatasetRepo`] on Postgres.

use async_trait::async_trait;
use serde_json::Value;
use uuid::Uuid;

use super::{PgStore, to_i64};
use crate::datasets::{
    Dataset, DatasetRepo, DatasetRow, EVALUATION_JOB_KIND, EvaluationResult, EvaluationSummary, NewDataset,
    Split,
};
use crate::error::{Result, StoreError};
use crate::page::{self, CursorKind, Page, PageRequest};
use crate::rows::datasets::{
    DatasetRowRecord, ResultRow, SplitExampleRow, SummaryRow, dataset_columns, result_columns,
};

/// Rows written per INSERT when replacing a data set's rows.
const INSERT_BATCH: usize = 500;

#[async_trait]
impl DatasetRepo for PgStore {
    async fn create_dataset(&self, new: &NewDataset, by: Option<&str>) -> Result<Dataset> {
        let split = &new.split;
        split.check()?;
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
        .bind(split.stored_seed())
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
        // Rank rows by a seeded hash of their number (see `split_order`, which computes the same
        // order in Rust); the first `train` rows are train, the next `validation` rows
        // validation, the rest test.
        let rows: Vec<SplitExampleRow> = sqlx::query_as(
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
        .bind(dataset.split.stored_seed())
        .bind(n_train)
        .bind(n_train_val)
        .bind(split.map(Split::as_str))
        .bind(i64::from(offset))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(DatasetRow::from).collect())
    }

    async fn record_evaluation_result(&self, r: &EvaluationResult) -> Result<bool> {
        let done = sqlx::query(concat!(
            "INSERT INTO evaluation_results (",
            result_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
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
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(EvaluationResult::from).collect())
    }
}
