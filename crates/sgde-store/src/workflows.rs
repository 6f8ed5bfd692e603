//! Workflows: a name, a description and a sequence of immutable versions.
//!
//! Deletion is soft (`deleted_at`): executions keep pointing at the versions that produced them,
//! and the name is free again for a new workflow with a new id. A deleted workflow is invisible
//! to every lookup by name and to listings.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::Result;
use crate::page::{Page, PageRequest};
use crate::versions::{NewVersion, Version};

/// A stored workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Workflow {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// The highest version number, `None` before the first version.
    pub latest_version: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a caller provides to create a workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewWorkflow {
    pub name: String,
    pub description: Option<String>,
}

/// Workflows, looked up by name (the API's path key) or id (what executions record).
#[async_trait]
pub trait WorkflowRepo: Send + Sync {
    /// `Conflict { what: "workflow name" }` if a live workflow has the name.
    async fn create_workflow(&self, new: &NewWorkflow) -> Result<Workflow>;

    /// Creates the workflow and its version 1 atomically: either both exist afterwards or
    /// neither does.
    async fn create_workflow_with_version(
        &self,
        new: &NewWorkflow,
        version: &NewVersion,
    ) -> Result<(Workflow, Version)>;

    async fn get_workflow(&self, name: &str) -> Result<Workflow>;

    async fn get_workflow_by_id(&self, id: Uuid) -> Result<Workflow>;

    /// Live workflows ordered by name.
    async fn list_workflows(&self, page: &PageRequest) -> Result<Page<Workflow>>;

    /// Soft-deletes the workflow.
    async fn delete_workflow(&self, name: &str) -> Result<()>;
}
