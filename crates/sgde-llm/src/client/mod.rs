//! [`OpenAiClient`]: a [`ModelClient`] for OpenAI-compatible `/v1/chat/completions` servers
//! (OpenAI, vLLM, Ollama, llama.cpp server, LM Studio, ...).
//!
//! # Why our own serde types over reqwest, not `async-openai`
//! - **Leniency.** The servers we target disagree on details: some omit `usage`, `object` or
//!   `created`, send content as an array of parts, numbers as strings, or extra fields; a reply
//!   must never fail (or panic) because a field sgde does not need has another shape. Typed
//!   client crates model OpenAI's current schema strictly; our `wire` types are optional
//!   everywhere and tolerant of wrong types.
//! - **Control of the failure path.** sgde needs the raw status, the `Retry-After` header, the
//!   provider's error message, its own retry budget (attempts *and* elapsed time, full jitter),
//!   per-endpoint admission control held only while a request is in flight, and a
//!   `response_format` fallback when a server breaks on `json_schema`. Those sit between "build
//!   the request" and "parse the reply", exactly where a full SDK hides things.
//! - **Small surface, low overhead.** One endpoint and a dozen fields; the body is serialised
//!   once per call and reused by every retry. No generated types to compile.
//!
//! # Layout
//! - this file: the client, its builder, request preparation and the [`ModelClient`] impl;
//! - `transport`: one HTTP exchange, its classification, and the retry loop;
//! - `calls`: a logical call — format fallback, schema validation and repair, usage, `n`.

mod calls;
mod transport;

use std::num::NonZeroUsize;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lru::LruCache;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::cache::{CacheKey, CachedReply, ResponseCache};
use crate::config::{EndpointConfig, StructuredOutput};
use crate::limits::Limits;
use crate::model::{ChatRequest, ChatResponse, Decoding, Message, ModelClient, ModelError, Usage};
use crate::secret::SecretSource;
use crate::structured::SchemaCheck;
use crate::usage::UsageMeter;

/// An OpenAI-compatible endpoint. Cheap to clone; clones share limits, cache and state.
#[derive(Clone)]
pub struct OpenAiClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("endpoint", &self.inner.config.name)
            .field("url", &self.inner.url.as_str())
            .field("model", &self.inner.config.model)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    config: EndpointConfig,
    /// `{api root}/chat/completions`.
    url: reqwest::Url,
    /// API root + model: the cache's notion of "the same model".
    identity: String,
    http: reqwest::Client,
    limits: Limits,
    cache: Option<Arc<ResponseCache>>,
    /// The structured-output mode in force: starts at the configured one, steps down for good
    /// once the server proved it does not support it.
    mode: AtomicU8,
    /// False once the server answered an `n > 1` request with fewer choices.
    n_honoured: AtomicBool,
    /// Compiled schemas by their JSON text; compiling costs more than a cache probe.
    schemas: Mutex<LruCache<String, Arc<SchemaCheck>>>,
    /// Everything this client paid for, failed structured attempts included.
    meter: Arc<UsageMeter>,
}

/// Builds an [`OpenAiClient`]; see [`OpenAiClient::builder`].
#[derive(Debug)]
pub struct OpenAiClientBuilder {
    config: EndpointConfig,
    cache: Option<Arc<ResponseCache>>,
    meter: Option<Arc<UsageMeter>>,
}

impl OpenAiClientBuilder {
    /// Serve repeated requests from `cache` (opt-in: without it every call goes to the server).
    pub fn cache(mut self, cache: Arc<ResponseCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Record this client's spend in `meter` (e.g. a child of a service-wide meter).
    pub fn meter(mut self, meter: Arc<UsageMeter>) -> Self {
        self.meter = Some(meter);
        self
    }

    /// Validates the config, reads the API key named by `api_key_env` from `secrets`, and
    /// builds the HTTP client. The key ends up only in a sensitive header value.
    pub fn build(self, secrets: &dyn SecretSource) -> Result<OpenAiClient, ModelError> {
        let config = self.config;
        config.validate()?;
        let root = config.api_root()?;
        let url = reqwest::Url::parse(&format!("{root}/chat/completions"))
            .map_err(|e| config.invalid(format!("base_url: {e}")))?;
        let headers = headers(&config, secrets)?;
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(config.timeout())
            .connect_timeout(config.timeout().min(Duration::from_secs(10)))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| config.invalid(format!("HTTP client: {e}")))?;
        let capacity = NonZeroUsize::new(64).unwrap_or(NonZeroUsize::MIN);
        Ok(OpenAiClient {
            inner: Arc::new(Inner {
                identity: config.model_identity(),
                url,
                http,
                limits: Limits::new(config.max_concurrency, config.rate_limit),
                cache: self.cache,
                mode: AtomicU8::new(mode_to_u8(config.structured_output)),
                n_honoured: AtomicBool::new(true),
                schemas: Mutex::new(LruCache::new(capacity)),
                meter: self.meter.unwrap_or_default(),
                config,
            }),
        })
    }
}

