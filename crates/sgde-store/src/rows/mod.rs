//! Row structs shared by both backends: what a `SELECT` returns, converted to the public
//! records in one place. sqlx's `FromRow` derive is generic over the database, and every column
//! type used here decodes on Postgres and on SQLite alike (`Uuid`, `DateTime<Utc>`, JSON as
//! `serde_json::Value`, integers, floats, booleans), so a row struct never needs two copies.

pub(crate) mod compile_jobs;
pub(crate) mod datasets;
pub(crate) mod endpoints;
pub(crate) mod executions;
pub(crate) mod feedback;
pub(crate) mod idempotency;
pub(crate) mod jobs;
pub(crate) mod keys;
pub(crate) mod labels;
pub(crate) mod policies;
pub(crate) mod versions;
pub(crate) mod workflows;
