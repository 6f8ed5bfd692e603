//! The loss: how an output is scored against the expected one.
//!
//! Scores are in `[0, 1]`; a sample is *right* when it scores 1. The built-in metrics are pure
//! functions; a Python metric (`def metric(output, expected)` returning a bool or a number) runs
//! in the same sandbox as the workflow's code nodes, because it is user code.

use std::sync::{Arc, LazyLock};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sgde_sandbox::{CallRequest, Sandbox};
use sgde_workflow::{CompiledParser, NumberPick, OutputParser};
use utoipa::ToSchema;

use crate::error::CompileError;

/// How outputs are compared with expected values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Metric {
    /// Equal JSON values (numbers compared by value, so `42` equals `42.0`).
    Exact,
    /// Both sides read as numbers (from numeric strings too) and equal within `tolerance`.
    Numeric {
        #[serde(default = "default_tolerance")]
        tolerance: f64,
    },
    /// Text with whitespace runs collapsed and trimmed, case-insensitive unless asked.
    Text {
        #[serde(default)]
        case_sensitive: bool,
    },
    /// JSON equality; an output that is a string holding JSON is parsed first.
    Json,
    /// `def metric(output, expected)` in the sandbox, returning a bool or a number in `[0, 1]`.
    Python { code: String },
}

fn default_tolerance() -> f64 {
    1e-6
}

/// The Python entry point of a [`Metric::Python`].
pub const METRIC_FUNCTION: &str = "metric";

impl Metric {
    /// Preflight: parameters in range, Python that parses and defines `metric`.
    pub fn check(&self) -> Result<(), CompileError> {
        match self {
            Metric::Numeric { tolerance } if !tolerance.is_finite() || *tolerance < 0.0 => {
                Err(CompileError::invalid("metric.tolerance", "must be a non-negative number"))
            }
            Metric::Python { code } => {
                // `run_signature` parses the module; a `run` stub appended makes it accept code
                // that (rightly) defines no `run`, while syntax errors keep their line numbers.
                let probe = format!("{code}\n\ndef run():\n    return None\n");
                sgde_workflow::run_signature(&probe)
                    .map_err(|e| CompileError::invalid("metric.code", e.to_string()))?;
                if !code.contains(&format!("def {METRIC_FUNCTION}(")) {
                    return Err(CompileError::invalid(
                        "metric.code",
                        format!("define `def {METRIC_FUNCTION}(output, expected)`"),
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The output parser a single-node workflow should use for this metric, given an expected
    /// value: numbers for numeric metrics, JSON for JSON, text otherwise.
    pub fn natural_parser(&self, expected: &Value) -> OutputParser {
        let number = OutputParser::Number { pick: NumberPick::Last, integer: false };
        match self {
            Metric::Numeric { .. } => number,
            Metric::Json => OutputParser::Json { schema: None },
            Metric::Text { .. } => OutputParser::Text,
            Metric::Exact | Metric::Python { .. } => match expected {
                Value::Number(_) => number,
                Value::String(_) => OutputParser::Text,
                _ => OutputParser::Json { schema: None },
            },
        }
    }
}

/// A metric ready to score, holding the sandbox for Python metrics.
#[derive(Clone)]
/// A metric ready to score outputs (a Python metric runs in the sandbox); shared by the
/// compiler's loss and the service's evaluations so that both score alike.
pub struct Scorer {
    metric: Metric,
    code: Option<Arc<str>>,
    sandbox: Sandbox,
}

impl Scorer {
    pub fn new(metric: Metric, sandbox: Sandbox) -> Self {
        let code = match &metric {
            Metric::Python { code } => Some(Arc::from(code.as_str())),
            _ => None,
        };
        Self { metric, code, sandbox }
    }

    /// The score of `output` against `expected`; `Err` when a Python metric failed (the sample
    /// then scores 0 and the error is kept for the record).
    pub async fn score(&self, output: &Value, expected: &Value) -> Result<f64, String> {
        Ok(match &self.metric {
            Metric::Exact => bool_score(json_equal(output, expected)),
            Metric::Numeric { tolerance } => match (as_number(output), as_number(expected)) {
                (Some(a), Some(b)) => bool_score((a - b).abs() <= *tolerance),
                _ => 0.0,
            },
            Metric::Text { case_sensitive } => bool_score(
                normalise_text(output, *case_sensitive) == normalise_text(expected, *case_sensitive),
            ),
            Metric::Json => bool_score(json_equal(&as_json(output), &as_json(expected))),
            Metric::Python { .. } => return self.python(output, expected).await,
        })
    }

    async fn python(&self, output: &Value, expected: &Value) -> Result<f64, String> {
        let code = self.code.clone().ok_or("the Python metric has no code")?;
        let mut kwargs = Map::new();
        kwargs.insert("output".into(), output.clone());
        kwargs.insert("expected".into(), expected.clone());
        let request = CallRequest { code, function: METRIC_FUNCTION.to_owned(), kwargs, limits: None };
        let value = self.sandbox.call(request).await.map_err(|e| format!("metric failed: {e}"))?.value;
        match value {
            Value::Bool(b) => Ok(bool_score(b)),
            Value::Number(n) => match n.as_f64() {
                Some(x) if x.is_finite() => Ok(x.clamp(0.0, 1.0)),
                _ => Err(format!("metric returned {n}; expected a number in [0, 1]")),
            },
            other => Err(format!("metric returned {other}; expected a bool or a number in [0, 1]")),
        }
    }
}

fn bool_score(right: bool) -> f64 {
    if right { 1.0 } else { 0.0 }
}

/// JSON equality with numbers compared by value.
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

static NUMBER_PARSER: LazyLock<Option<CompiledParser>> = LazyLock::new(|| {
    CompiledParser::compile(&OutputParser::Number { pick: NumberPick::Last, integer: false }).ok()
});

fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => NUMBER_PARSER.as_ref()?.parse(s).ok()?.as_f64(),
        _ => None,
    }
}

fn as_json(value: &Value) -> Value {
    match value {
        Value::String(s) => sgde_llm::structured::extract_json(s).unwrap_or_else(|| value.clone()),
        other => other.clone(),
    }
}

fn normalise_text(value: &Value, case_sensitive: bool) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if case_sensitive { collapsed } else { collapsed.to_lowercase() }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn builtin_comparisons() {
        assert!(json_equal(&json!({"a": [1, 2.0]}), &json!({"a": [1.0, 2]})));
        assert!(!json_equal(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert_eq!(as_number(&json!("The answer is 1,234.")), Some(1234.0));
        assert_eq!(as_number(&json!(true)), None);
        assert_eq!(normalise_text(&json!("  Paris \n is"), false), "paris is");
        assert_eq!(as_json(&json!("```json\n{\"x\": 1}\n```")), json!({"x": 1}));
    }

    #[test]
    fn python_metrics_are_checked_before_running() {
        assert!(
            Metric::Python { code: "def metric(output, expected):\n    return output == expected\n".into() }
                .check()
                .is_ok()
        );
        let err = Metric::Python { code: "def metric(output, expected:\n    return 1\n".into() }
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("syntax error"), "{err}");
        assert!(Metric::Python { code: "def score(a, b):\n    return 1\n".into() }.check().is_err());
        assert!(Metric::Numeric { tolerance: f64::NAN }.check().is_err());
    }
}
