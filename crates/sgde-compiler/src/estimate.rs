//! Preflight: what one iteration and the whole budget are expected to cost, and whether the
//! budget can pay for one full iteration at all.
//!
//! Call counts are exact for the starting workflow (every `llm` node once per run, consensus
//! bodies times their samples); candidates may grow, so later iterations can cost more. Tokens
//! are estimated from the texts (about four characters per token) with the node's `max_tokens`
//! (or 256) for a student reply and a fixed allowance for a teacher reply; dollars apply the
//! endpoints' prices, which the caller supplies because the compiler only knows endpoint names.

use serde::{Deserialize, Serialize};
use sgde_llm::Prices;
use sgde_workflow::{Node, NodeMap, WorkflowSpec};
use utoipa::ToSchema;

use crate::condense::ViewLimits;
use crate::edits::calls_per_run;
use crate::error::CompileError;
use crate::options::CompileOptions;
use crate::prompts::{CRITIQUE_USER, EDIT_USER, prompts};
use crate::request::{CompileRequest, Example};

/// Expected completion tokens of one teacher reply.
const TEACHER_REPLY_TOKENS: u64 = 1_500;
/// Expected completion tokens of a student reply whose node sets no `max_tokens`.
const STUDENT_REPLY_TOKENS: u64 = 256;
/// Teacher calls of an iteration without failures: critique and edit.
const TEACHER_CALLS_PER_ITERATION: u64 = 2;

/// Prices of the two endpoints, per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PriceTable {
    #[schema(value_type = Object)]
    pub teacher: Prices,
    #[schema(value_type = Object)]
    pub student: Prices,
}

/// Calls, tokens and dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Cost {
    pub teacher_calls: u64,
    pub student_calls: u64,
    pub tokens: u64,
    pub usd: f64,
}

impl Cost {
    fn plus(self, other: Cost) -> Cost {
        Cost {
            teacher_calls: self.teacher_calls + other.teacher_calls,
            student_calls: self.student_calls + other.student_calls,
            tokens: self.tokens + other.tokens,
            usd: self.usd + other.usd,
        }
    }

    fn times(self, n: u64) -> Cost {
        Cost {
            teacher_calls: self.teacher_calls * n,
            student_calls: self.student_calls * n,
            tokens: self.tokens * n,
            usd: self.usd * n as f64,
        }
    }
}

/// The preflight estimate: calls, tokens and dollars of the baseline, of one iteration, of
/// validation, and of the whole budget. Exact in calls for the starting workflow; tokens are
/// estimated from the texts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Estimate {
    /// Scoring the starting workflow on the training examples.
    pub baseline: Cost,
    /// One iteration: critique, edit, evaluating a candidate of the starting workflow's size.
    pub per_iteration: Cost,
    /// Scoring the result on the validation examples.
    pub validation: Cost,
    /// Baseline, one iteration and validation: the least a budget must allow.
    pub first_iteration: Cost,
    /// Baseline, `max_iterations` iterations and validation.
    pub full_budget: Cost,
}

/// Estimates the cost of `request` and refuses a budget that cannot fit one full iteration.
pub fn estimate(request: &CompileRequest, prices: &PriceTable) -> Result<Estimate, CompileError> {
    request.check()?;
    let spec = request.starting_spec()?;
    let k = u64::from(request.samples_per_example);
    let evaluation = |examples: &[Example]| {
        let runs = examples.len() as u64 * k;
        let (prompt, completion) = student_tokens_per_run(&spec, examples);
        Cost {
            teacher_calls: 0,
            student_calls: runs * calls_per_run(&spec),
            tokens: runs * (prompt + completion),
            usd: runs as f64 * prices.student.cost(prompt, completion),
        }
    };
    let baseline = evaluation(&request.train);
    let validation = evaluation(&request.validation);
    let (teacher_prompt, teacher_reply) = teacher_tokens_per_call(&spec, request);
    let teacher = Cost {
        teacher_calls: TEACHER_CALLS_PER_ITERATION,
        student_calls: 0,
        tokens: TEACHER_CALLS_PER_ITERATION * (teacher_prompt + teacher_reply),
        usd: TEACHER_CALLS_PER_ITERATION as f64 * prices.teacher.cost(teacher_prompt, teacher_reply),
    };
    let per_iteration = teacher.plus(baseline);
    let first_iteration = baseline.plus(per_iteration).plus(validation);
    let full_budget =
        baseline.plus(per_iteration.times(u64::from(request.budget.max_iterations))).plus(validation);
    let estimate = Estimate { baseline, per_iteration, validation, first_iteration, full_budget };
    check_fits(request, &estimate)?;
    Ok(estimate)
}

fn check_fits(request: &CompileRequest, estimate: &Estimate) -> Result<(), CompileError> {
    let need = estimate.first_iteration;
    let b = &request.budget;
    let checks: [(&'static str, f64, Option<f64>); 4] = [
        ("teacher calls", need.teacher_calls as f64, b.max_teacher_calls.map(|x| x as f64)),
        ("student calls", need.student_calls as f64, b.max_student_calls.map(|x| x as f64)),
        ("tokens", need.tokens as f64, b.max_tokens.map(|x| x as f64)),
        ("dollars", need.usd, b.max_usd),
    ];
    for (resource, needed, limit) in checks {
        if let Some(limit) = limit
            && needed > limit
        {
            return Err(CompileError::BudgetTooSmall {
                resource,
                needed,
                limit,
                estimate: Box::new(estimate.clone()),
            });
        }
    }
    Ok(())
}

/// Prompt and completion tokens of one run: each `llm` call's templates, the longest inputs and
/// an allowance per dependency, plus its reply.
fn student_tokens_per_run(spec: &WorkflowSpec, examples: &[Example]) -> (u64, u64) {
    let input_chars = examples.iter().map(|e| e.inputs.to_string().len() as u64).max().unwrap_or(0);
    fn walk(nodes: &NodeMap, input_chars: u64, times: u64, acc: &mut (u64, u64)) {
        for (_, node) in nodes.iter() {
            match node {
                Node::Llm(llm) => {
                    let chars = llm.system.as_ref().map_or(0, |s| s.len() as u64)
                        + llm.prompt.len() as u64
                        + input_chars
                        + 200 * llm.deps.len() as u64;
                    acc.0 += times * (chars.div_ceil(4) + 15);
                    acc.1 += times * llm.decoding.max_tokens.map_or(STUDENT_REPLY_TOKENS, u64::from);
                }
                Node::Code(_) => {}
                Node::Consensus(c) => walk(&c.body.nodes, input_chars, times * u64::from(c.samples), acc),
            }
        }
    }
    let mut acc = (0, 0);
    walk(&spec.nodes, input_chars, 1, &mut acc);
    acc
}

/// Prompt and completion tokens of one teacher call: the larger of the two system prompts, the
/// user template, the spec, the task and the trace views at their limits.
fn teacher_tokens_per_call(spec: &WorkflowSpec, request: &CompileRequest) -> (u64, u64) {
    let p = prompts();
    let ViewLimits { failing, passing, field_chars, .. } = CompileOptions::default().views();
    let nodes = (calls_per_run(spec) as usize + spec.nodes.len()).max(1);
    let traces = (failing + passing) * nodes * 3 * field_chars;
    let chars = p.edit_system.len().max(p.critique_system.len())
        + CRITIQUE_USER.len().max(EDIT_USER.len())
        + spec.canonical_json().len()
        + request.task.len()
        + traces;
    ((chars as u64).div_ceil(4), TEACHER_REPLY_TOKENS)
}
