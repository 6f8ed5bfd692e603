//! [`KeyRepo`] on Postgres.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{PgStore, micros};
use crate::error::{Result, StoreError};
use crate::keys::{
    ApiKey, ApiToken, CreatedApiKey, KeyRepo, LAST_USED_EVERY, NewApiKey, check_admin_token,
    last_use_is_stale,
};
use crate::rows::keys::{PgKeyRow as KeyRow, key_columns, scope_names};

/// Serialises `ensure_admin_key` across replicas ("sgdeadmn").
const BOOTSTRAP_LOCK: i64 = 0x7367_6465_6164_6d6e;

#[async_trait]
impl KeyRepo for PgStore {
    async fn create_key(&self, new: &NewApiKey) -> Result<CreatedApiKey> {
        if new.scopes.is_empty() {
            return Err(StoreError::Invalid { what: "scopes (at least one is required)" });
        }
        let token = ApiToken::generate();
        let row: KeyRow = sqlx::query_as(concat!(
            "INSERT INTO api_keys (id, name, prefix, secret_hash, scopes) VALUES ($1, $2, $3, $4, $5)
             RETURNING ",
            key_columns!()
        ))
        .bind(Uuid::now_v7())
        .bind(&new.name)
        .bind(token.display_prefix())
        .bind(token.hash())
        .bind(scope_names(&new.scopes))
        .fetch_one(&self.pool)
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
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut key = ApiKey::try_from(row)?;
        if last_use_is_stale(&key) {
            let at: Option<DateTime<Utc>> = sqlx::query_scalar(
                "UPDATE api_keys SET last_used_at = now()
                 WHERE id = $1
                   AND (last_used_at IS NULL OR last_used_at < now() - $2 * interval '1 microsecond')
                 RETURNING last_used_at",
            )
            .bind(key.id)
            .bind(micros(LAST_USED_EVERY))
            .fetch_optional(&self.pool)
            .await?;
            key.last_used_at = at.or(key.last_used_at);
        }
        Ok(Some(key))
    }

    async fn get_key(&self, id: Uuid) -> Result<ApiKey> {
        let row: KeyRow = sqlx::query_as(concat!("SELECT ", key_columns!(), " FROM api_keys WHERE id = $1"))
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::not_found("api key"))?;
        row.try_into()
    }

    async fn list_keys(&self) -> Result<Vec<ApiKey>> {
        let rows: Vec<KeyRow> =
            sqlx::query_as(concat!("SELECT ", key_columns!(), " FROM api_keys ORDER BY created_at, id"))
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter().map(ApiKey::try_from).collect()
    }

    async fn revoke_key(&self, id: Uuid) -> Result<ApiKey> {
        let row: KeyRow = sqlx::query_as(concat!(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING ",
            key_columns!()
        ))
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::not_found("api key"))?;
        row.try_into()
    }

    async fn ensure_admin_key(&self, token: &ApiToken) -> Result<ApiKey> {
        check_admin_token(token)?;
        let hash = token.hash();
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(BOOTSTRAP_LOCK).execute(&mut *tx).await?;
        sqlx::query(
            "UPDATE api_keys SET revoked_at = now()
             WHERE bootstrap AND revoked_at IS NULL AND secret_hash <> $1",
        )
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        let row: KeyRow = sqlx::query_as(concat!(
            "INSERT INTO api_keys (id, name, prefix, secret_hash, scopes, bootstrap)
             VALUES ($1, 'admin (SGDE_ADMIN_TOKEN)', $2, $3, ARRAY['admin'], true)
             ON CONFLICT (secret_hash)
             DO UPDATE SET revoked_at = NULL, bootstrap = true, scopes = ARRAY['admin']
             RETURNING ",
            key_columns!()
        ))
        .bind(Uuid::now_v7())
        .bind(token.display_prefix())
        .bind(&hash)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        row.try_into()
    }
}
