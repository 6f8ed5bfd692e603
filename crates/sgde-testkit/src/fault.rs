//! Ways the fake server misbehaves, each one a real failure seen from model servers.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;

/// A failure to inject instead of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 429 with an OpenAI-style error and, if given, this `Retry-After` value verbatim
    /// (`"1"`, or an HTTP-date).
    RateLimited { retry_after: Option<String> },
    /// HTTP 500 with an OpenAI-style error body.
    ServerError,
    /// Any status with an OpenAI-style error carrying `message`.
    Status { status: u16, message: String },
    /// Never answers (until the server shuts down): exercises client timeouts.
    Hang,
    /// HTTP 200, `application/json`, a body that is not JSON.
    MalformedJson,
    /// HTTP 200, `application/json`, a valid reply cut in half (complete HTTP message).
    TruncatedBody,
    /// HTTP 200, then half a body and the connection drops mid-stream.
    AbortMidBody,
    /// HTTP 200 with an HTML page (a proxy's login or error page).
    WrongContentType,
    /// HTTP 200 with `"choices": []`.
    EmptyChoices,
    /// HTTP 200 with a choice whose `content` is null.
    NullContent,
}

/// An OpenAI-style error response.
pub(crate) fn error_response(status: StatusCode, message: &str, kind: &str) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "code": status.as_u16()}});
    (status, axum::Json(body)).into_response()
}

/// Renders every fault except [`Fault::Hang`] (handled by the server, which owns shutdown).
/// `reply` is a well-formed reply body, used by the faults that damage one.
pub(crate) fn render(fault: &Fault, reply: &[u8]) -> Response {
    match fault {
        Fault::RateLimited { retry_after } => {
            let mut response =
                error_response(StatusCode::TOO_MANY_REQUESTS, "Rate limit reached, please retry later", "rate_limit_error");
            if let Some(value) = retry_after.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Fault::ServerError => error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error", "server_error"),
        Fault::Status { status, message } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error_response(status, message, "invalid_request_error")
        }
        Fault::MalformedJson => json_bytes(Bytes::from_static(b"{\"id\": \"chatcmpl-1\", \"choices\": [{\"message\": {\"content\": \"hi\"}]")),
        Fault::TruncatedBody => json_bytes(Bytes::copy_from_slice(&reply[..reply.len() / 2])),
        Fault::AbortMidBody => {
            let half = Bytes::copy_from_slice(&reply[..reply.len() / 2]);
            // The pause lets the headers and the first half reach the client before the
            // connection breaks, as when a server dies mid-reply.
            let abort = futures::stream::once(async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected abort"))
            });
            let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(half) }).chain(abort);
            let mut response = Response::new(Body::from_stream(stream));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Fault::WrongContentType => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!doctype html><html><body><h1>Please sign in</h1></body></html>",
        )
            .into_response(),
        Fault::EmptyChoices => axum::Json(json!({"id": "chatcmpl-empty", "object": "chat.completion", "choices": []})).into_response(),
        Fault::NullContent => axum::Json(json!({
            "id": "chatcmpl-null", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null}, "finish_reason": "stop"}]
        }))
        .into_response(),
        Fault::Hang => error_response(StatusCode::SERVICE_UNAVAILABLE, "server shutting down", "server_error"),
    }
}

fn json_bytes(body: Bytes) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// How long a [`Fault::Hang`] waits at most, so that a forgotten server cannot pin a test
/// process forever.
pub(crate) const HANG_LIMIT: Duration = Duration::from_secs(600);
