//! The serde types of workflow spec v1.
//!
//! A spec is data, not code: the compiler edits it, the store hashes it, the runtime walks it.
//! Every struct denies unknown fields, because a misspelt field in a hand-written or
//! teacher-written spec silently falling back to a default is the worst kind of bug to find in
//! production. Defaults are filled in when parsing, so the canonical form (and hence the content
//! hash) of a spec does not depend on whether a default was spelt out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::node_map::NodeMap;

/// The schema id every v1 spec carries in its `schema` field.
pub const SCHEMA_ID: &str = "sgde.workflow/v1";

/// A compiled workflow: declared inputs, a DAG of nodes and the node whose value is the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSpec {
    /// Always `sgde.workflow/v1` for this version of the format.
    #[schema(example = "sgde.workflow/v1")]
    pub schema: String,
    /// What the workflow does, for people and for the teacher model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the inputs object (`type: object` with `properties`).
    #[schema(value_type = Object)]
    pub inputs: Value,
    /// Id of the node whose value is the workflow's output.
    pub output: String,
    /// The nodes, keyed by id. Ids are identifiers (`[A-Za-z_][A-Za-z0-9_]*`).
    pub nodes: NodeMap,
}

/// One step of the DAG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Node {
    /// A call to a language model.
    Llm(LlmNode),
    /// Deterministic Python run in the sandbox.
    Code(CodeNode),
    /// N concurrent samples of a sub-graph combined by a vote.
    Consensus(ConsensusNode),
}

/// A language-model step: a system prompt and a user template rendered over the inputs and the
/// dependencies' values, then an output parser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LlmNode {
    /// Ids of the nodes whose values the templates may use.
    #[serde(default)]
    pub deps: Vec<String>,
    /// Endpoint name or role (`student`, `teacher`) that answers this step.
    #[serde(default = "default_model")]
    pub model: String,
    /// System prompt; a minijinja template like `prompt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// User message template (minijinja, strict about undefined variables). Variables:
    /// `inputs` and each dependency by id.
    pub prompt: String,
    #[serde(default)]
    pub decoding: DecodingParams,
    #[serde(default)]
    pub parser: OutputParser,
    /// Deadline for this step, including retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Fields this format does not know. Kept so that validation can report each one with its
    /// pointer (rather than failing on the first), never serialised.
    #[serde(flatten, skip_serializing)]
    #[schema(ignore)]
    pub unknown: BTreeMap<String, Value>,
}

fn default_model() -> String {
    "student".to_owned()
}

/// Decoding parameters for an `llm` node; unset means the endpoint's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecodingParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Base seed; consensus samples add their sample index to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
}

/// A Python step. The code defines `def run(...)`; each parameter is `inputs` or a dependency id
/// and receives that value; `**kwargs` receives all of them. It returns JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CodeNode {
    #[serde(default)]
    pub deps: Vec<String>,
    /// Python source defining `run`.
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<CodeLimits>,
    /// Fields this format does not know. Kept so that validation can report each one with its
    /// pointer (rather than failing on the first), never serialised.
    #[serde(flatten, skip_serializing)]
    #[schema(ignore)]
    pub unknown: BTreeMap<String, Value>,
}

/// Per-step sandbox limits; unset fields take the service's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_kb: Option<u64>,
}

/// Structural consensus: `samples` concurrent runs of `body`, combined by `vote`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConsensusNode {
    /// Outer nodes the body may use (body nodes list them in their own `deps`).
    #[serde(default)]
    pub deps: Vec<String>,
    /// How many samples of the body run concurrently (1..=64).
    pub samples: u32,
    pub body: Graph,
    #[serde(default)]
    pub vote: Vote,
    /// At most this many samples in flight at once; unset = all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Fields this format does not know. Kept so that validation can report each one with its
    /// pointer (rather than failing on the first), never serialised.
    #[serde(flatten, skip_serializing)]
    #[schema(ignore)]
    pub unknown: BTreeMap<String, Value>,
}

/// A sub-graph: nodes and the one whose value it yields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Graph {
    /// Body nodes keyed by id. Ids are unique in the whole spec, except that the body's output
    /// node may carry its consensus node's own id (so wrapping a node keeps its name).
    #[schema(no_recursion)]
    pub nodes: NodeMap,
    pub output: String,
}

