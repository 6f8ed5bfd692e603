//! Output parsers: from a model's raw text to a value.
//!
//! Small models wrap answers in prose, fences, currency signs and thousands separators; the
//! parsers dig the value out and, when they cannot, say what they expected and show the text so
//! that the trace (and the teacher reading it) can see why.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Number, Value};

use crate::spec::{NumberPick, OutputParser};

/// How much of the offending text a parse error quotes.
const QUOTE_CHARS: usize = 200;

/// A reply that did not contain what the parser expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}; got {quoted}")]
pub struct ParseFailure {
    pub expected: String,
    /// The text, shortened for display.
    pub quoted: String,
}

impl ParseFailure {
    fn new(expected: impl Into<String>, text: &str) -> Self {
        let mut quoted: String = text.chars().take(QUOTE_CHARS).collect();
        if text.chars().count() > QUOTE_CHARS {
            quoted.push('…');
        }
        Self { expected: expected.into(), quoted: format!("{quoted:?}") }
    }
}

/// A parser with its regular expression and JSON Schema compiled, ready for the hot path.
#[derive(Debug)]
pub enum CompiledParser {
    Text,
    Number { pick: NumberPick, integer: bool },
    Json { validator: Option<Box<jsonschema::Validator>> },
    Regex { regex: Regex, group: usize },
}

/// Why a parser configuration is unusable; validation reports it with a pointer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParserConfigError(pub String);

impl CompiledParser {
    pub fn compile(parser: &OutputParser) -> Result<Self, ParserConfigError> {
        Ok(match parser {
            OutputParser::Text => CompiledParser::Text,
            OutputParser::Number { pick, integer } => {
                CompiledParser::Number { pick: *pick, integer: *integer }
            }
            OutputParser::Json { schema } => {
                let validator = match schema {
                    None => None,
                    Some(schema) => Some(Box::new(
                        jsonschema::validator_for(schema)
                            .map_err(|e| ParserConfigError(format!("invalid JSON Schema: {e}")))?,
                    )),
                };
                CompiledParser::Json { validator }
            }
            OutputParser::Regex { pattern, group } => {
                let regex = Regex::new(pattern)
                    .map_err(|e| ParserConfigError(format!("invalid regular expression: {e}")))?;
                if *group >= regex.captures_len() {
                    return Err(ParserConfigError(format!(
                        "group {group} does not exist: the pattern has {} capture group(s)",
                        regex.captures_len() - 1
                    )));
                }
                CompiledParser::Regex { regex, group: *group }
            }
        })
    }

    pub fn parse(&self, text: &str) -> Result<Value, ParseFailure> {
        match self {
            CompiledParser::Text => Ok(Value::String(text.trim().to_owned())),
            CompiledParser::Number { pick, integer } => parse_number(text, *pick, *integer),
            CompiledParser::Json { validator } => {
                let value =
                    extract_json(text).ok_or_else(|| ParseFailure::new("a JSON object or array", text))?;
                if let Some(validator) = validator {
                    let errors: Vec<String> = validator
                        .iter_errors(&value)
                        .take(5)
                        .map(|e| format!("{} at `{}`", e, e.instance_path()))
                        .collect();
                    if !errors.is_empty() {
                        return Err(ParseFailure::new(
                            format!("JSON matching the schema ({})", errors.join("; ")),
                            text,
                        ));
                    }
                }
                Ok(value)
            }
            CompiledParser::Regex { regex, group } => regex
                .captures(text)
                .and_then(|c| c.get(*group))
                .map(|m| Value::String(m.as_str().to_owned()))
                .ok_or_else(|| ParseFailure::new(format!("text matching /{}/", regex.as_str()), text)),
        }
    }
}

/// Numbers as people and models write them: `-1,234.5`, `$12`, `1.5e6`, `−3`, `€ 4`.
static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        (?P<sign>[-+\u{2212}])?\s*
        (?:[$€£¥₹]\s*)?
        (?P<body>
            \d{1,3}(?:,\d{3})+(?:\.\d+)?     # thousands with commas
          | \d{1,3}(?:[\u{00A0}\u{202F}]\d{3})+(?:\.\d+)?   # thousands with (narrow) no-break spaces
          | \d+(?:\.\d+)?(?:[eE][-+]?\d+)?   # plain, decimal, scientific
          | \.\d+
        )",
    )
    .expect("the number pattern is a valid regex")
});

