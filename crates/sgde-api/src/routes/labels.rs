//! `/v1/workflows/{name}/labels`: movable names for versions (`production`, `staging`, ...), with
//! the history of every move.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use sgde_store::{Label, LabelEvent, LabelMove, Scope};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::extract::{ApiJson, ApiPath as Path, ApiQuery as Query};
use crate::problem::{ApiError, Problem};
use crate::routes::workflows::check_name;
use crate::routes::{Items, PageQuery, Paged, body_version};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_labels))
        .routes(routes!(set_label, delete_label))
        .routes(routes!(label_history))
        .routes(routes!(all_label_history))
}

/// Where a label should point.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetLabel {
    /// Version number, id, another label, or `latest`.
    pub version: String,
}

/// A label must be a name that cannot be read as another kind of version reference.
pub(crate) fn check_label(label: &str, pointer: &str) -> Result<(), ApiError> {
    check_name(label, pointer)?;
    if label == "latest" || label.parse::<i64>().is_ok() {
        return Err(ApiError::invalid(pointer, "`latest` and numbers address versions; pick another label"));
    }
    Ok(())
}

/// Labels of a workflow.
#[utoipa::path(get, path = "/v1/workflows/{name}/labels", tag = "labels", params(("name" = String, Path)),
    responses((status = 200, body = Items<Label>), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn list_labels(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<Items<Label>>, ApiError> {
    principal.require(Scope::Read)?;
    let workflow = state.store().get_workflow(&name).await?;
    Ok(Json(Items { items: state.store().list_labels(workflow.id).await? }))
}

/// Set or move a label (idempotent: PUT the same version twice and nothing moves).
#[utoipa::path(put, path = "/v1/workflows/{name}/labels/{label}", tag = "labels", request_body = SetLabel,
    params(("name" = String, Path), ("label" = String, Path)),
    responses((status = 200, body = LabelMove), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn set_label(
    State(state): State<AppState>,
    principal: Principal,
    Path((name, label)): Path<(String, String)>,
    body: ApiJson<SetLabel>,
) -> Result<Json<LabelMove>, ApiError> {
    principal.require(Scope::Write)?;
    check_label(&label, "/path/label")?;
    let workflow = state.store().get_workflow(&name).await?;
    let version = body_version(&state, &workflow, &body.value.version, "/version").await?;
    let moved =
        state.store().set_label(workflow.id, &label, version.id, Some(&principal.audit_name())).await?;
    Ok(Json(moved))
}

/// Delete a label.
#[utoipa::path(delete, path = "/v1/workflows/{name}/labels/{label}", tag = "labels",
    params(("name" = String, Path), ("label" = String, Path)),
    responses((status = 200, body = Label), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn delete_label(
    State(state): State<AppState>,
    principal: Principal,
    Path((name, label)): Path<(String, String)>,
) -> Result<Json<Label>, ApiError> {
    principal.require(Scope::Write)?;
    let workflow = state.store().get_workflow(&name).await?;
    Ok(Json(state.store().delete_label(workflow.id, &label, Some(&principal.audit_name())).await?))
}

/// Moves of one label, newest first.
#[utoipa::path(get, path = "/v1/workflows/{name}/labels/{label}/history", tag = "labels",
    params(("name" = String, Path), ("label" = String, Path), PageQuery),
    responses((status = 200, body = Paged<LabelEvent>), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn label_history(
    State(state): State<AppState>,
    principal: Principal,
    Path((name, label)): Path<(String, String)>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Paged<LabelEvent>>, ApiError> {
    principal.require(Scope::Read)?;
    let workflow = state.store().get_workflow(&name).await?;
    Ok(Json(state.store().label_history(workflow.id, Some(&label), &page.request()?).await?.into()))
}

/// Moves of every label of a workflow, newest first.
#[utoipa::path(get, path = "/v1/workflows/{name}/label-history", tag = "labels",
    params(("name" = String, Path), PageQuery),
    responses((status = 200, body = Paged<LabelEvent>), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn all_label_history(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Paged<LabelEvent>>, ApiError> {
    principal.require(Scope::Read)?;
    let workflow = state.store().get_workflow(&name).await?;
    Ok(Json(state.store().label_history(workflow.id, None, &page.request()?).await?.into()))
}
