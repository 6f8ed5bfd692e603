//! Which version a request runs: an explicit version or label, else the workflow's traffic
//! policy (sticky by routing key, weighted random without one), else the `production` label or
//! the latest version. Also the shadow runs a policy asks for, and the significance tests of
//! the statistics endpoint.
//!
//! The default path costs one database round trip that returns the default version and the
//! policy in force together; the choice itself is a hash and a range lookup. Specs are not
//! read on this path: versions are immutable, so their prepared form is cached by id.

pub mod significance;
pub mod stats;

use std::sync::Arc;

use serde_json::{Value, json};
use sgde_runtime::PreparedWorkflow;
use sgde_store::buckets::{self, BUCKETS};
use sgde_store::{ExecutionMode, NewExecution, TrafficPolicy, Version, VersionSelector};
use uuid::Uuid;

use crate::exec;
use crate::problem::ApiError;
use crate::routes::version_ref;
use crate::state::AppState;

/// Header carrying the routing key (the body field `routing_key` is the alternative).
pub const ROUTING_KEY_HEADER: &str = "x-sgde-routing-key";

/// Longest routing key accepted; keys are user or session ids, not documents.
const MAX_ROUTING_KEY: usize = 256;

/// The version a request will run, and the record of how it was chosen.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub workflow_id: Uuid,
    pub workflow_name: String,
    pub version_id: Uuid,
    pub version_number: i32,
    /// `version`, `label`, `policy` or `default`.
    pub chosen_by: &'static str,
    /// What the execution log keeps under `route`.
    pub route: Value,
    /// The version itself when choosing it already read it (explicit version or label).
    loaded: Option<Version>,
}

/// The routing key of a request: the header or the body field (they must agree).
pub fn routing_key<'a>(header: Option<&'a str>, body: Option<&'a str>) -> Result<Option<&'a str>, ApiError> {
    let key = match (header, body) {
        (Some(h), Some(b)) if h != b => {
            return Err(ApiError::invalid(
                "/routing_key",
                "differs from the X-Sgde-Routing-Key header; give one or make them equal",
            ));
        }
        (h, b) => b.or(h),
    };
    if let Some(k) = key {
        let pointer = if body.is_some() { "/routing_key" } else { "/header/x-sgde-routing-key" };
        if k.is_empty() {
            return Err(ApiError::invalid(pointer, "must not be empty"));
        }
        if k.len() > MAX_ROUTING_KEY {
            return Err(ApiError::invalid(pointer, format!("at most {MAX_ROUTING_KEY} bytes")));
        }
    }
    Ok(key)
}

/// Picks the version for a request to `workflow_name`.
pub async fn choose(
    state: &AppState,
    workflow_name: &str,
    version: Option<&str>,
    label: Option<&str>,
    key: Option<&str>,
) -> Result<Chosen, ApiError> {
    let explicit = match (version, label) {
        (Some(_), Some(_)) => return Err(ApiError::invalid("/label", "give `version` or `label`, not both")),
        (Some(v), None) => Some((version_ref(v), "version")),
        (None, Some(l)) => Some((VersionSelector::Label(l.to_owned()), "label")),
        (None, None) => None,
    };
    if let Some((selector, chosen_by)) = explicit {
        // An explicit choice bypasses the policy.
        let (workflow, version) = state.store().resolve_version(workflow_name, &selector).await?;
        return Ok(Chosen {
            workflow_id: workflow.id,
            workflow_name: workflow.name,
            version_id: version.id,
            version_number: version.number,
            chosen_by,
            route: json!({"chosen_by": chosen_by}),
            loaded: Some(version),
        });
    }
    let target = state.store().default_target(workflow_name).await?;
    let Some(policy) = target.policy else {
        return Ok(Chosen {
            workflow_id: target.workflow_id,
            workflow_name: target.workflow_name,
            version_id: target.version_id,
            version_number: target.version_number,
            chosen_by: "default",
            route: json!({"chosen_by": "default"}),
            loaded: None,
        });
    };
    let (index, keyed) = pick(&policy, key);
    let variant = &policy.variants[index];
    let mut route = json!({
        "chosen_by": "policy",
        "policy_revision": policy.revision,
        "variant": index,
        "keyed": keyed,
    });
    if let Some(shadow) = &policy.shadow {
        route["shadow_version_id"] = json!(shadow.version_id);
    }
    crate::metrics::record_route(&target.workflow_name, variant.version_number);
    Ok(Chosen {
        workflow_id: target.workflow_id,
        workflow_name: target.workflow_name,
        version_id: variant.version_id,
        version_number: variant.version_number,
        chosen_by: "policy",
        route,
        loaded: None,
    })
}

