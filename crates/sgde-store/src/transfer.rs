//! Moving a deployment from the embedded SQLite store to Postgres (`sgde migrate-store`):
//! every row of every table, with its ids, hashes and timestamps, in one Postgres transaction.
//!
//! The copy is driven by the *target's* catalogue: for each table, Postgres' column types say how
//! to read the SQLite value (a 16-byte blob is a uuid, RFC 3339 text a `timestamptz`, JSON text a
//! `jsonb`, a JSON array a `text[]`, 0/1 a boolean), so a column added to both schemas is copied
//! without touching this file; a table added to the schema must be added to [`TABLES`] (a test
//! compares the list with the catalogue). Rows go in batches of multi-row `INSERT`s, parents
//! before children, and the whole copy commits or nothing does. Every table is read inside one
//! SQLite read transaction, so the copy is one consistent snapshot even if a service is still
//! writing to the file. The target must be empty: merging two histories is not a copy.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Postgres, Row, Sqlite, Transaction};
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::pg::PgStore;
use crate::sqlite::SqliteStore;

/// Every table, parents before children, with the order that keeps references valid inside a
/// table (a version's parent is an earlier version of the same workflow).
pub const TABLES: &[(&str, &str)] = &[
    ("model_endpoints", "created_at, id"),
    ("workflows", "created_at, id"),
    ("workflow_versions", "workflow_id, number"),
    ("workflow_labels", "workflow_id, name"),
    ("workflow_label_history", "id"),
    ("executions", "created_at, id"),
    ("execution_feedback", "execution_id"),
    ("api_keys", "created_at, id"),
    ("idempotency_records", "created_at, principal, key, scope"),
    ("jobs", "created_at, id"),
    ("model_cache", "key"),
    ("compile_jobs", "created_at, id"),
    ("compile_iterations", "job_id, iteration"),
    ("traffic_policies", "workflow_id, revision"),
    ("datasets", "created_at, id"),
    ("dataset_rows", "dataset_id, idx"),
    ("evaluation_results", "evaluation_id, version_id, example"),
];

/// Postgres allows 65,535 parameters per statement; batches stay well under it.
const MAX_PARAMS: usize = 30_000;

/// Rows copied per table, in copy order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub table: &'static str,
    pub rows: u64,
}

/// One column of a target table.
struct Column {
    name: String,
    kind: Kind,
}

/// The Postgres types the schema uses, each with its SQLite representation.
#[derive(Clone, Copy)]
enum Kind {
    Uuid,
    Time,
    Json,
    TextArray,
    Bool,
    Bytes,
    Int2,
    Int4,
    Int8,
    Float,
    Text,
}

impl Kind {
    fn of(data_type: &str) -> Result<Self> {
        Ok(match data_type {
            "uuid" => Kind::Uuid,
            "timestamp with time zone" => Kind::Time,
            "jsonb" | "json" => Kind::Json,
            "ARRAY" => Kind::TextArray,
            "boolean" => Kind::Bool,
            "bytea" => Kind::Bytes,
            "smallint" => Kind::Int2,
            "integer" => Kind::Int4,
            "bigint" => Kind::Int8,
            "double precision" => Kind::Float,
            "text" => Kind::Text,
            other => return Err(StoreError::Corrupt(format!("no SQLite mapping for Postgres type {other}"))),
        })
    }
}

