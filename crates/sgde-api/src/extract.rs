//! Request extractors whose failures are problem+json naming the field.
//!
//! axum's own `Json` answers text/plain and folds every failure into one message; callers of a
//! generated client need the status to say *what kind* of failure it was (415 wrong content
//! type, 413 too large, 400 not JSON, 422 wrong shape) and a JSON pointer to the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
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

/// The configured body limit, put in request extensions so rejections can state it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);
