//! The persistent tier of `sgde_llm`'s response cache, in table `model_cache`.
//!
//! Errors become [`CacheError`]s with a generic message: the cache logs them and calls the
//! model instead, so a database hiccup costs money, never a failed request.

use async_trait::async_trait;
use sgde_llm::{CacheBackend, CacheError, CacheKey, CachedReply};
use sqlx::types::Json;

use super::PgStore;
use crate::error::cache_error;

#[async_trait]
impl CacheBackend for PgStore {
    async fn get(&self, key: &CacheKey) -> Result<Option<CachedReply>, CacheError> {
        let reply: Option<Json<CachedReply>> =
            sqlx::query_scalar("SELECT reply FROM model_cache WHERE key = $1")
                .bind(key.to_hex())
                .fetch_optional(&self.pool)
                .await
                .map_err(cache_error)?;
        Ok(reply.map(|r| r.0))
    }

    async fn put(&self, key: &CacheKey, reply: &CachedReply) -> Result<(), CacheError> {
        // Identical keys mean identical requests; the newer reply is as good as the older one.
        sqlx::query(
            "INSERT INTO model_cache (key, reply) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET reply = excluded.reply, created_at = now()",
        )
        .bind(key.to_hex())
        .bind(Json(reply))
        .execute(&self.pool)
        .await
        .map_err(cache_error)?;
        Ok(())
    }
}
