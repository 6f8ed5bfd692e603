//! `/v1/workflows/{name}/policy` and `/stats`: A/B routing of a workflow's default traffic
//! between versions — set, inspect, roll back, promote, clear — and the per-variant
//! statistics that decide which version to keep.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sgde_store::buckets::BUCKETS;
use sgde_store::{PolicyDraft, Promotion, Scope, TrafficPolicy};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::extract::{ApiJson, ApiPath as Path, ApiQuery as Query};
use crate::idempotency::idempotent;
use crate::problem::{ApiError, FieldError, Problem};
use crate::routes::{PageQuery, Paged, body_version};
use crate::routing::stats::{self, StatsReport};
use crate::state::AppState;

/// Most variants a policy may have; more is a configuration mistake, not an experiment.
const MAX_VARIANTS: usize = 20;

/// Longest statistics window: the query scans the execution log of the window.
const MAX_WINDOW_DAYS: i64 = 90;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_policy, set_policy, clear_policy))
        .routes(routes!(policy_history))
        .routes(routes!(rollback_policy))
        .routes(routes!(promote_variant))
        .routes(routes!(workflow_stats))
}

/// One variant of a new policy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    /// Version number, id, label, or `latest` (resolved once, when the policy is set).
    pub version: String,
    /// Share of traffic in percent, greater than 0, with at most two decimals; the weights of a
    /// policy sum to 100.
    pub weight: f64,
}

/// A traffic split.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPolicy {
    pub variants: Vec<VariantSpec>,
    /// A version to run on a copy of live traffic in the background: never returned to the
    /// caller, recorded for comparison.
    #[serde(default)]
    pub shadow: Option<String>,
}

/// The version to promote.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteVariant {
    /// Version number, id, label or `latest`.
    pub version: String,
}

/// The statistics window; by default the last 24 hours.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Start (RFC 3339), inclusive.
    pub from: Option<DateTime<Utc>>,
    /// End (RFC 3339), exclusive; default now.
    pub to: Option<DateTime<Utc>>,
}

/// Weights in hundredths of a percent, or the field errors of the variant list.
fn weights(variants: &[VariantSpec]) -> Result<Vec<u32>, ApiError> {
    let mut errors = Vec::new();
    if variants.is_empty() {
        errors.push(FieldError { pointer: "/variants".into(), message: "give at least one variant".into() });
    }
    if variants.len() > MAX_VARIANTS {
        errors.push(FieldError {
            pointer: "/variants".into(),
            message: format!("at most {MAX_VARIANTS} variants"),
        });
    }
    let mut basis_points = Vec::with_capacity(variants.len());
    for (i, v) in variants.iter().enumerate() {
        let scaled = v.weight * 100.0;
        let rounded = scaled.round();
        if !v.weight.is_finite() || v.weight <= 0.0 || v.weight > 100.0 {
            errors.push(FieldError {
                pointer: format!("/variants/{i}/weight"),
                message: format!("must be greater than 0 and at most 100, got {}", v.weight),
            });
        } else if (scaled - rounded).abs() > 1e-6 {
            errors.push(FieldError {
                pointer: format!("/variants/{i}/weight"),
                message: format!("at most two decimals, got {}", v.weight),
            });
        } else {
            basis_points.push(rounded as u32);
        }
        if variants[..i].iter().any(|u| u.version == v.version) {
            errors.push(FieldError {
                pointer: format!("/variants/{i}/version"),
                message: format!("version `{}` is listed twice", v.version),
            });
        }
    }
    if errors.is_empty() {
        let sum: u32 = basis_points.iter().sum();
        if sum != BUCKETS {
            errors.push(FieldError {
                pointer: "/variants".into(),
                message: format!("weights must sum to 100, they sum to {}", f64::from(sum) / 100.0),
            });
        }
    }
    if errors.is_empty() {
        return Ok(basis_points);
    }
    Err(ApiError::Invalid { detail: "the traffic policy is invalid".into(), errors })
}

/// The policy in force.
#[utoipa::path(get, path = "/v1/workflows/{name}/policy", tag = "routing", params(("name" = String, Path)),
    responses((status = 200, body = TrafficPolicy),
        (status = 404, body = Problem, description = "Unknown workflow, or no policy in force")),
    security(("bearer" = [])))]
async fn get_policy(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<TrafficPolicy>, ApiError> {
    principal.require(Scope::Read)?;
    let workflow = state.store().get_workflow(&name).await?;
    state.store().current_policy(workflow.id).await?.map(Json).ok_or_else(|| ApiError::not_found("policy"))
}

/// Set the traffic split between versions. Requests without an explicit version or label follow
/// it; keys keep their variant unless their share moves. Setting the split in force again
/// changes nothing.
#[utoipa::path(put, path = "/v1/workflows/{name}/policy", tag = "routing", request_body = SetPolicy,
    params(("name" = String, Path)),
    responses((status = 200, body = TrafficPolicy), (status = 404, body = Problem),
        (status = 422, body = Problem, description = "Weights not summing to 100, unknown versions, ...")),
    security(("bearer" = [])))]
