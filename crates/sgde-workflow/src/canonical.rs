//! Canonical JSON and the content hash of a spec.
//!
//! The hash identifies a version by what it does, not how it was typed: posting the same spec
//! with its keys in another order, or with a default spelt out, must find the existing version.
//! Canonical form (JCS-like): object keys sorted by their UTF-16 code units as RFC 8785 asks,
//! no insignificant whitespace, numbers as serde_json prints them, strings JSON-escaped.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::spec::WorkflowSpec;

/// Writes `value` in canonical form.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Lowercase hex sha256 of the canonical form of anything serialisable.
pub fn content_hash<T: Serialize>(value: &T) -> String {
    let value = serde_json::to_value(value).unwrap_or(Value::Null);
    let digest = Sha256::digest(canonical_json(&value).as_bytes());
    hex::encode(digest)
}

impl WorkflowSpec {
    /// The canonical JSON text of this spec (defaults filled in, keys sorted).
    pub fn canonical_json(&self) -> String {
        canonical_json(&serde_json::to_value(self).unwrap_or(Value::Null))
    }

    /// `sha256:<hex>` of the canonical form: the version's content hash.
    pub fn content_hash(&self) -> String {
        format!("sha256:{}", content_hash(self))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let a = json!({"b": 1, "a": [1, {"y": true, "x": null}]});
        let b: Value = serde_json::from_str("{ \"a\" : [1, {\"x\": null, \"y\": true}], \"b\": 1 }").unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(canonical_json(&a), r#"{"a":[1,{"x":null,"y":true}],"b":1}"#);
    }

    #[test]
    fn keys_sort_by_utf16() {
        let v = json!({"\u{e9}": 1, "z": 2, "\u{1F600}": 3});
        assert_eq!(canonical_json(&v), "{\"z\":2,\"\u{e9}\":1,\"\u{1F600}\":3}");
    }
}
