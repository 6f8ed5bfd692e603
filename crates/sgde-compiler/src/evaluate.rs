//! Forward pass and loss: run a candidate on every example k times, concurrently, and score it.
//!
//! All m × k runs of an evaluation are polled from one future (no spawned tasks), bounded by a
//! concurrency limit, so that dropping the evaluation — cancellation, a deadline — drops every
//! model request and sandbox call in flight. The result keeps the full traces for the teacher;
//! only the [`ScoreSummary`] is persisted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sgde_llm::Message;
use sgde_llm::ModelClient;
use sgde_llm::usage::{estimate_prompt_tokens, estimate_tokens};
use sgde_runtime::{
    NodeErrorKind, PrepareError, PreparedWorkflow, RunError, RunOptions, Runtime, RuntimeConfig, Trace,
};
use sgde_sandbox::Sandbox;
use sgde_workflow::WorkflowSpec;
use utoipa::ToSchema;

use crate::client::{StudentClient, mix};
use crate::gate::Gate;
use crate::metric::Scorer;
use crate::request::Example;
use crate::variance::{NodeStats, node_stats};

/// A score counts as right from here (scores are means of 0/1 or a metric's float).
pub(crate) const RIGHT: f64 = 1.0 - 1e-9;

/// The persisted result of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScoreSummary {
    /// Mean score over all runs, in `[0, 1]`.
    pub score: f64,
    /// Mean score per example, in example order.
    pub per_example: Vec<f64>,
    /// Runs that scored 1.
    pub right: u32,
    /// Runs made (examples × samples).
    pub runs: u32,
    /// Runs that ended in an error (they score 0).
    pub failed_runs: u32,
    /// Every run of every example scored 1: perfect, and stably so.
    pub stable: bool,
    /// Student tokens per run, estimated from the texts (about four characters per token) so
    /// that cache hits, which report no usage, do not make a workflow look cheaper than it is.
    pub mean_student_tokens: f64,
}

/// Which examples an evaluation ran on; part of every run's sample salt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Split {
    Train = 1,
    Validation = 2,
}

/// One run of one example.
#[derive(Debug, Clone)]
pub(crate) struct SampleEval {
    pub(crate) example: usize,
    pub(crate) sample: u32,
    /// The output, or why the run failed.
    pub(crate) output: Result<Value, RunError>,
    pub(crate) score: f64,
    /// A Python metric that raised or returned something odd.
    pub(crate) metric_error: Option<String>,
    pub(crate) trace: Trace,
}

/// An evaluation with its traces.
#[derive(Debug, Clone)]
pub(crate) struct Evaluation {
    pub(crate) summary: ScoreSummary,
    /// Sorted by (example, sample).
    pub(crate) samples: Vec<SampleEval>,
    pub(crate) nodes: BTreeMap<String, NodeStats>,
}

impl Evaluation {
    /// Every run failed because the model could not be reached: the score says nothing about
    /// the workflow.
    pub(crate) fn model_unreachable(&self) -> bool {
        !self.samples.is_empty()
            && self.samples.iter().all(|s| {
                matches!(&s.output, Err(RunError::Node(e)) if matches!(e.kind, NodeErrorKind::Model | NodeErrorKind::Timeout))
            })
    }

    /// The first model error of the runs, for the stop detail.
    pub(crate) fn first_error(&self) -> Option<String> {
        self.samples.iter().find_map(|s| s.output.as_ref().err().map(ToString::to_string))
    }
}

/// Everything needed to evaluate candidates; shared by every evaluation of a compile.
#[derive(Clone)]
pub(crate) struct Evaluator {
    pub(crate) models: Arc<dyn ModelClient>,
    pub(crate) sandbox: Sandbox,
    pub(crate) runtime: RuntimeConfig,
    pub(crate) gate: Arc<Gate>,
    pub(crate) scorer: Scorer,
    pub(crate) student: Arc<str>,
    pub(crate) samples: u32,
    pub(crate) seed: u64,
    pub(crate) concurrency: usize,
    pub(crate) run_deadline: Option<Duration>,
}

