//! Completion webhooks: the finished run or compile job POSTed to the caller's URL, signed,
//! retried with backoff.
//!
//! Signature (when the service has a webhook secret): header `X-Sgde-Signature: t=<unix
//! seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, the scheme Stripe made familiar, so a
//! receiver can check both origin and freshness. `X-Sgde-Delivery` carries a delivery id that
//! stays the same across retries, for de-duplication.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::json;
use sgde_store::{FollowUp, Job, Retry};
use sha2::Sha256;
use uuid::Uuid;

use crate::compile_view::CompileJobView;
use crate::state::AppState;
use crate::worker::Outcome;

pub const WEBHOOK_JOB_KIND: &str = "webhook";
const TIMEOUT: Duration = Duration::from_secs(10);

/// What to announce: a finished run (`execution_id`) or a finished compile job (`compile_job_id`).
#[derive(Debug, Deserialize)]
struct Payload {
    #[serde(default)]
    execution_id: Option<Uuid>,
    #[serde(default)]
    compile_job_id: Option<Uuid>,
    url: String,
}

/// The delivery of a run's completion webhook, enqueued by the store with the run's end
/// (finished, failed for good or cancelled), so no ending goes unannounced.
pub fn run_webhook(state: &AppState, execution_id: Uuid, url: &str) -> FollowUp {
    FollowUp {
        kind: WEBHOOK_JOB_KIND.to_owned(),
        payload: json!({"execution_id": execution_id, "url": url}),
        max_attempts: state.config().webhook_max_attempts,
    }
}

/// `t=…,v1=…` for `body` at time `t`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .timeout(TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default()
        })
        .clone()
}

pub async fn deliver(state: &AppState, job: &Job) -> Outcome {
    let worker = &state.config().instance_id;
    let payload: Payload = match serde_json::from_value(job.payload.clone()) {
        Ok(p) => p,
        Err(e) => {
            let error = json!({"code": "bad_payload", "message": e.to_string()});
            let _ = state.store().fail_job(job.id, worker, &error, Retry::Never).await;
            return Outcome::Failed;
        }
    };
    let (event, body) = match (payload.execution_id, payload.compile_job_id) {
        (Some(id), _) => match state.store().get_execution(id).await {
            Ok(mut execution) => {
                execution.trace = None;
                ("run.finished", json!({"event": "run.finished", "run": execution}))
            }
            Err(e) => return retry(state, job, format!("cannot load the run: {e}")).await,
        },
        (None, Some(id)) => match state.store().get_compile_job(id).await {
            // The same body as `GET /v1/compile-jobs/{id}`.
            Ok(compile) => match CompileJobView::try_from(compile) {
                Ok(compile) => {
                    ("compile_job.finished", json!({"event": "compile_job.finished", "compile_job": compile}))
                }
                Err(e) => {
                    // Retrying cannot mend a corrupt record.
                    tracing::error!(error = %e, "cannot announce a compile job");
                    let error = json!({"code": "corrupt_compile_job", "message": e.to_string()});
                    let _ = state.store().fail_job(job.id, worker, &error, Retry::Never).await;
                    return Outcome::Failed;
                }
            },
            Err(e) => return retry(state, job, format!("cannot load the compile job: {e}")).await,
        },
        (None, None) => {
            let error = json!({"code": "bad_payload", "message": "nothing to announce"});
            let _ = state.store().fail_job(job.id, worker, &error, Retry::Never).await;
            return Outcome::Failed;
        }
    };
    let body = match serde_json::to_vec(&body) {
        Ok(b) => b,
        Err(e) => return retry(state, job, e.to_string()).await,
    };
    let mut request = client()
        .post(&payload.url)
        .header("content-type", "application/json")
        .header("x-sgde-delivery", job.id.to_string())
        .header("x-sgde-event", event);
    if let Some(secret) = &state.config().webhook_secret {
        request =
            request.header("x-sgde-signature", signature(secret, chrono::Utc::now().timestamp(), &body));
    }
    match request.body(body).send().await {
        Ok(response) if response.status().is_success() => {
            let result = json!({"status": response.status().as_u16()});
            let _ = state.store().complete_job(job.id, worker, &result).await;
            Outcome::Done
        }
        Ok(response) => {
            retry(state, job, format!("the receiver answered HTTP {}", response.status().as_u16())).await
        }
        Err(e) => retry(state, job, format!("delivery failed: {e}")).await,
    }
}

async fn retry(state: &AppState, job: &Job, message: String) -> Outcome {
    let error = json!({"code": "webhook_failed", "message": message});
    // 1 s, 2 s, 4 s, ... up to 10 minutes between attempts.
    let delay =
        Duration::from_secs(2u64.saturating_pow(u32::try_from(job.attempts.clamp(0, 10)).unwrap_or(10)))
            .min(Duration::from_secs(600));
    let _ = state.store().fail_job(job.id, &state.config().instance_id, &error, Retry::After(delay)).await;
    Outcome::Failed
}
