//! The state every handler shares: the store, the runtime and the service settings.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use lru::LruCache;
use sgde_runtime::{PreparedWorkflow, Runtime};
use sgde_sandbox::Sandbox;
use sgde_store::{Store, Version};
use uuid::Uuid;

use crate::models::StoreModels;
use crate::problem::ApiError;

/// Settings of the HTTP service, parsed by the binary.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest accepted request body.
    pub body_limit: usize,
    /// Longest a request may take (synchronous executes included).
    pub request_timeout: Duration,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_ttl: Duration,
    /// Attempts of an async run's job (re-claims after a crashed worker count).
    pub run_max_attempts: u32,
    /// Lease of a claimed job; a job whose worker died is picked up again after it.
    pub job_lease: Duration,
    /// Async runs one replica executes at once.
    pub worker_concurrency: usize,
    /// How often an idle worker looks for queued jobs.
    pub poll_interval: Duration,
    /// Secret for signing completion webhooks (HMAC-SHA256); webhooks are unsigned without it.
    pub webhook_secret: Option<String>,
    /// Attempts to deliver one webhook.
    pub webhook_max_attempts: u32,
    /// Name of this replica in job leases.
    pub instance_id: String,
    /// Requests per API key; `None`: unlimited.
    pub rate_limit: Option<crate::rate_limit::RateLimit>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            body_limit: 2 * 1024 * 1024,
            request_timeout: Duration::from_secs(300),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            run_max_attempts: 5,
            job_lease: Duration::from_secs(30),
            worker_concurrency: 16,
            poll_interval: Duration::from_millis(200),
            webhook_secret: None,
            webhook_max_attempts: 8,
            instance_id: format!("sgde-{}", Uuid::new_v4().simple()),
            rate_limit: None,
        }
    }
}

/// Shared by every handler and worker; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    models: Arc<StoreModels>,
    /// The same endpoints behind the persistent response cache, for compile jobs.
    compile_models: Arc<StoreModels>,
    runtime: Runtime,
    sandbox: Sandbox,
    config: ApiConfig,
    prepared: Mutex<LruCache<Uuid, Arc<PreparedWorkflow>>>,
    started: Instant,
    /// Wakes this replica's workers when a run is submitted here.
    run_submitted: tokio::sync::Notify,
    /// Shadow runs in flight; beyond [`SHADOW_CONCURRENCY`] a shadow is dropped, not queued.
    shadows: Arc<tokio::sync::Semaphore>,
    /// Recently verified API keys by token hash, so a burst of requests costs one lookup.
    keys: Mutex<std::collections::HashMap<[u8; 32], (Instant, crate::auth::Principal)>>,
    /// Request buckets per API key, when a limit is configured.
    rate_limiter: Option<crate::rate_limit::KeyRateLimiter>,
}

/// How long a verified key is trusted without asking the database again. A key revoked through
/// another replica stops working here within this time; through this replica, at once.
const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// Bound on remembered keys (a flood of random tokens must not grow memory).
const KEY_CACHE_MAX: usize = 10_000;

/// Model replies a replica keeps in memory in front of the persistent cache.
const COMPILE_CACHE: usize = 10_000;

/// Shadow runs one replica runs at once. Shadows are for comparison: under load they are
/// sampled down rather than allowed to compete with live traffic.
const SHADOW_CONCURRENCY: usize = 16;

