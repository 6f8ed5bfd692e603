//! Model endpoints for sgde.
//!
//! # Layout
//! - [`model`]: the [`ModelClient`] trait and the request/response types every caller uses.

pub mod model;

pub use model::{ChatRequest, ChatResponse, Decoding, Message, ModelClient, ModelError, Role, Usage};
