//! [`EndpointRepo`] on Postgres.

use async_trait::async_trait;
use sgde_llm::EndpointConfig;
use sqlx::types::Json;
use uuid::Uuid;

use super::PgStore;
use crate::endpoints::{Endpoint, EndpointRepo};
use crate::error::{Result, StoreError};
use crate::rows::endpoints::EndpointRow;

#[async_trait]
impl EndpointRepo for PgStore {
    async fn create_endpoint(&self, config: &EndpointConfig) -> Result<Endpoint> {
        let row: EndpointRow = sqlx::query_as(
            "INSERT INTO model_endpoints (id, name, config) VALUES ($1, $2, $3)
             RETURNING id, name, config, created_at, updated_at",
        )
        .bind(Uuid::now_v7())
        .bind(&config.name)
        .bind(Json(config))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    async fn get_endpoint(&self, name: &str) -> Result<Endpoint> {
        let row: EndpointRow = sqlx::query_as(
            "SELECT id, name, config, created_at, updated_at FROM model_endpoints WHERE name = $1",
        )
        .bind(name)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::not_found("endpoint"))?;
        Ok(row.into())
    }

    async fn list_endpoints(&self) -> Result<Vec<Endpoint>> {
        let rows: Vec<EndpointRow> = sqlx::query_as(
            "SELECT id, name, config, created_at, updated_at FROM model_endpoints ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Endpoint::from).collect())
    }

    async fn update_endpoint(&self, name: &str, config: &EndpointConfig) -> Result<Endpoint> {
        let row: EndpointRow = sqlx::query_as(
            "UPDATE model_endpoints SET name = $2, config = $3, updated_at = now() WHERE name = $1
             RETURNING id, name, config, created_at, updated_at",
        )
        .bind(name)
        .bind(&config.name)
        .bind(Json(config))
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::not_found("endpoint"))?;
        Ok(row.into())
    }

    async fn delete_endpoint(&self, name: &str) -> Result<()> {
        let done =
            sqlx::query("DELETE FROM model_endpoints WHERE name = $1").bind(name).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "endpoint" });
        }
        Ok(())
    }
}