/// Prepared versions kept in memory; versions are immutable, so entries never go stale.
const PREPARED_CACHE: usize = 512;

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        models: Arc<StoreModels>,
        runtime: Runtime,
        sandbox: Sandbox,
        config: ApiConfig,
    ) -> Self {
        let capacity = NonZeroUsize::new(PREPARED_CACHE).unwrap_or(NonZeroUsize::MIN);
        // Before any handler or worker records: metrics recorded without a recorder are lost.
        crate::metrics::handle();
        let backend: Arc<dyn sgde_llm::CacheBackend> = Arc::clone(&store) as Arc<dyn sgde_llm::CacheBackend>;
        let cache = Arc::new(sgde_llm::ResponseCache::in_memory(COMPILE_CACHE).with_backend(backend));
        let compile_models = Arc::new(models.cached(cache));
        Self {
            inner: Arc::new(Inner {
                store,
                models,
                compile_models,
                runtime,
                sandbox,
                prepared: Mutex::new(LruCache::new(capacity)),
                started: Instant::now(),
                run_submitted: tokio::sync::Notify::new(),
                shadows: Arc::new(tokio::sync::Semaphore::new(SHADOW_CONCURRENCY)),
                keys: Mutex::new(std::collections::HashMap::new()),
                rate_limiter: config.rate_limit.map(crate::rate_limit::KeyRateLimiter::new),
                config,
            }),
        }
    }

    /// Takes one request from the key's budget (429 `rate_limited` when it is spent).
    pub fn check_rate(&self, key: Uuid) -> Result<(), crate::problem::ApiError> {
        let Some(limiter) = &self.inner.rate_limiter else { return Ok(()) };
        // Refusals are counted with every other response: `sgde_http_requests_total{status="429"}`.
        limiter.check(key).map_err(|retry_after| crate::problem::ApiError::TooManyRequests { retry_after })
    }

    pub fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    pub fn store_arc(&self) -> Arc<dyn Store> {
        Arc::clone(&self.inner.store)
    }

    pub fn models(&self) -> &StoreModels {
        &self.inner.models
    }

    /// Model endpoints whose replies go through the persistent response cache.
    pub fn compile_models(&self) -> Arc<StoreModels> {
        Arc::clone(&self.inner.compile_models)
    }

    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.inner.sandbox
    }

    pub fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    pub fn run_submitted(&self) -> &tokio::sync::Notify {
        &self.inner.run_submitted
    }

    /// A key verified less than [`KEY_CACHE_TTL`] ago.
    pub fn cached_key(&self, token_hash: &[u8; 32]) -> Option<crate::auth::Principal> {
        let keys = self.inner.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.get(token_hash).filter(|(at, _)| at.elapsed() < KEY_CACHE_TTL).map(|(_, p)| p.clone())
    }

    pub fn remember_key(&self, token_hash: [u8; 32], principal: crate::auth::Principal) {
        let mut keys = self.inner.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.len() >= KEY_CACHE_MAX {
            keys.retain(|_, (at, _)| at.elapsed() < KEY_CACHE_TTL);
            if keys.len() >= KEY_CACHE_MAX {
                keys.clear();
            }
        }
        keys.insert(token_hash, (Instant::now(), principal));
    }

    /// Forgets every cached key (after a revocation).
    pub fn forget_keys(&self) {
        self.inner.keys.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// A permit for one shadow run, if fewer than [`SHADOW_CONCURRENCY`] are running.
    pub fn shadow_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.inner.shadows).try_acquire_owned().ok()
    }

    /// The prepared form of a version if this process has it already.
    pub fn cached_prepared(&self, version_id: Uuid) -> Option<Arc<PreparedWorkflow>> {
        self.inner.prepared.lock().unwrap_or_else(PoisonError::into_inner).get(&version_id).map(Arc::clone)
    }

    /// The prepared form of a version known by id: from the cache, else read and prepared.
    pub async fn prepared_for(
        &self,
        workflow_id: Uuid,
        version_id: Uuid,
    ) -> Result<Arc<PreparedWorkflow>, ApiError> {
        if let Some(p) = self.cached_prepared(version_id) {
            return Ok(p);
        }
        let version =
            self.store().get_version(workflow_id, &sgde_store::VersionSelector::Id(version_id)).await?;
        self.prepared(&version)
    }

    /// The prepared form of a version, compiled once per process.
    pub fn prepared(&self, version: &Version) -> Result<Arc<PreparedWorkflow>, ApiError> {
        if let Some(p) = self.cached_prepared(version.id) {
            return Ok(p);
        }
        let spec = sgde_workflow::WorkflowSpec::from_value(version.spec.clone()).map_err(|e| {
            ApiError::internal(anyhow::anyhow!("stored version {} no longer validates: {e}", version.id))
        })?;
        let prepared = Arc::new(PreparedWorkflow::new(spec).map_err(|e| {
            ApiError::internal(anyhow::anyhow!("version {} does not prepare: {e}", version.id))
        })?);
        self.inner
            .prepared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .put(version.id, Arc::clone(&prepared));
        Ok(prepared)
    }
}
