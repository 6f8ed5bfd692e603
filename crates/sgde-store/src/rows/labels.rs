//! Rows of `workflow_labels` and `workflow_label_history` (shared by both backends).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::labels::{Label, LabelEvent};

#[derive(sqlx::FromRow)]
pub(crate) struct LabelRow {
    workflow_id: Uuid,
    name: String,
    version_id: Uuid,
    version_number: i32,
    updated_at: DateTime<Utc>,
    updated_by: Option<String>,
}

impl From<LabelRow> for Label {
    fn from(r: LabelRow) -> Self {
        Label {
            workflow_id: r.workflow_id,
            name: r.name,
            version_id: r.version_id,
            version_number: r.version_number,
            updated_at: r.updated_at,
            updated_by: r.updated_by,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    id: i64,
    workflow_id: Uuid,
    label: String,
    from_version_id: Option<Uuid>,
    to_version_id: Option<Uuid>,
    moved_by: Option<String>,
    at: DateTime<Utc>,
}

impl From<EventRow> for LabelEvent {
    fn from(r: EventRow) -> Self {
        LabelEvent {
            id: r.id,
            workflow_id: r.workflow_id,
            label: r.label,
            from_version_id: r.from_version_id,
            to_version_id: r.to_version_id,
            moved_by: r.moved_by,
            at: r.at,
        }
    }
}
