//! Model endpoints for sgde: how the runtime and the compiler talk to language models.
//!
//! Everything outside this crate sees one trait, [`ModelClient`]: a chat request in, a response
//! (text, usage, latency, cached flag) or a typed [`ModelError`] out. Behind it sits an HTTP
//! client for OpenAI-compatible servers that does the unglamorous work production needs:
//! retries that respect the server, admission control, structured output that survives servers
//! that do not support it, exact cost accounting and a response cache that makes compile runs
//! resumable without paying twice.
//!
//! # Layout
//! - [`model`]: the [`ModelClient`] trait and the request/response/error types every caller uses.
//! - [`config`]: [`EndpointConfig`] — one endpoint's URL, model, limits, prices, modes.
//! - [`secret`]: [`ApiKey`] (prints as `***`) and [`SecretSource`], the only door to the
//!   environment.
//! - [`client`]: [`OpenAiClient`], the HTTP implementation (and why it uses its own serde types).
//! - `wire`: the JSON of `/v1/chat/completions`, read leniently.
//! - [`retry`]: [`RetryPolicy`], full-jitter backoff, `Retry-After` parsing.
//! - `limits`: per-endpoint concurrency (semaphore) and rate limits (governor).
//! - [`structured`]: JSON extraction, schema validation and the repair prompt.
//! - [`usage`]: token estimates, [`UsageMeter`] trees and [`MeteredClient`].
//! - [`cache`]: content-addressed [`ResponseCache`] with a pluggable [`CacheBackend`].
//! - [`registry`]: [`EndpointRegistry`], dispatching requests by endpoint name or role.

pub mod cache;
pub mod client;
pub mod config;
pub(crate) mod limits;
pub mod model;
pub mod registry;
pub mod retry;
pub mod secret;
pub mod structured;
pub mod usage;
pub(crate) mod wire;

pub use cache::{CacheBackend, CacheError, CacheKey, CacheStats, CachedReply, ResponseCache};
pub use client::{OpenAiClient, OpenAiClientBuilder};
pub use config::{EndpointConfig, Prices, RateLimit, StructuredOutput};
pub use model::{ChatRequest, ChatResponse, Decoding, Message, ModelClient, ModelError, Role, Usage};
pub use registry::EndpointRegistry;
pub use retry::RetryPolicy;
pub use secret::{ApiKey, ProcessEnv, SecretSource, StaticSecrets};
pub use usage::{MeteredClient, UsageMeter, UsageReport};