/// The variant index for `key` (sticky) or a weighted random draw; and whether it was keyed.
pub fn pick(policy: &TrafficPolicy, key: Option<&str>) -> (usize, bool) {
    let (bucket, keyed) = match key {
        Some(k) => (buckets::bucket(&policy.salt, k), true),
        None => (rand::random_range(0..BUCKETS), false),
    };
    // Policies cover every bucket (checked when written); the fallback only guards corrupt rows.
    (policy.variant_for(bucket).unwrap_or(0), keyed)
}

impl Chosen {
    /// The prepared workflow of the chosen version: from the cache, from the version read while
    /// choosing, or read now.
    pub async fn prepared(&self, state: &AppState) -> Result<Arc<PreparedWorkflow>, ApiError> {
        match &self.loaded {
            Some(version) => state.prepared(version),
            None => state.prepared_for(self.workflow_id, self.version_id).await,
        }
    }

    /// The shadow version this request's policy asks for, if any.
    pub fn shadow_version(&self) -> Option<Uuid> {
        shadow_of(&self.route)
    }
}

/// The shadow version recorded in an execution's `route`.
pub fn shadow_of(route: &Value) -> Option<Uuid> {
    route.get("shadow_version_id").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok())
}

/// Runs `inputs` on the shadow version in the background and records it, never touching the
/// primary's answer. Dropped (and counted) when too many shadows are already running, so a slow
/// shadow cannot pile up work behind live traffic.
pub fn spawn_shadow(
    state: &AppState,
    workflow_id: Uuid,
    workflow_name: &str,
    shadow_version_id: Uuid,
    inputs: Value,
    primary: &Value,
    primary_execution_id: Uuid,
) {
    let Some(permit) = state.shadow_permit() else {
        crate::metrics::record_shadow(workflow_name, "dropped");
        return;
    };
    let state = state.clone();
    let workflow_name = workflow_name.to_owned();
    let revision = primary.get("policy_revision").cloned().unwrap_or(Value::Null);
    tokio::spawn(async move {
        let _permit = permit;
        let outcome = run_shadow(
            &state,
            workflow_id,
            &workflow_name,
            shadow_version_id,
            inputs,
            revision,
            primary_execution_id,
        )
        .await;
        let label = match outcome {
            Ok(()) => "recorded",
            Err(e) => {
                tracing::warn!(workflow = %workflow_name, version = %shadow_version_id, error = %e, "shadow run not recorded");
                "failed"
            }
        };
        crate::metrics::record_shadow(&workflow_name, label);
    });
}

async fn run_shadow(
    state: &AppState,
    workflow_id: Uuid,
    workflow_name: &str,
    version_id: Uuid,
    inputs: Value,
    revision: Value,
    primary_execution_id: Uuid,
) -> Result<(), ApiError> {
    let prepared = state.prepared_for(workflow_id, version_id).await?;
    if !prepared.input_errors(&inputs).is_empty() {
        // The shadow's input schema differs from the primary's: nothing comparable to record.
        return Ok(());
    }
    let started_at = chrono::Utc::now();
    let report = exec::run(state, workflow_name, &prepared, inputs.clone(), None).await;
    state
        .store()
        .insert_execution(NewExecution {
            id: Uuid::now_v7(),
            workflow_id,
            version_id,
            mode: ExecutionMode::Sync,
            inputs,
            route: Some(json!({
                "chosen_by": "shadow",
                "policy_revision": revision,
                "primary_execution_id": primary_execution_id,
            })),
            outcome: Some(exec::outcome(&report)),
            started_at: Some(started_at),
        })
        .await?;
    Ok(())
}
