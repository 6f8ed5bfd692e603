//! API keys: where they come from and how they are held.
//!
//! The key of an endpoint is named by its config (`api_key_env`), looked up once when the client
//! is built, and then lives only inside the HTTP client's default headers (marked sensitive, so
//! hyper and reqwest never print it). [`ApiKey`] prints as `***` and is neither `Serialize` nor
//! `Deserialize`, so a key cannot leak through a log line, a trace or an API response by accident.
//!
//! Library crates do not read the environment (see STYLE.md); the one exception is this named key,
//! and even that goes through [`SecretSource`] so that tests hand keys in without touching the
//! process environment, and a deployment could read them from a vault instead.

use std::collections::BTreeMap;
use std::fmt;

/// A secret string that never prints. Use [`ApiKey::expose`] at the single place that needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself. Called only where the `Authorization` header is built.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Looks up a secret by name (the `api_key_env` of an endpoint config).
pub trait SecretSource: Send + Sync {
    fn secret(&self, name: &str) -> Option<ApiKey>;
}

/// The process environment: what the `sgde` binary uses. The only place in this crate that reads
/// an environment variable, and only the variable an endpoint config names.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl SecretSource for ProcessEnv {
    fn secret(&self, name: &str) -> Option<ApiKey> {
        std::env::var(name).ok().map(ApiKey)
    }
}

/// A fixed map of secrets, for tests and for callers that resolved keys elsewhere.
#[derive(Debug, Clone, Default)]
pub struct StaticSecrets(BTreeMap<String, ApiKey>);

impl StaticSecrets {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, name: impl Into<String>, key: impl Into<String>) -> Self {
        self.0.insert(name.into(), ApiKey::new(key));
        self
    }
}

impl SecretSource for StaticSecrets {
    fn secret(&self, name: &str) -> Option<ApiKey> {
        self.0.get(name).cloned()
    }
}

/// Any closure `name -> Option<String>` is a secret source.
impl<F> SecretSource for F
where
    F: Fn(&str) -> Option<String> + Send + Sync,
{
    fn secret(&self, name: &str) -> Option<ApiKey> {
        self(name).map(ApiKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_print() {
        let key = ApiKey::new("sk-very-secret");
        assert_eq!(format!("{key}"), "***");
        assert_eq!(format!("{key:?}"), "ApiKey(***)");
        let secrets = StaticSecrets::new().with("K", "sk-very-secret");
        assert!(!format!("{secrets:?}").contains("very-secret"));
        assert_eq!(secrets.secret("K").map(|k| k.expose().to_owned()), Some("sk-very-secret".into()));
    }

    #[test]
    fn closures_are_sources() {
        let source = |name: &str| (name == "A").then(|| "a".to_owned());
        assert!(source.secret("A").is_some());
        assert!(source.secret("B").is_none());
    }
}