/// How the samples of a consensus node are combined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Vote {
    #[serde(default)]
    pub method: VoteMethod,
    /// Body node whose value is voted on; default: the body's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over: Option<String>,
    #[serde(default)]
    pub normalize: Normalize,
    #[serde(default)]
    pub tie_break: TieBreak,
    /// Minimum number of non-abstaining samples for the vote to count (default 1).
    #[serde(default = "default_quorum")]
    pub quorum: u32,
}

fn default_quorum() -> u32 {
    1
}

impl Default for Vote {
    fn default() -> Self {
        Self {
            method: VoteMethod::default(),
            over: None,
            normalize: Normalize::default(),
            tie_break: TieBreak::default(),
            quorum: default_quorum(),
        }
    }
}

/// `majority`: the winner needs more than half of the votes cast; `plurality`: most votes wins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VoteMethod {
    Majority,
    #[default]
    Plurality,
}

/// Which values count as the same vote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[derive(Default)]
pub enum Normalize {
    /// Numbers (or numeric strings) equal within an absolute `tolerance`.
    Number {
        #[serde(default = "default_tolerance")]
        tolerance: f64,
    },
    /// Text with surrounding whitespace trimmed and inner runs collapsed.
    Text {
        #[serde(default)]
        case_sensitive: bool,
    },
    /// Canonical JSON equality.
    #[default]
    Json,
}

fn default_tolerance() -> f64 {
    1e-9
}

/// A fixed, deterministic tie-break so that the same samples always give the same answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TieBreak {
    /// The value first voted for by the lowest sample index.
    #[default]
    FirstSample,
    /// The smallest value (numbers numerically, else canonical JSON text order).
    Smallest,
    /// The largest value.
    Largest,
    /// A tie is a failed vote.
    Fail,
}

/// How the raw text of a model reply becomes a value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum OutputParser {
    /// The text, trimmed.
    #[default]
    Text,
    /// A number found in the text.
    Number {
        #[serde(default)]
        pick: NumberPick,
        /// Fail unless the number is an integer.
        #[serde(default)]
        integer: bool,
    },
    /// The first JSON object or array in the text (also inside ``` fences), optionally
    /// validated against a JSON Schema.
    Json {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<Object>)]
        schema: Option<Value>,
    },
    /// A capture group of a regular expression (Rust `regex` syntax).
    Regex {
        pattern: String,
        #[serde(default = "default_group")]
        group: usize,
    },
}

fn default_group() -> usize {
    1
}

/// Which number to take when the text has several.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NumberPick {
    First,
    /// Models usually state the final answer last.
    #[default]
    Last,
    /// Exactly one number must be present.
    Only,
}

impl Node {
    /// The node's dependencies, whatever its kind.
    pub fn deps(&self) -> &[String] {
        match self {
            Node::Llm(n) => &n.deps,
            Node::Code(n) => &n.deps,
            Node::Consensus(n) => &n.deps,
        }
    }

    pub fn deps_mut(&mut self) -> &mut Vec<String> {
        match self {
            Node::Llm(n) => &mut n.deps,
            Node::Code(n) => &mut n.deps,
            Node::Consensus(n) => &mut n.deps,
        }
    }

    /// Names of fields the format does not know, for validation.
    pub fn unknown_fields(&self) -> impl Iterator<Item = &String> {
        match self {
            Node::Llm(n) => n.unknown.keys(),
            Node::Code(n) => n.unknown.keys(),
            Node::Consensus(n) => n.unknown.keys(),
        }
    }

    /// `llm`, `code` or `consensus`, as in the JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Llm(_) => "llm",
            Node::Code(_) => "code",
            Node::Consensus(_) => "consensus",
        }
    }
}

impl WorkflowSpec {
    /// Declared input names (the `properties` of the inputs schema), if the schema lists them.
    pub fn input_names(&self) -> Option<Vec<String>> {
        declared_input_names(&self.inputs)
    }
}

/// Property names of an object schema, or `None` when the schema allows any property.
pub(crate) fn declared_input_names(schema: &Value) -> Option<Vec<String>> {
    let open = schema.get("additionalProperties").is_some_and(|v| v != &Value::Bool(false));
    let props = schema.get("properties")?.as_object()?;
    if open {
        return None;
    }
    Some(props.keys().cloned().collect())
}
