//! [`KeyRepo`] on SQLite.
//!
//! Scopes are stored as a JSON array of names. Postgres serialises `ensure_admin_key` across
//! replicas with an advisory lock; here its revoke-then-upsert runs in one `BEGIN IMMEDIATE`
//! transaction on the single writer connection, which no other writer can interleave with (and
//! another process on the same file waits for the write lock).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::{SqliteStore, before, now};
use crate::error::{Result, StoreError};
use crate::keys::{
    ApiKey, ApiToken, CreatedApiKey, KeyRepo, LAST_USED_EVERY, NewApiKey, Scope, check_admin_token,
    last_use_is_stale,
};
use crate::rows::keys::{SqliteKeyRow as KeyRow, key_columns, scope_names};

#[async_trait]
impl KeyRepo for SqliteStore {
    async fn create_key(&self, new: &NewApiKey) -> Result<CreatedApiKey> {
        if new.scopes.is_empty() {
            return Err(StoreError::Invalid { what: "scopes (at least one is required)" });
        }
        let token = ApiToken::generate();
        let row: KeyRow = sqlx::query_as(concat!(
            "INSERT INTO api_keys (id, name, prefix, secret_hash, scopes, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING ",
            key_columns!()
        ))
        .bind(Uuid::now_v7())
        .bind(&new.name)
        .bind(token.display_prefix())
        .bind(token.hash())
        .bind(Json(scope_names(&new.scopes)))
        .bind(now())
        .fetch_one(&self.writer)
        .await?;
        Ok(CreatedApiKey { key: row.try_into()?, token })
    }

    async fn verify_key(&self, token: &ApiToken) -> Result<Option<ApiKey>> {
        let row: Option<KeyRow> = sqlx::query_as(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL"
        ))
        .bind(token.hash())
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut key = ApiKey::try_from(row)?;
        if last_use_is_stale(&key) {
            let at: Option<DateTime<Utc>> = sqlx::query_scalar(
                "UPDATE api_keys SET last_used_at = $2
                 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)
                 RETURNING last_used_at",
            )
            .bind(key.id)
            .bind(now())
            .bind(before(LAST_USED_EVERY))
            .fetch_optional(&self.writer)
            .await?;
            key.last_used_at = at.or(key.last_used_at);
        }
        Ok(Some(key))
    }

    async fn get_key(&self, id: Uuid) -> Result<ApiKey> {
        let row: KeyRow = sqlx::query_as(concat!("SELECT ", key_columns!(), " FROM api_keys WHERE id = $1"))
            .bind(id)
            .fetch_one(&self.reader)
            .await
            .map_err(StoreError::not_found("api key"))?;
        row.try_into()
    }

    async fn list_keys(&self) -> Result<Vec<ApiKey>> {
        let rows: Vec<KeyRow> =
            sqlx::query_as(concat!("SELECT ", key_columns!(), " FROM api_keys ORDER BY created_at, id"))
                .fetch_all(&self.reader)
                .await?;
        rows.into_iter().map(ApiKey::try_from).collect()
    }

    async fn revoke_key(&self, id: Uuid) -> Result<ApiKey> {
        let row: KeyRow = sqlx::query_as(concat!(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1 RETURNING ",
            key_columns!()
        ))
        .bind(id)
        .bind(now())
        .fetch_one(&self.writer)
        .await
        .map_err(StoreError::not_found("api key"))?;
        row.try_into()
    }

    async fn ensure_admin_key(&self, token: &ApiToken) -> Result<ApiKey> {
        check_admin_token(token)?;
        let hash = token.hash();
        let admin = Json(scope_names(&[Scope::Admin]));
        let at = now();
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE api_keys SET revoked_at = $2
             WHERE bootstrap AND revoked_at IS NULL AND secret_hash <> $1",
        )
        .bind(&hash)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        let row: KeyRow = sqlx::query_as(concat!(
            "INSERT INTO api_keys (id, name, prefix, secret_hash, scopes, bootstrap, created_at)
             VALUES ($1, 'admin (SGDE_ADMIN_TOKEN)', $2, $3, $4, true, $5)
             ON CONFLICT (secret_hash)
             DO UPDATE SET revoked_at = NULL, bootstrap = true, scopes = excluded.scopes
             RETURNING ",
            key_columns!()
        ))
        .bind(Uuid::now_v7())
        .bind(token.display_prefix())
        .bind(&hash)
        .bind(&admin)
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        row.try_into()
    }
}
