//! The response cache: pay for an answer once.
//!
//! A key is the sha256 of everything that determines an answer: the model identity (API root and
//! model name, not the endpoint's alias), the messages, the effective decoding parameters (seed
//! included), the JSON Schema, and the sample index — so N samples of a consensus step are N
//! entries, and a resumed compile job replays exactly the answers it already paid for.
//!
//! Two tiers: a bounded in-memory LRU in front of an optional persistent [`CacheBackend`] (the
//! Postgres store implements it). The cache is an optimisation, never a reason to fail: backend
//! errors are logged and the call goes to the model. Two identical concurrent misses both call
//! the model (no single-flight); the second write wins, harmlessly.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use lru::LruCache;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::{Decoding, Message, Usage};

/// sha256 of a request's canonical form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The key of one sample. `decoding` must be the *effective* parameters (request merged with
    /// endpoint defaults, seed resolved), so that changing a default changes the key.
    pub fn new(
        model_identity: &str,
        messages: &[Message],
        decoding: &Decoding,
        json_schema: Option<&Value>,
        sample_index: u32,
    ) -> Self {
        let form = serde_json::json!({
            "v": 1,
            "model": model_identity,
            "messages": messages,
            "decoding": decoding,
            "json_schema": json_schema,
            "sample_index": sample_index,
        });
        let mut canonical = String::new();
        write_canonical(&form, &mut canonical);
        Self(Sha256::digest(canonical.as_bytes()).into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CacheKey({})", self.to_hex())
    }
}

impl std::fmt::Display for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// JSON with object keys sorted at every level (serde_json here preserves insertion order, and
/// a schema written with keys in another order must hit the same entry).
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// What the cache keeps per key: the final text (validated, for structured requests) and what
/// the original call cost, for reporting savings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedReply {
    pub text: String,
    pub usage: Usage,
}

/// A persistent cache tier failed; the call proceeds without it.
#[derive(Debug, thiserror::Error)]
#[error("response cache backend: {0}")]
pub struct CacheError(pub String);

/// A persistent second tier behind the in-memory LRU.
#[async_trait]
pub trait CacheBackend: Send + Sync {
    async fn get(&self, key: &CacheKey) -> Result<Option<CachedReply>, CacheError>;
    async fn put(&self, key: &CacheKey, reply: &CachedReply) -> Result<(), CacheError>;
}

/// Hit and miss counts since the cache was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
}

/// The two-tier cache; share one `Arc<ResponseCache>` between clients (keys include the model
/// identity, so sharing is safe).
pub struct ResponseCache {
    // A std mutex: lookups are a hash probe and never await.
    memory: Mutex<LruCache<CacheKey, CachedReply>>,
    backend: Option<Arc<dyn CacheBackend>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("persistent", &self.backend.is_some())
            .field("stats", &self.stats())
            .finish()
    }
}

impl ResponseCache {
    /// An in-memory cache of at most `capacity` replies (at least one).
    pub fn in_memory(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            memory: Mutex::new(LruCache::new(capacity)),
            backend: None,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Adds a persistent tier.
    pub fn with_backend(mut self, backend: Arc<dyn CacheBackend>) -> Self {
        self.backend = Some(backend);
        self
    }

    pub async fn get(&self, key: &CacheKey) -> Option<CachedReply> {
        let found = self.memory.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned();
        let found = match found {
            Some(reply) => Some(reply),
            None => self.get_persistent(key).await,
        };
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    async fn get_persistent(&self, key: &CacheKey) -> Option<CachedReply> {
        let backend = self.backend.as_ref()?;
        match backend.get(key).await {
            Ok(Some(reply)) => {
                self.memory.lock().unwrap_or_else(|p| p.into_inner()).put(*key, reply.clone());
                Some(reply)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, key = %key, "response cache read failed; calling the model");
                None
            }
        }
    }

    pub async fn put(&self, key: &CacheKey, reply: CachedReply) {
        if let Some(backend) = &self.backend
            && let Err(e) = backend.put(key, &reply).await
        {
            tracing::warn!(error = %e, key = %key, "response cache write failed");
        }
        self.memory.lock().unwrap_or_else(|p| p.into_inner()).put(*key, reply);
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats { hits: self.hits.load(Ordering::Relaxed), misses: self.misses.load(Ordering::Relaxed) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(schema: Option<&Value>, sample: u32) -> CacheKey {
        let decoding = Decoding { temperature: Some(0.7), seed: Some(3), ..Decoding::default() };
        CacheKey::new("http://h/v1#m", &[Message::user("q")], &decoding, schema, sample)
    }

    #[test]
    fn keys_are_canonical_and_sample_specific() {
        let a: Value =
            serde_json::from_str(r#"{"type":"object","properties":{"x":{"type":"integer"}}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"properties":{"x":{"type":"integer"}},"type":"object"}"#).unwrap();
        assert_eq!(key(Some(&a), 0), key(Some(&b), 0));
        assert_ne!(key(Some(&a), 0), key(Some(&a), 1));
        assert_ne!(key(None, 0), key(Some(&a), 0));
        assert_eq!(key(None, 0).to_hex().len(), 64);
    }

    #[tokio::test]
    async fn lru_evicts_and_counts() {
        let cache = ResponseCache::in_memory(1);
        let reply = CachedReply { text: "a".into(), usage: Usage::default() };
        cache.put(&key(None, 0), reply.clone()).await;
        assert_eq!(cache.get(&key(None, 0)).await, Some(reply.clone()));
        cache.put(&key(None, 1), reply.clone()).await;
        assert_eq!(cache.get(&key(None, 0)).await, None, "capacity 1 evicted the older entry");
        assert_eq!(cache.stats(), CacheStats { hits: 1, misses: 1 });
    }

    struct MapBackend(Mutex<std::collections::HashMap<CacheKey, CachedReply>>);

    #[async_trait]
    impl CacheBackend for MapBackend {
        async fn get(&self, key: &CacheKey) -> Result<Option<CachedReply>, CacheError> {
            Ok(self.0.lock().unwrap().get(key).cloned())
        }
        async fn put(&self, key: &CacheKey, reply: &CachedReply) -> Result<(), CacheError> {
            self.0.lock().unwrap().insert(*key, reply.clone());
            Ok(())
        }
    }

    struct Broken;

    #[async_trait]
    impl CacheBackend for Broken {
        async fn get(&self, _: &CacheKey) -> Result<Option<CachedReply>, CacheError> {
            Err(CacheError("down".into()))
        }
        async fn put(&self, _: &CacheKey, _: &CachedReply) -> Result<(), CacheError> {
            Err(CacheError("down".into()))
        }
    }

    #[tokio::test]
    async fn persistent_tier_survives_memory_eviction_and_failures_are_misses() {
        let backend = Arc::new(MapBackend(Mutex::default()));
        let cache = ResponseCache::in_memory(1).with_backend(backend.clone());
        let reply = CachedReply { text: "a".into(), usage: Usage::default() };
        cache.put(&key(None, 0), reply.clone()).await;
        cache.put(&key(None, 1), reply.clone()).await;
        assert_eq!(cache.get(&key(None, 0)).await, Some(reply.clone()), "served by the backend");

        let broken = ResponseCache::in_memory(4).with_backend(Arc::new(Broken));
        broken.put(&key(None, 0), reply.clone()).await;
        assert_eq!(broken.get(&key(None, 0)).await, Some(reply), "memory tier still works");
        assert_eq!(broken.get(&key(None, 9)).await, None);
    }
}
