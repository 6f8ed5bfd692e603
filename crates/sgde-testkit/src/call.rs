//! What a responder sees of a request, and what it may answer.

use serde_json::Value;

use crate::fault::Fault;

/// One message of a request. Content given as an array of parts is joined into text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallMessage {
    pub role: String,
    pub content: String,
}

/// A parsed `POST /v1/chat/completions` body.
#[derive(Debug, Clone)]
pub struct ChatCall {
    pub model: String,
    pub messages: Vec<CallMessage>,
    /// Choices asked for (`n`, default 1).
    pub n: u32,
    pub seed: Option<u64>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u64>,
    /// `response_format.type`, if any (`text`, `json_object`, `json_schema`).
    pub response_format: Option<String>,
    /// `response_format.json_schema.schema`, if any.
    pub json_schema: Option<Value>,
    /// The whole body as sent.
    pub body: Value,
}

impl ChatCall {
    /// Reads a request body; only `messages` is required (as in llama.cpp).
    pub fn from_json(body: Value) -> Result<Self, String> {
        let messages = body
            .get("messages")
            .and_then(Value::as_array)
            .ok_or("`messages` must be an array")?
            .iter()
            .map(|m| CallMessage {
                role: m.get("role").and_then(Value::as_str).unwrap_or("user").to_owned(),
                content: match m.get("content") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(parts)) => {
                        parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect()
                    }
                    _ => String::new(),
                },
            })
            .collect();
        let format = body.get("response_format");
        Ok(Self {
            model: body.get("model").and_then(Value::as_str).unwrap_or_default().to_owned(),
            messages,
            n: body.get("n").and_then(Value::as_u64).map_or(1, |n| n.clamp(1, 128) as u32),
            seed: body.get("seed").and_then(Value::as_u64),
            temperature: body.get("temperature").and_then(Value::as_f64),
            max_tokens: body.get("max_tokens").and_then(Value::as_u64),
            response_format: format.and_then(|f| f.get("type")).and_then(Value::as_str).map(str::to_owned),
            json_schema: format.and_then(|f| f.pointer("/json_schema/schema")).cloned(),
            body,
        })
    }

    fn joined(&self, role: &str) -> String {
        self.messages
            .iter()
            .filter(|m| m.role == role)
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// All system messages, joined by newlines.
    pub fn system_text(&self) -> String {
        self.joined("system")
    }

    /// All user messages, joined by newlines.
    pub fn user_text(&self) -> String {
        self.joined("user")
    }

    /// The last user message.
    pub fn last_user(&self) -> &str {
        self.messages.iter().rev().find(|m| m.role == "user").map_or("", |m| m.content.as_str())
    }

    /// Whether the request asks for JSON through `response_format`.
    pub fn wants_json_format(&self) -> bool {
        matches!(self.response_format.as_deref(), Some("json_object" | "json_schema"))
    }
}

/// A responder's answer for one choice.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Reply(String),
    /// Fail the whole request this way.
    Fault(Fault),
}

/// Something that writes replies: the simulated student, the scripted teacher, your own.
pub trait Responder: Send + Sync {
    /// The reply for choice `choice` (0-based) of `call`.
    fn respond(&self, call: &ChatCall, choice: u32) -> Outcome;
}

/// Closures are responders.
impl<F> Responder for F
where
    F: Fn(&ChatCall, u32) -> Outcome + Send + Sync,
{
    fn respond(&self, call: &ChatCall, choice: u32) -> Outcome {
        self(call, choice)
    }
}
