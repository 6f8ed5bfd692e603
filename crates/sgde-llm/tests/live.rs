//! Opt-in check against a real OpenAI-compatible server.
//!
//! Runs only when `SGDE_LIVE_OPENAI_BASE_URL` is set (e.g. `http://127.0.0.1:8765/v1` for
//! llama-cpp-python serving SmolLM2-135M; see this crate's README). Optional: `SGDE_LIVE_MODEL`
//! (default: the first id from `GET /v1/models`), `SGDE_LIVE_API_KEY` (sent as a bearer token).
//! Without the variable it prints why it skipped and passes. Run with `--nocapture` to see what
//! the server did.

use serde_json::json;
use sgde_llm::{
    ChatRequest, Decoding, EndpointConfig, Message, ModelClient, ModelError, OpenAiClient, ProcessEnv,
    RetryPolicy, StructuredOutput,
};

async fn first_model(base_url: &str) -> Option<String> {
    let models: serde_json::Value =
        reqwest::get(format!("{}/models", base_url.trim_end_matches('/'))).await.ok()?.json().await.ok()?;
    models.pointer("/data/0/id")?.as_str().map(str::to_owned)
}

fn request(system: &str, user: &str, max_tokens: u32) -> ChatRequest {
    ChatRequest {
        endpoint: "live".into(),
        messages: vec![Message::system(system), Message::user(user)],
        decoding: Decoding { temperature: Some(0.7), max_tokens: Some(max_tokens), ..Decoding::default() },
        sample_index: 0,
        json_schema: None,
    }
}

#[tokio::test]
async fn live_chat_structured_output_and_samples() {
    let Ok(base_url) = std::env::var("SGDE_LIVE_OPENAI_BASE_URL") else {
        println!(
            "live test skipped: SGDE_LIVE_OPENAI_BASE_URL is not set \
             (set it to an OpenAI-compatible API root, e.g. http://127.0.0.1:8765/v1; see crates/sgde-llm/README.md)"
        );
        return;
    };
    let model = match std::env::var("SGDE_LIVE_MODEL") {
        Ok(m) => m,
        Err(_) => first_model(&base_url).await.unwrap_or_else(|| "default".into()),
    };
    let mut config = EndpointConfig::new("live", base_url.clone(), model.clone());
    if std::env::var("SGDE_LIVE_API_KEY").is_ok() {
        config.api_key_env = Some("SGDE_LIVE_API_KEY".into());
    }
    config.timeout_ms = 180_000;
    config.max_concurrency = 4;
    config.retry = RetryPolicy {
        max_attempts: 3,
        initial_backoff_ms: 200,
        max_backoff_ms: 2_000,
        max_elapsed_ms: 600_000,
    };
    config.structured_output = StructuredOutput::JsonSchema;
    config.supports_n = true;
    let client = OpenAiClient::new(config, &ProcessEnv).expect("live config");
    println!("live: {base_url} model `{model}`");

    // 1. Plain chat completion.
    let hello = client
        .complete(request("You are a helpful assistant.", "Say hello in one short sentence.", 32))
        .await;
    let hello = hello.expect("chat completion");
    assert!(!hello.text.trim().is_empty());
    println!("live chat: {:?} usage {:?} in {:?}", hello.text, hello.usage, hello.latency);

    // 2. Structured output, json_schema requested first (llama.cpp servers fail on it; the
    //    client must step down and still deliver schema-valid JSON or a typed schema error).
    let mut structured = request(
        "You answer arithmetic questions.",
        "What is 2 + 3? Reply as a JSON object with the integer field \"answer\".",
        64,
    );
    structured.json_schema = Some(json!({
        "type": "object", "required": ["answer"],
        "properties": {"answer": {"type": "integer"}}
    }));
    match client.complete(structured).await {
        Ok(r) => {
            let value: serde_json::Value = serde_json::from_str(&r.text).expect("structured text is JSON");
            assert!(value["answer"].is_i64(), "{value}");
            println!(
                "live structured: {} (mode now {:?}) usage {:?}",
                r.text,
                client.structured_output(),
                r.usage
            );
        }
        Err(e @ ModelError::Schema { .. }) => {
            println!("live structured: the model could not satisfy the schema after repair: {e}");
        }
        Err(e) => panic!("structured output failed unexpectedly: {e}"),
    }

    // 3. Several samples: `n` first; a server that ignores it gets parallel seeded calls.
    let samples = client.complete_n(request("You are creative.", "Name a colour.", 8), 3).await;
    assert_eq!(samples.len(), 3);
    for (i, s) in samples.iter().enumerate() {
        let s = s.as_ref().expect("sample");
        println!("live sample {i}: {:?} usage {:?}", s.text, s.usage);
    }
    println!(
        "live: n honoured by the server: {}; spend {:?}",
        client.uses_n(),
        client.meter().report().usage
    );
}
