//! Validation: every problem of a spec at once, each with a JSON pointer and a plain message.
//!
//! A teacher model edits specs in a loop and a user edits them by hand; both need *all* the
//! errors in one answer, pointing at the field, not the first one. Nothing is executed:
//! templates and Python are only parsed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::node_map::NodeMap;
use crate::parse::CompiledParser;
use crate::python::run_signature;
use crate::spec::{
    CodeNode, ConsensusNode, LlmNode, Node, Normalize, SCHEMA_ID, WorkflowSpec, declared_input_names,
};
use crate::template;

/// Most samples one consensus node may fan out to.
pub const MAX_SAMPLES: u32 = 64;

/// One problem in a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ValidationError {
    /// RFC 6901 JSON pointer to the offending field, e.g. `/nodes/solve/vote/quorum`.
    pub pointer: String,
    pub message: String,
}

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pointer = if self.pointer.is_empty() { "/" } else { &self.pointer };
        write!(f, "{pointer}: {}", self.message)
    }
}

/// All the problems of a spec; empty means valid.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("invalid workflow spec: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct SpecErrors(pub Vec<ValidationError>);

/// Escapes one JSON pointer reference token.
pub fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Words an id may not be: they are Python keywords (ids become parameter names of `run`) or
/// names the templates and the runtime already use.
const RESERVED: &[&str] = &[
    "inputs",
    "loop",
    "self",
    "super",
    "namespace",
    "range",
    "true",
    "false",
    "none",
    "False",
    "None",
    "True",
    "and",
    "as",
    "assert",
    "async",
    "await",
    "break",
    "class",
    "continue",
    "def",
    "del",
    "elif",
    "else",
    "except",
    "finally",
    "for",
    "from",
    "global",
    "if",
    "import",
    "in",
    "is",
    "lambda",
    "nonlocal",
    "not",
    "or",
    "pass",
    "raise",
    "return",
    "try",
    "while",
    "with",
    "yield",
];

impl WorkflowSpec {
    /// Parses and validates a spec from JSON; serde errors also carry the pointer of the field.
    pub fn from_value(value: Value) -> Result<WorkflowSpec, SpecErrors> {
        let spec: WorkflowSpec = serde_path_to_error::deserialize(&value).map_err(|e| {
            let pointer = path_to_pointer(e.path());
            let (pointer, message) = refine_node_error(&value, pointer, e.into_inner().to_string());
            SpecErrors(vec![ValidationError { pointer, message }])
        })?;
        spec.validate()?;
        Ok(spec)
    }

    /// Parses and validates a spec from JSON text. Parsing the text directly (not via a
    /// `Value`) is what lets duplicate node ids be seen.
    pub fn from_json(text: &str) -> Result<WorkflowSpec, SpecErrors> {
        let mut de = serde_json::Deserializer::from_str(text);
        match WorkflowSpec::deserialize(&mut de).and_then(|spec| de.end().map(|()| spec)) {
            Ok(spec) => {
                spec.validate()?;
                Ok(spec)
            }
            // Re-parse through a `Value` for an error with a precise pointer.
            Err(_) => match serde_json::from_str::<Value>(text) {
                Ok(value) => Self::from_value(value),
                Err(e) => Err(SpecErrors(vec![ValidationError {
                    pointer: String::new(),
                    message: format!("not valid JSON: {e}"),
                }])),
            },
        }
    }

    /// Checks everything that can be checked without running anything.
    pub fn validate(&self) -> Result<(), SpecErrors> {
        let errors = validate(self);
        if errors.is_empty() { Ok(()) } else { Err(SpecErrors(errors)) }
    }
}

