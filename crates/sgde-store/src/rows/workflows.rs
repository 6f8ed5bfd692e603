//! Rows of `workflows` (shared by both backends).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::workflows::Workflow;

#[derive(sqlx::FromRow)]
pub(crate) struct WorkflowRow {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    /// 0 before the first version.
    pub(crate) latest_version: i32,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

impl From<WorkflowRow> for Workflow {
    fn from(r: WorkflowRow) -> Self {
        Workflow {
            id: r.id,
            name: r.name,
            description: r.description,
            latest_version: (r.latest_version > 0).then_some(r.latest_version),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}