impl Evaluator {
    /// Runs `spec` on every example `samples` times and scores the outputs.
    pub(crate) async fn evaluate(
        &self,
        spec: &WorkflowSpec,
        examples: &[Example],
        split: Split,
    ) -> Result<Evaluation, PrepareError> {
        let prepared = Arc::new(PreparedWorkflow::new(spec.clone())?);
        let jobs: Vec<(usize, u32)> =
            (0..examples.len()).flat_map(|e| (0..self.samples).map(move |s| (e, s))).collect();
        let mut samples: Vec<SampleEval> = stream::iter(jobs)
            .map(|(e, s)| {
                let prepared = Arc::clone(&prepared);
                async move { self.run_one(&prepared, &examples[e], split, e, s).await }
            })
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        samples.sort_by_key(|s| (s.example, s.sample));
        let summary = summarise(&samples, examples.len(), self.samples);
        let nodes = node_stats(&samples);
        Ok(Evaluation { summary, samples, nodes })
    }

    async fn run_one(
        &self,
        prepared: &PreparedWorkflow,
        example: &Example,
        split: Split,
        index: usize,
        sample: u32,
    ) -> SampleEval {
        let client = StudentClient {
            inner: Arc::clone(&self.models),
            gate: Arc::clone(&self.gate),
            student: Arc::clone(&self.student),
            salt: mix(&[self.seed, split as u64, index as u64, u64::from(sample)]),
        };
        let runtime = Runtime::new(Arc::new(client), self.sandbox.clone(), self.runtime.clone());
        let options = RunOptions { deadline: self.run_deadline };
        let report = runtime.execute(prepared, example.inputs.clone(), &options).await;
        let (score, metric_error) = match &report.result {
            Ok(output) => match self.scorer.score(output, &example.expected).await {
                Ok(score) => (score, None),
                Err(e) => (0.0, Some(e)),
            },
            Err(_) => (0.0, None),
        };
        SampleEval { example: index, sample, output: report.result, score, metric_error, trace: report.trace }
    }
}

/// Estimated student tokens of one run: every model call's messages and reply.
pub(crate) fn run_tokens(trace: &Trace) -> u64 {
    trace
        .nodes
        .iter()
        .filter(|n| n.kind == "llm")
        .map(|n| {
            let mut messages = Vec::with_capacity(2);
            if let Some(system) = &n.system {
                messages.push(Message::system(system.as_str()));
            }
            if let Some(prompt) = &n.prompt {
                messages.push(Message::user(prompt.as_str()));
            }
            let prompt = if messages.is_empty() { 0 } else { estimate_prompt_tokens(&messages) };
            prompt + n.raw_output.as_deref().map_or(0, estimate_tokens)
        })
        .sum()
}

fn summarise(samples: &[SampleEval], examples: usize, k: u32) -> ScoreSummary {
    let runs = samples.len();
    let mean =
        |xs: &mut dyn Iterator<Item = f64>, n: usize| if n == 0 { 0.0 } else { xs.sum::<f64>() / n as f64 };
    let per_example: Vec<f64> = (0..examples)
        .map(|e| {
            let mut scores = samples.iter().filter(|s| s.example == e).map(|s| s.score);
            mean(&mut scores, k as usize)
        })
        .collect();
    let right = samples.iter().filter(|s| s.score >= RIGHT).count();
    ScoreSummary {
        score: mean(&mut samples.iter().map(|s| s.score), runs),
        per_example,
        right: right as u32,
        runs: runs as u32,
        failed_runs: samples.iter().filter(|s| s.output.is_err()).count() as u32,
        stable: runs > 0 && right == runs,
        mean_student_tokens: mean(&mut samples.iter().map(|s| run_tokens(&s.trace) as f64), runs),
    }
}
