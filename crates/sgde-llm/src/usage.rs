//! What calls cost, and totals that callers share.
//!
//! Every [`ChatResponse`] carries its own [`Usage`]. A [`UsageMeter`] adds them up; meters form a
//! tree (`job → run`, via [`UsageMeter::child`]) so that a compile job sees the sum of all its
//! runs while each run keeps its own total. [`MeteredClient`] puts a meter in front of any
//! [`ModelClient`], which is how the runtime attributes calls to a run without the client knowing
//! about runs.
//!
//! A meter counts what callers *received*. Calls that failed after spending tokens (an invalid
//! structured reply that could not be repaired) are counted as failed with their spend unknown
//! to the caller; the HTTP client's own meter ([`crate::OpenAiClient::meter`]) sees every reply
//! it paid for, including those.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::model::{ChatRequest, ChatResponse, Message, ModelClient, ModelError, Usage};

/// Tokens of `text` when the server did not say: about four characters per token for English
/// and code. Rounds up so a non-empty text costs at least one token.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// Estimated prompt tokens of a conversation: the texts plus a few tokens of chat framing per
/// message, as OpenAI's chat format spends.
pub fn estimate_prompt_tokens(messages: &[Message]) -> u64 {
    messages.iter().map(|m| estimate_tokens(&m.content) + 4).sum::<u64>() + 3
}

/// Totals of a meter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    /// Calls that returned a response (cached ones included).
    pub calls: u64,
    /// Of those, served from the cache at no cost.
    pub cached_calls: u64,
    /// Calls that ended in an error.
    pub failed_calls: u64,
    /// Tokens and dollars of all responses.
    pub usage: Usage,
    /// The same per endpoint name (or role) as the callers addressed it.
    pub by_endpoint: BTreeMap<String, Usage>,
}

/// A shared, thread-safe usage total; see the module docs.
#[derive(Debug, Default)]
pub struct UsageMeter {
    parent: Option<Arc<UsageMeter>>,
    // A std mutex: the critical section is a few additions and never awaits.
    totals: Mutex<UsageReport>,
}

impl UsageMeter {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A meter whose records also count in `self` (and its ancestors).
    pub fn child(self: &Arc<Self>) -> Arc<Self> {
        Arc::new(Self { parent: Some(Arc::clone(self)), totals: Mutex::default() })
    }

    /// Records one call's outcome under `endpoint`.
    pub fn record(&self, endpoint: &str, outcome: Result<&ChatResponse, &ModelError>) {
        {
            let mut t = self.totals.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match outcome {
                Ok(response) => {
                    t.calls += 1;
                    t.cached_calls += u64::from(response.cached);
                    t.usage.add(&response.usage);
                    t.by_endpoint.entry(endpoint.to_owned()).or_default().add(&response.usage);
                }
                Err(_) => t.failed_calls += 1,
            }
        }
        if let Some(parent) = &self.parent {
            parent.record(endpoint, outcome);
        }
    }

    /// Records usage that did not come back as a response (the client's own spend accounting).
    pub fn record_usage(&self, endpoint: &str, usage: &Usage) {
        {
            let mut t = self.totals.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            t.calls += 1;
            t.usage.add(usage);
            t.by_endpoint.entry(endpoint.to_owned()).or_default().add(usage);
        }
        if let Some(parent) = &self.parent {
            parent.record_usage(endpoint, usage);
        }
    }

    pub fn report(&self) -> UsageReport {
        self.totals.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// A [`ModelClient`] that records every outcome in a [`UsageMeter`].
#[derive(Debug, Clone)]
pub struct MeteredClient<C> {
    inner: C,
    meter: Arc<UsageMeter>,
}

impl<C> MeteredClient<C> {
    pub fn new(inner: C, meter: Arc<UsageMeter>) -> Self {
        Self { inner, meter }
    }

    pub fn meter(&self) -> &Arc<UsageMeter> {
        &self.meter
    }
}

#[async_trait]
impl<C: ModelClient> ModelClient for MeteredClient<C> {
    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, ModelError> {
        let endpoint = request.endpoint.clone();
        let result = self.inner.complete(request).await;
        self.meter.record(&endpoint, result.as_ref());
        result
    }

    async fn complete_n(&self, request: ChatRequest, n: u32) -> Vec<Result<ChatResponse, ModelError>> {
        let endpoint = request.endpoint.clone();
        let results = self.inner.complete_n(request, n).await;
        for result in &results {
            self.meter.record(&endpoint, result.as_ref());
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn response(tokens: u64, cost: f64, cached: bool) -> ChatResponse {
        ChatResponse {
            text: String::new(),
            usage: Usage { prompt_tokens: tokens, completion_tokens: 1, estimated: false, cost_usd: cost },
            latency: Duration::ZERO,
            cached,
        }
    }

    #[test]
    fn children_roll_up_into_parents() {
        let job = UsageMeter::new();
        let run_a = job.child();
        let run_b = job.child();
        run_a.record("student", Ok(&response(10, 0.5, false)));
        run_b.record("teacher", Ok(&response(20, 1.0, false)));
        run_b.record("student", Ok(&response(0, 0.0, true)));
        run_b.record("student", Err(&ModelError::UnknownEndpoint("x".into())));
        let job = job.report();
        assert_eq!((job.calls, job.cached_calls, job.failed_calls), (3, 1, 1));
        assert_eq!(job.usage.prompt_tokens, 30);
        assert!((job.usage.cost_usd - 1.5).abs() < 1e-12);
        assert_eq!(job.by_endpoint["teacher"].prompt_tokens, 20);
        assert_eq!(run_a.report().calls, 1);
    }

    #[test]
    fn estimates_round_up() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abc"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(estimate_prompt_tokens(&[Message::user("abcd")]), 1 + 4 + 3);
    }
}