/// A value read from SQLite, typed for Postgres (a null keeps its type, so it binds as one).
enum Cell {
    Uuid(Option<Uuid>),
    Time(Option<DateTime<Utc>>),
    Json(Option<Value>),
    TextArray(Option<Vec<String>>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
    Int2(Option<i16>),
    Int4(Option<i32>),
    Int8(Option<i64>),
    Float(Option<f64>),
    Text(Option<String>),
}

fn read(row: &SqliteRow, i: usize, kind: Kind) -> Result<Cell> {
    Ok(match kind {
        Kind::Uuid => Cell::Uuid(row.try_get(i)?),
        Kind::Time => Cell::Time(row.try_get(i)?),
        Kind::Json => Cell::Json(row.try_get::<Option<Json<Value>>, _>(i)?.map(|j| j.0)),
        Kind::TextArray => Cell::TextArray(row.try_get::<Option<Json<Vec<String>>>, _>(i)?.map(|j| j.0)),
        Kind::Bool => Cell::Bool(row.try_get(i)?),
        Kind::Bytes => Cell::Bytes(row.try_get(i)?),
        Kind::Int2 => Cell::Int2(narrow(row.try_get(i)?)?),
        Kind::Int4 => Cell::Int4(narrow(row.try_get(i)?)?),
        Kind::Int8 => Cell::Int8(row.try_get(i)?),
        Kind::Float => Cell::Float(row.try_get(i)?),
        Kind::Text => Cell::Text(row.try_get(i)?),
    })
}

/// SQLite integers are 64-bit; a narrower Postgres column must hold the value.
fn narrow<T: TryFrom<i64>>(n: Option<i64>) -> Result<Option<T>> {
    n.map(T::try_from).transpose().map_err(|_| StoreError::Corrupt("integer out of range".into()))
}

/// Copies everything from `from` into `to`, which must hold no data yet (its schema is migrated
/// by the caller). Calls `progress(table, rows so far)` as batches land.
pub async fn sqlite_to_postgres(
    from: &SqliteStore,
    to: &PgStore,
    mut progress: impl FnMut(&str, u64),
) -> Result<Vec<Copied>> {
    let mut tx = to.begin().await?;
    refuse_non_empty(&mut tx).await?;
    // A deferred read transaction: its first SELECT fixes the snapshot every table is read from.
    let mut snapshot = from.reader().begin().await?;
    let mut copied = Vec::with_capacity(TABLES.len());
    for (table, order) in TABLES {
        let columns = target_columns(&mut tx, table).await?;
        let rows = copy_table(&mut snapshot, &mut tx, table, order, &columns, &mut progress).await?;
        copied.push(Copied { table, rows });
    }
    snapshot.rollback().await?;
    // The label history's ids come from an identity sequence: continue after the copied ones.
    sqlx::query(
        "SELECT setval(pg_get_serial_sequence('workflow_label_history', 'id'),
                       coalesce((SELECT max(id) FROM workflow_label_history), 0) + 1, false)",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(copied)
}

/// Row counts of every table of the target, to compare with what was copied.
pub async fn count_postgres(store: &PgStore) -> Result<Vec<Copied>> {
    let mut counts = Vec::with_capacity(TABLES.len());
    for (table, _) in TABLES {
        let sql = format!("SELECT count(*) FROM {table}");
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(store.pool()).await?;
        counts.push(Copied { table, rows: u64::try_from(n).unwrap_or(0) });
    }
    Ok(counts)
}

async fn refuse_non_empty(tx: &mut Transaction<'static, Postgres>) -> Result<()> {
    for (table, _) in TABLES {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {table})");
        let any: bool = sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&mut **tx).await?;
        if any {
            return Err(StoreError::Invalid {
                what: "target database: it already holds data (copy into an empty, freshly migrated database)",
            });
        }
    }
    Ok(())
}

async fn target_columns(tx: &mut Transaction<'static, Postgres>, table: &str) -> Result<Vec<Column>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut **tx)
    .await?;
    if rows.is_empty() {
        return Err(StoreError::Corrupt(format!("the target has no table {table}")));
    }
    rows.into_iter().map(|(name, data_type)| Ok(Column { name, kind: Kind::of(&data_type)? })).collect()
}

async fn copy_table(
    from: &mut Transaction<'static, Sqlite>,
    tx: &mut Transaction<'static, Postgres>,
    table: &str,
    order: &str,
    columns: &[Column],
    progress: &mut impl FnMut(&str, u64),
) -> Result<u64> {
    // Identifiers come from Postgres' catalogue and `TABLES`, never from input.
    let names = columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
    let select = format!("SELECT {names} FROM {table} ORDER BY {order}");
    let batch_rows = (MAX_PARAMS / columns.len()).max(1);
    let mut rows = sqlx::query(AssertSqlSafe(select)).fetch(&mut **from);
    let mut batch: Vec<Vec<Cell>> = Vec::with_capacity(batch_rows);
    let mut total = 0u64;
    while let Some(row) = rows.try_next().await? {
        let cells = columns.iter().enumerate().map(|(i, c)| read(&row, i, c.kind)).collect::<Result<_>>()?;
        batch.push(cells);
        if batch.len() == batch_rows {
            total += insert_batch(tx, table, &names, columns.len(), std::mem::take(&mut batch)).await?;
            progress(table, total);
        }
    }
    if !batch.is_empty() {
        total += insert_batch(tx, table, &names, columns.len(), batch).await?;
        progress(table, total);
    }
    Ok(total)
}

async fn insert_batch(
    tx: &mut Transaction<'static, Postgres>,
    table: &str,
    names: &str,
    width: usize,
    batch: Vec<Vec<Cell>>,
) -> Result<u64> {
    let mut sql = format!("INSERT INTO {table} ({names}) OVERRIDING SYSTEM VALUE VALUES ");
    let mut n = 0;
    for r in 0..batch.len() {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..width {
            n += 1;
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${n}"));
        }
        sql.push(')');
    }
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for cell in batch.into_iter().flatten() {
        query = match cell {
            Cell::Uuid(v) => query.bind(v),
            Cell::Time(v) => query.bind(v),
            Cell::Json(v) => query.bind(v),
            Cell::TextArray(v) => query.bind(v),
            Cell::Bool(v) => query.bind(v),
            Cell::Bytes(v) => query.bind(v),
            Cell::Int2(v) => query.bind(v),
            Cell::Int4(v) => query.bind(v),
            Cell::Int8(v) => query.bind(v),
            Cell::Float(v) => query.bind(v),
            Cell::Text(v) => query.bind(v),
        };
    }
    Ok(query.execute(&mut **tx).await?.rows_affected())
}
