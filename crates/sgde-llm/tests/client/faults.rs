use sgde_llm::{ModelClient, ModelError, RetryPolicy};
use sgde_testkit::{FakeOpenAi, Fault, Rule};

use crate::{ask, client, config};

async fn server_with(rules: Vec<Rule>) -> FakeOpenAi {
    let mut builder = FakeOpenAi::builder();
    for rule in rules {
        builder = builder.rule(rule);
    }
    builder.start().await.unwrap()
}

#[tokio::test]
async fn rate_limited_calls_wait_for_retry_after_then_succeed() {
    let server = server_with(vec![
        Rule::any().fault(Fault::RateLimited { retry_after: Some("1".into()) }).times(1),
        Rule::any().reply("finally"),
    ])
    .await;
    let response = client(config(&server)).complete(ask("hi")).await.unwrap();
    assert_eq!(response.text, "finally");
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn a_retry_after_beyond_the_budget_ends_the_call_at_once() {
    // The fast test policy would retry within milliseconds and succeed; a client that reads
    // Retry-After (an HTTP date an hour ahead) must see that waiting exceeds its 10 s budget.
    let later = httpdate_in(3600);
    let server = server_with(vec![
        Rule::any().fault(Fault::RateLimited { retry_after: Some(later) }).times(1),
        Rule::any().reply("too late"),
    ])
    .await;
    let err = client(config(&server)).complete(ask("hi")).await.unwrap_err();
    assert!(
        matches!(&err, ModelError::Exhausted { attempts: 1, last_error, .. } if last_error.contains("429")),
        "{err}"
    );
    assert_eq!(server.request_count(), 1);
}

/// An IMF-fixdate `seconds` from now.
fn httpdate_in(seconds: u64) -> String {
    let t = std::time::SystemTime::now() + std::time::Duration::from_secs(seconds);
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days (Hinnant).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{weekday}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        months[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let server =
        server_with(vec![Rule::any().fault(Fault::ServerError).times(2), Rule::any().reply("ok now")]).await;
    let response = client(config(&server)).complete(ask("hi")).await.unwrap();
    assert_eq!(response.text, "ok now");
    assert_eq!(server.request_count(), 3);
}

#[tokio::test]
async fn retries_are_bounded() {
    let server = server_with(vec![Rule::any().fault(Fault::ServerError)]).await;
    let mut c = config(&server);
    c.retry = RetryPolicy::fast(3);
    let err = client(c).complete(ask("hi")).await.unwrap_err();
    assert!(
        matches!(&err, ModelError::Exhausted { attempts: 3, last_error, .. } if last_error.contains("500")),
        "{err}"
    );
    assert_eq!(server.request_count(), 3);
}

#[tokio::test]
async fn a_non_retryable_4xx_fails_at_once_with_the_provider_message() {
    let server = server_with(vec![
        Rule::any()
            .fault(Fault::Status { status: 401, message: "Incorrect API key provided: sk-...".into() }),
    ])
    .await;
    let err = client(config(&server)).complete(ask("hi")).await.unwrap_err();
    assert!(
        matches!(&err, ModelError::Rejected { status: 401, message, .. } if message.contains("Incorrect API key")),
        "{err}"
    );
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn a_hanging_server_times_out() {
    let server = server_with(vec![Rule::any().fault(Fault::Hang)]).await;
    let mut c = config(&server);
    c.timeout_ms = 200;
    c.retry = RetryPolicy::fast(2);
    let err = client(c).complete(ask("hi")).await.unwrap_err();
    assert_eq!(err, ModelError::Timeout { endpoint: "student".into(), timeout_ms: 200 });
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn a_timeout_then_success_recovers() {
    let server = server_with(vec![Rule::any().fault(Fault::Hang).times(1), Rule::any().reply("awake")]).await;
    let mut c = config(&server);
    c.timeout_ms = 200;
    assert_eq!(client(c).complete(ask("hi")).await.unwrap().text, "awake");
}

async fn bad_reply_for(fault: Fault) -> (ModelError, usize) {
    let server = server_with(vec![Rule::any().fault(fault)]).await;
    let err = client(config(&server)).complete(ask("hi")).await.unwrap_err();
    (err, server.request_count())
}

#[tokio::test]
async fn malformed_json_is_a_bad_reply() {
    let (err, calls) = bad_reply_for(Fault::MalformedJson).await;
    assert!(
        matches!(&err, ModelError::BadReply { message, .. } if message.contains("not a chat completion")),
        "{err}"
    );
    assert_eq!(calls, 1, "a malformed 200 is not retried");
}

#[tokio::test]
async fn a_wrong_content_type_is_a_bad_reply() {
    let (err, _) = bad_reply_for(Fault::WrongContentType).await;
    assert!(matches!(&err, ModelError::BadReply { message, .. } if message.contains("text/html")), "{err}");
}

#[tokio::test]
async fn truncated_empty_and_null_replies_are_bad_replies() {
    for fault in [Fault::TruncatedBody, Fault::EmptyChoices, Fault::NullContent] {
        let (err, _) = bad_reply_for(fault.clone()).await;
        assert!(matches!(err, ModelError::BadReply { .. }), "{fault:?}: {err}");
    }
}

#[tokio::test]
async fn a_connection_dropped_mid_body_is_retried() {
    let server =
        server_with(vec![Rule::any().fault(Fault::AbortMidBody).times(1), Rule::any().reply("whole")]).await;
    assert_eq!(client(config(&server)).complete(ask("hi")).await.unwrap().text, "whole");
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut c = sgde_llm::EndpointConfig::new("student", format!("http://127.0.0.1:{port}/v1"), "m");
    c.retry = RetryPolicy::fast(3);
    let err = client(c).complete(ask("hi")).await.unwrap_err();
    assert!(
        matches!(&err, ModelError::Exhausted { attempts: 3, last_error, .. } if last_error.contains("could not connect")),
        "{err}"
    );
}
