//! The fake server over real HTTP.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sgde_testkit::{FakeOpenAi, Fault, Rule, ScriptedTeacher, TeacherReply, TextMatch};

async fn post(server: &FakeOpenAi, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/chat/completions", server.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn chat(user: &str) -> Value {
    json!({"model": "sgde-student", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": user}]})
}

#[tokio::test]
async fn replies_look_like_openai_and_are_logged() {
    let server = FakeOpenAi::start().await.unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", server.base_url()))
        .header("authorization", "Bearer sk-x")
        .json(&chat("hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "sgde-student");
    assert_eq!(body["choices"][0]["message"]["content"], "echo: hello");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let usage = &body["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap())
    );
    let log = server.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].body["messages"][1]["content"], "hello");
    assert_eq!(log[0].header("Authorization"), Some("Bearer sk-x"));

    let models: Value =
        reqwest::get(format!("{}/models", server.base_url())).await.unwrap().json().await.unwrap();
    assert_eq!(models["data"][0]["id"], "sgde-student");
}

#[tokio::test]
async fn n_is_honoured_unless_the_server_imitates_llama_cpp() {
    let server = FakeOpenAi::builder().rule(Rule::any().replies(["a", "b"])).start().await.unwrap();
    let mut body = chat("x");
    body["n"] = json!(3);
    let reply: Value = post(&server, body.clone()).await.json().await.unwrap();
    let texts: Vec<&str> = reply["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["a", "b", "b"]);

    let llama = FakeOpenAi::builder().ignore_n(true).start().await.unwrap();
    let reply: Value = post(&llama, body).await.json().await.unwrap();
    assert_eq!(reply["choices"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn rules_match_in_order_and_expire() {
    let server = FakeOpenAi::builder()
        .rule(Rule::any().model("other").reply("wrong model"))
        .rule(
            Rule::any()
                .system(TextMatch::regex(r"(?i)be\s+brief"))
                .user("first")
                .fault(Fault::ServerError)
                .times(1),
        )
        .rule(Rule::any().user("first").reply("second try"))
        .start()
        .await
        .unwrap();
    assert_eq!(post(&server, chat("first")).await.status(), 500);
    let reply: Value = post(&server, chat("first")).await.json().await.unwrap();
    assert_eq!(reply["choices"][0]["message"]["content"], "second try");
    let reply: Value = post(&server, chat("unmatched")).await.json().await.unwrap();
    assert_eq!(reply["choices"][0]["message"]["content"], "echo: unmatched");
    server.push_rule(Rule::any().reply("late rule"));
    let reply: Value = post(&server, chat("unmatched")).await.json().await.unwrap();
    assert_eq!(reply["choices"][0]["message"]["content"], "late rule");
}

#[tokio::test]
async fn faults_arrive_as_specified() {
    let server = FakeOpenAi::builder()
        .rule(Rule::any().user("429").fault(Fault::RateLimited { retry_after: Some("2".into()) }))
        .rule(Rule::any().user("html").fault(Fault::WrongContentType))
        .rule(Rule::any().user("broken").fault(Fault::MalformedJson))
        .rule(Rule::any().user("cut").fault(Fault::TruncatedBody))
        .rule(Rule::any().user("abort").fault(Fault::AbortMidBody))
        .start()
        .await
        .unwrap();
    let r = post(&server, chat("429")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "2");
    let r = post(&server, chat("html")).await;
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let r = post(&server, chat("broken")).await;
    assert!(serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).is_err());
    let r = post(&server, chat("cut")).await;
    assert!(serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).is_err());
    let r = post(&server, chat("abort")).await;
    assert!(r.bytes().await.is_err(), "the body read must fail");
}

#[tokio::test]
async fn llama_cpp_mode_breaks_on_json_schema_only() {
    let server = FakeOpenAi::builder().reject_json_schema(true).start().await.unwrap();
    let mut body = chat("x");
    body["response_format"] =
        json!({"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}});
    assert_eq!(post(&server, body.clone()).await.status(), 500);
    body["response_format"] = json!({"type": "json_object"});
    assert_eq!(post(&server, body).await.status(), 200);
}

#[tokio::test]
async fn bad_requests_get_400() {
    let server = FakeOpenAi::start().await.unwrap();
    assert_eq!(post(&server, json!({"model": "m"})).await.status(), 400);
    let r = reqwest::Client::new()
        .post(format!("{}/chat/completions", server.base_url()))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(server.request_count(), 2, "bad requests are logged too");
}

#[tokio::test]
async fn in_flight_requests_are_counted() {
    let server = FakeOpenAi::builder().latency(Duration::from_millis(50)).start().await.unwrap();
    let calls = (0..5).map(|i| post(&server, chat(&format!("q{i}"))));
    futures::future::join_all(calls).await;
    assert_eq!(server.in_flight(), 0);
    assert!(server.max_in_flight() >= 2, "{}", server.max_in_flight());
    server.reset();
    assert_eq!(server.request_count(), 0);
}

#[tokio::test]
async fn a_hang_is_released_by_shutdown() {
    let server = FakeOpenAi::builder().rule(Rule::any().fault(Fault::Hang)).start().await.unwrap();
    let url = format!("{}/chat/completions", server.base_url());
    let pending = tokio::spawn(async move { reqwest::Client::new().post(url).json(&chat("x")).send().await });
    while server.in_flight() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.shutdown().await;
    let outcome = pending.await.unwrap();
    assert!(outcome.map(|r| r.status() != 200).unwrap_or(true));
}

#[tokio::test]
async fn the_scripted_teacher_answers_over_http() {
    let teacher = ScriptedTeacher::new()
        .script(
            "critique",
            [TeacherReply::Json(json!({"critiques": [{"node": "ghost", "critique": "no such node"}]}))],
        )
        .script("edit", [TeacherReply::python_that_does_not_parse()]);
    let server = FakeOpenAi::builder().responder(Arc::new(teacher)).start().await.unwrap();
    let reply: Value = post(&server, chat("critique the trace")).await.json().await.unwrap();
    let text: Value =
        serde_json::from_str(reply["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(text["critiques"][0]["node"], "ghost");
    let reply: Value = post(&server, chat("edit the workflow")).await.json().await.unwrap();
    assert!(reply["choices"][0]["message"]["content"].as_str().unwrap().contains("def solution(quantities:"));
    let r = post(&server, chat("critique again")).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("call #3"));
}
