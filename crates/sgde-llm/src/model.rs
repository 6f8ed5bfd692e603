//! The seam between the runtime and any model provider.
//!
//! The runtime, the compiler and the tests talk to models only through [`ModelClient`]. It lives
//! here rather than in sgde-runtime because dependencies point one way
//! (`runtime → llm`): the HTTP client in this crate implements it, and the runtime re-exports it.
//! It is deliberately small — one chat completion per call — so that an in-test scripted client
//! is a dozen lines.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Who says a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Self { role: Role::System, content: content.into() }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self { role: Role::User, content: content.into() }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self { role: Role::Assistant, content: content.into() }
    }
}

/// Decoding parameters; `None` means "the endpoint's default".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Decoding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
}

/// One chat completion request, addressed to a named endpoint (or a role such as `student`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Endpoint name or role the workflow refers to (`student`, `teacher`, `gpt-4o-mini`, ...).
    pub endpoint: String,
    pub messages: Vec<Message>,
    pub decoding: Decoding,
    /// Which sample of a fan-out this is. Part of the cache key, so that N samples are N answers,
    /// and the source of a distinct seed: the HTTP client sends
    /// `seed = (decoding.seed or the endpoint's default seed or 0) + sample_index`, so that
    /// [`ModelClient::complete_n`] yields N different, reproducible samples.
    pub sample_index: u32,
    /// When set, the reply must be JSON valid against this JSON Schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<serde_json::Value>,
}

/// Tokens and money spent by one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// True when the server sent no `usage` and the counts were estimated from the text.
    #[serde(default)]
    pub estimated: bool,
    pub cost_usd: f64,
}

impl Usage {
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    /// Adds another call's usage; the sum is estimated if any part was.
    pub fn add(&mut self, other: &Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.estimated |= other.estimated;
        self.cost_usd += other.cost_usd;
    }
}

/// A model's answer to one [`ChatRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub text: String,
    pub usage: Usage,
    /// Wall time of the call including retries; zero for cache hits.
    #[serde(with = "duration_micros")]
    pub latency: Duration,
    /// Served from the response cache: it cost nothing.
    #[serde(default)]
    pub cached: bool,
}

/// Why a model call failed, after retries.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ModelError {
    #[error("unknown model endpoint `{0}`")]
    UnknownEndpoint(String),
    #[error("model endpoint `{endpoint}` rejected the request (HTTP {status}): {message}")]
    Rejected { endpoint: String, status: u16, message: String },
    #[error("model endpoint `{endpoint}` failed after {attempts} attempts: {last_error}")]
    Exhausted { endpoint: String, attempts: u32, last_error: String },
    #[error("model endpoint `{endpoint}` timed out after {timeout_ms} ms")]
    Timeout { endpoint: String, timeout_ms: u64 },
    #[error("model endpoint `{endpoint}` sent an unusable reply: {message}")]
    BadReply { endpoint: String, message: String },
    #[error("structured output from `{endpoint}` failed validation after repair: {message}")]
    Schema { endpoint: String, message: String },
    #[error("model endpoint `{endpoint}` is misconfigured: {message}")]
    Config { endpoint: String, message: String },
}

/// Anything that answers chat completions: the HTTP client, the test doubles.
#[async_trait]
pub trait ModelClient: Send + Sync {
    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, ModelError>;

    /// `n` samples of one request: sample `i` is `request` with
    /// `sample_index = request.sample_index + i` (hence a distinct seed and cache key).
    ///
    /// The default runs `n` calls of [`complete`](Self::complete) concurrently, so that a
    /// consensus fan-out costs about one call's latency. The HTTP client overrides it to use the
    /// API's `n` parameter where the endpoint honours it. Results come back in sample order;
    /// each sample fails or succeeds on its own.
    async fn complete_n(&self, request: ChatRequest, n: u32) -> Vec<Result<ChatResponse, ModelError>> {
        let calls = (0..n).map(|i| {
            let mut sample = request.clone();
            sample.sample_index = request.sample_index.saturating_add(i);
            self.complete(sample)
        });
        futures::future::join_all(calls).await
    }
}

#[async_trait]
impl<T: ModelClient + ?Sized> ModelClient for std::sync::Arc<T> {
    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, ModelError> {
        (**self).complete(request).await
    }

    async fn complete_n(&self, request: ChatRequest, n: u32) -> Vec<Result<ChatResponse, ModelError>> {
        (**self).complete_n(request, n).await
    }
}

mod duration_micros {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_micros(u64::deserialize(d)?))
    }
}
