//! Client overhead and throughput against the testkit's fake server with instant replies.
//!
//! - `round_trip/bare_reqwest`: a plain reqwest POST of a chat body, reading the reply bytes —
//!   the floor any client pays for one HTTP round trip to this server;
//! - `round_trip/openai_client`: the same call through [`OpenAiClient::complete`] (request
//!   preparation, admission, serialisation, classification, parsing, usage, metering, tracing);
//!   the difference between the two is the client's overhead per call (goal: ≤ 100 µs);
//! - `round_trip/cache_hit`: a call answered by the in-memory response cache;
//! - `throughput/64_concurrent`: 64 concurrent calls (max_concurrency 64).
//!
//! `cargo bench -p sgde-llm --bench client`

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use sgde_llm::{
    ChatRequest, Decoding, EndpointConfig, Message, ModelClient, OpenAiClient, ResponseCache, StaticSecrets,
};
use sgde_testkit::{FakeOpenAi, Rule};

fn request(sample_index: u32) -> ChatRequest {
    ChatRequest {
        endpoint: "bench".into(),
        messages: vec![
            Message::system("You are a careful assistant that solves arithmetic word problems."),
            Message::user(
                "A shop sells 12 apples per day for 30 days at $3 each. How many dollars does the shop make?",
            ),
        ],
        decoding: Decoding { temperature: Some(0.7), max_tokens: Some(256), ..Decoding::default() },
        sample_index,
        json_schema: None,
    }
}

fn bench(c: &mut Criterion) {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let server = rt.block_on(async {
        FakeOpenAi::builder()
            .rule(Rule::any().reply("The answer is 1080."))
            .start()
            .await
            .expect("fake server")
    });
    let mut config = EndpointConfig::new("bench", server.base_url(), "sgde-student");
    config.max_concurrency = 64;
    let client = OpenAiClient::new(config.clone(), &StaticSecrets::new()).expect("client");
    let cached = OpenAiClient::builder(config)
        .cache(Arc::new(ResponseCache::in_memory(1024)))
        .build(&StaticSecrets::new())
        .expect("client");
    rt.block_on(cached.complete(request(0))).expect("warm the cache");

    let bare = reqwest::Client::builder().tcp_nodelay(true).build().expect("reqwest");
    let url = format!("{}/chat/completions", server.base_url());
    let body = serde_json::to_vec(&json!({
        "model": "sgde-student",
        "messages": request(0).messages,
        "temperature": 0.7, "max_tokens": 256, "seed": 0
    }))
    .expect("body");

    let mut group = c.benchmark_group("round_trip");
    group.bench_function("bare_reqwest", |b| {
        b.to_async(&rt).iter(|| async {
            let response = bare
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("send");
            response.bytes().await.expect("body")
        })
    });
    group.bench_function("openai_client", |b| {
        b.to_async(&rt).iter(|| async { client.complete(request(0)).await.expect("call") })
    });
    group.bench_function("cache_hit", |b| {
        b.to_async(&rt).iter(|| async { cached.complete(request(0)).await.expect("hit") })
    });
    group.finish();

    let mut group = c.benchmark_group("throughput");
    group.throughput(Throughput::Elements(64));
    group.bench_function("64_concurrent", |b| {
        b.to_async(&rt).iter(|| async {
            let calls = (0..64).map(|i| client.complete(request(i)));
            futures::future::join_all(calls).await
        })
    });
    group.finish();
    drop(server);
}

criterion_group!(benches, bench);
criterion_main!(benches);
