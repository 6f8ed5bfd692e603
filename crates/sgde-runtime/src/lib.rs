//! Executes a workflow version: a concurrent DAG walk, consensus fan-out/fan-in, and a full trace.
//!
//! The runtime is the hot path of the service: it adds microseconds per node on top of the model
//! calls and the sandbox. It talks to models only through [`ModelClient`] (re-exported from
//! sgde-llm, which sits below it) and to Python only through the sandbox's worker pool.
//!
//! # Layout
//! - [`prepared`]: a spec compiled once for execution (templates, parsers, signatures, indices).
//! - [`executor`]: [`Runtime::execute`], the scheduler and the three node kinds.
//! - [`vote`]: the deterministic vote of consensus nodes.
//! - [`trace`]: what every node saw and produced.
//! - [`error`]: node and run errors, each naming its node.

pub mod error;
pub mod executor;
pub mod prepared;
pub mod trace;
pub mod vote;

pub use error::{NodeError, NodeErrorKind, RunError};
pub use executor::{RunOptions, RunReport, Runtime, RuntimeConfig};
pub use prepared::{PrepareError, PreparedWorkflow};
pub use sgde_llm::{ChatRequest, ChatResponse, ModelClient, ModelError, Usage};
pub use trace::{NodeTrace, Trace};
pub use vote::{Ballot, Tally, TallyEntry, VoteFailure};
