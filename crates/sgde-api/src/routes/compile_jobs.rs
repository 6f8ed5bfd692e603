//! `/v1/compile-jobs`: compiling a workflow with a teacher model, as a durable queue job —
//! accepted after a preflight estimate, run by any replica (see [`crate::compile`]), polled for
//! progress, its iteration log readable as it grows, cancellable.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use sgde_compiler::{
    AllowedEdits, Budget, CompileError, CompileRequest, Example, IterationRecord, Metric, PriceTable,
    estimate,
};
use sgde_llm::Prices;
use sgde_store::{CancelOutcome, CompileJobFilter, JobStatus, NewCompileJob, Scope, StoreError};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Principal;
use crate::compile::StoredCompile;
use crate::compile_view::{self, CompileJobView};
use crate::extract::{ApiJson, ApiPath as Path, ApiQuery as Query};
use crate::idempotency::idempotent;
use crate::problem::{ApiError, Problem};
use crate::routes::runs::CancelResult;
use crate::routes::{Items, PageQuery, Paged, path_id, version_ref};
use crate::state::AppState;

/// Claims of a compile job's queue item: a compile survives this many crashed workers.
const COMPILE_MAX_ATTEMPTS: u32 = 10;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(submit_compile_job, list_compile_jobs))
        .routes(routes!(get_compile_job))
        .routes(routes!(list_iterations))
        .routes(routes!(cancel_compile_job))
}

/// A compile to run in the background.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitCompileJob {
    /// Workflow the result becomes a version of; created on success if it does not exist.
    pub workflow: String,
    /// What the workflow must do, in words.
    pub task: String,
    /// Version of `workflow` to start from (number, id, label or `latest`); without it the
    /// compile starts from a single `llm` node made from the task.
    #[serde(default)]
    pub initial_version: Option<String>,
    /// Training examples (at least one).
    pub train: Vec<Example>,
    /// Held-out examples, scored on the result.
    #[serde(default)]
    pub validation: Vec<Example>,
    pub metric: Metric,
    /// Endpoint name of the teacher.
    pub teacher: String,
    /// Endpoint name of the student.
    pub student: String,
    #[serde(default)]
    pub budget: Budget,
    /// Samples per example (k), default 3.
    #[serde(default)]
    pub samples_per_example: Option<u32>,
    /// Which structures may change (ablation flags); all by default.
    #[serde(default)]
    pub allowed: AllowedEdits,
    #[serde(default)]
    pub seed: u64,
    /// Iterations without progress before stopping, default 3.
    #[serde(default)]
    pub patience: Option<u32>,
    /// Label to move to the result on success.
    #[serde(default)]
    pub label: Option<String>,
    /// Called with the finished job (POST, JSON, event `compile_job.finished`, signed like run
    /// webhooks), retried with backoff.
    #[serde(default)]
    pub webhook_url: Option<String>,
}

/// Filters of the compile-job list, combined with AND, and the page to return.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CompileJobQuery {
    /// Only jobs of this workflow.
    pub workflow: Option<String>,
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// At most this many items (1..=200, default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// `budget.max_iterations` → `/budget/max_iterations`; `train[2].inputs` → `/train/2/inputs`.
fn pointer(field: &str) -> String {
    let path = field.replace(['.', '['], "/").replace(']', "");
    format!("/{path}")
}

fn compile_error(e: CompileError) -> ApiError {
    match e {
        CompileError::InvalidRequest { field, message } => ApiError::invalid(pointer(&field), message),
        CompileError::BudgetTooSmall { resource, needed, limit, .. } => {
            let field = match resource {
                "teacher calls" => "/budget/max_teacher_calls",
                "student calls" => "/budget/max_student_calls",
                "tokens" => "/budget/max_tokens",
                _ => "/budget/max_usd",
            };
            ApiError::invalid(
                field,
                format!(
                    "the budget cannot fit one full iteration: {resource} needs about {needed}, the budget allows {limit}"
                ),
            )
        }
        other => ApiError::invalid("/", other.to_string()),
    }
}

async fn prices(state: &AppState, name: &str, field: &str) -> Result<Prices, ApiError> {
    match state.models().config(name).await {
        Ok(config) => Ok(config.prices),
        Err(StoreError::NotFound { .. }) => {
            Err(ApiError::invalid(field, format!("no endpoint named `{name}`")))
        }
        Err(e) => Err(e.into()),
    }
}

