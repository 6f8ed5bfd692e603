//! Versions: immutable, numbered, content-addressed workflow specs.
//!
//! Numbers are 1, 2, 3, … per workflow without gaps, handed out under a lock on the workflow
//! row. The content hash (sha256 of the spec's canonical form, computed by sgde-workflow) is
//! unique per workflow: creating a version whose content already exists returns the existing
//! version and `created = false`, so a client that retries, or a compiler that rediscovers an
//! old candidate, never produces duplicates. The spec is kept as JSON so the store does not
//! depend on the workflow crate; the API parses it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::page::{Page, PageRequest};
use crate::workflows::Workflow;

/// The label that execute uses when the caller names no version.
pub const DEFAULT_LABEL: &str = "production";

/// How a version came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VersionSource {
    /// Posted by a user.
    Manual,
    /// The result of a compile job.
    Compile,
    /// Produced by applying edit operations to another version.
    Apply,
}

impl VersionSource {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionSource::Manual => "manual",
            VersionSource::Compile => "compile",
            VersionSource::Apply => "apply",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self> {
        match s {
            "manual" => Ok(VersionSource::Manual),
            "compile" => Ok(VersionSource::Compile),
            "apply" => Ok(VersionSource::Apply),
            other => Err(StoreError::Corrupt(format!("unknown version source {other:?}"))),
        }
    }
}

/// A stored, immutable version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Version {
    pub id: Uuid,
    pub workflow_id: Uuid,
    /// 1, 2, 3, … within the workflow.
    pub number: i32,
    /// The workflow spec document (`sgde.workflow/v1`).
    pub spec: Value,
    pub content_hash: String,
    pub parent_version_id: Option<Uuid>,
    pub source: VersionSource,
    /// The compile job that produced it, if any.
    pub job_id: Option<Uuid>,
    /// Scores and costs recorded when the version was made (training score, compile cost, …).
    pub metrics: Option<Value>,
    /// Where the content came from when it was applied from a folder exported elsewhere: that
    /// folder's provenance block (content hash, source, parent hash, compile job, metrics), kept
    /// verbatim so that exporting this version writes it again. Absent for versions made here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Value>,
    pub created_at: DateTime<Utc>,
}

/// What a caller provides to create a version. The caller computes `content_hash` from the
/// validated spec; the store trusts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewVersion {
    pub spec: Value,
    pub content_hash: String,
    pub parent_version_id: Option<Uuid>,
    pub source: VersionSource,
    pub job_id: Option<Uuid>,
    pub metrics: Option<Value>,
    /// See [`Version::origin`].
    pub origin: Option<Value>,
}

impl NewVersion {
    /// A manual version without parent or metrics.
    pub fn manual(spec: Value, content_hash: impl Into<String>) -> Self {
        Self {
            spec,
            content_hash: content_hash.into(),
            parent_version_id: None,
            source: VersionSource::Manual,
            job_id: None,
            metrics: None,
            origin: None,
        }
    }
}

/// Which version of a workflow to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "by", content = "value")]
pub enum VersionSelector {
    Number(i32),
    Id(Uuid),
    Label(String),
    /// The highest number.
    Latest,
    /// What execute uses without a version: the [`DEFAULT_LABEL`] if set, else the latest.
    Default,
}

/// Versions of one workflow. Deliberately no update and no delete.
#[async_trait]
pub trait VersionRepo: Send + Sync {
    /// Creates the next version of a live workflow, or returns the existing version with the
    /// same content hash. Returns `(version, created)`.
    async fn create_version(&self, workflow_id: Uuid, new: &NewVersion) -> Result<(Version, bool)>;

    /// One version of a live workflow; `NotFound { what: "version" }` if the selector matches
    /// nothing (an unknown number, an unset label, an id of another workflow).
    async fn get_version(&self, workflow_id: Uuid, selector: &VersionSelector) -> Result<Version>;

    /// The workflow by name and the selected version, in one round trip: the execute path.
    async fn resolve_version(
        &self,
        workflow_name: &str,
        selector: &VersionSelector,
    ) -> Result<(Workflow, Version)>;

    /// Versions newest (highest number) first, specs included.
    async fn list_versions(&self, workflow_id: Uuid, page: &PageRequest) -> Result<Page<Version>>;
}
