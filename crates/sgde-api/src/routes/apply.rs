//! `/v1/workflows/{name}/apply`: declarative deployment of a workflow kept in version control.
//!
//! `sgde workflow apply` reads an exported folder and posts its content here. One call makes the
//! service match the folder: it creates the workflow if needed, creates the version unless the
//! same content (by hash) already exists, and moves a label — so running it from CI on every
//! push is safe, and reverting a commit rolls back. `apply/preview` answers what `apply` would
//! change with the same structural diff as `GET …/diff`, so the CLI has no diff logic of its own.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sgde_store::{LabelMove, NewVersion, NewWorkflow, Scope, StoreError, Version, Workflow};
use sgde_workflow::{NodeMap, Provenance, SCHEMA_ID, WorkflowSpec};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::diff::{SpecDiff, diff};
use crate::extract::{ApiJson, ApiPath as Path};
use crate::idempotency::idempotent;
use crate::problem::{ApiError, Problem};
use crate::routes::labels::check_label;
use crate::routes::version_ref;
use crate::routes::workflows::{check_name, new_version};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(apply)).routes(routes!(preview))
}

/// The content of a workflow folder, as `sgde workflow apply` sends it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyWorkflow {
    #[schema(value_type = WorkflowSpec)]
    pub spec: Value,
    /// The folder's provenance. Kept with the version when it describes exactly this content
    /// (an unedited export from another instance); otherwise the version records it as its parent.
    #[serde(default)]
    pub provenance: Option<Provenance>,
    /// Label to point at the version, created or found (e.g. `production`).
    #[serde(default)]
    pub label: Option<String>,
}

/// What `apply` did. Applying the same content twice gives the same version and nothing new.
#[derive(Debug, Serialize, ToSchema)]
pub struct Applied {
    /// The workflow did not exist and was created.
    pub workflow_created: bool,
    /// A version was created; false when one with this content already existed.
    pub created: bool,
    pub workflow: Workflow,
    pub version: Version,
    /// The label move, when a label was asked for (`previous_version_id` equal to the version's
    /// id means it did not move).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<LabelMove>,
}

/// A spec to compare with a stored version before applying it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewApply {
    #[schema(value_type = WorkflowSpec)]
    pub spec: Value,
    /// The version to compare with (number, id, label or `latest`; default `latest`).
    #[serde(default)]
    pub against: Option<String>,
}

/// What applying the spec would change.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApplyPreview {
    /// Content hash of the posted spec.
    pub content_hash: String,
    /// The version compared with; absent when the workflow does not exist yet (everything is new).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub against: Option<Version>,
    /// The posted spec has exactly the content of `against`.
    pub unchanged: bool,
    pub diff: SpecDiff,
}

/// Create or find the version with this content (and the workflow if needed), and move a label.
#[utoipa::path(post, path = "/v1/workflows/{name}/apply", tag = "versions", request_body = ApplyWorkflow,
    params(("name" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = Applied, description = "a workflow or version was created"),
        (status = 200, body = Applied, description = "the content already existed"),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn apply(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: ApiJson<ApplyWorkflow>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Write)?;
    let route = format!("POST /v1/workflows/{name}/apply");
    idempotent(&state, &principal, &headers, &route, &body.raw, || async {
        let request = &body.value;
        check_name(&name, "/path/name")?;
        if let Some(label) = &request.label {
            check_label(label, "/label")?;
        }
        let mut new = new_version(&request.spec, None)?;
        new.origin = origin(request.provenance.as_ref(), &new.content_hash)?;
        let (workflow, version, workflow_created, created) = find_or_create(&state, &name, &new).await?;
        let label = match &request.label {
            None => None,
            Some(label) => Some(
                state
                    .store()
                    .set_label(workflow.id, label, version.id, Some(&principal.audit_name()))
                    .await?,
            ),
        };
        let status = if workflow_created || created { StatusCode::CREATED } else { StatusCode::OK };
        Ok((status, Json(Applied { workflow_created, created, workflow, version, label })).into_response())
    })
    .await
}

/// What the new version records about where it came from: the folder's provenance verbatim
/// when it describes this very content, else a manual edit whose parent is what the folder
/// said it was.
fn origin(provenance: Option<&Provenance>, content_hash: &str) -> Result<Option<Value>, ApiError> {
    let Some(provenance) = provenance else { return Ok(None) };
    let origin = if provenance.content_hash == content_hash {
        provenance.clone()
    } else {
        Provenance {
            content_hash: content_hash.to_owned(),
            source: "manual".to_owned(),
            parent: Some(provenance.content_hash.clone()),
            compile_job: None,
            metrics: None,
        }
    };
    serde_json::to_value(origin).map(Some).map_err(ApiError::internal)
}

/// The workflow and the version with `new`'s content, creating either as needed; the flags say
/// whether the workflow and the version were created.
async fn find_or_create(
    state: &AppState,
    name: &str,
    new: &NewVersion,
) -> Result<(Workflow, Version, bool, bool), ApiError> {
    let workflow = match state.store().get_workflow(name).await {
        Ok(workflow) => workflow,
        Err(StoreError::NotFound { .. }) => {
            let workflow = NewWorkflow { name: name.to_owned(), description: None };
            match state.store().create_workflow_with_version(&workflow, new).await {
                Ok((workflow, version)) => return Ok((workflow, version, true, true)),
                // Another apply created it a moment ago: add to it like any existing workflow.
                Err(StoreError::Conflict { .. }) => state.store().get_workflow(name).await?,
                Err(other) => return Err(other.into()),
            }
        }
        Err(other) => return Err(other.into()),
    };
    let (version, created) = state.store().create_version(workflow.id, new).await?;
    Ok((workflow, version, false, created))
}

/// Structural diff of a spec against a stored version: what `apply` would change.
#[utoipa::path(post, path = "/v1/workflows/{name}/apply/preview", tag = "versions", request_body = PreviewApply,
    params(("name" = String, Path)),
    responses((status = 200, body = ApplyPreview), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn preview(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    body: ApiJson<PreviewApply>,
) -> Result<Json<ApplyPreview>, ApiError> {
    principal.require(Scope::Read)?;
    let new = new_version(&body.value.spec, None)?;
    let spec = WorkflowSpec::from_value(new.spec).map_err(ApiError::internal)?;
    let reference = body.value.against.as_deref().unwrap_or("latest");
    let against = match state.store().resolve_version(&name, &version_ref(reference)).await {
        Ok((_, version)) => Some(version),
        // A workflow that does not exist yet is the one case where there is nothing to compare.
        Err(StoreError::NotFound { what: "workflow" }) if body.value.against.is_none() => None,
        Err(other) => return Err(other.into()),
    };
    let old = match &against {
        Some(version) => WorkflowSpec::from_value(version.spec.clone()).map_err(|e| {
            ApiError::internal(anyhow::anyhow!("stored version {} does not parse: {e}", version.id))
        })?,
        None => empty_spec(),
    };
    let unchanged = against.as_ref().is_some_and(|v| v.content_hash == new.content_hash);
    Ok(Json(ApplyPreview { content_hash: new.content_hash, against, unchanged, diff: diff(&old, &spec) }))
}

/// The "before" of a workflow that does not exist: every node is added.
fn empty_spec() -> WorkflowSpec {
    WorkflowSpec {
        schema: SCHEMA_ID.to_owned(),
        description: None,
        inputs: Value::Null,
        output: String::new(),
        nodes: NodeMap::new(),
    }
}
