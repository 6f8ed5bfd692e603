//! `/v1/workflows`: workflows and their immutable, content-addressed versions.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sgde_store::{NewVersion, NewWorkflow, Scope, Version, VersionSource, Workflow};
use sgde_workflow::WorkflowSpec;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::diff::{SpecDiff, diff};
use crate::extract::{ApiJson, ApiPath as Path, ApiQuery as Query};
use crate::idempotency::idempotent;
use crate::problem::{ApiError, Problem};
use crate::routes::{PageQuery, Paged, version_ref};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_workflow, list_workflows))
        .routes(routes!(get_workflow, delete_workflow))
        .routes(routes!(create_version, list_versions))
        .routes(routes!(get_version))
        .routes(routes!(diff_versions))
}

/// A new workflow with its first version.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkflow {
    /// Unique name: letters, digits, `-`, `_`, `.` (1..=100).
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The first version's spec (`sgde.workflow/v1`).
    #[schema(value_type = WorkflowSpec)]
    pub spec: serde_json::Value,
}

/// A workflow and one of its versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowWithVersion {
    pub workflow: Workflow,
    pub version: Version,
}

/// A new version of an existing workflow.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVersion {
    #[schema(value_type = WorkflowSpec)]
    pub spec: serde_json::Value,
    /// The version this one derives from (number, id or label).
    #[serde(default)]
    pub parent: Option<String>,
}

/// The answer to creating a version: `created` is false when identical content already existed.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionCreated {
    pub created: bool,
    pub version: Version,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// The older version (number, id, label or `latest`).
    pub from: String,
    /// The newer version.
    pub to: String,
}

pub(crate) fn check_name(name: &str, pointer: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok { Ok(()) } else { Err(ApiError::invalid(pointer, "use 1 to 100 letters, digits, `-`, `_` or `.`")) }
}

/// Parses and validates a spec from a request body (where it sits under `/spec`), for storing.
pub(crate) fn new_version(
    spec: &serde_json::Value,
    parent: Option<uuid::Uuid>,
) -> Result<NewVersion, ApiError> {
    let spec = WorkflowSpec::from_value(spec.clone()).map_err(|e| {
        let mut e = ApiError::from(e);
        if let ApiError::InvalidSpec { errors } = &mut e {
            for err in errors {
                err.pointer = format!("/spec{}", err.pointer);
            }
        }
        e
    })?;
    Ok(NewVersion {
        spec: serde_json::to_value(&spec).map_err(ApiError::internal)?,
        content_hash: spec.content_hash(),
        parent_version_id: parent,
        source: VersionSource::Manual,
        job_id: None,
        metrics: None,
        origin: None,
    })
}

/// Create a workflow with its first version.
#[utoipa::path(post, path = "/v1/workflows", tag = "workflows", request_body = CreateWorkflow,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = WorkflowWithVersion), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn create_workflow(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: ApiJson<CreateWorkflow>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Write)?;
    idempotent(&state, &principal, &headers, "POST /v1/workflows", &body.raw, || async {
        let request = &body.value;
        check_name(&request.name, "/name")?;
        let version = new_version(&request.spec, None)?;
        let new = NewWorkflow { name: request.name.clone(), description: request.description.clone() };
        let (workflow, version) = state.store().create_workflow_with_version(&new, &version).await?;
        Ok((StatusCode::CREATED, Json(WorkflowWithVersion { workflow, version })).into_response())
    })
    .await
}

/// List workflows by name.
#[utoipa::path(get, path = "/v1/workflows", tag = "workflows", params(PageQuery),
    responses((status = 200, body = Paged<Workflow>)), security(("bearer" = [])))]
async fn list_workflows(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<PageQuery>,
) -> Result<Json<Paged<Workflow>>, ApiError> {
    principal.require(Scope::Read)?;
    Ok(Json(state.store().list_workflows(&page.request()?).await?.into()))
}