/// Nodes are internally tagged by `kind`, which makes serde lose the path inside a node; when an
/// error points at a node, deserialise that node again as its variant to find the field.
fn refine_node_error(root: &Value, mut pointer: String, mut message: String) -> (String, String) {
    fn variant_error<T: serde::de::DeserializeOwned>(node: Value) -> Option<(String, String)> {
        serde_path_to_error::deserialize::<_, T>(node)
            .err()
            .map(|e| (path_to_pointer(e.path()), e.into_inner().to_string()))
    }
    while let Some(Value::Object(node)) = root.pointer(&pointer) {
        let at_node = pointer.rsplit('/').nth(1) == Some("nodes");
        let mut fields = node.clone();
        let kind = fields.remove("kind");
        let inner = match kind.as_ref().and_then(Value::as_str) {
            _ if !at_node => None,
            Some("llm") => variant_error::<LlmNode>(Value::Object(fields)),
            Some("code") => variant_error::<CodeNode>(Value::Object(fields)),
            Some("consensus") => variant_error::<ConsensusNode>(Value::Object(fields)),
            Some(other) => {
                let message = format!("unknown node kind `{other}`; expected `llm`, `code` or `consensus`");
                return (format!("{pointer}/kind"), message);
            }
            None => return (pointer, "missing field `kind` (`llm`, `code` or `consensus`)".to_owned()),
        };
        match inner {
            Some((inner_pointer, inner_message)) if !inner_pointer.is_empty() => {
                pointer.push_str(&inner_pointer);
                message = inner_message;
            }
            Some((_, inner_message)) => {
                message = inner_message;
                break;
            }
            None => break,
        }
    }
    (pointer, message)
}

pub(crate) fn path_to_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
            Segment::Map { key } => pointer.push_str(&format!("/{}", escape_pointer_token(key))),
            Segment::Enum { variant } => pointer.push_str(&format!("/{}", escape_pointer_token(variant))),
            Segment::Unknown => {}
        }
    }
    pointer
}

/// Every problem of `spec`.
pub fn validate(spec: &WorkflowSpec) -> Vec<ValidationError> {
    let mut v = Validator { errors: Vec::new(), seen: BTreeMap::new(), inputs: None };
    if spec.schema != SCHEMA_ID {
        v.error("/schema", format!("unsupported schema `{}`; expected `{SCHEMA_ID}`", spec.schema));
    }
    v.check_inputs_schema(&spec.inputs);
    v.inputs = declared_input_names(&spec.inputs);
    v.graph(&spec.nodes, &spec.output, "", &BTreeSet::new(), None);
    v.errors
}

struct Validator {
    errors: Vec<ValidationError>,
    /// Every id seen so far with its pointer, for global uniqueness.
    seen: BTreeMap<String, String>,
    /// Declared input names, when the inputs schema is closed.
    inputs: Option<Vec<String>>,
}

