//! Prompt templates: minijinja, strict about undefined variables, bounded in cost.
//!
//! A template that mentions `{{ extract.price }}` when `extract` yields no `price` must fail
//! loudly rather than send the model an empty string. Templates may come from a teacher model,
//! so rendering is also bounded with minijinja's fuel: a `{% for %}` over a huge range stops
//! with an error instead of pinning a core.

use std::collections::BTreeSet;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior, Value as TplValue};
use serde::Serialize;

/// Instructions a single render may execute before it is stopped.
const RENDER_FUEL: u64 = 200_000;

/// A template that failed to compile or render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub message: String,
}

impl From<minijinja::Error> for TemplateError {
    fn from(e: minijinja::Error) -> Self {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Self { message }
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    if let Ok(syntax) = SyntaxConfig::builder().keep_trailing_newline(true).build() {
        env.set_syntax(syntax);
    }
    env.set_fuel(Some(RENDER_FUEL));
    env
}

/// Variables a template reads, as dotted paths up to two levels (`inputs.question`, `extract`).
pub fn variables(source: &str) -> Result<BTreeSet<String>, TemplateError> {
    let env = environment();
    let tpl = env.template_from_str(source)?;
    Ok(tpl
        .undeclared_variables(true)
        .into_iter()
        .filter(|path| {
            let top = path.split('.').next().unwrap_or(path);
            env.globals().all(|(name, _)| name != top)
        })
        .collect())
}

/// A set of compiled templates addressed by name, built once per workflow version so that the
/// hot path only renders.
pub struct TemplateSet {
    env: Environment<'static>,
}

impl Default for TemplateSet {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for TemplateSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateSet").finish_non_exhaustive()
    }
}

impl TemplateSet {
    pub fn new() -> Self {
        Self { env: environment() }
    }

    /// Compiles and stores a template under `name`.
    pub fn add(&mut self, name: impl Into<String>, source: impl Into<String>) -> Result<(), TemplateError> {
        self.env.add_template_owned(name.into(), source.into())?;
        Ok(())
    }

    /// Renders template `name` with `context` (any serialisable map).
    pub fn render<C: Serialize>(&self, name: &str, context: &C) -> Result<String, TemplateError> {
        let tpl = self.env.get_template(name)?;
        Ok(tpl.render(TplValue::from(Serde(context)))?)
    }
}

/// Compiles and renders one template; for one-off uses such as teacher prompts.
pub fn render_once<C: Serialize>(source: &str, context: &C) -> Result<String, TemplateError> {
    let env = environment();
    let tpl = env.template_from_str(source)?;
    Ok(tpl.render(TplValue::from(Serde(context)))?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lists_nested_variables() {
        let vars =
            variables("Q: {{ inputs.question }} given {{ extract }} {% for x in items %}{{ x }}{% endfor %}")
                .unwrap();
        assert!(vars.contains("inputs.question"), "{vars:?}");
        assert!(vars.contains("extract"), "{vars:?}");
        assert!(vars.contains("items"), "{vars:?}");
        assert!(!vars.contains("x"), "{vars:?}");
        let vars = variables("{% for i in range(3) %}{{ i }}{% endfor %}").unwrap();
        assert!(vars.is_empty(), "globals are not variables: {vars:?}");
    }

    #[test]
    fn undefined_is_an_error_not_an_empty_string() {
        let err = render_once("{{ extract.price }}", &json!({"extract": {"cost": 1}})).unwrap_err();
        assert!(err.message.contains("undefined"), "{err}");
    }

    #[test]
    fn renders_json_values() {
        let out = render_once(
            "{{ inputs.q }} {{ extract | tojson }}",
            &json!({"inputs": {"q": "hi"}, "extract": {"a": 1}}),
        )
        .unwrap();
        assert_eq!(out, "hi {\"a\": 1}");
    }

    #[test]
    fn runaway_loops_run_out_of_fuel() {
        let err = render_once("{% for i in range(100000000) %}x{% endfor %}", &json!({})).unwrap_err();
        assert!(!err.message.is_empty());
    }

    #[test]
    fn syntax_errors_are_reported() {
        assert!(variables("{{ unclosed ").is_err());
    }
}
