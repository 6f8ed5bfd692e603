//! Endpoint configuration: everything the client needs to know about one model server.
//!
//! A config is plain data (serde), stored by the service and edited through the API, so it holds
//! the *name* of the environment variable with the key, never the key. Durations are integer
//! milliseconds so that the JSON form is obvious to API clients.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{Decoding, ModelError};
use crate::retry::RetryPolicy;

/// How an endpoint can be asked for JSON output.
///
/// The client starts with the configured mode and steps down (`json_schema` → `json_object` →
/// `none`) when the server rejects a `response_format`, remembering the step for that endpoint:
/// the llama.cpp family accepts `json_object` but answers HTTP 500 to `json_schema`. Whatever the
/// mode, replies are validated against the schema locally.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StructuredOutput {
    /// No `response_format`: the schema goes into the system prompt and the JSON is extracted
    /// from the reply text.
    None,
    /// `response_format: {"type": "json_object"}` plus the schema in the system prompt.
    JsonObject,
    /// `response_format: {"type": "json_schema", ...}` (OpenAI, vLLM, recent Ollama).
    #[default]
    JsonSchema,
}

impl StructuredOutput {
    /// The next weaker mode, if any.
    pub fn weaker(self) -> Option<Self> {
        match self {
            Self::JsonSchema => Some(Self::JsonObject),
            Self::JsonObject => Some(Self::None),
            Self::None => None,
        }
    }
}

/// Client-side rate limits, enforced with `governor` before every HTTP attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Approximated: a call is charged its estimated prompt tokens (chars / 4) plus `max_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u32>,
}

/// Prices in US dollars per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    #[serde(default)]
    pub input_per_million_usd: f64,
    #[serde(default)]
    pub output_per_million_usd: f64,
}

impl Prices {
    /// Cost of a call with these token counts.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        // u64 → f64 loses precision only beyond 2^53 tokens.
        (prompt_tokens as f64 * self.input_per_million_usd
            + completion_tokens as f64 * self.output_per_million_usd)
            / 1_000_000.0
    }
}

/// One OpenAI-compatible model endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// The name workflows and the router use (`student`, `gpt-4o-mini`, ...).
    pub name: String,
    /// API root including the version prefix, as in the OpenAI SDKs:
    /// `https://api.openai.com/v1`, `http://127.0.0.1:8080/v1`. A URL without a path gets `/v1`.
    pub base_url: String,
    /// The `model` field sent to the server.
    pub model: String,
    /// Name of the environment variable that holds the API key; `None` for local servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Decoding parameters used where a request leaves them unset.
    #[serde(default)]
    pub decoding: Decoding,
    /// Per HTTP attempt, from connecting to the last byte of the body.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// HTTP requests in flight to this endpoint at once.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: u32,
    #[serde(default)]
    pub rate_limit: RateLimit,
    #[serde(default)]
    pub structured_output: StructuredOutput,
    /// Whether the server honours `n` (several choices per request). llama.cpp ignores it; the
    /// client notices a short reply and falls back to parallel calls anyway.
    #[serde(default)]
    pub supports_n: bool,
    #[serde(default)]
    pub prices: Prices,
    /// Sent with every request (e.g. `OpenAI-Organization`). Marked sensitive in the client.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_headers: BTreeMap<String, String>,
    #[serde(default)]
    pub retry: RetryPolicy,
}

fn default_timeout_ms() -> u64 {
    60_000
}

fn default_max_concurrency() -> u32 {
    8
}

