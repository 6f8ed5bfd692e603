//! The compiled workflow artefact: what the compiler produces, the store keeps and the runtime
//! executes.
//!
//! A workflow version is an immutable JSON document (`sgde.workflow/v1`): declared inputs, a DAG
//! of `llm`, `code` and `consensus` nodes, and an output node. This crate owns its types and
//! everything that can be said about one without running it; it depends on nothing else of
//! sgde, and on neither a database nor a web framework.
//!
//! # Layout
//! - [`spec`]: the serde types of spec v1 (deny unknown fields, defaults filled when parsed).
//! - [`node_map`]: nodes keyed by id, remembering duplicate keys for validation.
//! - [`validate`]: all errors of a spec at once, each with a JSON pointer.
//! - [`folder`]: a version as a reviewable folder (manifest + one file per prompt and code step).
//! - [`canonical`]: canonical JSON and the `sha256:` content hash of a version.
//! - [`template`]: strict, fuel-bounded minijinja prompt templates.
//! - [`parse`]: output parsers (text, number, JSON with schema, regex).
//! - [`python`]: parse-only checks of code nodes and the signature of `run`.
//! - [`edit`]: typed edit operations and `apply`, for the compiler.
//! - [`schema`]: the JSON Schema of the spec and of edit operations.

pub mod canonical;
pub mod edit;
pub mod folder;
pub mod node_map;
pub mod parse;
pub mod python;
pub mod schema;
pub mod spec;
pub mod template;
pub mod validate;

pub use canonical::canonical_json;
pub use edit::{EditError, EditOp, OffloadMode, apply};
pub use folder::{FileMap, Folder, FolderError, FolderErrors, Provenance};
pub use node_map::NodeMap;
pub use parse::{CompiledParser, ParseFailure};
pub use python::{RunSignature, run_signature};
pub use schema::{edit_op_json_schema, spec_json_schema};
pub use spec::{
    CodeLimits, CodeNode, ConsensusNode, DecodingParams, Graph, LlmNode, Node, Normalize, NumberPick,
    OutputParser, SCHEMA_ID, TieBreak, Vote, VoteMethod, WorkflowSpec,
};
pub use template::{TemplateError, TemplateSet};
pub use validate::{SpecErrors, ValidationError, validate};