async fn set_policy(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    body: ApiJson<SetPolicy>,
) -> Result<Json<TrafficPolicy>, ApiError> {
    principal.require(Scope::Write)?;
    let request = &body.value;
    let basis_points = weights(&request.variants)?;
    let workflow = state.store().get_workflow(&name).await?;
    let mut variants = Vec::with_capacity(request.variants.len());
    for (i, (v, bp)) in request.variants.iter().zip(basis_points).enumerate() {
        let id = body_version(&state, &workflow, &v.version, &format!("/variants/{i}/version")).await?.id;
        if variants.iter().any(|(u, _)| *u == id) {
            return Err(ApiError::invalid(
                format!("/variants/{i}/version"),
                format!("`{}` is a version already listed", v.version),
            ));
        }
        variants.push((id, bp));
    }
    let shadow = match &request.shadow {
        Some(reference) => {
            let id = body_version(&state, &workflow, reference, "/shadow").await?.id;
            if variants.iter().any(|(v, _)| *v == id) {
                return Err(ApiError::invalid("/shadow", "the shadow must not also be a variant"));
            }
            Some(id)
        }
        None => None,
    };
    let draft = PolicyDraft { variants, shadow };
    Ok(Json(state.store().set_policy(workflow.id, &draft, Some(&principal.audit_name())).await?))
}

/// Turn routing off: default traffic follows the `production` label (else the latest version)
/// again. Recorded in the history like any change.
#[utoipa::path(delete, path = "/v1/workflows/{name}/policy", tag = "routing", params(("name" = String, Path)),
    responses((status = 200, body = TrafficPolicy), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn clear_policy(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<TrafficPolicy>, ApiError> {
    principal.require(Scope::Write)?;
    let workflow = state.store().get_workflow(&name).await?;
    Ok(Json(state.store().clear_policy(workflow.id, Some(&principal.audit_name())).await?))
}

/// Every revision of the policy, newest first, with who changed it and when.
#[utoipa::path(get, path = "/v1/workflows/{name}/policy/history", tag = "routing",
    params(("name" = String, Path), PageQuery),
    responses((status = 200, body = Paged<TrafficPolicy>), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn policy_history(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Paged<TrafficPolicy>>, ApiError> {
    principal.require(Scope::Read)?;
    let workflow = state.store().get_workflow(&name).await?;
    Ok(Json(state.store().policy_history(workflow.id, &page.request()?).await?.into()))
}

/// Restore the revision before the one in force, bucket for bucket (keys return to the variant
/// they had), as a new revision.
#[utoipa::path(post, path = "/v1/workflows/{name}/policy/rollback", tag = "routing",
    params(("name" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = TrafficPolicy),
        (status = 404, body = Problem, description = "Unknown workflow, or no previous policy")),
    security(("bearer" = [])))]
async fn rollback_policy(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Write)?;
    let route = format!("POST /v1/workflows/{name}/policy/rollback");
    idempotent(&state, &principal, &headers, &route, b"", || async {
        let workflow = state.store().get_workflow(&name).await?;
        let policy = state.store().rollback_policy(workflow.id, Some(&principal.audit_name())).await?;
        Ok(Json(policy).into_response())
    })
    .await
}

/// Send 100% of the traffic to one version and move the `production` label to it, atomically.
#[utoipa::path(post, path = "/v1/workflows/{name}/policy/promote", tag = "routing", request_body = PromoteVariant,
    params(("name" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = Promotion), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn promote_variant(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: ApiJson<PromoteVariant>,
) -> Result<Response, ApiError> {
    principal.require(Scope::Write)?;
    let route = format!("POST /v1/workflows/{name}/policy/promote");
    idempotent(&state, &principal, &headers, &route, &body.raw, || async {
        let workflow = state.store().get_workflow(&name).await?;
        let version_id = body_version(&state, &workflow, &body.value.version, "/version").await?.id;
        let promotion =
            state.store().promote_variant(workflow.id, version_id, Some(&principal.audit_name())).await?;
        Ok(Json(promotion).into_response())
    })
    .await
}

/// Per-variant statistics of the routed traffic in a window (default: the last 24 hours):
/// requests, errors, latency percentiles, tokens and cost per run, feedback, and significance
/// tests of each variant against the control (the policy's first variant).
#[utoipa::path(get, path = "/v1/workflows/{name}/stats", tag = "routing", params(("name" = String, Path), StatsQuery),
    responses((status = 200, body = StatsReport), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn workflow_stats(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    Query(query): Query<StatsQuery>,
) -> Result<Json<StatsReport>, ApiError> {
    principal.require(Scope::Read)?;
    let to = query.to.unwrap_or_else(Utc::now);
    let from = query.from.unwrap_or(to - chrono::Duration::hours(24));
    if from >= to {
        return Err(ApiError::invalid("/query/from", "must be before `to`"));
    }
    if to - from > chrono::Duration::days(MAX_WINDOW_DAYS) {
        return Err(ApiError::invalid(
            "/query/from",
            format!("the window is at most {MAX_WINDOW_DAYS} days"),
        ));
    }
    let workflow = state.store().get_workflow(&name).await?;
    let policy = state.store().current_policy(workflow.id).await?;
    Ok(Json(stats::report(&state, &workflow.name, workflow.id, policy.as_ref(), from, to).await?))
}
