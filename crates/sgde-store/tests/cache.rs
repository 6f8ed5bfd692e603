//! The persistent response-cache tier.

use std::sync::Arc;

use sgde_llm::{CacheKey, CachedReply, Decoding, Message, ResponseCache, Usage};
use sgde_store::testing::TestDatabase;

fn key(sample: u32) -> CacheKey {
    CacheKey::new("http://h/v1#m", &[Message::user("2+2?")], &Decoding::default(), None, sample)
}

#[sgde_test_macros::both_backends]
async fn replies_persist_across_cache_instances() {
    let db = TestDatabase::new().await.unwrap();
    let backend: Arc<dyn sgde_llm::CacheBackend> = db.store.clone();
    let reply = CachedReply {
        text: "4".into(),
        usage: Usage { prompt_tokens: 10, completion_tokens: 1, estimated: false, cost_usd: 0.5 },
    };
    assert_eq!(backend.get(&key(0)).await.unwrap(), None);
    backend.put(&key(0), &reply).await.unwrap();
    backend.put(&key(0), &reply).await.unwrap(); // overwriting is harmless
    assert_eq!(backend.get(&key(0)).await.unwrap(), Some(reply.clone()));
    assert_eq!(backend.get(&key(1)).await.unwrap(), None, "sample index is part of the key");

    // A new process (fresh memory tier) is served from the database.
    let cache = ResponseCache::in_memory(8).with_backend(backend);
    assert_eq!(cache.get(&key(0)).await, Some(reply));
    assert_eq!(cache.stats().hits, 1);

    // A broken database is a miss, not an error.
    db.close().await;
    let broken = db.store.clone();
    assert!(broken.get(&key(0)).await.is_err());
    db.drop_database().await.unwrap();
}