/// Resolves the request into what the job stores, checking everything checkable now.
async fn prepare(state: &AppState, body: &SubmitCompileJob) -> Result<(StoredCompile, Value), ApiError> {
    if body.workflow.trim().is_empty() {
        return Err(ApiError::invalid("/workflow", "name a workflow"));
    }
    if let Some(url) = &body.webhook_url {
        match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => return Err(ApiError::invalid("/webhook_url", "must be an absolute http(s) URL")),
        }
    }
    let (initial, initial_version_id) = match &body.initial_version {
        Some(reference) => {
            let (_, version) = state.store().resolve_version(&body.workflow, &version_ref(reference)).await?;
            let spec = sgde_workflow::WorkflowSpec::from_value(version.spec.clone()).map_err(|e| {
                ApiError::internal(anyhow::anyhow!("stored version {} invalid: {e}", version.id))
            })?;
            (Some(spec), Some(version.id))
        }
        None => (None, None),
    };
    let mut compile = CompileRequest::new(
        body.task.clone(),
        body.train.clone(),
        body.metric.clone(),
        body.teacher.clone(),
        body.student.clone(),
    );
    compile.initial = initial;
    compile.validation = body.validation.clone();
    compile.budget = body.budget.clone();
    if let Some(k) = body.samples_per_example {
        compile.samples_per_example = k;
    }
    compile.allowed = body.allowed;
    compile.seed = body.seed;
    if let Some(patience) = body.patience {
        compile.patience = patience;
    }
    compile.check().map_err(compile_error)?;
    let table = PriceTable {
        teacher: prices(state, &body.teacher, "/teacher").await?,
        student: prices(state, &body.student, "/student").await?,
    };
    let estimate = estimate(&compile, &table).map_err(compile_error)?;
    let estimate = serde_json::to_value(estimate).map_err(ApiError::internal)?;
    let stored = StoredCompile {
        compile,
        initial_version_id,
        label: body.label.clone(),
        webhook_url: body.webhook_url.clone(),
    };
    Ok((stored, estimate))
}

/// Accept a compile job; poll `Location` for its progress and result.
#[utoipa::path(post, path = "/v1/compile-jobs", tag = "compile-jobs", request_body = SubmitCompileJob,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 202, body = CompileJobView, headers(("Location" = String))),
        (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn submit_compile_job(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: ApiJson<SubmitCompileJob>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Compile)?;
    idempotent(&state, &principal, &headers, "POST /v1/compile-jobs", &body.raw, || async {
        let (stored, estimate) = prepare(&state, &body.value).await?;
        let new = NewCompileJob {
            id: Uuid::now_v7(),
            workflow: body.value.workflow.clone(),
            request: serde_json::to_value(&stored).map_err(ApiError::internal)?,
            estimate,
            max_attempts: COMPILE_MAX_ATTEMPTS,
        };
        let job = CompileJobView::try_from(state.store().submit_compile_job(&new).await?)?;
        state.run_submitted().notify_one();
        let mut response = (StatusCode::ACCEPTED, Json(&job)).into_response();
        if let Ok(location) = HeaderValue::from_str(&format!("/v1/compile-jobs/{}", job.id)) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        Ok(response)
    })
    .await
}

/// Compile jobs, newest first, a page at a time, optionally of one workflow or in one status.
#[utoipa::path(get, path = "/v1/compile-jobs", tag = "compile-jobs", params(CompileJobQuery),
    responses((status = 200, body = Paged<CompileJobView>), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn list_compile_jobs(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<CompileJobQuery>,
) -> Result<Json<Paged<CompileJobView>>, ApiError> {
    principal.require(Scope::Read)?;
    let page = PageQuery { limit: query.limit, cursor: query.cursor }.request()?;
    let filter = CompileJobFilter { workflow: query.workflow, status: query.status };
    let page = state.store().list_compile_jobs(&filter, &page).await?;
    let items = page.items.into_iter().map(CompileJobView::try_from).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(Paged { items, next_cursor: page.next_cursor }))
}

/// A compile job: status, stop reason, progress, estimate and result version.
#[utoipa::path(get, path = "/v1/compile-jobs/{id}", tag = "compile-jobs", params(("id" = Uuid, Path)),
    responses((status = 200, body = CompileJobView), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_compile_job(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<CompileJobView>, ApiError> {
    principal.require(Scope::Read)?;
    Ok(Json(state.store().get_compile_job(path_id(&id)?).await?.try_into()?))
}

/// The iteration log: per iteration the critiques per node, the edits, accepted or rejected and
/// why, scores and usage.
#[utoipa::path(get, path = "/v1/compile-jobs/{id}/iterations", tag = "compile-jobs",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Items<IterationRecord>), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn list_iterations(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Items<IterationRecord>>, ApiError> {
    principal.require(Scope::Read)?;
    let id = path_id(&id)?;
    let records = state.store().list_compile_iterations(id).await?;
    Ok(Json(Items { items: compile_view::iterations(id, records)? }))
}

/// Cancel a compile job; a running one stops between model calls with its best so far.
#[utoipa::path(post, path = "/v1/compile-jobs/{id}/cancel", tag = "compile-jobs",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = CancelResult), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn cancel_compile_job(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<CancelResult>, ApiError> {
    principal.require(Scope::Compile)?;
    let status = match state.store().cancel_compile_job(path_id(&id)?).await? {
        CancelOutcome::Cancelled => "cancelled",
        CancelOutcome::Requested => "cancel_requested",
        CancelOutcome::AlreadyFinished(_) => "already_finished",
    };
    Ok(Json(CancelResult { status: status.to_owned() }))
}
