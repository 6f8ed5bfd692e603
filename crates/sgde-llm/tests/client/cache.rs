use std::sync::Arc;

use sgde_llm::{ModelClient, OpenAiClient, ResponseCache, StaticSecrets};
use sgde_testkit::{FakeOpenAi, Rule};

use crate::{ask, client, config};

#[tokio::test]
async fn cache_hits_are_free_flagged_and_per_sample() {
    let server =
        FakeOpenAi::builder().rule(Rule::any().replies(["first", "second", "third"])).start().await.unwrap();
    let cache = Arc::new(ResponseCache::in_memory(100));
    let client = OpenAiClient::builder(config(&server))
        .cache(Arc::clone(&cache))
        .build(&StaticSecrets::new())
        .unwrap();

    let miss = client.complete(ask("hi")).await.unwrap();
    let hit = client.complete(ask("hi")).await.unwrap();
    assert_eq!((miss.text.as_str(), miss.cached), ("first", false));
    assert_eq!((hit.text.as_str(), hit.cached), ("first", true));
    assert_eq!(hit.usage.cost_usd, 0.0);
    assert_eq!(hit.usage.total_tokens(), 0);
    assert_eq!(server.request_count(), 1);

    let mut other_sample = ask("hi");
    other_sample.sample_index = 1;
    assert_eq!(client.complete(other_sample).await.unwrap().text, "second");
    let mut other_params = ask("hi");
    other_params.decoding.temperature = Some(0.9);
    assert_eq!(client.complete(other_params).await.unwrap().text, "third");
    assert_eq!(cache.stats().hits, 1);
    assert_eq!(cache.stats().misses, 3);

    // Another client for the same model shares the cache; n-sampling reuses cached samples.
    let mut c = config(&server);
    c.name = "alias".into();
    c.supports_n = true;
    let twin = OpenAiClient::builder(c).cache(cache).build(&StaticSecrets::new()).unwrap();
    let results = twin.complete_n(ask("hi"), 2).await;
    assert!(results.iter().all(|r| r.as_ref().is_ok_and(|r| r.cached)));
    assert_eq!(server.request_count(), 3);
}

#[tokio::test]
async fn the_cache_is_opt_in() {
    let server = FakeOpenAi::start().await.unwrap();
    let client = client(config(&server));
    client.complete(ask("hi")).await.unwrap();
    let again = client.complete(ask("hi")).await.unwrap();
    assert!(!again.cached);
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn failures_are_not_cached() {
    let server = FakeOpenAi::builder()
        .rule(Rule::any().fault(sgde_testkit::Fault::MalformedJson).times(1))
        .rule(Rule::any().reply("good"))
        .start()
        .await
        .unwrap();
    let cache = Arc::new(ResponseCache::in_memory(10));
    let client = OpenAiClient::builder(config(&server)).cache(cache).build(&StaticSecrets::new()).unwrap();
    assert!(client.complete(ask("hi")).await.is_err());
    assert_eq!(client.complete(ask("hi")).await.unwrap().text, "good");
}
