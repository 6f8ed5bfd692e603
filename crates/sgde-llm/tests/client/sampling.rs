use sgde_llm::ModelClient;
use sgde_testkit::{FakeOpenAi, Rule};

use crate::{ask, client, config};

#[tokio::test]
async fn n_is_used_where_the_endpoint_supports_it() {
    let server = FakeOpenAi::builder().rule(Rule::any().replies(["a", "b", "c"])).start().await.unwrap();
    let mut c = config(&server);
    c.supports_n = true;
    let results = client(c).complete_n(ask("hi"), 3).await;
    let texts: Vec<String> = results.into_iter().map(|r| r.unwrap().text).collect();
    assert_eq!(texts, ["a", "b", "c"]);
    let log = server.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].body["n"], 3);
}

#[tokio::test]
async fn usage_of_an_n_reply_is_split_so_totals_add_up() {
    let server =
        FakeOpenAi::builder().rule(Rule::any().replies(["aaaa", "bbbbbbbb", "c"])).start().await.unwrap();
    let mut c = config(&server);
    c.supports_n = true;
    let client = client(c);
    let results = client.complete_n(ask("hi"), 3).await;
    let sum: u64 = results.iter().map(|r| r.as_ref().unwrap().usage.total_tokens()).sum();
    assert_eq!(sum, client.meter().report().usage.total_tokens());
    assert_eq!(client.meter().report().calls, 1, "one HTTP reply paid for");
}

#[tokio::test]
async fn without_n_samples_are_parallel_calls_with_distinct_seeds() {
    let server = FakeOpenAi::start().await.unwrap();
    let mut request = ask("hi");
    request.decoding.seed = Some(100);
    let results = client(config(&server)).complete_n(request, 3).await;
    assert!(results.iter().all(Result::is_ok));
    let mut seeds: Vec<u64> = server.requests().iter().map(|r| r.body["seed"].as_u64().unwrap()).collect();
    seeds.sort_unstable();
    assert_eq!(seeds, [100, 101, 102]);
    assert!(server.requests().iter().all(|r| r.body.get("n").is_none()));
}

#[tokio::test]
async fn a_server_that_ignores_n_gets_parallel_calls_from_then_on() {
    let server = FakeOpenAi::builder().ignore_n(true).start().await.unwrap();
    let mut c = config(&server);
    c.supports_n = true;
    let client = client(c);
    let results = client.complete_n(ask("hi"), 3).await;
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|r| r.as_ref().is_ok_and(|r| r.text == "echo: hi")));
    assert_eq!(server.request_count(), 3, "one n=3 request answered with one choice, then two single calls");
    assert!(!client.uses_n());

    server.reset();
    client.complete_n(ask("hi"), 3).await;
    assert_eq!(server.request_count(), 3);
    assert!(server.requests().iter().all(|r| r.body.get("n").is_none()));
}

#[tokio::test]
async fn structured_samples_through_n_are_validated_one_by_one() {
    let server = FakeOpenAi::builder()
        .rule(Rule::any().replies([r#"{"answer": 1}"#, "nope", r#"{"answer": 3}"#, r#"{"answer": 2}"#]))
        .start()
        .await
        .unwrap();
    let mut c = config(&server);
    c.supports_n = true;
    let mut request = ask("hi");
    request.json_schema = Some(serde_json::json!({"type": "object", "required": ["answer"]}));
    let texts: Vec<String> =
        client(c).complete_n(request, 3).await.into_iter().map(|r| r.unwrap().text).collect();
    // The second choice was repaired by one more call, which got the fourth scripted reply.
    assert_eq!(texts, [r#"{"answer":1}"#, r#"{"answer":2}"#, r#"{"answer":3}"#]);
    assert_eq!(server.request_count(), 2);
}
