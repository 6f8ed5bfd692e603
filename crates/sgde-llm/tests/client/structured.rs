use serde_json::{Value, json};
use sgde_llm::{ChatRequest, ModelClient, ModelError, StructuredOutput};
use sgde_testkit::{FakeOpenAi, Rule};

use crate::{ask, client, config};

fn answer_schema() -> Value {
    json!({"type": "object", "required": ["answer"], "properties": {"answer": {"type": "integer"}}, "additionalProperties": false})
}

fn structured(text: &str) -> ChatRequest {
    let mut request = ask(text);
    request.json_schema = Some(answer_schema());
    request
}

#[tokio::test]
async fn a_valid_reply_passes_and_comes_back_as_plain_json() {
    let server = FakeOpenAi::builder()
        .rule(Rule::any().reply("Sure!\n```json\n{\"answer\": 3}\n```"))
        .start()
        .await
        .unwrap();
    let response = client(config(&server)).complete(structured("1+2?")).await.unwrap();
    assert_eq!(response.text, r#"{"answer":3}"#);
    let body = &server.requests()[0].body;
    assert_eq!(body["response_format"]["type"], "json_schema");
    assert_eq!(body["response_format"]["json_schema"]["schema"], answer_schema());
}

#[tokio::test]
async fn an_invalid_reply_gets_one_repair_round_with_the_validators_message() {
    let server = FakeOpenAi::builder()
        .rule(Rule::any().replies([r#"{"answer": "three"}"#, r#"{"answer": 3}"#]))
        .start()
        .await
        .unwrap();
    let response = client(config(&server)).complete(structured("1+2?")).await.unwrap();
    assert_eq!(response.text, r#"{"answer":3}"#);
    let log = server.requests();
    assert_eq!(log.len(), 2);
    let messages = log[1].body["messages"].as_array().unwrap();
    let n = messages.len();
    assert_eq!(messages[n - 2]["role"], "assistant");
    assert_eq!(messages[n - 2]["content"], r#"{"answer": "three"}"#);
    let repair = messages[n - 1]["content"].as_str().unwrap();
    assert!(repair.contains("/answer") && repair.contains("integer"), "{repair}");
    // Usage covers both calls.
    assert!(response.usage.prompt_tokens > 0);
}

#[tokio::test]
async fn a_reply_still_invalid_after_repair_is_a_schema_error() {
    let server = FakeOpenAi::builder().rule(Rule::any().reply("I think it's three.")).start().await.unwrap();
    let err = client(config(&server)).complete(structured("1+2?")).await.unwrap_err();
    assert!(matches!(&err, ModelError::Schema { message, .. } if message.contains("no JSON")), "{err}");
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn an_invalid_schema_is_reported_without_a_call() {
    let server = FakeOpenAi::start().await.unwrap();
    let mut request = ask("x");
    request.json_schema = Some(json!({"type": 42}));
    let err = client(config(&server)).complete(request).await.unwrap_err();
    assert!(
        matches!(&err, ModelError::Schema { message, .. } if message.contains("invalid JSON Schema")),
        "{err}"
    );
    assert_eq!(server.request_count(), 0);
}

#[tokio::test]
async fn json_schema_unsupported_falls_back_to_json_object_and_remembers() {
    let server = FakeOpenAi::builder()
        .reject_json_schema(true)
        .rule(Rule::any().reply(r#"{"answer": 7}"#))
        .start()
        .await
        .unwrap();
    let client = client(config(&server));
    let response = client.complete(structured("3+4?")).await.unwrap();
    assert_eq!(response.text, r#"{"answer":7}"#);
    let log = server.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].body["response_format"]["type"], "json_schema");
    assert_eq!(log[1].body["response_format"]["type"], "json_object");
    let system = log[1].body["messages"][0]["content"].as_str().unwrap();
    assert!(system.starts_with("You are terse.") && system.contains("JSON Schema"), "{system}");
    assert_eq!(client.structured_output(), StructuredOutput::JsonObject);

    server.reset();
    client.complete(structured("5+6?")).await.unwrap();
    let log = server.requests();
    assert_eq!(log.len(), 1, "the step-down is remembered");
    assert_eq!(log[0].body["response_format"]["type"], "json_object");
}

#[tokio::test]
async fn a_server_without_any_response_format_gets_instructions_only() {
    let server = FakeOpenAi::builder()
        .rule(
            Rule::any()
                .fault(sgde_testkit::Fault::Status {
                    status: 400,
                    message: "response_format not supported".into(),
                })
                .times(2),
        )
        .rule(Rule::any().reply(r#"Here you go: {"answer": 1}"#))
        .start()
        .await
        .unwrap();
    let client = client(config(&server));
    assert_eq!(client.complete(structured("0+1?")).await.unwrap().text, r#"{"answer":1}"#);
    assert_eq!(client.structured_output(), StructuredOutput::None);
    let log = server.requests();
    assert_eq!(log.len(), 3);
    assert!(log[2].body.get("response_format").is_none());
}

#[tokio::test]
async fn an_outage_does_not_step_the_endpoint_down() {
    let server = FakeOpenAi::builder()
        .rule(Rule::any().fault(sgde_testkit::Fault::ServerError))
        .start()
        .await
        .unwrap();
    let mut c = config(&server);
    c.retry = sgde_llm::RetryPolicy::fast(2);
    let client = client(c);
    assert!(client.complete(structured("?")).await.is_err());
    assert_eq!(client.structured_output(), StructuredOutput::JsonSchema);
}

#[tokio::test]
async fn garbage_replies_never_panic() {
    let garbage =
        ["", "{", "[1,2", "null", "\"answer\"", "```json\n{]\n```", "{\"answer\": 1e999}", "\u{0}\u{1}"];
    let server = FakeOpenAi::builder().rule(Rule::any().replies(garbage)).start().await.unwrap();
    let client = client(config(&server));
    for _ in 0..garbage.len() {
        let _ = client.complete(structured("?")).await;
        let _ = client.complete(ask("?")).await;
    }
}
