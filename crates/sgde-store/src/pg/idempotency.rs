//! [`IdempotencyRepo`] on Postgres.
//!
//! `begin` is one upsert whose `DO UPDATE … WHERE` decides whether this request may (re)claim
//! the key: an expired record, or an in-progress placeholder of the *same* request older than
//! the lock timeout. Only if it may not is the existing record read to say why.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::types::Json;

use super::{PgStore, micros};
use crate::error::Result;
use crate::idempotency::{
    IdempotencyBegin, IdempotencyKey, IdempotencyPolicy, IdempotencyRepo, IdempotentRequest, StoredResponse,
};
use crate::rows::idempotency::{CLAIM_ROUNDS, RecordRow, status_code};

#[async_trait]
impl IdempotencyRepo for PgStore {
    async fn begin_idempotent(
        &self,
        request: &IdempotentRequest,
        policy: &IdempotencyPolicy,
    ) -> Result<IdempotencyBegin> {
        let key = &request.key;
        for _ in 0..CLAIM_ROUNDS {
            let claimed: Option<bool> = sqlx::query_scalar(
                "INSERT INTO idempotency_records (principal, key, scope, request_hash) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (principal, key, scope) DO UPDATE
                 SET request_hash = excluded.request_hash, status_code = NULL, response_headers = NULL,
                     response_body = NULL, created_at = now(), locked_at = now(), completed_at = NULL
                 WHERE idempotency_records.created_at < now() - $5 * interval '1 microsecond'
                    OR (idempotency_records.status_code IS NULL
                        AND idempotency_records.request_hash = excluded.request_hash
                        AND idempotency_records.locked_at < now() - $6 * interval '1 microsecond')
                 RETURNING true",
            )
            .bind(&key.principal)
            .bind(&key.key)
            .bind(&key.scope)
            .bind(request.request_hash.as_slice())
            .bind(micros(policy.ttl))
            .bind(micros(policy.lock_timeout))
            .fetch_optional(&self.pool)
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
            .fetch_optional(&self.pool)
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
             SET status_code = $4, response_headers = $5, response_body = $6, completed_at = now()
             WHERE principal = $1 AND key = $2 AND scope = $3 AND status_code IS NULL",
        )
        .bind(&key.principal)
        .bind(&key.key)
        .bind(&key.scope)
        .bind(status)
        .bind(Json(&response.headers))
        .bind(&response.body)
        .execute(&self.pool)
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn purge_idempotency(&self, ttl: Duration) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM idempotency_records WHERE created_at < now() - $1 * interval '1 microsecond'",
        )
        .bind(micros(ttl))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
