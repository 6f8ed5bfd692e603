//! `/v1/executions/{id}/feedback`: whether an execution's output was right, or how good it was.
//! One record per execution: posting again replaces it, so retries never count twice.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sgde_store::{Feedback, NewFeedback, Scope, VersionSelector};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::extract::{ApiJson, ApiPath as Path};
use crate::problem::{ApiError, FieldError, Problem};
use crate::routes::path_id;
use crate::state::AppState;

/// Longest comment kept.
const MAX_COMMENT: usize = 4_096;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(post_feedback, get_feedback))
}

/// A judgement of an execution's output: `correct`, `score`, or both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// Was the output right?
    #[serde(default)]
    pub correct: Option<bool>,
    /// A graded score in [0, 1].
    #[serde(default)]
    pub score: Option<f64>,
    #[serde(default)]
    pub comment: Option<String>,
}

fn check(request: &FeedbackRequest) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    if request.correct.is_none() && request.score.is_none() {
        errors.push(FieldError {
            pointer: "/correct".into(),
            message: "give `correct`, `score`, or both".into(),
        });
    }
    if let Some(score) = request.score.filter(|s| !(0.0..=1.0).contains(s)) {
        errors.push(FieldError {
            pointer: "/score".into(),
            message: format!("must be within [0, 1], got {score}"),
        });
    }
    if request.comment.as_ref().is_some_and(|c| c.len() > MAX_COMMENT) {
        errors
            .push(FieldError { pointer: "/comment".into(), message: format!("at most {MAX_COMMENT} bytes") });
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid { detail: "the feedback is invalid".into(), errors })
    }
}

/// Record feedback on an execution (201 the first time, 200 when it replaces earlier feedback).
#[utoipa::path(post, path = "/v1/executions/{id}/feedback", tag = "routing", request_body = FeedbackRequest,
    params(("id" = uuid::Uuid, Path)),
    responses((status = 201, body = Feedback), (status = 200, body = Feedback),
        (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn post_feedback(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: ApiJson<FeedbackRequest>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Execute)?;
    let id = path_id(&id)?;
    let request = &body.value;
    check(request)?;
    let execution = state.store().get_execution(id).await?;
    let new =
        NewFeedback { correct: request.correct, score: request.score, comment: request.comment.clone() };
    let (feedback, created) = state.store().put_feedback(id, &new, Some(&principal.audit_name())).await?;
    if created {
        // Labels for the counters; feedback is not a hot path.
        let workflow = state.store().get_workflow_by_id(execution.workflow_id).await;
        let version = state
            .store()
            .get_version(execution.workflow_id, &VersionSelector::Id(execution.version_id))
            .await;
        if let (Ok(w), Ok(v)) = (workflow, version) {
            crate::metrics::record_feedback(&w.name, v.number, feedback.correct, feedback.score);
        }
    }
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(feedback)).into_response())
}

/// The feedback on an execution.
#[utoipa::path(get, path = "/v1/executions/{id}/feedback", tag = "routing", params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = Feedback), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_feedback(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Feedback>, ApiError> {
    principal.require(Scope::Read)?;
    Ok(Json(state.store().get_feedback(path_id(&id)?).await?))
}