impl Validator {
    fn error(&mut self, pointer: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ValidationError { pointer: pointer.into(), message: message.into() });
    }

    fn check_inputs_schema(&mut self, schema: &Value) {
        if !schema.is_object() {
            self.error("/inputs", "must be a JSON Schema object");
            return;
        }
        if let Some(ty) = schema.get("type")
            && ty != "object"
        {
            self.error("/inputs/type", "inputs are an object: `type` must be \"object\"");
        }
        if let Err(e) = jsonschema::validator_for(schema) {
            self.error("/inputs", format!("invalid JSON Schema: {e}"));
        }
    }

    /// Validates one graph (the top level or a consensus body). `outer` holds the names the
    /// graph's nodes may depend on besides each other; `enclosing` is the consensus node id.
    fn graph(
        &mut self,
        nodes: &NodeMap,
        output: &str,
        base: &str,
        outer: &BTreeSet<String>,
        enclosing: Option<&str>,
    ) {
        for dup in nodes.duplicates() {
            self.error(
                format!("{base}/nodes/{}", escape_pointer_token(dup)),
                format!("duplicate node id `{dup}`"),
            );
        }
        if nodes.is_empty() {
            self.error(format!("{base}/nodes"), "a graph needs at least one node");
        }
        for (id, node) in nodes.iter() {
            let ptr = format!("{base}/nodes/{}", escape_pointer_token(id));
            self.check_id(id, &ptr, enclosing.filter(|e| *e == id && output == id).is_some());
            self.check_deps(id, node.deps(), nodes, outer, &ptr);
            for field in node.unknown_fields() {
                self.error(
                    format!("{ptr}/{}", escape_pointer_token(field)),
                    format!("unknown field `{field}`"),
                );
            }
            match node {
                Node::Llm(n) => self.llm(n, &ptr),
                Node::Code(n) => self.code(n, &ptr),
                Node::Consensus(n) => self.consensus(id, n, &ptr),
            }
        }
        let output_ptr = format!("{base}/output");
        if !nodes.contains(output) {
            self.error(output_ptr, format!("output node `{output}` does not exist"));
            return;
        }
        if self.cycles(nodes, base) {
            return;
        }
        let contributing = ancestors(nodes, output);
        for id in nodes.ids() {
            if !contributing.contains(id.as_str()) {
                self.error(
                    format!("{base}/nodes/{}", escape_pointer_token(id)),
                    format!(
                        "node `{id}` does not contribute to the output `{output}`: nothing depends on it"
                    ),
                );
            }
        }
    }

    fn check_id(&mut self, id: &str, ptr: &str, may_shadow_enclosing: bool) {
        let valid_syntax = id.len() <= 64
            && id.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_syntax {
            self.error(ptr, format!("invalid node id `{id}`: use letters, digits and `_`, not starting with a digit, at most 64 characters"));
        } else if RESERVED.contains(&id) {
            self.error(ptr, format!("node id `{id}` is reserved"));
        }
        if may_shadow_enclosing {
            return;
        }
        if let Some(first) = self.seen.get(id) {
            let message = format!("duplicate node id `{id}` (also at {first})");
            self.error(ptr, message);
        } else {
            self.seen.insert(id.to_owned(), ptr.to_owned());
        }
    }

    fn check_deps(
        &mut self,
        id: &str,
        deps: &[String],
        nodes: &NodeMap,
        outer: &BTreeSet<String>,
        ptr: &str,
    ) {
        let mut listed = BTreeSet::new();
        for (i, dep) in deps.iter().enumerate() {
            let dep_ptr = format!("{ptr}/deps/{i}");
            if dep == id {
                self.error(dep_ptr, format!("node `{id}` depends on itself"));
            } else if !listed.insert(dep.as_str()) {
                self.error(dep_ptr, format!("dependency `{dep}` is listed twice"));
            } else if !nodes.contains(dep) && !outer.contains(dep) {
                let hint = if outer.is_empty() {
                    String::new()
                } else {
                    " (inside a consensus body, outer nodes must be deps of the consensus node)".to_owned()
                };
                self.error(dep_ptr, format!("unknown dependency `{dep}`{hint}"));
            }
        }
    }

    fn llm(&mut self, node: &LlmNode, ptr: &str) {
        if node.model.trim().is_empty() {
            self.error(format!("{ptr}/model"), "model must name an endpoint or role");
        }
        if let Some(system) = &node.system {
            self.template(system, &node.deps, &format!("{ptr}/system"));
        }
        self.template(&node.prompt, &node.deps, &format!("{ptr}/prompt"));
        let d = &node.decoding;
        if let Some(t) = d.temperature.filter(|t| !(0.0..=2.0).contains(t)) {
            self.error(format!("{ptr}/decoding/temperature"), format!("must be between 0 and 2, got {t}"));
        }
        if let Some(p) = d.top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
            self.error(format!("{ptr}/decoding/top_p"), format!("must be in (0, 1], got {p}"));
        }
        if d.max_tokens == Some(0) {
            self.error(format!("{ptr}/decoding/max_tokens"), "must be at least 1");
        }
        if node.timeout_ms == Some(0) {
            self.error(format!("{ptr}/timeout_ms"), "must be at least 1");
        }
        if let Err(e) = CompiledParser::compile(&node.parser) {
            self.error(format!("{ptr}/parser"), e.0);
        }
    }

    fn template(&mut self, source: &str, deps: &[String], ptr: &str) {
        let vars = match template::variables(source) {
            Ok(vars) => vars,
            Err(e) => {
                self.error(ptr, format!("template syntax error: {}", e.message));
                return;
            }
        };
        for var in vars {
            let mut parts = var.splitn(2, '.');
            let top = parts.next().unwrap_or_default();
            let field = parts.next();
            if top == "inputs" {
                if let (Some(field), Some(declared)) = (field, &self.inputs)
                    && !declared.iter().any(|d| d == field)
                {
                    let message =
                        format!("template uses `inputs.{field}`, which the inputs schema does not declare");
                    self.error(ptr, message);
                }
            } else if !deps.iter().any(|d| d == top) {
                self.error(
                    ptr,
                    format!("template uses `{top}`, which is neither `inputs` nor a dependency of this node"),
                );
            }
        }
    }

    fn code(&mut self, node: &CodeNode, ptr: &str) {
        match run_signature(&node.code) {
            Err(e) => self.error(format!("{ptr}/code"), e.to_string()),
            Ok(sig) => {
                for param in &sig.params {
                    if param != "inputs" && !node.deps.contains(param) {
                        self.error(
                            format!("{ptr}/code"),
                            format!(
                                "`run` parameter `{param}` is neither `inputs` nor a dependency of this node"
                            ),
                        );
                    }
                }
            }
        }
        if let Some(limits) = &node.limits {
            for (name, value) in [
                ("cpu_ms", limits.cpu_ms),
                ("wall_ms", limits.wall_ms),
                ("memory_mb", limits.memory_mb),
                ("output_kb", limits.output_kb),
            ] {
                if value == Some(0) {
                    self.error(format!("{ptr}/limits/{name}"), "must be at least 1");
                }
            }
        }
    }

    fn consensus(&mut self, id: &str, node: &ConsensusNode, ptr: &str) {
        if node.samples < 1 || node.samples > MAX_SAMPLES {
            self.error(
                format!("{ptr}/samples"),
                format!("must be between 1 and {MAX_SAMPLES}, got {}", node.samples),
            );
        }
        let vote = &node.vote;
        if vote.quorum < 1 {
            self.error(format!("{ptr}/vote/quorum"), "must be at least 1");
        } else if vote.quorum > node.samples {
            self.error(
                format!("{ptr}/vote/quorum"),
                format!("quorum {} is larger than samples {}", vote.quorum, node.samples),
            );
        }
        if let Some(over) = &vote.over
            && !node.body.nodes.contains(over)
        {
            self.error(format!("{ptr}/vote/over"), format!("vote target `{over}` is not a node of the body"));
        }
        if let Normalize::Number { tolerance } = vote.normalize
            && !(tolerance.is_finite() && tolerance >= 0.0)
        {
            self.error(format!("{ptr}/vote/normalize/tolerance"), "must be a finite number ≥ 0");
        }
        if node.max_concurrency == Some(0) {
            self.error(format!("{ptr}/max_concurrency"), "must be at least 1");
        }
        let outer: BTreeSet<String> = node.deps.iter().cloned().collect();
        self.graph(&node.body.nodes, &node.body.output, &format!("{ptr}/body"), &outer, Some(id));
    }

    /// Reports every cycle among a graph's own nodes; true when there was one.
    fn cycles(&mut self, nodes: &NodeMap, base: &str) -> bool {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Visiting,
            Done,
        }
        fn visit<'a>(
            id: &'a str,
            nodes: &'a NodeMap,
            marks: &mut BTreeMap<&'a str, Mark>,
            stack: &mut Vec<&'a str>,
            found: &mut Vec<Vec<String>>,
        ) {
            match marks.get(id) {
                Some(Mark::Done) => return,
                Some(Mark::Visiting) => {
                    let start = stack.iter().position(|s| *s == id).unwrap_or(0);
                    let mut cycle: Vec<String> = stack[start..].iter().map(|s| s.to_string()).collect();
                    cycle.push(id.to_owned());
                    found.push(cycle);
                    return;
                }
                None => {}
            }
            marks.insert(id, Mark::Visiting);
            stack.push(id);
            if let Some(node) = nodes.get(id) {
                for dep in node.deps() {
                    if nodes.contains(dep) && dep != id {
                        visit(dep, nodes, marks, stack, found);
                    }
                }
            }
            stack.pop();
            marks.insert(id, Mark::Done);
        }
        let mut marks = BTreeMap::new();
        let mut found = Vec::new();
        for id in nodes.ids() {
            visit(id, nodes, &mut marks, &mut Vec::new(), &mut found);
        }
        for cycle in &found {
            let ptr = format!("{base}/nodes/{}/deps", escape_pointer_token(&cycle[0]));
            // Dependencies point backwards; show the cycle in execution order.
            let shown: Vec<&str> = cycle.iter().rev().map(String::as_str).collect();
            self.error(ptr, format!("dependency cycle: {}", shown.join(" → ")));
        }
        !found.is_empty()
    }
}

/// `target` and every node it depends on, transitively, within one graph.
pub(crate) fn ancestors<'a>(nodes: &'a NodeMap, target: &'a str) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![target];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        if let Some(node) = nodes.get(id) {
            stack.extend(node.deps().iter().map(String::as_str).filter(|d| nodes.contains(d)));
        }
    }
    seen
}
