//! One HTTP exchange with the endpoint, and the retry loop around it.
//!
//! [`Inner::send`] is the only place that talks to the network. It classifies every outcome:
//! success (a parsed reply), *retryable* (429, 408, 5xx, connection errors, timeouts, a body cut
//! off mid-read), *fatal* (other 4xx — with the provider's own message — and 200 replies that
//! are not a chat completion), or *format rejected* (the server refused the `response_format` we
//! asked for; the caller steps down to a weaker mode instead of retrying).

use std::time::{Instant, SystemTime};

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use super::Inner;
use crate::config::StructuredOutput;
use crate::model::ModelError;
use crate::retry::parse_retry_after;
use crate::wire::{ChatCompletion, error_message, truncate};

/// Replies larger than this are refused rather than buffered: no chat completion is this big.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A parsed chat completion: the choices in `index` order (each a text or why it has none) and
/// the server's token counts, if it sent them.
#[derive(Debug)]
pub(crate) struct Reply {
    pub texts: Vec<Result<String, String>>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
}

#[derive(Debug)]
pub(crate) enum SendError {
    Model(ModelError),
    /// The server refused the requested `response_format` (or broke on it).
    FormatRejected {
        status: u16,
        message: String,
    },
}

#[derive(Debug)]
enum AttemptError {
    Retryable { message: String, retry_after: Option<std::time::Duration>, timed_out: bool },
    Fatal(ModelError),
    FormatRejected { status: u16, message: String },
}

impl AttemptError {
    fn retry(message: String) -> Self {
        Self::Retryable { message, retry_after: None, timed_out: false }
    }
}

