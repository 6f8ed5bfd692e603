//! Structured output: getting JSON that satisfies a schema out of a chat model.
//!
//! Three layers, because servers differ in what they enforce:
//! 1. ask for it — `response_format` `json_schema` or `json_object` when the endpoint supports it,
//!    and the schema in the system prompt when it does not enforce it (see [`instruction`]);
//! 2. find it — [`extract_json`] accepts the whole reply, a fenced block, or the first JSON object
//!    or array embedded in prose, because small models wrap JSON in chatter;
//! 3. check it — [`SchemaCheck`] validates with `jsonschema`; an invalid reply gets one repair
//!    round ([`repair_messages`]) that shows the model the validator's message.
//!
//! Nothing here trusts the reply: every path returns a `Result`, never panics.

use serde_json::Value;

use crate::model::Message;

/// A compiled JSON Schema.
pub struct SchemaCheck {
    validator: jsonschema::Validator,
}

impl SchemaCheck {
    /// Compiles `schema`; an invalid schema is the caller's error, reported as text.
    pub fn new(schema: &Value) -> Result<Self, String> {
        jsonschema::validator_for(schema)
            .map(|validator| Self { validator })
            .map_err(|e| format!("invalid JSON Schema: {e}"))
    }

    /// Finds the JSON in `text` and validates it; the error says what is wrong in words a model
    /// can act on (at most three problems, each with its JSON pointer).
    pub fn check(&self, text: &str) -> Result<Value, String> {
        let value = extract_json(text).ok_or_else(|| "the reply contains no JSON value".to_owned())?;
        let problems: Vec<String> = self
            .validator
            .iter_errors(&value)
            .take(3)
            .map(|e| {
                let path = e.instance_path().to_string();
                if path.is_empty() { e.to_string() } else { format!("at {path}: {e}") }
            })
            .collect();
        if problems.is_empty() { Ok(value) } else { Err(problems.join("; ")) }
    }
}

/// The system-prompt addition for endpoints that do not enforce the schema themselves.
/// It contains the word "JSON", which OpenAI requires for `json_object` mode.
pub fn instruction(schema: &Value) -> String {
    format!(
        "Reply with a single JSON value that conforms to this JSON Schema, and nothing else:\n{}",
        serde_json::to_string(schema).unwrap_or_default()
    )
}

/// `messages` with [`instruction`] appended to the first system message (or a new one in front).
pub fn with_instruction(messages: &[Message], schema: &Value) -> Vec<Message> {
    let mut out = messages.to_vec();
    let text = instruction(schema);
    match out.iter_mut().find(|m| m.role == crate::model::Role::System) {
        Some(system) => {
            system.content.push_str("\n\n");
            system.content.push_str(&text);
        }
        None => out.insert(0, Message::system(text)),
    }
    out
}

/// The conversation for the repair round: the original messages, the model's invalid reply, and
/// a user turn quoting the validator.
pub fn repair_messages(messages: &[Message], reply: &str, problem: &str) -> Vec<Message> {
    let mut out = messages.to_vec();
    out.push(Message::assistant(reply));
    out.push(Message::user(format!(
        "Your reply is not valid: {problem}\nReply again with only the corrected JSON value."
    )));
    out
}

/// The JSON value in a model reply: the whole text, else the first ```-fenced block that parses,
/// else the first balanced `{...}` or `[...]` that parses.
pub fn extract_json(text: &str) -> Option<Value> {
    let trimmed = text.trim();
    if let Ok(v) = serde_json::from_str::<Value>(trimmed) {
        return Some(v);
    }
    for block in fenced_blocks(trimmed) {
        if let Ok(v) = serde_json::from_str::<Value>(block.trim()) {
            return Some(v);
        }
    }
    embedded_json(trimmed)
}

/// Contents of ``` fences, the language tag (```json) dropped.
fn fenced_blocks(text: &str) -> impl Iterator<Item = &str> {
    text.split("```").skip(1).step_by(2).map(|block| match block.find('\n') {
        Some(nl) if !block[..nl].trim().contains(['{', '[']) => &block[nl + 1..],
        _ => block,
    })
}

/// The first balanced object or array that parses, scanning string-aware so that braces inside
/// strings do not count.
fn embedded_json(text: &str) -> Option<Value> {
    let bytes = text.as_bytes();
    for (start, &b) in bytes.iter().enumerate() {
        if b != b'{' && b != b'[' {
            continue;
        }
        if let Some(end) = balanced_end(&bytes[start..])
            && let Ok(v) = serde_json::from_str::<Value>(&text[start..start + end])
        {
            return Some(v);
        }
    }
    None
}

/// Length of the balanced bracket expression at the start of `bytes`, if it closes.
fn balanced_end(bytes: &[u8]) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in bytes.iter().enumerate() {
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
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn extracts_from_prose_fences_and_plain() {
        assert_eq!(extract_json(r#" {"a": 1} "#), Some(json!({"a": 1})));
        assert_eq!(extract_json("Sure!\n```json\n{\"a\": [1, 2]}\n```\nDone."), Some(json!({"a": [1, 2]})));
        assert_eq!(extract_json("```\n[1]\n```"), Some(json!([1])));
        assert_eq!(
            extract_json(r#"The answer is {"x": "}{", "y": {"z": 2}} ok"#),
            Some(json!({"x": "}{", "y": {"z": 2}}))
        );
        assert_eq!(extract_json("first {broken then [3, 4]"), Some(json!([3, 4])));
        assert_eq!(extract_json("42"), Some(json!(42)));
        assert_eq!(extract_json("no json here"), None);
        assert_eq!(extract_json("{{{{"), None);
        assert_eq!(extract_json("}}]]"), None);
        assert_eq!(extract_json(""), None);
    }

    #[test]
    fn checks_against_the_schema_with_pointers() {
        let check = SchemaCheck::new(&json!({
            "type": "object", "required": ["answer"],
            "properties": {"answer": {"type": "integer"}}
        }))
        .unwrap();
        assert_eq!(check.check(r#"{"answer": 3}"#), Ok(json!({"answer": 3})));
        let err = check.check(r#"{"answer": "three"}"#).unwrap_err();
        assert!(err.contains("/answer"), "{err}");
        assert!(check.check(r#"{}"#).unwrap_err().contains("answer"));
        assert!(check.check("nothing").unwrap_err().contains("no JSON"));
        assert!(SchemaCheck::new(&json!({"type": 12})).is_err());
    }

    #[test]
    fn instruction_goes_into_the_system_message() {
        let schema = json!({"type": "object"});
        let out = with_instruction(&[Message::system("Be brief."), Message::user("hi")], &schema);
        assert_eq!(out.len(), 2);
        assert!(out[0].content.starts_with("Be brief.") && out[0].content.contains("JSON Schema"));
        let out = with_instruction(&[Message::user("hi")], &schema);
        assert_eq!(out.len(), 2);
        assert!(out[0].content.contains("JSON"));
        let out = repair_messages(&[Message::user("q")], "bad", "at /a: oops");
        assert_eq!(out.len(), 3);
        assert!(out[2].content.contains("at /a: oops"));
    }
}
