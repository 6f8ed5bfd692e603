//! The record of a run: what every node saw, said and produced.
//!
//! Traces are what the compiler's teacher reads to write its critiques and what an operator reads
//! when an answer is wrong, so they keep the rendered prompt, the raw model output, the parsed
//! value, code output or error, timings and tokens, per node and per consensus sample.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sgde_llm::Usage;

use crate::error::NodeError;
use crate::vote::Tally;

/// Everything recorded about one run, nodes in completion order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub nodes: Vec<NodeTrace>,
}

/// One node execution (one per sample inside a consensus body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeTrace {
    /// Where the node ran: `extract`, `solve[2]/program` (sample 2 of consensus `solve`).
    pub path: String,
    pub node: String,
    pub kind: String,
    /// Consensus sample index, for nodes inside a body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<u32>,
    /// Microseconds from the start of the run.
    pub start_us: u64,
    pub end_us: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<NodeError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
    /// What the Python step printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    /// For consensus nodes: how the samples voted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tally: Option<Tally>,
}

impl NodeTrace {
    pub(crate) fn new(path: String, node: &str, kind: &str, sample: Option<u32>, start_us: u64) -> Self {
        Self {
            path,
            node: node.to_owned(),
            kind: kind.to_owned(),
            sample,
            start_us,
            end_us: start_us,
            system: None,
            prompt: None,
            raw_output: None,
            value: None,
            error: None,
            usage: None,
            cached: false,
            stdout: None,
            tally: None,
        }
    }

    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

impl Trace {
    /// Tokens and cost of every model call in the run.
    pub fn usage(&self) -> Usage {
        let mut total = Usage::default();
        for node in &self.nodes {
            if let Some(u) = &node.usage {
                total.add(u);
            }
        }
        total
    }

    /// The traces of one node id, across samples.
    pub fn of<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a NodeTrace> + 'a {
        self.nodes.iter().filter(move |t| t.node == node)
    }
}

/// Collects node traces from concurrent tasks; survives the run being cut short by a deadline.
#[derive(Clone)]
pub(crate) struct TraceSink {
    started: Instant,
    nodes: Arc<Mutex<Vec<NodeTrace>>>,
}

impl TraceSink {
    pub(crate) fn new() -> Self {
        Self { started: Instant::now(), nodes: Arc::new(Mutex::new(Vec::new())) }
    }

    pub(crate) fn now_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    pub(crate) fn record(&self, mut trace: NodeTrace) {
        trace.end_us = self.now_us();
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner).push(trace);
    }

    pub(crate) fn take(&self) -> Trace {
        Trace { nodes: std::mem::take(&mut *self.nodes.lock().unwrap_or_else(PoisonError::into_inner)) }
    }
}
