//! Rows of `model_endpoints` (shared by both backends).

use chrono::{DateTime, Utc};
use sgde_llm::EndpointConfig;
use sqlx::types::Json;
use uuid::Uuid;

use crate::endpoints::Endpoint;

#[derive(sqlx::FromRow)]
pub(crate) struct EndpointRow {
    id: Uuid,
    name: String,
    config: Json<EndpointConfig>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<EndpointRow> for Endpoint {
    fn from(r: EndpointRow) -> Self {
        Endpoint {
            id: r.id,
            name: r.name,
            config: r.config.0,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}
