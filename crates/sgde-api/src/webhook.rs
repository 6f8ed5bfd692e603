//! Completion webhooks: the finished run POSTed to the caller's URL, signed, retried with backoff.
//!
//! Signature (when the service has a webhook secret): header `X-Sgde-Signature: t=<unix
//! seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, the scheme Stripe made familiar, so a
//! receiver can check both origin and freshness. `X-Sgde-Delivery` carries a delivery id that
//! stays the same across retries, for de-duplication.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::json;
use sgde_store::{Job, Retry};
use sha2::Sha256;
use uuid::Uuid;

use crate::state::AppState;
use crate::worker::Outcome;

pub const WEBHOOK_JOB_KIND: &str = "webhook";
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
struct Payload {
    execution_id: Uuid,
    url: String,
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
    let execution = match state.store().get_execution(payload.execution_id).await {
        Ok(mut e) => {
            e.trace = None;
            e
        }
        Err(e) => return retry(state, job, format!("cannot load the run: {e}")).await,
    };
    let body = match serde_json::to_vec(&json!({"event": "run.finished", "run": execution})) {
        Ok(b) => b,
        Err(e) => return retry(state, job, e.to_string()).await,
    };
    let mut request = client()
        .post(&payload.url)
        .header("content-type", "application/json")
        .header("x-sgde-delivery", job.id.to_string())
        .header("x-sgde-event", "run.finished");
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
