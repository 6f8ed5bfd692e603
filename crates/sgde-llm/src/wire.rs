//! The JSON of `POST /v1/chat/completions`, as far as sgde needs it.
//!
//! Requests are typed and borrowed (serialised once per call, reused across retries). Replies are
//! read leniently: the servers we target differ in what they send (llama.cpp adds timing fields,
//! some omit `usage`, `object` or `created`, some send content as an array of parts, some send
//! token counts as strings), so every field sgde does not strictly need is optional, and a field
//! of an unexpected type is treated as absent rather than failing the reply.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::model::Message;

#[derive(Debug, Serialize)]
pub(crate) struct ChatCompletionRequest<'a> {
    pub model: &'a str,
    pub messages: &'a [Message],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat<'a>>,
}

/// `response_format`. In `json_object` mode the schema rides along as `schema`: llama.cpp's
/// servers (llama-cpp-python, `llama-server`) then constrain decoding to it, which makes even a
/// 135M-parameter model produce valid output. Servers that do not know the field normally ignore
/// it; one that refuses it (HTTP 400/422) makes the client step down to prompt-only instructions.
/// Not checked against OpenAI itself, which gets `json_schema` by default anyway.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ResponseFormat<'a> {
    JsonObject { schema: &'a Value },
    JsonSchema { json_schema: JsonSchemaFormat<'a> },
}

#[derive(Debug, Serialize)]
pub(crate) struct JsonSchemaFormat<'a> {
    pub name: &'static str,
    pub schema: &'a Value,
}

/// A chat completion reply. Only `choices` matters; everything is optional.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ChatCompletion {
    #[serde(default, deserialize_with = "lenient")]
    pub choices: Option<Vec<Choice>>,
    #[serde(default, deserialize_with = "lenient")]
    pub usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Choice {
    #[serde(default, deserialize_with = "lenient")]
    pub index: Option<u32>,
    #[serde(default, deserialize_with = "lenient")]
    pub message: Option<ChoiceMessage>,
    /// Legacy completions-style choice, sent by a few servers.
    #[serde(default, deserialize_with = "lenient")]
    pub text: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChoiceMessage {
    #[serde(default)]
    pub content: Option<Value>,
    #[serde(default, deserialize_with = "lenient")]
    pub refusal: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default, deserialize_with = "lenient_count")]
    pub prompt_tokens: Option<u64>,
    #[serde(default, deserialize_with = "lenient_count")]
    pub completion_tokens: Option<u64>,
}

impl Choice {
    /// The text of the choice, or why there is none.
    pub fn into_text(self) -> Result<String, String> {
        if let Some(message) = self.message {
            match message.content {
                Some(Value::String(s)) => return Ok(s),
                Some(Value::Array(parts)) => {
                    // Content parts: [{"type": "text", "text": "..."}].
                    let text: String =
                        parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect();
                    return Ok(text);
                }
                _ => {}
            }
            if let Some(refusal) = message.refusal {
                return Err(format!("the model refused: {refusal}"));
            }
        }
        if let Some(text) = self.text {
            return Ok(text);
        }
        Err(match self.finish_reason {
            Some(reason) => format!("a choice has no text content (finish_reason `{reason}`)"),
            None => "a choice has no text content".to_owned(),
        })
    }
}

/// Deserialises a field, or gives `None` when it has an unexpected shape.
fn lenient<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    let value = Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

/// Token counts as numbers, numeric strings or floats; anything else is absent.
fn lenient_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => {
            n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0 && f.is_finite()).map(|f| f as u64))
        }
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// The provider's own words from an error body: OpenAI's `{"error": {"message"}}`, llama.cpp's
/// and vLLM's variants, FastAPI's `{"detail"}`, or the start of the raw text.
pub(crate) fn error_message(body: &[u8]) -> String {
    const MAX: usize = 500;
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        let candidates = [
            value.pointer("/error/message"),
            value.get("error").filter(|e| e.is_string()),
            value.get("message"),
            value.get("detail"),
        ];
        for candidate in candidates.into_iter().flatten() {
            let text = match candidate {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if !text.trim().is_empty() {
                return truncate(&text, MAX);
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() { "(empty body)".to_owned() } else { truncate(text, MAX) }
}

/// At most `max` bytes of `text`, cut at a character boundary, with an ellipsis when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_replies() {
        let r: ChatCompletion = serde_json::from_str(
            r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],
                "usage":{"prompt_tokens":"12","completion_tokens":3.0,"total_tokens":15},"timings":{}}"#,
        )
        .unwrap();
        assert_eq!(r.usage.as_ref().unwrap().prompt_tokens, Some(12));
        assert_eq!(r.usage.as_ref().unwrap().completion_tokens, Some(3));
        let choice = r.choices.unwrap().into_iter().next().unwrap();
        assert_eq!(choice.into_text().unwrap(), "hi");

        let r: ChatCompletion = serde_json::from_str(r#"{"choices":"nope","usage":"x"}"#).unwrap();
        assert!(r.choices.is_none() && r.usage.is_none());

        let r: ChatCompletion =
            serde_json::from_str(r#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}"#)
                .unwrap();
        assert_eq!(r.choices.unwrap().pop().unwrap().into_text().unwrap(), "ab");

        let r: ChatCompletion =
            serde_json::from_str(r#"{"choices":[{"message":{"content":null,"refusal":"no"}}]}"#).unwrap();
        assert!(r.choices.unwrap().pop().unwrap().into_text().unwrap_err().contains("refused"));
    }

    #[test]
    fn error_messages_from_various_servers() {
        assert_eq!(error_message(br#"{"error":{"message":"bad key","type":"auth"}}"#), "bad key");
        assert_eq!(error_message(br#"{"error":"model not found"}"#), "model not found");
        assert_eq!(error_message(br#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(error_message(b"<html>oops</html>"), "<html>oops</html>");
        assert_eq!(error_message(b""), "(empty body)");
        assert!(error_message("é".repeat(400).as_bytes()).ends_with('…'));
    }
}
