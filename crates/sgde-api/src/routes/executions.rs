//! `/v1/executions`: the execution log, filtered and paged, each entry with its trace.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sgde_store::{Execution, ExecutionFilter, ExecutionMode, ExecutionStatus, Scope};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Principal;
use crate::extract::{ApiPath as Path, ApiQuery as Query};
use crate::problem::{ApiError, Problem};
use crate::routes::{PageQuery, Paged};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_executions)).routes(routes!(get_execution))
}

/// Filters of the execution log; all optional, combined with AND.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExecutionQuery {
    /// Workflow name.
    pub workflow: Option<String>,
    /// Version id.
    pub version_id: Option<Uuid>,
    pub status: Option<ExecutionStatus>,
    pub mode: Option<ExecutionMode>,
    /// Created at or after (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Created before (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// List executions, newest first.
#[utoipa::path(get, path = "/v1/executions", tag = "executions", params(ExecutionQuery),
    responses((status = 200, body = Paged<Execution>), (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn list_executions(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<ExecutionQuery>,
) -> Result<Json<Paged<Execution>>, ApiError> {
    principal.require(Scope::Read)?;
    let workflow_id = match &query.workflow {
        Some(name) => Some(state.store().get_workflow(name).await?.id),
        None => None,
    };
    let filter = ExecutionFilter {
        workflow_id,
        version_id: query.version_id,
        status: query.status,
        mode: query.mode,
        created_after: query.since,
        created_before: query.until,
    };
    let page = PageQuery { limit: query.limit, cursor: query.cursor.clone() }.request()?;
    let mut page: Paged<Execution> = state.store().list_executions(&filter, &page).await?.into();
    // Lists stay light; the trace is one GET away.
    for e in &mut page.items {
        e.trace = None;
    }
    Ok(Json(page))
}

/// One execution with its trace.
#[utoipa::path(get, path = "/v1/executions/{id}", tag = "executions", params(("id" = Uuid, Path)),
    responses((status = 200, body = Execution), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_execution(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Execution>, ApiError> {
    principal.require(Scope::Read)?;
    let id = crate::routes::path_id(&id)?;
    Ok(Json(state.store().get_execution(id).await?))
}
