//! Prometheus metrics: HTTP requests, executions, model tokens and cost, sandbox calls, queue
//! depth and lag.
//!
//! The `metrics` facade has one global recorder per process; it is installed once and shared by
//! every app built in the process (tests build many).

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sgde_runtime::RunReport;
use sgde_store::RUN_JOB_KIND;

use crate::state::AppState;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder (once per process) and returns the handle that renders it.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok().map(|()| handle)
        })
        .as_ref()
}

/// Counts requests and their latency by method, route template and status.
pub async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    counter!("sgde_http_requests_total", &labels).increment(1);
    histogram!("sgde_http_request_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
    response
}

/// Records one workflow run.
pub fn record_run(workflow: &str, report: &RunReport) {
    let status = if report.result.is_ok() { "succeeded" } else { "failed" };
    let labels = [("workflow", workflow.to_owned()), ("status", status.to_owned())];
    counter!("sgde_executions_total", &labels).increment(1);
    histogram!("sgde_execution_duration_seconds", &labels).record(report.elapsed.as_secs_f64());
    let mut model_calls = 0u64;
    let mut code_calls = 0u64;
    for node in &report.trace.nodes {
        match node.kind.as_str() {
            "llm" if node.usage.is_some() => model_calls += 1,
            "code" => code_calls += 1,
            _ => {}
        }
    }
    let w = [("workflow", workflow.to_owned())];
    counter!("sgde_model_calls_total", &w).increment(model_calls);
    counter!("sgde_model_prompt_tokens_total", &w).increment(report.usage.prompt_tokens);
    counter!("sgde_model_completion_tokens_total", &w).increment(report.usage.completion_tokens);
    counter!("sgde_model_cost_usd_total", &w).increment((report.usage.cost_usd * 1e6).round() as u64);
    counter!("sgde_sandbox_calls_total", &w).increment(code_calls);
}

/// Renders the metrics, refreshing the gauges that are read rather than counted.
pub async fn render(state: &AppState) -> String {
    if let Ok(stats) = state.store().queue_stats(RUN_JOB_KIND).await {
        gauge!("sgde_queue_depth", "kind" => RUN_JOB_KIND).set(stats.queued as f64);
        gauge!("sgde_queue_running", "kind" => RUN_JOB_KIND).set(stats.running as f64);
        gauge!("sgde_queue_lag_seconds", "kind" => RUN_JOB_KIND).set(stats.lag.as_secs_f64());
    }
    let sandbox = state.sandbox().stats();
    for (name, value) in [
        ("calls", sandbox.calls),
        ("succeeded", sandbox.succeeded),
        ("timeouts", sandbox.timeouts),
        ("cpu_limits", sandbox.cpu_limits),
        ("memory_limits", sandbox.memory_limits),
        ("crashes", sandbox.crashes),
        ("respawns", sandbox.respawns),
    ] {
        gauge!("sgde_sandbox_pool", "counter" => name).set(value as f64);
    }
    gauge!("sgde_sandbox_workers_idle").set(sandbox.idle as f64);
    gauge!("sgde_uptime_seconds").set(state.uptime().as_secs_f64());
    refresh_variant_gauges(state).await;
    handle().map(PrometheusHandle::render).unwrap_or_default()
}

/// Counts a request the traffic policy routed, per variant.
pub fn record_route(workflow: &str, version_number: i32) {
    let labels = [("workflow", workflow.to_owned()), ("version", version_number.to_string())];
    counter!("sgde_route_decisions_total", &labels).increment(1);
}

/// Counts a shadow run by what became of it (`recorded`, `failed`, `dropped`).
pub fn record_shadow(workflow: &str, outcome: &'static str) {
    let labels = [("workflow", workflow.to_owned()), ("outcome", outcome.to_owned())];
    counter!("sgde_shadow_runs_total", &labels).increment(1);
}

/// Counts new feedback per version.
pub fn record_feedback(workflow: &str, version_number: i32, correct: Option<bool>, score: Option<f64>) {
    let labels = [("workflow", workflow.to_owned()), ("version", version_number.to_string())];
    counter!("sgde_feedback_total", &labels).increment(1);
    if correct == Some(true) {
        counter!("sgde_feedback_correct_total", &labels).increment(1);
    }
    if let Some(score) = score {
        counter!("sgde_feedback_scored_total", &labels).increment(1);
        // Counters are integers: the score sum is kept in millionths.
        counter!("sgde_feedback_score_micros_total", &labels).increment((score * 1e6).round() as u64);
    }
}

/// Per-variant statistics of every routed workflow over the last hour, as gauges (the same
/// numbers as `GET /v1/workflows/{name}/stats` over the hour before the scrape).
async fn refresh_variant_gauges(state: &AppState) {
    let Ok(policies) = state.store().active_policies().await else { return };
    let to = chrono::Utc::now();
    let from = to - chrono::Duration::hours(1);
    for (name, policy) in policies {
        let Ok(report) =
            crate::routing::stats::report(state, &name, policy.workflow_id, Some(&policy), from, to).await
        else {
            continue;
        };
        for v in &report.variants {
            let s = &v.stats;
            let labels = [
                ("workflow", name.clone()),
                ("version", s.version_number.to_string()),
                ("path", if v.is_shadow() { "shadow" } else { "policy" }.to_owned()),
            ];
            gauge!("sgde_variant_requests_1h", &labels).set(s.requests as f64);
            gauge!("sgde_variant_errors_1h", &labels).set(s.errors as f64);
            for (q, value) in
                [("0.5", s.latency_p50_ms), ("0.95", s.latency_p95_ms), ("0.99", s.latency_p99_ms)]
            {
                if let Some(ms) = value {
                    let mut l = labels.to_vec();
                    l.push(("quantile", q.to_owned()));
                    gauge!("sgde_variant_latency_ms_1h", &l).set(ms);
                }
            }
            if let Some(t) = s.tokens_per_run {
                gauge!("sgde_variant_tokens_per_run_1h", &labels).set(t);
            }
            if let Some(c) = s.cost_per_run_usd {
                gauge!("sgde_variant_cost_per_run_usd_1h", &labels).set(c);
            }
            gauge!("sgde_variant_feedback_count_1h", &labels).set(s.feedback_count as f64);
            if let Some(m) = s.feedback_mean {
                gauge!("sgde_variant_feedback_mean_1h", &labels).set(m);
            }
            for c in [&v.correctness, &v.scores].into_iter().flatten() {
                if let Some(p) = c.p_value {
                    let mut l = labels.to_vec();
                    l.push(("test", c.test.to_owned()));
                    gauge!("sgde_variant_p_value_1h", &l).set(p);
                }
            }
        }
    }
}