fn headers(config: &EndpointConfig, secrets: &dyn SecretSource) -> Result<HeaderMap, ModelError> {
    let mut headers = HeaderMap::new();
    for (name, value) in &config.extra_headers {
        let name =
            HeaderName::from_str(name).map_err(|e| config.invalid(format!("extra header `{name}`: {e}")))?;
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| config.invalid(format!("extra header `{name}` has an invalid value")))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    if let Some(var) = &config.api_key_env {
        let key = secrets
            .secret(var)
            .filter(|k| !k.expose().trim().is_empty())
            .ok_or_else(|| config.invalid(format!("the API key variable `{var}` is not set")))?;
        let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose().trim()))
            .map_err(|_| config.invalid(format!("the API key in `{var}` is not a valid header value")))?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    Ok(headers)
}

fn mode_to_u8(mode: StructuredOutput) -> u8 {
    match mode {
        StructuredOutput::None => 0,
        StructuredOutput::JsonObject => 1,
        StructuredOutput::JsonSchema => 2,
    }
}

fn mode_from_u8(value: u8) -> StructuredOutput {
    match value {
        0 => StructuredOutput::None,
        1 => StructuredOutput::JsonObject,
        _ => StructuredOutput::JsonSchema,
    }
}

/// One sample of a request, with everything resolved: effective decoding (endpoint defaults
/// filled in, seed = base seed + sample index).
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    messages: Vec<Message>,
    decoding: Decoding,
    sample_index: u32,
    schema: Option<Value>,
}

impl OpenAiClient {
    pub fn builder(config: EndpointConfig) -> OpenAiClientBuilder {
        OpenAiClientBuilder { config, cache: None, meter: None }
    }

    /// Shorthand for `builder(config).build(secrets)` (no cache).
    pub fn new(config: EndpointConfig, secrets: &dyn SecretSource) -> Result<Self, ModelError> {
        Self::builder(config).build(secrets)
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.inner.config
    }

    /// The structured-output mode currently in force (after any step-down).
    pub fn structured_output(&self) -> StructuredOutput {
        self.inner.current_mode()
    }

    /// Whether the client still uses the API's `n` for several samples.
    pub fn uses_n(&self) -> bool {
        self.inner.config.supports_n && self.inner.n_honoured.load(Ordering::Relaxed)
    }

    /// Everything this client paid for.
    pub fn meter(&self) -> &Arc<UsageMeter> {
        &self.inner.meter
    }

    fn sample(&self, request: ChatRequest) -> Sample {
        let defaults = &self.inner.config.decoding;
        let d = request.decoding;
        let base_seed = d.seed.or(defaults.seed).unwrap_or(0);
        Sample {
            decoding: Decoding {
                temperature: d.temperature.or(defaults.temperature),
                top_p: d.top_p.or(defaults.top_p),
                max_tokens: d.max_tokens.or(defaults.max_tokens),
                seed: Some(base_seed.wrapping_add(u64::from(request.sample_index))),
                stop: if d.stop.is_empty() { defaults.stop.clone() } else { d.stop },
            },
            messages: request.messages,
            sample_index: request.sample_index,
            schema: request.json_schema,
        }
    }

    fn cache_key(&self, sample: &Sample) -> Option<CacheKey> {
        self.inner.cache.as_ref()?;
        Some(CacheKey::new(
            &self.inner.identity,
            &sample.messages,
            &sample.decoding,
            sample.schema.as_ref(),
            sample.sample_index,
        ))
    }