impl EndpointConfig {
    /// A config with defaults for everything but the three required fields.
    pub fn new(name: impl Into<String>, base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            base_url: base_url.into(),
            model: model.into(),
            api_key_env: None,
            decoding: Decoding::default(),
            timeout_ms: default_timeout_ms(),
            max_concurrency: default_max_concurrency(),
            rate_limit: RateLimit::default(),
            structured_output: StructuredOutput::default(),
            supports_n: false,
            prices: Prices::default(),
            extra_headers: BTreeMap::new(),
            retry: RetryPolicy::default(),
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The API root with `/v1` added when the URL has no path, without a trailing slash.
    pub fn api_root(&self) -> Result<reqwest::Url, ModelError> {
        let mut url = reqwest::Url::parse(self.base_url.trim())
            .map_err(|e| self.invalid(format!("base_url `{}`: {e}", self.base_url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(self.invalid(format!("base_url must be http or https, got `{}`", url.scheme())));
        }
        let path = url.path().trim_end_matches('/').to_owned();
        url.set_path(if path.is_empty() { "/v1" } else { &path });
        Ok(url)
    }

    /// The identity of the model behind this endpoint, as used in cache keys: two endpoint names
    /// that point at the same server and model share cached answers.
    pub fn model_identity(&self) -> String {
        let root = self.api_root().map(|u| u.to_string()).unwrap_or_else(|_| self.base_url.clone());
        format!("{root}#{}", self.model)
    }

    /// Checks everything that can be checked without the network.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.name.trim().is_empty() {
            return Err(self.invalid("name is empty".into()));
        }
        if self.model.trim().is_empty() {
            return Err(self.invalid("model is empty".into()));
        }
        self.api_root()?;
        if self.timeout_ms == 0 {
            return Err(self.invalid("timeout_ms must be positive".into()));
        }
        if self.max_concurrency == 0 {
            return Err(self.invalid("max_concurrency must be positive".into()));
        }
        if self.rate_limit.requests_per_minute == Some(0) || self.rate_limit.tokens_per_minute == Some(0) {
            return Err(self.invalid("rate limits must be positive when set".into()));
        }
        let prices = [self.prices.input_per_million_usd, self.prices.output_per_million_usd];
        if prices.iter().any(|p| !p.is_finite() || *p < 0.0) {
            return Err(self.invalid("prices must be finite and non-negative".into()));
        }
        if self.api_key_env.as_deref().is_some_and(|v| v.trim().is_empty()) {
            return Err(self.invalid("api_key_env is empty".into()));
        }
        self.retry.validate().map_err(|m| self.invalid(m))?;
        Ok(())
    }

    pub(crate) fn invalid(&self, message: String) -> ModelError {
        ModelError::Config { endpoint: self.name.clone(), message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_root_adds_v1_only_without_a_path() {
        let c = EndpointConfig::new("e", "http://127.0.0.1:8080", "m");
        assert_eq!(c.api_root().unwrap().as_str(), "http://127.0.0.1:8080/v1");
        let c = EndpointConfig::new("e", "https://api.openai.com/v1/", "m");
        assert_eq!(c.api_root().unwrap().as_str(), "https://api.openai.com/v1");
        let c = EndpointConfig::new("e", "http://h/openai/v1", "m");
        assert_eq!(c.api_root().unwrap().as_str(), "http://h/openai/v1");
        assert!(EndpointConfig::new("e", "ftp://h", "m").validate().is_err());
        assert!(EndpointConfig::new("e", "not a url", "m").validate().is_err());
    }

    #[test]
    fn json_form_is_small_and_defaults_fill_in() {
        let c: EndpointConfig = serde_json::from_value(serde_json::json!({
            "name": "student", "base_url": "http://127.0.0.1:8080/v1", "model": "smollm2",
            "structured_output": "json_object", "rate_limit": {"requests_per_minute": 60}
        }))
        .unwrap();
        assert_eq!(c.structured_output, StructuredOutput::JsonObject);
        assert_eq!(c.max_concurrency, 8);
        assert!(c.validate().is_ok());
        let unknown = serde_json::json!({"name": "a", "base_url": "http://h", "model": "m", "api_key": "x"});
        assert!(serde_json::from_value::<EndpointConfig>(unknown).is_err(), "keys are never config");
    }

    #[test]
    fn cost_uses_prices_per_million() {
        let p = Prices { input_per_million_usd: 0.15, output_per_million_usd: 0.60 };
        assert!((p.cost(1_000_000, 500_000) - 0.45).abs() < 1e-12);
    }

    #[test]
    fn modes_step_down() {
        assert_eq!(StructuredOutput::JsonSchema.weaker(), Some(StructuredOutput::JsonObject));
        assert_eq!(StructuredOutput::None.weaker(), None);
    }
}
