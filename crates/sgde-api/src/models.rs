//! Model endpoints as the runtime sees them: named endpoints from the store, each with its own
//! HTTP client.
//!
//! Workflows name endpoints (`"model": "student"`); the configs live in the database so that every
//! replica serves the same ones. Clients are built once per config and kept (their concurrency
//! and rate limits are per client), and re-read after a short time-to-live so that an update made
//! through another replica is picked up; the replica that made the change drops its copy at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sgde_llm::{
    ChatRequest, ChatResponse, EndpointConfig, ModelClient, ModelError, OpenAiClient, ResponseCache,
    SecretSource,
};
use sgde_store::{Store, StoreError};

struct Entry {
    loaded: Instant,
    config: EndpointConfig,
    client: Arc<OpenAiClient>,
}

/// A [`ModelClient`] that dispatches by endpoint name to clients built from stored configs.
pub struct StoreModels {
    store: Arc<dyn Store>,
    secrets: Arc<dyn SecretSource>,
    ttl: Duration,
    /// Shared by every client built here; `None` for serving, where sampling must stay live.
    cache: Option<Arc<ResponseCache>>,
    clients: RwLock<HashMap<String, Entry>>,
}

impl StoreModels {
    pub fn new(store: Arc<dyn Store>, secrets: Arc<dyn SecretSource>, ttl: Duration) -> Self {
        Self { store, secrets, ttl, cache: None, clients: RwLock::new(HashMap::new()) }
    }

    /// The same endpoints, with every reply going through `cache`: what compile jobs use, so
    /// that a resumed job finds the replies it already paid for.
    pub fn cached(&self, cache: Arc<ResponseCache>) -> Self {
        Self {
            store: Arc::clone(&self.store),
            secrets: Arc::clone(&self.secrets),
            ttl: self.ttl,
            cache: Some(cache),
            clients: RwLock::new(HashMap::new()),
        }
    }

    /// The stored config of endpoint `name` (prices, for compile estimates).
    pub async fn config(&self, name: &str) -> Result<EndpointConfig, StoreError> {
        Ok(self.store.get_endpoint(name).await?.config)
    }

    /// Forgets the client of `name` (after an update or delete through this replica).
    pub fn invalidate(&self, name: &str) {
        self.clients.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(name);
    }

    async fn client(&self, name: &str) -> Result<Arc<OpenAiClient>, ModelError> {
        {
            let clients = self.clients.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(entry) = clients.get(name).filter(|e| e.loaded.elapsed() < self.ttl) {
                return Ok(Arc::clone(&entry.client));
            }
        }
        let endpoint = match self.store.get_endpoint(name).await {
            Ok(endpoint) => endpoint,
            Err(StoreError::NotFound { .. }) => {
                self.invalidate(name);
                return Err(ModelError::UnknownEndpoint(name.to_owned()));
            }
            Err(e) => {
                return Err(ModelError::Config {
                    endpoint: name.to_owned(),
                    message: format!("cannot load: {e}"),
                });
            }
        };
        let mut clients = self.clients.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(entry) = clients.get_mut(name).filter(|e| e.config == endpoint.config) {
            // Same config: keep the client (and its limiter state), refresh the time-to-live.
            entry.loaded = Instant::now();
            return Ok(Arc::clone(&entry.client));
        }
        let mut builder = OpenAiClient::builder(endpoint.config.clone());
        if let Some(cache) = &self.cache {
            builder = builder.cache(Arc::clone(cache));
        }
        let client = Arc::new(builder.build(self.secrets.as_ref())?);
        clients.insert(
            name.to_owned(),
            Entry { loaded: Instant::now(), config: endpoint.config, client: Arc::clone(&client) },
        );
        Ok(client)
    }
}

#[async_trait]
impl ModelClient for StoreModels {
    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, ModelError> {
        let client = self.client(&request.endpoint).await?;
        client.complete(request).await
    }

    /// Delegated, so that an endpoint honouring `n` serves a consensus fan-out in one request.
    async fn complete_n(&self, request: ChatRequest, n: u32) -> Vec<Result<ChatResponse, ModelError>> {
        match self.client(&request.endpoint).await {
            Ok(client) => client.complete_n(request, n).await,
            Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
        }
    }
}