impl Inner {
    /// Sends `body` with retries. `format` is the structured-output mode the body asks for, if
    /// it carries a `response_format`.
    pub(crate) async fn send(
        &self,
        body: Bytes,
        estimated_tokens: u64,
        format: Option<StructuredOutput>,
    ) -> Result<Reply, SendError> {
        let policy = &self.config.retry;
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = {
                let permit = self.limits.admit(estimated_tokens).await;
                if permit.is_none() {
                    return Err(SendError::Model(self.config.invalid("concurrency limiter closed".into())));
                }
                self.attempt(body.clone(), format).await
            };
            let (message, retry_after, timed_out) = match outcome {
                Ok(reply) => return Ok(reply),
                Err(AttemptError::Fatal(e)) => return Err(SendError::Model(e)),
                Err(AttemptError::FormatRejected { status, message }) => {
                    return Err(SendError::FormatRejected { status, message });
                }
                Err(AttemptError::Retryable { message, retry_after, timed_out }) => {
                    (message, retry_after, timed_out)
                }
            };
            let delay = policy.delay(attempt, retry_after, &mut rand::rng());
            if attempt >= policy.max_attempts || started.elapsed() + delay > policy.max_elapsed() {
                let endpoint = self.config.name.clone();
                return Err(SendError::Model(if timed_out {
                    ModelError::Timeout { endpoint, timeout_ms: self.config.timeout_ms }
                } else {
                    ModelError::Exhausted { endpoint, attempts: attempt, last_error: message }
                }));
            }
            tracing::debug!(endpoint = %self.config.name, attempt, ?delay, error = %message, "retrying model call");
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(&self, body: Bytes, format: Option<StructuredOutput>) -> Result<Reply, AttemptError> {
        let response = self
            .http
            .post(self.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("no content type")
            .to_owned();
        let bytes = self.read_body(response).await?;
        if status.is_success() {
            return parse_reply(&bytes).map_err(|m| {
                AttemptError::Fatal(self.bad_reply(format!("{m} (HTTP {status}, {content_type})")))
            });
        }
        let message = error_message(&bytes);
        Err(classify_status(&self.config.name, status, message, retry_after, format))
    }

    /// Reads the body with a size cap. A connection that breaks mid-body is retryable.
    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, AttemptError> {
        let mut body =
            Vec::with_capacity(response.content_length().map_or(1024, |n| n.min(1 << 20) as usize));
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport_error(&e))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(AttemptError::Fatal(
                    self.bad_reply(format!("reply larger than {MAX_BODY_BYTES} bytes")),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn transport_error(&self, e: &reqwest::Error) -> AttemptError {
        let message = error_chain(e);
        if e.is_timeout() {
            AttemptError::Retryable {
                message: format!("timed out after {} ms: {message}", self.config.timeout_ms),
                retry_after: None,
                timed_out: true,
            }
        } else if e.is_builder() {
            AttemptError::Fatal(self.config.invalid(message))
        } else if e.is_connect() {
            AttemptError::retry(format!("could not connect: {message}"))
        } else {
            AttemptError::retry(format!("network error: {message}"))
        }
    }

    pub(crate) fn bad_reply(&self, message: String) -> ModelError {
        ModelError::BadReply { endpoint: self.config.name.clone(), message }
    }
}

fn classify_status(
    endpoint: &str,
    status: StatusCode,
    message: String,
    retry_after: Option<std::time::Duration>,
    format: Option<StructuredOutput>,
) -> AttemptError {
    let code = status.as_u16();
    // llama.cpp answers 500 to `json_schema`; OpenAI-style servers answer 400/422 to formats
    // they do not know. The caller retries at once with a weaker mode.
    let format_refusal = match format {
        Some(StructuredOutput::JsonSchema) => matches!(code, 400 | 422 | 500 | 501),
        Some(StructuredOutput::JsonObject) => matches!(code, 400 | 422),
        _ => false,
    };
    if format_refusal {
        return AttemptError::FormatRejected { status: code, message };
    }
    match code {
        429 | 408 => AttemptError::Retryable {
            message: format!("HTTP {code}: {message}"),
            retry_after,
            timed_out: false,
        },
        500..=599 => AttemptError::Retryable {
            message: format!("HTTP {code}: {message}"),
            retry_after,
            timed_out: false,
        },
        400..=499 => {
            AttemptError::Fatal(ModelError::Rejected { endpoint: endpoint.to_owned(), status: code, message })
        }
        _ => AttemptError::retry(format!("unexpected HTTP {code}: {message}")),
    }
}

/// A chat completion from a 2xx body, or what is wrong with it.
fn parse_reply(bytes: &[u8]) -> Result<Reply, String> {
    let completion: ChatCompletion = serde_json::from_slice(bytes).map_err(|e| {
        let start = truncate(&String::from_utf8_lossy(bytes), 120);
        format!("not a chat completion ({e}); body starts `{start}`")
    })?;
    let mut choices = completion.choices.unwrap_or_default();
    if choices.is_empty() {
        return Err("the reply has no choices".to_owned());
    }
    choices.sort_by_key(|c| c.index.unwrap_or(u32::MAX));
    let (prompt_tokens, completion_tokens) =
        completion.usage.map_or((None, None), |u| (u.prompt_tokens, u.completion_tokens));
    Ok(Reply {
        texts: choices.into_iter().map(|c| c.into_text()).collect(),
        prompt_tokens,
        completion_tokens,
    })
}

/// An error and its sources, because reqwest's own message ("error sending request") hides the
/// cause.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_classify() {
        let c = |code: u16, format| {
            classify_status("e", StatusCode::from_u16(code).unwrap(), "m".into(), None, format)
        };
        assert!(matches!(c(429, None), AttemptError::Retryable { .. }));
        assert!(matches!(c(503, None), AttemptError::Retryable { .. }));
        assert!(matches!(c(401, None), AttemptError::Fatal(ModelError::Rejected { status: 401, .. })));
        assert!(matches!(c(500, Some(StructuredOutput::JsonSchema)), AttemptError::FormatRejected { .. }));
        assert!(matches!(c(500, Some(StructuredOutput::JsonObject)), AttemptError::Retryable { .. }));
        assert!(matches!(c(400, Some(StructuredOutput::JsonObject)), AttemptError::FormatRejected { .. }));
        assert!(matches!(c(429, Some(StructuredOutput::JsonSchema)), AttemptError::Retryable { .. }));
    }

    #[test]
    fn garbage_never_panics() {
        for body in [
            &b""[..],
            b"{",
            b"null",
            b"[]",
            b"{\"choices\":[]}",
            b"{\"choices\":[{}]}",
            b"\xff\xfe",
            b"<html>",
        ] {
            if let Ok(reply) = parse_reply(body) {
                assert!(reply.texts.iter().all(|t| t.is_err()));
            }
        }
        let reply = parse_reply(
            br#"{"choices":[{"index":1,"message":{"content":"b"}},{"index":0,"message":{"content":"a"}}]}"#,
        )
        .unwrap();
        assert_eq!(reply.texts, vec![Ok("a".to_owned()), Ok("b".to_owned())]);
        assert_eq!(reply.prompt_tokens, None);
    }
}
