//! What a compile spent, per role.
//!
//! Counted at the compiler's own door to the model client (the `gate` module), so a compile
//! job knows its cost without knowing which endpoints are behind the names. Cache hits are
//! counted apart: they cost nothing, and a resumed job replays them.

use serde::{Deserialize, Serialize};
use sgde_llm::{ChatResponse, ModelError};
use utoipa::ToSchema;

/// Which side of the compile a model call served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelRole {
    Teacher,
    Student,
}

/// Calls, tokens and dollars of one role.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RoleUsage {
    /// Calls sent to the model (failed ones included, cache hits not).
    pub calls: u64,
    /// Of those, calls that ended in an error or were abandoned (cancellation, deadline).
    pub failed_calls: u64,
    /// Calls answered by the response cache, at no cost.
    pub cached_calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub usd: f64,
}

impl RoleUsage {
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    pub(crate) fn record(&mut self, outcome: Result<&ChatResponse, &ModelError>) {
        match outcome {
            Ok(response) if response.cached => self.cached_calls += 1,
            Ok(response) => {
                self.calls += 1;
                self.prompt_tokens += response.usage.prompt_tokens;
                self.completion_tokens += response.usage.completion_tokens;
                self.usd += response.usage.cost_usd;
            }
            Err(_) => {
                self.calls += 1;
                self.failed_calls += 1;
            }
        }
    }

    pub(crate) fn record_abandoned(&mut self) {
        self.calls += 1;
        self.failed_calls += 1;
    }

    fn since(&self, earlier: &RoleUsage) -> RoleUsage {
        RoleUsage {
            calls: self.calls.saturating_sub(earlier.calls),
            failed_calls: self.failed_calls.saturating_sub(earlier.failed_calls),
            cached_calls: self.cached_calls.saturating_sub(earlier.cached_calls),
            prompt_tokens: self.prompt_tokens.saturating_sub(earlier.prompt_tokens),
            completion_tokens: self.completion_tokens.saturating_sub(earlier.completion_tokens),
            usd: (self.usd - earlier.usd).max(0.0),
        }
    }
}

/// The compile cost: teacher and student apart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompileUsage {
    pub teacher: RoleUsage,
    pub student: RoleUsage,
}

impl CompileUsage {
    /// Teacher plus student tokens.
    pub fn tokens(&self) -> u64 {
        self.teacher.tokens() + self.student.tokens()
    }

    /// Teacher plus student dollars.
    pub fn usd(&self) -> f64 {
        self.teacher.usd + self.student.usd
    }

    pub fn role(&self, role: ModelRole) -> &RoleUsage {
        match role {
            ModelRole::Teacher => &self.teacher,
            ModelRole::Student => &self.student,
        }
    }

    pub(crate) fn role_mut(&mut self, role: ModelRole) -> &mut RoleUsage {
        match role {
            ModelRole::Teacher => &mut self.teacher,
            ModelRole::Student => &mut self.student,
        }
    }

    /// What was spent between `earlier` and `self`.
    pub fn since(&self, earlier: &CompileUsage) -> CompileUsage {
        CompileUsage {
            teacher: self.teacher.since(&earlier.teacher),
            student: self.student.since(&earlier.student),
        }
    }
}
