//! [`IdempotencyRepo`] on SQLite.
//!
//! As on Postgres, `begin` is one upsert whose `DO UPDATE … WHERE` decides whether this request
//! may (re)claim the key: an expired record, or an in-progress placeholder of the *same* request
//! older than the lock timeout; only if it may not is the record read to say why. The upsert is
//! one statement on the single writer connection, so of concurrent requests exactly one claims
//! the key (Postgres gets the same from the row lock of `ON CONFLICT`). The cut-off times are
//! bound from Rust.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::types::Json;

use super::{SqliteStore, before, now};
use crate::error::Result;
use crate::idempotency::{
    IdempotencyBegin, IdempotencyKey, IdempotencyPolicy, IdempotencyRepo, IdempotentRequest, StoredResponse,
};
use crate::rows::idempotency::{CLAIM_ROUNDS, RecordRow, status_code};

#[async_trait]
impl IdempotencyRepo for SqliteStore {
    async fn begin_idempotent(
        &self,
        request: &IdempotentRequest,
        policy: &IdempotencyPolicy,
    ) -> Result<IdempotencyBegin> {
        let key = &request.key;
        for _ in 0..CLAIM_ROUNDS {
            let claimed: Option<bool> = sqlx::query_scalar(
                "INSERT INTO idempotency_records (principal, key, scope, request_hash, created_at, locked_at)
                 VALUES ($1, $2, $3, $4, $5, $5)
                 ON CONFLICT (principal, key, scope) DO UPDATE
                 SET request_hash = excluded.request_hash, status_code = NULL, response_headers = NULL,
                     response_body = NULL, created_at = excluded.created_at, locked_at = excluded.locked_at,
                     completed_at = NULL
                 WHERE idempotency_records.created_at < $6
                    OR (idempotency_records.status_code IS NULL
                        AND idempotency_records.request_hash = excluded.request_hash
                        AND idempotency_records.locked_at < $7)
                 RETURNING true",
            )
            .bind(&key.principal)
            .bind(&key.key)
            .bind(&key.scope)
            .bind(request.request_hash.as_slice())
            .bind(now())
            .bind(before(policy.ttl))
            .bind(before(policy.lock_timeout))
            .fetch_optional(&self.writer)
            .await?;
            if claimed.is_some() {
                return Ok(IdempotencyBegin::Started);
            }

            let row: Option<RecordRow> = sqlx::query_as(
                "SELECT request_hash, status_code, response_headers, response_body
                 FROM idempotency_records WHERE principal = $1 AND key = $2 AND scope = $3",
            )
            .bind(&key.principal)
            .bind(&key.key)
            .bind(&key.scope)
            .fetch_optional(&self.reader)
            .await?;
            let Some(row) = row else { continue };
            return row.outcome(&request.request_hash);
        }
        // The record keeps appearing and disappearing: another request is busy with this key.
        Ok(IdempotencyBegin::InProgress)
    }

    async fn complete_idempotent(&self, key: &IdempotencyKey, response: &StoredResponse) -> Result<()> {
        let status = status_code(response)?;
        sqlx::query(
            "UPDATE idempotency_records
             SET status_code = $4, response_headers = $5, response_body = $6, completed_at = $7
             WHERE principal = $1 AND key = $2 AND scope = $3 AND status_code IS NULL",
        )
        .bind(&key.principal)
        .bind(&key.key)
        .bind(&key.scope)
        .bind(status)
        .bind(Json(&response.headers))
        .bind(&response.body)
        .bind(now())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn abandon_idempotent(&self, key: &IdempotencyKey) -> Result<()> {
        sqlx::query(
            "DELETE FROM idempotency_records
             WHERE principal = $1 AND key = $2 AND scope = $3 AND status_code IS NULL",
        )
        .bind(&key.principal)
        .bind(&key.key)
        .bind(&key.scope)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn purge_idempotency(&self, ttl: Duration) -> Result<u64> {
        let done = sqlx::query("DELETE FROM idempotency_records WHERE created_at < $1")
            .bind(before(ttl))
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }
}