/// Get a workflow.
#[utoipa::path(get, path = "/v1/workflows/{name}", tag = "workflows", params(("name" = String, Path)),
    responses((status = 200, body = Workflow), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_workflow(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<Workflow>, ApiError> {
    principal.require(Scope::Read)?;
    Ok(Json(state.store().get_workflow(&name).await?))
}

/// Delete a workflow (its executions stay in the log).
#[utoipa::path(delete, path = "/v1/workflows/{name}", tag = "workflows", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn delete_workflow(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::Write)?;
    state.store().delete_workflow(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create a version; identical content returns the existing version (200) instead of a copy.
#[utoipa::path(post, path = "/v1/workflows/{name}/versions", tag = "versions", request_body = CreateVersion,
    params(("name" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = VersionCreated), (status = 200, body = VersionCreated),
        (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn create_version(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: ApiJson<CreateVersion>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Write)?;
    let route = format!("POST /v1/workflows/{name}/versions");
    idempotent(&state, &principal, &headers, &route, &body.raw, || async {
        let workflow = state.store().get_workflow(&name).await?;
        let parent = match &body.value.parent {
            None => None,
            Some(reference) => Some(
                state
                    .store()
                    .get_version(workflow.id, &version_ref(reference))
                    .await
                    .map_err(|e| match e {
                        sgde_store::StoreError::NotFound { .. } => ApiError::invalid(
                            "/parent",
                            format!("no version `{reference}` in workflow `{name}`"),
                        ),
                        other => other.into(),
                    })?
                    .id,
            ),
        };
        let new = new_version(&body.value.spec, parent)?;
        let (version, created) = state.store().create_version(workflow.id, &new).await?;
        let status = if created { StatusCode::CREATED } else { StatusCode::OK };
        Ok((status, Json(VersionCreated { created, version })).into_response())
    })
    .await
}

/// List versions, newest first.
#[utoipa::path(get, path = "/v1/workflows/{name}/versions", tag = "versions",
    params(("name" = String, Path), PageQuery), responses((status = 200, body = Paged<Version>), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn list_versions(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Paged<Version>>, ApiError> {
    principal.require(Scope::Read)?;
    let workflow = state.store().get_workflow(&name).await?;
    Ok(Json(state.store().list_versions(workflow.id, &page.request()?).await?.into()))
}

/// Get a version by number, id, label or `latest`.
#[utoipa::path(get, path = "/v1/workflows/{name}/versions/{reference}", tag = "versions",
    params(("name" = String, Path), ("reference" = String, Path, description = "number, id, label or `latest`")),
    responses((status = 200, body = Version), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_version(
    State(state): State<AppState>,
    principal: Principal,
    Path((name, reference)): Path<(String, String)>,
) -> Result<Json<Version>, ApiError> {
    principal.require(Scope::Read)?;
    let (_, version) = state.store().resolve_version(&name, &version_ref(&reference)).await?;
    Ok(Json(version))
}

/// Structural diff of two versions: nodes added, removed and changed, with prompt and code diffs.
#[utoipa::path(get, path = "/v1/workflows/{name}/diff", tag = "versions",
    params(("name" = String, Path), DiffQuery),
    responses((status = 200, body = SpecDiff), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn diff_versions(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    Query(query): Query<DiffQuery>,
) -> Result<Json<SpecDiff>, ApiError> {
    principal.require(Scope::Read)?;
    let (_, old) = state.store().resolve_version(&name, &version_ref(&query.from)).await?;
    let (_, new) = state.store().resolve_version(&name, &version_ref(&query.to)).await?;
    let parse = |v: &Version| {
        WorkflowSpec::from_value(v.spec.clone())
            .map_err(|e| ApiError::internal(anyhow::anyhow!("stored version {} does not parse: {e}", v.id)))
    };
    Ok(Json(diff(&parse(&old)?, &parse(&new)?)))
}
