//! Every error the API returns, as RFC 9457 problem+json with a stable `code`.
//!
//! All HTTP status mapping lives in [`ApiError::status`] and [`ApiError::code`]; handlers only
//! return `ApiError`. Causes of 5xx answers are logged with the request id and never sent to the
//! client: a database error's text is for operators, not for callers.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sgde_workflow::ValidationError;
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type; stable per `code`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short human summary of the problem type.
    pub title: String,
    pub status: u16,
    /// What went wrong this time, in plain words.
    pub detail: String,
    /// Stable machine-readable code (`not_found`, `invalid_spec`, ...).
    pub code: String,
    /// Field-level errors, each with the JSON pointer of the offending field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// For failed workflow runs: the execution recorded in the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<uuid::Uuid>,
}

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// RFC 6901 JSON pointer into the request body (or the named parameter).
    pub pointer: String,
    pub message: String,
}

impl From<ValidationError> for FieldError {
    fn from(e: ValidationError) -> Self {
        Self { pointer: e.pointer, message: e.message }
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("this API key lacks the `{0}` scope")]
    Forbidden(&'static str),
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("no route for this path")]
    NoRoute,
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("expected `Content-Type: application/json`")]
    UnsupportedMediaType,
    #[error("{detail}")]
    Invalid { detail: String, errors: Vec<FieldError> },
    #[error("the workflow spec is invalid")]
    InvalidSpec { errors: Vec<FieldError> },
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyMismatch,
    #[error("a request with this Idempotency-Key is still being processed")]
    IdempotencyInProgress,
    #[error("the workflow run failed: {detail}")]
    RunFailed { code: String, detail: String, execution_id: Option<uuid::Uuid> },
    #[error("too many requests for this API key; retry after {} s", retry_after_secs(*retry_after))]
    TooManyRequests { retry_after: std::time::Duration },
    #[error("the request took too long")]
    Timeout,
    #[error("the service is not ready: {0}")]
    Unavailable(String),
    /// Anything unexpected: logged in full, answered with a bare 500.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError::NotFound { what: what.into() }
    }

    /// One invalid field.
    pub fn invalid(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        let error = FieldError { pointer: pointer.into(), message: message.into() };
        ApiError::Invalid { detail: format!("{}: {}", error.pointer, error.message), errors: vec![error] }
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(e.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) | ApiError::IdempotencyInProgress => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid { .. } | ApiError::InvalidSpec { .. } | ApiError::IdempotencyMismatch => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::RunFailed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code clients switch on.
    pub fn code(&self) -> &str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound { .. } => "not_found",
            ApiError::NoRoute => "no_route",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Invalid { .. } => "invalid_request",
            ApiError::InvalidSpec { .. } => "invalid_spec",
            ApiError::IdempotencyMismatch => "idempotency_key_reused",
            ApiError::IdempotencyInProgress => "idempotency_key_in_progress",
            ApiError::RunFailed { code, .. } => code,
            ApiError::TooManyRequests { .. } => "rate_limited",
            ApiError::Timeout => "timeout",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn to_problem(&self) -> Problem {
        let status = self.status();
        let errors = match self {
            ApiError::Invalid { errors, .. } | ApiError::InvalidSpec { errors } => errors.clone(),
            _ => Vec::new(),
        };
        let mut detail = self.to_string();
        if let ApiError::InvalidSpec { errors } = self {
            let shown: Vec<String> =
                errors.iter().take(3).map(|e| format!("{}: {}", e.pointer, e.message)).collect();
            detail =
                format!("the workflow spec is invalid ({} error(s)): {}", errors.len(), shown.join("; "));
        }
        Problem {
            type_uri: format!("https://sgde.dev/problems/{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            code: self.code().to_owned(),
            errors,
            execution_id: match self {
                ApiError::RunFailed { execution_id, .. } => *execution_id,
                _ => None,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = ?e, "internal error");
        }
        let problem = self.to_problem();
        let status = self.status();
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let ApiError::Unauthorized = self {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::TooManyRequests { retry_after } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs(retry_after)));
        }
        if let ApiError::PayloadTooLarge { .. } = self {
            // The rest of the body is left unread, so the server closes the connection; say so,
            // or a keep-alive client sends its next request into a closed socket.
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Whole seconds for `Retry-After` (which has no fractions), rounded up and at least 1, so a
/// client that honours it is never refused again for retrying too early.
fn retry_after_secs(wait: std::time::Duration) -> u64 {
    u64::try_from(wait.as_nanos().div_ceil(1_000_000_000)).unwrap_or(u64::MAX).max(1)
}

impl From<sgde_workflow::SpecErrors> for ApiError {
    fn from(e: sgde_workflow::SpecErrors) -> Self {
        ApiError::InvalidSpec { errors: e.0.into_iter().map(FieldError::from).collect() }
    }
}

/// Maps store errors onto API errors; unexpected ones become a logged 500.
pub fn store_error(e: sgde_store::StoreError) -> ApiError {
    use sgde_store::StoreError;
    match e {
        StoreError::NotFound { what } => ApiError::not_found(what),
        StoreError::Conflict { what } => ApiError::Conflict(format!("{what} already exists")),
        StoreError::Invalid { what } => ApiError::BadRequest(format!("invalid {what}")),
        StoreError::Unavailable(source) => {
            tracing::error!(error = ?source, "database unavailable");
            ApiError::Unavailable("the database is unreachable".into())
        }
        other => ApiError::internal(other),
    }
}

impl From<sgde_store::StoreError> for ApiError {
    fn from(e: sgde_store::StoreError) -> Self {
        store_error(e)
    }
}
