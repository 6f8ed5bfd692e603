//! Rows of `workflow_versions` (shared by both backends), and the selector as the parameters of
//! the resolve query, which both backends bind alike.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::workflows::WorkflowRow;
use crate::error::{Result, StoreError};
use crate::versions::{DEFAULT_LABEL, Version, VersionSelector, VersionSource};
use crate::workflows::Workflow;

#[derive(sqlx::FromRow)]
pub(crate) struct VersionRow {
    id: Uuid,
    workflow_id: Uuid,
    number: i32,
    spec: Value,
    content_hash: String,
    parent_version_id: Option<Uuid>,
    source: String,
    job_id: Option<Uuid>,
    metrics: Option<Value>,
    origin: Option<Value>,
    created_at: DateTime<Utc>,
}

impl TryFrom<VersionRow> for Version {
    type Error = StoreError;

    fn try_from(r: VersionRow) -> Result<Self> {
        Ok(Version {
            id: r.id,
            workflow_id: r.workflow_id,
            number: r.number,
            spec: r.spec,
            content_hash: r.content_hash,
            parent_version_id: r.parent_version_id,
            source: VersionSource::parse(&r.source)?,
            job_id: r.job_id,
            metrics: r.metrics,
            origin: r.origin,
            created_at: r.created_at,
        })
    }
}

/// A workflow and one of its versions, read in one query.
#[derive(sqlx::FromRow)]
pub(crate) struct ResolvedRow {
    #[sqlx(flatten)]
    version: VersionRow,
    w_id: Uuid,
    w_name: String,
    w_description: Option<String>,
    w_latest_version: i32,
    w_created_at: DateTime<Utc>,
    w_updated_at: DateTime<Utc>,
}

impl TryFrom<ResolvedRow> for (Workflow, Version) {
    type Error = StoreError;

    fn try_from(row: ResolvedRow) -> Result<Self> {
        let workflow = Workflow::from(WorkflowRow {
            id: row.w_id,
            name: row.w_name,
            description: row.w_description,
            latest_version: row.w_latest_version,
            created_at: row.w_created_at,
            updated_at: row.w_updated_at,
        });
        Ok((workflow, row.version.try_into()?))
    }
}

/// The selector as the four nullable parameters of the resolve query:
/// (number, id, label, fallback label for "no explicit choice").
pub(crate) fn selector_params(
    selector: &VersionSelector,
) -> (Option<i32>, Option<Uuid>, Option<&str>, Option<&str>) {
    match selector {
        VersionSelector::Number(n) => (Some(*n), None, None, None),
        VersionSelector::Id(id) => (None, Some(*id), None, None),
        VersionSelector::Label(label) => (None, None, Some(label.as_str()), None),
        VersionSelector::Latest => (None, None, None, None),
        VersionSelector::Default => (None, None, None, Some(DEFAULT_LABEL)),
    }
}
