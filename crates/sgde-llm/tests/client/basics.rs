use sgde_llm::{ModelClient, ModelError, Prices, StaticSecrets, StructuredOutput};
use sgde_testkit::{FakeOpenAi, Rule};

use crate::{ask, client, config};

#[tokio::test]
async fn completes_and_reports_usage_and_cost() {
    let server = FakeOpenAi::builder().rule(Rule::any().reply("hello there")).start().await.unwrap();
    let mut c = config(&server);
    c.prices = Prices { input_per_million_usd: 1.0, output_per_million_usd: 2.0 };
    let response = client(c).complete(ask("hi")).await.unwrap();
    assert_eq!(response.text, "hello there");
    assert!(!response.cached);
    let usage = response.usage;
    assert!(!usage.estimated);
    assert!(usage.prompt_tokens > 0 && usage.completion_tokens > 0);
    let expected = (usage.prompt_tokens as f64 * 1.0 + usage.completion_tokens as f64 * 2.0) / 1e6;
    assert!((usage.cost_usd - expected).abs() < 1e-15);

    let log = server.requests();
    assert_eq!(log.len(), 1);
    let body = &log[0].body;
    assert_eq!(body["model"], "sgde-student");
    assert_eq!(body["messages"][1]["content"], "hi");
    assert_eq!(body["messages"][0]["role"], "system");
    assert!(body.get("response_format").is_none());
    assert!(body.get("n").is_none());
}

#[tokio::test]
async fn decoding_defaults_merge_and_the_seed_follows_the_sample_index() {
    let server = FakeOpenAi::start().await.unwrap();
    let mut c = config(&server);
    c.decoding.temperature = Some(0.3);
    c.decoding.max_tokens = Some(100);
    let client = client(c);
    let mut request = ask("hi");
    request.decoding.seed = Some(10);
    request.decoding.max_tokens = Some(7);
    request.sample_index = 2;
    let response = client.complete(request).await.unwrap();
    assert_eq!(response.text, "echo: hi");
    let body = &server.requests()[0].body;
    assert_eq!(body["temperature"], 0.3);
    assert_eq!(body["max_tokens"], 7);
    assert_eq!(body["seed"], 12);
}

#[tokio::test]
async fn the_api_key_is_sent_but_never_printed() {
    let server = FakeOpenAi::start().await.unwrap();
    let mut c = config(&server);
    c.api_key_env = Some("SGDE_TEST_KEY".into());
    c.extra_headers.insert("OpenAI-Organization".into(), "org-1".into());
    let secrets = StaticSecrets::new().with("SGDE_TEST_KEY", "sk-test-123");
    let client = sgde_llm::OpenAiClient::new(c.clone(), &secrets).unwrap();
    client.complete(ask("hi")).await.unwrap();
    let log = server.requests();
    assert_eq!(log[0].header("authorization"), Some("Bearer sk-test-123"));
    assert_eq!(log[0].header("openai-organization"), Some("org-1"));
    assert!(!format!("{client:?}").contains("sk-test"));
    assert!(!serde_json::to_string(&c).unwrap().contains("sk-test"));

    let missing = sgde_llm::OpenAiClient::new(c, &StaticSecrets::new()).unwrap_err();
    assert!(
        matches!(&missing, ModelError::Config { message, .. } if message.contains("SGDE_TEST_KEY")),
        "{missing}"
    );
}

#[tokio::test]
async fn missing_usage_is_estimated_and_flagged() {
    let server =
        FakeOpenAi::builder().omit_usage(true).rule(Rule::any().reply("abcdefgh")).start().await.unwrap();
    let response = client(config(&server)).complete(ask("hi")).await.unwrap();
    assert!(response.usage.estimated);
    assert_eq!(response.usage.completion_tokens, 2);
    assert!(response.usage.prompt_tokens > 0);
}

#[tokio::test]
async fn invalid_configs_are_refused_before_any_call() {
    let server = FakeOpenAi::start().await.unwrap();
    let mut c = config(&server);
    c.max_concurrency = 0;
    assert!(matches!(sgde_llm::OpenAiClient::new(c, &StaticSecrets::new()), Err(ModelError::Config { .. })));
    let mut c = config(&server);
    c.base_url = "nope".into();
    assert!(sgde_llm::OpenAiClient::new(c, &StaticSecrets::new()).is_err());
    let mut c = config(&server);
    c.extra_headers.insert("bad header".into(), "x".into());
    assert!(sgde_llm::OpenAiClient::new(c, &StaticSecrets::new()).is_err());
    assert_eq!(server.request_count(), 0);
    assert_eq!(client(config(&server)).structured_output(), StructuredOutput::JsonSchema);
}
