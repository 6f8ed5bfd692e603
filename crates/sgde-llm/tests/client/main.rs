//! The HTTP client against the testkit's fake OpenAI server: one test binary, one module per
//! concern.

mod basics;
mod cache;
mod faults;
mod limits;
mod registry;
mod sampling;
mod structured;
mod student;

use sgde_llm::{ChatRequest, Decoding, EndpointConfig, Message, OpenAiClient, RetryPolicy, StaticSecrets};
use sgde_testkit::FakeOpenAi;

/// A config for `server` with fast retries, suitable for tests.
pub fn config(server: &FakeOpenAi) -> EndpointConfig {
    let mut config = EndpointConfig::new("student", server.base_url(), "sgde-student");
    config.retry = RetryPolicy::fast(4);
    config.timeout_ms = 5_000;
    config
}

pub fn client(config: EndpointConfig) -> OpenAiClient {
    OpenAiClient::new(config, &StaticSecrets::new()).expect("valid test config")
}

/// A one-message request to the `student` endpoint.
pub fn ask(text: &str) -> ChatRequest {
    ChatRequest {
        endpoint: "student".into(),
        messages: vec![Message::system("You are terse."), Message::user(text)],
        decoding: Decoding::default(),
        sample_index: 0,
        json_schema: None,
    }
}