    async fn cached(&self, key: Option<&CacheKey>, started: Instant) -> Option<ChatResponse> {
        let (cache, key) = (self.inner.cache.as_ref()?, key?);
        let hit = cache.get(key).await?;
        Some(ChatResponse {
            text: hit.text,
            usage: Usage::default(),
            latency: started.elapsed(),
            cached: true,
        })
    }

    async fn remember(&self, key: Option<&CacheKey>, text: &str, usage: &Usage) {
        if let (Some(cache), Some(key)) = (self.inner.cache.as_ref(), key) {
            cache.put(key, CachedReply { text: text.to_owned(), usage: *usage }).await;
        }
    }

    /// Runs `n` samples as independent concurrent calls.
    async fn parallel(&self, request: ChatRequest, n: u32) -> Vec<Result<ChatResponse, ModelError>> {
        let calls = (0..n).map(|i| {
            let mut sample = request.clone();
            sample.sample_index = request.sample_index.saturating_add(i);
            self.complete(sample)
        });
        futures::future::join_all(calls).await
    }
}

#[async_trait]
impl ModelClient for OpenAiClient {
    #[tracing::instrument(skip_all, fields(endpoint = %self.inner.config.name, sample = request.sample_index))]
    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, ModelError> {
        let started = Instant::now();
        let sample = self.sample(request);
        let key = self.cache_key(&sample);
        if let Some(hit) = self.cached(key.as_ref(), started).await {
            return Ok(hit);
        }
        let (text, usage) = self.inner.call_one(&sample).await?;
        self.remember(key.as_ref(), &text, &usage).await;
        Ok(ChatResponse { text, usage, latency: started.elapsed(), cached: false })
    }

    /// Uses the API's `n` when the endpoint supports it (one request, n choices); otherwise, or
    /// once the server has shown it ignores `n`, concurrent calls with distinct seeds.
    async fn complete_n(&self, request: ChatRequest, n: u32) -> Vec<Result<ChatResponse, ModelError>> {
        if n <= 1 || !self.uses_n() {
            return self.parallel(request, n).await;
        }
        let started = Instant::now();
        let samples: Vec<Sample> = (0..n)
            .map(|i| {
                let mut r = request.clone();
                r.sample_index = request.sample_index.saturating_add(i);
                self.sample(r)
            })
            .collect();
        let keys: Vec<Option<CacheKey>> = samples.iter().map(|s| self.cache_key(s)).collect();
        let mut results: Vec<Option<Result<ChatResponse, ModelError>>> = Vec::with_capacity(samples.len());
        for key in &keys {
            results.push(self.cached(key.as_ref(), started).await.map(Ok));
        }
        let misses: Vec<usize> = (0..results.len()).filter(|&i| results[i].is_none()).collect();
        let outcomes = self.inner.call_many(&samples, &misses).await;
        for (i, outcome) in misses.iter().copied().zip(outcomes) {
            let response = match outcome {
                Ok((text, usage)) => {
                    self.remember(keys[i].as_ref(), &text, &usage).await;
                    Ok(ChatResponse { text, usage, latency: started.elapsed(), cached: false })
                }
                Err(e) => Err(e),
            };
            results[i] = Some(response);
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(ModelError::BadReply {
                        endpoint: request.endpoint.clone(),
                        message: "sample lost".into(),
                    })
                })
            })
            .collect()
    }
}

impl Inner {
    fn current_mode(&self) -> StructuredOutput {
        mode_from_u8(self.mode.load(Ordering::Relaxed))
    }

    /// Remembers that the endpoint supports at most `mode`.
    fn step_down_to(&self, mode: StructuredOutput) {
        let previous = self.mode.fetch_min(mode_to_u8(mode), Ordering::Relaxed);
        if mode_to_u8(mode) < previous {
            tracing::info!(endpoint = %self.config.name, ?mode, "endpoint rejected a response_format; using a weaker mode from now on");
        }
    }

    fn schema_check(&self, schema: &Value) -> Result<Arc<SchemaCheck>, ModelError> {
        let text = schema.to_string();
        let mut schemas = self.schemas.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(check) = schemas.get(&text) {
            return Ok(Arc::clone(check));
        }
        let check = SchemaCheck::new(schema)
            .map(Arc::new)
            .map_err(|message| ModelError::Schema { endpoint: self.config.name.clone(), message })?;
        schemas.put(text, Arc::clone(&check));
        Ok(check)
    }
}
