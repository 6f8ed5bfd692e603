//! The persistent tier of `sgde_llm`'s response cache on SQLite, in table `model_cache`.
//!
//! A put is one upsert on the writer, so two concurrent puts of one key simply leave the later
//! reply, as on Postgres. Errors become [`CacheError`]s with a generic message: the cache logs
//! them and calls the model instead, so a database hiccup costs money, never a failed request.

use async_trait::async_trait;
use sgde_llm::{CacheBackend, CacheError, CacheKey, CachedReply};
use sqlx::types::Json;

use super::{SqliteStore, now};
use crate::error::cache_error;

#[async_trait]
impl CacheBackend for SqliteStore {
    async fn get(&self, key: &CacheKey) -> Result<Option<CachedReply>, CacheError> {
        let reply: Option<Json<CachedReply>> =
            sqlx::query_scalar("SELECT reply FROM model_cache WHERE key = $1")
                .bind(key.to_hex())
                .fetch_optional(&self.reader)
                .await
                .map_err(cache_error)?;
        Ok(reply.map(|r| r.0))
    }

    async fn put(&self, key: &CacheKey, reply: &CachedReply) -> Result<(), CacheError> {
        // Identical keys mean identical requests; the newer reply is as good as the older one.
        sqlx::query(
            "INSERT INTO model_cache (key, reply, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET reply = excluded.reply, created_at = excluded.created_at",
        )
        .bind(key.to_hex())
        .bind(Json(reply))
        .bind(now())
        .execute(&self.writer)
        .await
        .map_err(cache_error)?;
        Ok(())
    }
}
