//! `/v1/evaluations`: prove a version better before routing traffic to it — evaluate it (and
//! optionally a baseline, on the same examples) with a metric, as an async job; read accuracy
//! with a 95% Wilson interval, the clean subset, per-example outcomes (traces for failures),
//! tokens, cost and latency, and a paired McNemar test with a verdict.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sgde_compiler::{Example, Metric};
use sgde_store::{
    CancelOutcome, EVALUATION_JOB_KIND, EvaluationResult, EvaluationSummary, JobStatus, NewJob, Scope, Split,
    StoreError,
};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Principal;
use crate::evaluation::report::{self, PairedComparison, VersionReport};
use crate::evaluation::{DEFAULT_CONCURRENCY, EvaluationPayload, MAX_CONCURRENCY, Target};
use crate::extract::{ApiJson, ApiPath as Path, ApiQuery as Query};
use crate::idempotency::idempotent;
use crate::problem::{ApiError, Problem};
use crate::routes::runs::CancelResult;
use crate::routes::{Items, PageQuery, Paged, body_version, path_id};
use crate::state::AppState;

/// Claims of an evaluation's queue job (a crashed worker's evaluation resumes elsewhere).
const EVALUATION_MAX_ATTEMPTS: u32 = 10;
/// Most examples one evaluation runs.
const MAX_EXAMPLES: usize = 100_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(submit_evaluation, list_evaluations))
        .routes(routes!(get_evaluation))
        .routes(routes!(evaluation_results))
        .routes(routes!(cancel_evaluation))
}

/// What to evaluate, on what, and how to score it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitEvaluation {
    pub workflow: String,
    /// Version to evaluate: number, id, label or `latest`.
    pub version: String,
    /// A second version to run on the same examples and compare with (McNemar).
    #[serde(default)]
    pub baseline: Option<String>,
    /// Data set to draw the examples from (or give `examples`).
    #[serde(default)]
    pub dataset: Option<String>,
    /// Split of the data set; default `test`.
    #[serde(default)]
    pub split: Option<Split>,
    /// At most this many examples of the split, in row order.
    #[serde(default)]
    pub limit: Option<u32>,
    /// Inline examples (instead of `dataset`).
    #[serde(default)]
    pub examples: Vec<Example>,
    pub metric: Metric,
    /// Runs at once (1..=64, default 8).
    #[serde(default)]
    pub concurrency: Option<u32>,
}

