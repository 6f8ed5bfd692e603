//! Labels: movable names (`production`, `staging`, …) pointing at versions, with history.
//!
//! Every set, move and delete appends a history row in the same transaction, so "who moved
//! production to v7, and when" is always answerable and a rollback is just another move.
//! Label changes of one workflow are serialised (a row lock on the workflow), so the recorded
//! `from` version is exactly what the change replaced.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::Result;
use crate::page::{Page, PageRequest};

/// A label as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Label {
    pub workflow_id: Uuid,
    pub name: String,
    pub version_id: Uuid,
    /// The number of `version_id`, for display.
    pub version_number: i32,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Option<String>,
}

/// The result of setting a label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LabelMove {
    pub label: Label,
    /// Where the label pointed before; `None` if it is new.
    pub previous_version_id: Option<Uuid>,
}

/// One change of a label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LabelEvent {
    pub id: i64,
    pub workflow_id: Uuid,
    pub label: String,
    /// `None` when the label was first set.
    pub from_version_id: Option<Uuid>,
    /// `None` when the label was deleted.
    pub to_version_id: Option<Uuid>,
    pub moved_by: Option<String>,
    pub at: DateTime<Utc>,
}

#[async_trait]
pub trait LabelRepo: Send + Sync {
    /// Points `name` at `version_id` (creating or moving it). `NotFound { what: "version" }` if
    /// the version does not belong to the workflow. Setting a label to where it already points
    /// records nothing.
    async fn set_label(
        &self,
        workflow_id: Uuid,
        name: &str,
        version_id: Uuid,
        moved_by: Option<&str>,
    ) -> Result<LabelMove>;

    /// Removes the label and returns what it pointed at; `NotFound { what: "label" }` if unset.
    async fn delete_label(&self, workflow_id: Uuid, name: &str, moved_by: Option<&str>) -> Result<Label>;

    /// The workflow's labels by name.
    async fn list_labels(&self, workflow_id: Uuid) -> Result<Vec<Label>>;

    /// Changes newest first, of one label or (with `None`) of all labels of the workflow.
    async fn label_history(
        &self,
        workflow_id: Uuid,
        label: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<LabelEvent>>;
}
