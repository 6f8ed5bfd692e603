//! Request extractors whose failures are problem+json naming the field.
//!
//! axum's own `Json` answers text/plain and folds every failure into one message; callers of a
//! generated client need the status to say *what kind* of failure it was (415 wrong content
//! type, 413 too large, 400 not JSON, 422 wrong shape) and a JSON pointer to the field. The same
//! holds for path and query parameters: axum's own `Path` and `Query` reject in plain text.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::problem::ApiError;
use sgde_workflow::validate::escape_pointer_token as escape;

/// A JSON body, plus its raw bytes (for idempotency fingerprints).
pub struct ApiJson<T> {
    pub value: T,
    pub raw: Bytes,
}

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = req.extensions().get::<BodyLimit>().map_or(0, |l| l.0);
        let raw = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::BadRequest(format!("could not read the request body: {rejection}"))
            }
        })?;
        let value = parse(&raw)?;
        Ok(Self { value, raw })
    }
}

/// Parses JSON bytes; syntax errors are 400, shape errors 422 with the field's pointer.
pub fn parse<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    // serde_json stops at 128 levels only where it recurses into a `Value`; a deep array where a
    // struct is expected would otherwise be reported as a wrong type. Depth is a syntax limit.
    if too_deep(raw) {
        return Err(ApiError::MalformedJson(format!("nested deeper than {MAX_DEPTH} levels")));
    }
    // Syntax first: deserialising into a type stops at the first wrong type, so `[1,]` would
    // otherwise be reported as a wrong type rather than as the malformed JSON it is.
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(raw) {
        return Err(ApiError::MalformedJson(e.to_string()));
    }
    let mut de = serde_json::Deserializer::from_slice(raw);
    let result = serde_path_to_error::deserialize(&mut de).map(|v| (v, de.end()));
    match result {
        Ok((value, Ok(()))) => Ok(value),
        Ok((_, Err(e))) => Err(ApiError::MalformedJson(e.to_string())),
        Err(e) => {
            let inner = e.inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(ApiError::MalformedJson(inner.to_string()));
            }
            let mut pointer = String::new();
            for segment in e.path().iter() {
                use serde_path_to_error::Segment;
                match segment {
                    Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
                    Segment::Map { key } => pointer.push_str(&format!("/{}", escape(key))),
                    Segment::Enum { variant } => pointer.push_str(&format!("/{}", escape(variant))),
                    Segment::Unknown => {}
                }
            }
            Err(ApiError::invalid(pointer, e.into_inner().to_string()))
        }
    }
}

/// The deepest nesting of arrays and objects a body may have (serde_json's own limit).
const MAX_DEPTH: usize = 128;

/// Whether arrays and objects nest deeper than [`MAX_DEPTH`] (brackets inside strings ignored).
fn too_deep(raw: &[u8]) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in raw {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The configured body limit, put in request extensions so rejections can state it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// axum's `Path`, whose failures (say, `%FF` in a name) are problem+json instead of plain text.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::BadRequest(format!("invalid path: {}", rejection.body_text()))),
        }
    }
}

/// axum's `Query`, whose failures are a 422 problem with the parameter's pointer (`/query/limit`).
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => {
                // axum reports `<field>: <problem>` (via serde_path_to_error) after a fixed prefix.
                let text = rejection.body_text();
                let text = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text);
                match text.split_once(": ") {
                    Some((field, message)) if !field.is_empty() && field.chars().all(is_param_char) => {
                        Err(ApiError::invalid(format!("/query/{}", escape(field)), message))
                    }
                    _ => Err(ApiError::invalid("/query", text)),
                }
            }
        }
    }
}

fn is_param_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}
