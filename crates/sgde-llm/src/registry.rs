//! [`EndpointRegistry`]: the [`ModelClient`] the runtime holds, dispatching each request to the
//! endpoint it names.
//!
//! Workflows name endpoints by role (`student`, `teacher`) or by name (`gpt-4o-mini`); an alias
//! maps a role to an endpoint so that switching the student model is one alias change, not an
//! edit of every workflow. The service edits endpoints at run time (the model-endpoint API), so
//! the maps sit behind a lock; a call clones the target `Arc` and releases the lock before it
//! awaits anything.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use crate::cache::ResponseCache;
use crate::client::OpenAiClient;
use crate::config::EndpointConfig;
use crate::model::{ChatRequest, ChatResponse, ModelClient, ModelError};
use crate::secret::SecretSource;

#[derive(Default)]
struct Tables {
    endpoints: BTreeMap<String, Arc<dyn ModelClient>>,
    aliases: BTreeMap<String, String>,
}

/// Named endpoints plus aliases; unknown names fail with [`ModelError::UnknownEndpoint`].
#[derive(Default)]
pub struct EndpointRegistry {
    tables: RwLock<Tables>,
}

impl std::fmt::Debug for EndpointRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.read();
        f.debug_struct("EndpointRegistry")
            .field("endpoints", &t.endpoints.keys().collect::<Vec<_>>())
            .field("aliases", &t.aliases)
            .finish()
    }
}

impl EndpointRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// An [`OpenAiClient`] per config (sharing `cache` if given), registered under its name.
    pub fn from_configs(
        configs: impl IntoIterator<Item = EndpointConfig>,
        secrets: &dyn SecretSource,
        cache: Option<Arc<ResponseCache>>,
    ) -> Result<Self, ModelError> {
        let registry = Self::new();
        for config in configs {
            let name = config.name.clone();
            let mut builder = OpenAiClient::builder(config);
            if let Some(cache) = &cache {
                builder = builder.cache(Arc::clone(cache));
            }
            registry.insert(name, Arc::new(builder.build(secrets)?));
        }
        Ok(registry)
    }

    /// Registers (or replaces) an endpoint.
    pub fn insert(&self, name: impl Into<String>, client: Arc<dyn ModelClient>) {
        self.write().endpoints.insert(name.into(), client);
    }

    /// Removes an endpoint; aliases to it then resolve to nothing.
    pub fn remove(&self, name: &str) -> Option<Arc<dyn ModelClient>> {
        self.write().endpoints.remove(name)
    }

    /// Makes `alias` (e.g. `student`) resolve to the endpoint `target`. Aliases are one level
    /// deep: an alias to an alias is refused, so resolution can never loop.
    pub fn alias(&self, alias: impl Into<String>, target: impl Into<String>) -> Result<(), ModelError> {
        let (alias, target) = (alias.into(), target.into());
        let mut t = self.write();
        if t.aliases.contains_key(&target) {
            return Err(ModelError::Config {
                endpoint: alias,
                message: format!("`{target}` is itself an alias; point the alias at an endpoint"),
            });
        }
        t.aliases.insert(alias, target);
        Ok(())
    }

    /// The client a request for `name` goes to: an endpoint of that name, else an alias.
    pub fn resolve(&self, name: &str) -> Option<Arc<dyn ModelClient>> {
        let t = self.read();
        t.endpoints
            .get(name)
            .or_else(|| t.aliases.get(name).and_then(|target| t.endpoints.get(target)))
            .cloned()
    }

    /// Names of the registered endpoints.
    pub fn names(&self) -> Vec<String> {
        self.read().endpoints.keys().cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl ModelClient for EndpointRegistry {
    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, ModelError> {
        let client = self
            .resolve(&request.endpoint)
            .ok_or_else(|| ModelError::UnknownEndpoint(request.endpoint.clone()))?;
        client.complete(request).await
    }

    async fn complete_n(&self, request: ChatRequest, n: u32) -> Vec<Result<ChatResponse, ModelError>> {
        match self.resolve(&request.endpoint) {
            Some(client) => client.complete_n(request, n).await,
            None => (0..n).map(|_| Err(ModelError::UnknownEndpoint(request.endpoint.clone()))).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{Decoding, Message, Usage};

    struct Named(&'static str);

    #[async_trait]
    impl ModelClient for Named {
        async fn complete(&self, _: ChatRequest) -> Result<ChatResponse, ModelError> {
            Ok(ChatResponse {
                text: self.0.into(),
                usage: Usage::default(),
                latency: Duration::ZERO,
                cached: false,
            })
        }
    }

    fn request(endpoint: &str) -> ChatRequest {
        ChatRequest {
            endpoint: endpoint.into(),
            messages: vec![Message::user("hi")],
            decoding: Decoding::default(),
            sample_index: 0,
            json_schema: None,
        }
    }

    #[tokio::test]
    async fn dispatches_by_name_and_alias() {
        let registry = EndpointRegistry::new();
        registry.insert("small", Arc::new(Named("small")));
        registry.insert("big", Arc::new(Named("big")));
        registry.alias("student", "small").unwrap();
        registry.alias("teacher", "big").unwrap();
        assert!(registry.alias("tutor", "teacher").is_err());
        assert_eq!(registry.complete(request("student")).await.unwrap().text, "small");
        assert_eq!(registry.complete(request("big")).await.unwrap().text, "big");
        assert_eq!(
            registry.complete(request("nobody")).await.unwrap_err(),
            ModelError::UnknownEndpoint("nobody".into())
        );
        let all = registry.complete_n(request("teacher"), 3).await;
        assert_eq!(all.len(), 3);
        assert!(all.iter().all(|r| r.as_ref().is_ok_and(|r| r.text == "big")));
        registry.remove("small");
        assert!(registry.resolve("student").is_none());
    }
}
