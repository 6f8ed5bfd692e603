use std::time::Duration;

use sgde_llm::{ModelClient, RateLimit};
use sgde_testkit::FakeOpenAi;

use crate::{ask, client, config};

#[tokio::test]
async fn the_concurrency_limit_is_respected() {
    let server = FakeOpenAi::builder().latency(Duration::from_millis(30)).start().await.unwrap();
    let mut c = config(&server);
    c.max_concurrency = 3;
    let client = client(c);
    let calls = (0..12).map(|i| {
        let mut request = ask("hi");
        request.sample_index = i;
        client.complete(request)
    });
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(Result::is_ok));
    let fan_out = client.complete_n(ask("again"), 9).await;
    assert!(fan_out.iter().all(Result::is_ok));
    assert_eq!(server.request_count(), 21);
    assert!(server.max_in_flight() <= 3, "max in flight {}", server.max_in_flight());
    assert!(server.max_in_flight() >= 1);
}

#[tokio::test]
async fn rate_limits_admit_calls_within_quota() {
    let server = FakeOpenAi::start().await.unwrap();
    let mut c = config(&server);
    c.rate_limit = RateLimit { requests_per_minute: Some(600), tokens_per_minute: Some(1_000_000) };
    let client = client(c);
    let results = client.complete_n(ask("hi"), 5).await;
    assert!(results.iter().all(Result::is_ok));
}
