//! The routers of `/v1`, one module per resource, merged in [`crate::app`].

pub mod apply;
pub mod compile_jobs;
pub mod datasets;
pub mod endpoints;
pub mod evaluations;
pub mod execute;
pub mod executions;
pub mod feedback;
pub mod keys;
pub mod labels;
pub mod policies;
pub mod runs;
pub mod system;
pub mod workflows;

use serde::{Deserialize, Serialize};
use sgde_store::{PageRequest, VersionSelector};
use utoipa::{IntoParams, ToSchema};

use crate::problem::ApiError;

/// A plain list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Items<T> {
    pub items: Vec<T>,
}

/// One page of a list and the cursor of the next (absent on the last page).
#[derive(Debug, Serialize, ToSchema)]
pub struct Paged<T> {
    pub items: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T> From<sgde_store::Page<T>> for Paged<T> {
    fn from(page: sgde_store::Page<T>) -> Self {
        Self { items: page.items, next_cursor: page.next_cursor }
    }
}

/// Cursor pagination parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// At most this many items (1..=200, default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn request(&self) -> Result<PageRequest, ApiError> {
        if let Some(limit) = self.limit.filter(|l| !(1..=200).contains(l)) {
            return Err(ApiError::invalid("/query/limit", format!("must be between 1 and 200, got {limit}")));
        }
        Ok(PageRequest { limit: self.limit, cursor: self.cursor.clone() })
    }
}

/// The `{id}` path parameter as a UUID; anything else is a 422 naming the parameter.
pub fn path_id(id: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(id).map_err(|_| ApiError::invalid("/path/id", "not a UUID"))
}

/// Reads a version reference: a number, a version id, `latest`, or a label name.
pub fn version_ref(reference: &str) -> VersionSelector {
    if let Ok(number) = reference.parse::<i32>() {
        return VersionSelector::Number(number);
    }
    if let Ok(id) = uuid::Uuid::parse_str(reference) {
        return VersionSelector::Id(id);
    }
    if reference == "latest" {
        return VersionSelector::Latest;
    }
    VersionSelector::Label(reference.to_owned())
}

/// The version a request body names at `pointer` (a number, id, label or `latest`); a
/// reference that names nothing is a 422 on that field, not a 404 of the route.
pub async fn body_version(
    state: &crate::state::AppState,
    workflow: &sgde_store::Workflow,
    reference: &str,
    pointer: &str,
) -> Result<sgde_store::Version, ApiError> {
    match state.store().get_version(workflow.id, &version_ref(reference)).await {
        Ok(v) => Ok(v),
        Err(sgde_store::StoreError::NotFound { .. }) => Err(ApiError::invalid(
            pointer,
            format!("no version `{reference}` in workflow `{}`", workflow.name),
        )),
        Err(e) => Err(e.into()),
    }
}
