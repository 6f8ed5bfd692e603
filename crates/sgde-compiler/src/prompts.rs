//! The teacher prompts and reply schemas, compiled into the crate from `prompts/`.
//!
//! They are product, not plumbing: reviewed like code, and the files are the single source. The
//! system prompts are static (so a provider's prompt cache can reuse them); everything that
//! changes per iteration goes into the user message. Templates use `{{ name }}` placeholders
//! filled in a single pass by `fill` — not minijinja, because the prompts quote minijinja
//! syntax (`{{ inputs.question }}`) that must reach the teacher verbatim.

use std::sync::LazyLock;

use serde_json::Value;
use sgde_llm::structured::SchemaCheck;

const OVERVIEW: &str = include_str!("../prompts/sgde.md");
const CRITIQUE_SYSTEM: &str = include_str!("../prompts/critique_system.md");
const EDIT_SYSTEM: &str = include_str!("../prompts/edit_system.md");
pub(crate) const CRITIQUE_USER: &str = include_str!("../prompts/critique_user.md");
pub(crate) const EDIT_USER: &str = include_str!("../prompts/edit_user.md");
pub(crate) const REPAIR_USER: &str = include_str!("../prompts/repair_user.md");
const CRITIQUE_SCHEMA: &str = include_str!("../prompts/critique.schema.json");
const EDIT_SCHEMA: &str = include_str!("../prompts/edit.schema.json");

/// Everything the teacher steps need, built once.
pub(crate) struct Prompts {
    pub(crate) critique_system: String,
    pub(crate) edit_system: String,
    pub(crate) critique_schema: Value,
    pub(crate) edit_schema: Value,
    pub(crate) critique_check: SchemaCheck,
    pub(crate) edit_check: SchemaCheck,
}

static PROMPTS: LazyLock<Prompts> = LazyLock::new(|| {
    let overview = OVERVIEW.trim();
    let critique_schema = critique_reply_schema();
    let edit_schema = edit_reply_schema();
    Prompts {
        critique_system: fill(CRITIQUE_SYSTEM, &[("overview", overview)]),
        edit_system: fill(EDIT_SYSTEM, &[("overview", overview)]),
        // The schema files are part of the crate and a unit test compiles them; failing here
        // means the crate was built from broken sources.
        critique_check: SchemaCheck::new(&critique_schema).expect("prompts/critique.schema.json compiles"),
        edit_check: SchemaCheck::new(&edit_schema).expect("prompts/edit.schema.json compiles"),
        critique_schema,
        edit_schema,
    }
});

pub(crate) fn prompts() -> &'static Prompts {
    &PROMPTS
}

/// JSON Schema of the critique step's reply.
pub fn critique_reply_schema() -> Value {
    serde_json::from_str(CRITIQUE_SCHEMA).unwrap_or(Value::Null)
}

/// JSON Schema of the edit step's reply: `prompts/edit.schema.json` with the edit-op
/// definitions of sgde-workflow, so that the two never drift apart.
pub fn edit_reply_schema() -> Value {
    let mut schema: Value = serde_json::from_str(EDIT_SCHEMA).unwrap_or(Value::Null);
    let ops = sgde_workflow::edit_op_json_schema();
    if let (Some(defs), Some(op_defs)) = (schema.get_mut("$defs"), ops.get("$defs")) {
        *defs = op_defs.clone();
    }
    schema
}

/// Replaces each `{{ name }}` whose name is in `values`, in one pass: inserted text is never
/// scanned again, and unknown placeholders stay as they are.
pub(crate) fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + values.iter().map(|(_, v)| v.len()).sum::<usize>());
    let mut rest = template;
    while let Some(start) = rest.find("{{ ") {
        let after = &rest[start + 3..];
        let Some(end) = after.find(" }}") else { break };
        let name = &after[..end];
        out.push_str(&rest[..start]);
        match values.iter().find(|(k, _)| *k == name) {
            Some((_, value)) => out.push_str(value),
            None => out.push_str(&rest[start..start + 3 + end + 3]),
        }
        rest = &after[end + 3..];
    }
    out.push_str(rest);
    out
}

/// The placeholders a template uses, for tests that every one is filled.
#[cfg(test)]
pub(crate) fn placeholders(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{ ") {
        let after = &rest[start + 3..];
        let Some(end) = after.find(" }}") else { break };
        names.push(after[..end].to_owned());
        rest = &after[end + 3..];
    }
    names
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn schemas_compile_and_accept_the_documented_shapes() {
        let p = prompts();
        assert!(p.critique_check.check(r#"{"critiques": [{"node": "a", "critique": "b"}]}"#).is_ok());
        assert!(p.critique_check.check(r#"{"critiques": [{"node": "a"}]}"#).is_err());
        let edits = json!({"edits": [
            {"op": "set_prompt", "node": "answer", "prompt": "x"},
            {"op": "wrap_in_consensus", "nodes": ["answer"], "samples": 5}
        ]});
        assert!(
            p.edit_check.check(&edits.to_string()).is_ok(),
            "{:?}",
            p.edit_check.check(&edits.to_string())
        );
        assert!(p.edit_check.check(r#"{"edits": [{"op": "teleport", "node": "a"}]}"#).is_err());
        assert!(p.edit_check.check(r#"{"edits": []}"#).is_err());
    }

    #[test]
    fn system_prompts_keep_template_syntax_and_include_the_overview() {
        let p = prompts();
        assert!(p.edit_system.contains("{{ inputs.question }}"));
        assert!(p.edit_system.contains("Capability offloading"));
        assert!(p.critique_system.starts_with("You are the critic"));
        assert!(!p.critique_system.contains("{{ overview }}"));
    }

    #[test]
    fn user_templates_use_the_placeholders_the_loop_fills() {
        // iteration.rs fills exactly these; a new placeholder must be added there too.
        let critique = [
            "task",
            "spec",
            "score",
            "right",
            "runs",
            "examples",
            "samples",
            "failed_runs",
            "per_example",
            "variance",
            "failing",
            "passing",
            "rejected",
            "allowed",
        ];
        let edit = [
            "task",
            "spec",
            "score",
            "right",
            "runs",
            "diagnosis",
            "critiques",
            "variance",
            "failing",
            "rejected",
            "allowed",
        ];
        let mut found = placeholders(CRITIQUE_USER);
        found.dedup();
        assert_eq!(found, critique);
        assert_eq!(placeholders(EDIT_USER), edit);
        assert_eq!(placeholders(REPAIR_USER), ["error"]);
    }

    #[test]
    fn fill_is_single_pass() {
        assert_eq!(
            fill("a {{ x }} b {{ y }} {{ z }}", &[("x", "{{ y }}"), ("y", "2")]),
            "a {{ y }} b 2 {{ z }}"
        );
        assert_eq!(fill("{{ x", &[("x", "1")]), "{{ x");
    }
}
