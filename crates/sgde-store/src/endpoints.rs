//! Model endpoints: named [`EndpointConfig`]s that workflows refer to by name.
//!
//! The config is stored whole as JSON, so a field added to `EndpointConfig` needs no migration.
//! It holds the *name* of the environment variable with the API key, never the key itself, so
//! these rows can be returned to any reader.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sgde_llm::EndpointConfig;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::Result;

/// A stored model endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Endpoint {
    pub id: Uuid,
    /// Unique; equal to `config.name`.
    pub name: String,
    #[schema(value_type = Object)]
    pub config: EndpointConfig,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// CRUD on model endpoints, keyed by name.
#[async_trait]
pub trait EndpointRepo: Send + Sync {
    /// Stores a new endpoint under `config.name`; `Conflict` if the name is taken.
    async fn create_endpoint(&self, config: &EndpointConfig) -> Result<Endpoint>;

    async fn get_endpoint(&self, name: &str) -> Result<Endpoint>;

    /// All endpoints by name. Deployments have a handful, so there is no pagination.
    async fn list_endpoints(&self) -> Result<Vec<Endpoint>>;

    /// Replaces the config of endpoint `name`; a different `config.name` renames it
    /// (`Conflict` if the new name is taken).
    async fn update_endpoint(&self, name: &str, config: &EndpointConfig) -> Result<Endpoint>;

    async fn delete_endpoint(&self, name: &str) -> Result<()>;
}
