//! Service-level knobs of the loop: not part of a compile request, because they protect the
//! service (timeouts, concurrency, prompt sizes) rather than describe the job.

use std::time::Duration;

use crate::condense::ViewLimits;

/// How the compiler behaves; [`CompileOptions::default`] suits production.
#[derive(Debug, Clone)]
pub struct CompileOptions {
    /// Longest wait for one teacher reply (on top of the endpoint's own timeout and retries).
    pub teacher_timeout: Duration,
    /// `max_tokens` of teacher replies.
    pub teacher_max_tokens: Option<u32>,
    /// Workflow runs of one evaluation in flight at once.
    pub max_concurrent_runs: usize,
    /// Deadline of one workflow run; `None` leaves the runtime's default.
    pub run_deadline: Option<Duration>,
    /// Failing runs shown to the teacher (one per example).
    pub failing_traces: usize,
    /// Passing runs shown to the teacher.
    pub passing_traces: usize,
    /// Longest prompt, reply or value quoted from a trace, in characters.
    pub trace_field_chars: usize,
    /// Consensus samples shown per vote in a trace.
    pub trace_body_samples: u32,
    /// Stop with `error` after this many iterations in a row whose teacher steps failed.
    pub max_failed_iterations: u32,
}

impl Default for CompileOptions {
    fn default() -> Self {
        Self {
            teacher_timeout: Duration::from_secs(600),
            teacher_max_tokens: Some(4096),
            max_concurrent_runs: 64,
            run_deadline: None,
            failing_traces: 4,
            passing_traces: 2,
            trace_field_chars: 800,
            trace_body_samples: 2,
            max_failed_iterations: 3,
        }
    }
}

impl CompileOptions {
    pub(crate) fn views(&self) -> ViewLimits {
        ViewLimits {
            failing: self.failing_traces,
            passing: self.passing_traces,
            field_chars: self.trace_field_chars,
            body_samples: self.trace_body_samples,
        }
    }
}