fn parse_number(text: &str, pick: NumberPick, integer: bool) -> Result<Value, ParseFailure> {
    let found: Vec<f64> = NUMBER
        .captures_iter(text)
        .filter_map(|c| {
            let body: String = c["body"]
                .chars()
                .filter(|ch| ch.is_ascii_digit() || matches!(ch, '.' | 'e' | 'E' | '-' | '+'))
                .collect();
            let magnitude: f64 = body.parse().ok()?;
            // `3-5` is a range or a subtraction, not a negative 5: only a sign that does not
            // follow a word character counts.
            let start = c.get(0).map_or(0, |m| m.start());
            let after_word = text[..start].ends_with(|ch: char| ch.is_alphanumeric());
            let negative =
                !after_word && matches!(c.name("sign").map(|m| m.as_str()), Some("-" | "\u{2212}"));
            Some(if negative { -magnitude } else { magnitude })
        })
        .filter(|v| v.is_finite())
        .collect();
    let expected = |what: &str| if integer { format!("{what} integer") } else { format!("{what} number") };
    let value = match pick {
        NumberPick::First => found.first().copied().ok_or_else(|| ParseFailure::new(expected("a"), text))?,
        NumberPick::Last => found.last().copied().ok_or_else(|| ParseFailure::new(expected("a"), text))?,
        NumberPick::Only => match found.as_slice() {
            [one] => *one,
            [] => return Err(ParseFailure::new(expected("exactly one"), text)),
            many => {
                return Err(ParseFailure::new(
                    format!("{} (found {})", expected("exactly one"), many.len()),
                    text,
                ));
            }
        },
    };
    if integer && value.fract() != 0.0 {
        return Err(ParseFailure::new(expected("an"), text));
    }
    Ok(number_value(value))
}

/// A JSON number, integral values as integers so that `42` and `42.0` compare equal downstream.
pub fn number_value(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        Value::Number(Number::from(value as i64))
    } else {
        Number::from_f64(value).map_or(Value::Null, Value::Number)
    }
}

static FENCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?s)```[A-Za-z0-9_-]*[ \t]*\r?\n(.*?)```").expect("the fence pattern is a valid regex")
});

/// The first JSON object or array in `text`: fenced blocks first, then anywhere.
pub fn extract_json(text: &str) -> Option<Value> {
    for fence in FENCE.captures_iter(text) {
        if let Some(v) = first_json_in(&fence[1]) {
            return Some(v);
        }
    }
    first_json_in(text)
}

fn first_json_in(text: &str) -> Option<Value> {
    for (start, ch) in text.char_indices() {
        if ch != '{' && ch != '[' {
            continue;
        }
        let mut stream = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
        if let Some(Ok(value)) = stream.next()
            && (value.is_object() || value.is_array())
        {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn number(text: &str, pick: NumberPick) -> Result<Value, ParseFailure> {
        parse_number(text, pick, false)
    }

    #[test]
    fn numbers_in_prose() {
        assert_eq!(number("The answer is 1,234,567.", NumberPick::Last).unwrap(), json!(1234567));
        assert_eq!(number("She pays $12.50 for 3 eggs", NumberPick::First).unwrap(), json!(12.5));
        assert_eq!(number("-42", NumberPick::Only).unwrap(), json!(-42));
        assert_eq!(number("\u{2212}7 degrees", NumberPick::Only).unwrap(), json!(-7));
        assert_eq!(number("about 1.5e6 stars", NumberPick::Only).unwrap(), json!(1500000));
        assert_eq!(number("pay € 4 and then 5", NumberPick::Last).unwrap(), json!(5));
        assert_eq!(number("1,2,3", NumberPick::Last).unwrap(), json!(3));
        assert_eq!(number("pages 3-5", NumberPick::Last).unwrap(), json!(5));
        assert_eq!(number("it is .5 of it", NumberPick::Only).unwrap(), json!(0.5));
    }

    #[test]
    fn number_failures_say_what_they_wanted() {
        let err = number("no digits here", NumberPick::Last).unwrap_err();
        assert_eq!(err.expected, "a number");
        assert!(err.quoted.contains("no digits here"));
        let err = number("1 and 2", NumberPick::Only).unwrap_err();
        assert!(err.expected.contains("found 2"), "{err}");
        assert!(parse_number("2.5", NumberPick::Only, true).is_err());
    }

    #[test]
    fn json_in_fences_and_prose() {
        assert_eq!(extract_json("Sure!\n```json\n{\"a\": 1}\n```").unwrap(), json!({"a": 1}));
        assert_eq!(extract_json("here: [1, 2] and {\"b\": 2}").unwrap(), json!([1, 2]));
        assert_eq!(extract_json("{broken {\"c\": 3}").unwrap(), json!({"c": 3}));
        assert!(extract_json("nothing").is_none());
    }

    #[test]
    fn json_schema_is_enforced() {
        let parser = CompiledParser::compile(&OutputParser::Json {
            schema: Some(
                json!({"type": "object", "required": ["x"], "properties": {"x": {"type": "number"}}}),
            ),
        })
        .unwrap();
        assert_eq!(parser.parse("{\"x\": 3}").unwrap(), json!({"x": 3}));
        let err = parser.parse("{\"y\": 3}").unwrap_err();
        assert!(err.expected.contains("schema"), "{err}");
    }

    #[test]
    fn regex_capture_and_config_errors() {
        let parser =
            CompiledParser::compile(&OutputParser::Regex { pattern: r"Answer:\s*(\w+)".into(), group: 1 })
                .unwrap();
        assert_eq!(parser.parse("so. Answer: yes").unwrap(), json!("yes"));
        assert!(parser.parse("no").is_err());
        assert!(CompiledParser::compile(&OutputParser::Regex { pattern: "(".into(), group: 1 }).is_err());
        assert!(CompiledParser::compile(&OutputParser::Regex { pattern: "a".into(), group: 1 }).is_err());
    }
}