/// An evaluation and its report so far.
#[derive(Debug, Serialize, ToSchema)]
pub struct Evaluation {
    pub id: Uuid,
    pub status: JobStatus,
    pub workflow: String,
    /// Where the examples came from.
    #[schema(value_type = Object)]
    pub source: Value,
    pub examples: u64,
    pub version: VersionReport,
    pub baseline: Option<VersionReport>,
    /// The version against the baseline on the examples both have run.
    pub comparison: Option<PairedComparison>,
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Which evaluations to list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EvaluationQuery {
    /// Only evaluations of this workflow.
    pub workflow: Option<String>,
    /// At most this many (1..=200, default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Evaluations newest first, without their reports (`GET /v1/evaluations/{id}` has those).
#[utoipa::path(get, path = "/v1/evaluations", tag = "evaluations", params(EvaluationQuery),
    responses((status = 200, body = Paged<EvaluationSummary>), (status = 400, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn list_evaluations(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<EvaluationQuery>,
) -> Result<Json<Paged<EvaluationSummary>>, ApiError> {
    principal.require(Scope::Read)?;
    let page = PageQuery { limit: query.limit, cursor: query.cursor.clone() }.request()?;
    Ok(Json(state.store().list_evaluations(query.workflow.as_deref(), &page).await?.into()))
}

/// Which outcomes to list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResultQuery {
    /// Only this version's outcomes.
    pub version_id: Option<Uuid>,
    /// Only passed (`true`) or failed (`false`) examples.
    pub passed: Option<bool>,
}

/// Start an evaluation; poll `Location` for its report.
#[utoipa::path(post, path = "/v1/evaluations", tag = "evaluations", request_body = SubmitEvaluation,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 202, body = Evaluation, headers(("Location" = String))),
        (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn submit_evaluation(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: ApiJson<SubmitEvaluation>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Execute)?;
    idempotent(&state, &principal, &headers, "POST /v1/evaluations", &body.raw, || async {
        let request = &body.value;
        request.metric.check().map_err(|e| ApiError::invalid("/metric", e.to_string()))?;
        let concurrency = request.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
            return Err(ApiError::invalid(
                "/concurrency",
                format!("must be between 1 and {MAX_CONCURRENCY}"),
            ));
        }
        let workflow = state.store().get_workflow(&request.workflow).await?;
        let evaluated = body_version(&state, &workflow, &request.version, "/version").await?;
        let version = Target { version_id: evaluated.id, version_number: evaluated.number };
        let baseline = match &request.baseline {
            Some(r) => {
                let v = body_version(&state, &workflow, r, "/baseline").await?;
                Some(Target { version_id: v.id, version_number: v.number })
            }
            None => None,
        };
        if baseline.as_ref() == Some(&version) {
            return Err(ApiError::invalid("/baseline", "the baseline is the version under evaluation"));
        }
        let (examples, source) = match (&request.dataset, request.examples.is_empty()) {
            (Some(_), false) => {
                return Err(ApiError::invalid("/examples", "give `dataset` or `examples`, not both"));
            }
            (None, true) => {
                return Err(ApiError::invalid("/examples", "give `dataset` or at least one example"));
            }
            (None, false) => {
                if request.split.is_some() || request.limit.is_some() {
                    return Err(ApiError::invalid("/split", "`split` and `limit` apply to a `dataset`"));
                }
                (request.examples.clone(), json!({"inline": request.examples.len()}))
            }
            (Some(name), true) => {
                let dataset = state.store().get_dataset(name).await.map_err(|e| match e {
                    StoreError::NotFound { .. } => {
                        ApiError::invalid("/dataset", format!("no data set `{name}`"))
                    }
                    other => other.into(),
                })?;
                let split = request.split.unwrap_or(Split::Test);
                let limit =
                    request.limit.unwrap_or(u32::MAX).min(u32::try_from(MAX_EXAMPLES).unwrap_or(u32::MAX));
                let rows = state.store().dataset_rows(dataset.id, Some(split), 0, limit).await?;
                let examples: Vec<Example> =
                    rows.into_iter().map(|r| Example { inputs: r.inputs, expected: r.expected }).collect();
                if examples.is_empty() {
                    return Err(ApiError::invalid(
                        "/split",
                        format!("split `{}` of `{name}` has no rows", split.as_str()),
                    ));
                }
                (examples, json!({"dataset": name, "split": split, "rows": dataset.rows}))
            }
        };
        if examples.len() > MAX_EXAMPLES {
            return Err(ApiError::invalid("/examples", format!("at most {MAX_EXAMPLES} examples")));
        }
        // Inputs are checked now: a bad example is a 422, not a failed evaluation later.
        let prepared = state.prepared(&evaluated)?;
        for (i, example) in examples.iter().enumerate() {
            if let Some(errors) = crate::routes::execute::input_errors(&prepared, &example.inputs) {
                let first = errors.into_iter().next().map(|e| e.message).unwrap_or_default();
                return Err(ApiError::invalid(format!("/examples/{i}/inputs"), first));
            }
        }
        let payload = EvaluationPayload {
            workflow_id: workflow.id,
            workflow: workflow.name.clone(),
            version,
            baseline,
            examples,
            metric: request.metric.clone(),
            concurrency,
            source,
        };
        let value = serde_json::to_value(&payload).map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?;
        let job = state
            .store()
            .enqueue(&NewJob::new(EVALUATION_JOB_KIND, value).max_attempts(EVALUATION_MAX_ATTEMPTS))
            .await?;
        state.run_submitted().notify_one();
        let evaluation = view(&state, &job).await?;
        let mut response = (StatusCode::ACCEPTED, Json(evaluation)).into_response();
        if let Ok(location) = HeaderValue::from_str(&format!("/v1/evaluations/{}", job.id)) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        Ok(response)
    })
    .await
}

/// The report of an evaluation, recomputed from its stored outcomes.
async fn view(state: &AppState, job: &sgde_store::Job) -> Result<Evaluation, ApiError> {
    let payload: EvaluationPayload = serde_json::from_value(job.payload.clone()).map_err(|e| {
        ApiError::internal(anyhow::anyhow!("stored evaluation {} is unreadable: {e}", job.id))
    })?;
    let results = state.store().evaluation_results(job.id).await?;
    let of = |id: Uuid| results.iter().filter(|r| r.version_id == id).collect::<Vec<&EvaluationResult>>();
    let mine = of(payload.version.version_id);
    let version = report::version_report(payload.version.version_id, payload.version.version_number, &mine);
    let (baseline, comparison) = match &payload.baseline {
        Some(b) => {
            let theirs = of(b.version_id);
            (
                Some(report::version_report(b.version_id, b.version_number, &theirs)),
                Some(report::mcnemar((payload.version.version_id, &mine), (b.version_id, &theirs))),
            )
        }
        None => (None, None),
    };
    Ok(Evaluation {
        id: job.id,
        status: job.status,
        workflow: payload.workflow,
        source: payload.source,
        examples: payload.examples.len() as u64,
        version,
        baseline,
        comparison,
        error: job.last_error.clone().filter(|_| job.status == JobStatus::Failed),
        created_at: job.created_at,
        finished_at: job.finished_at,
    })
}

async fn evaluation_job(state: &AppState, id: &str) -> Result<sgde_store::Job, ApiError> {
    let id = path_id(id)?;
    let job = state.store().get_job(id).await.map_err(|e| match e {
        StoreError::NotFound { .. } => ApiError::not_found("evaluation"),
        other => other.into(),
    })?;
    if job.kind != EVALUATION_JOB_KIND {
        return Err(ApiError::not_found("evaluation"));
    }
    Ok(job)
}

/// Status and report: accuracy with its 95% Wilson interval (all rows and the clean subset of
/// numeric data), errors, tokens, cost and latency per example, and the paired comparison.
#[utoipa::path(get, path = "/v1/evaluations/{id}", tag = "evaluations", params(("id" = Uuid, Path)),
    responses((status = 200, body = Evaluation), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_evaluation(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Evaluation>, ApiError> {
    principal.require(Scope::Read)?;
    let job = evaluation_job(&state, &id).await?;
    Ok(Json(view(&state, &job).await?))
}

/// Per-example outcomes (with traces for failures).
#[utoipa::path(get, path = "/v1/evaluations/{id}/results", tag = "evaluations", params(("id" = Uuid, Path), ResultQuery),
    responses((status = 200, body = Items<EvaluationResult>), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn evaluation_results(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(query): Query<ResultQuery>,
) -> Result<Json<Items<EvaluationResult>>, ApiError> {
    principal.require(Scope::Read)?;
    let job = evaluation_job(&state, &id).await?;
    let items = state
        .store()
        .evaluation_results(job.id)
        .await?
        .into_iter()
        .filter(|r| query.version_id.is_none_or(|v| v == r.version_id))
        .filter(|r| query.passed.is_none_or(|p| p == r.passed))
        .collect();
    Ok(Json(Items { items }))
}

/// Cancel an evaluation (outcomes recorded so far are kept).
#[utoipa::path(post, path = "/v1/evaluations/{id}/cancel", tag = "evaluations", params(("id" = Uuid, Path)),
    responses((status = 200, body = CancelResult), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn cancel_evaluation(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<CancelResult>, ApiError> {
    principal.require(Scope::Execute)?;
    let job = evaluation_job(&state, &id).await?;
    let status = match state.store().cancel_job(job.id).await? {
        CancelOutcome::Cancelled => "cancelled",
        CancelOutcome::Requested => "cancel_requested",
        CancelOutcome::AlreadyFinished(_) => "already_finished",
    };
    Ok(Json(CancelResult { status: status.to_owned() }))
}
