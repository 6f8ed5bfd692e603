//! The compiler's door to the models: budget, deadline and cancellation in one place.
//!
//! Every model call of a compile — the student's inside workflow runs, the teacher's — asks the
//! [`Gate`] for admission first and reports its outcome afterwards. A call that would break a
//! limit is never sent: it fails at once and the gate remembers why, so that the phase it
//! belonged to can be recognised as incomplete and thrown away rather than scored. Limits are
//! checked on admission, so tokens and dollars may overshoot by what the calls already in flight
//! spend; call counts never overshoot (in-flight calls are reserved).
//!
//! Cancellation and the deadline are also enforced at the phase level (the compiler drops the
//! phase's future, and with it every request in flight); the gate makes sure nothing new starts
//! after either has fired.

use std::sync::{Arc, Mutex, PoisonError};

use sgde_llm::{ChatResponse, ModelError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::request::Budget;
use crate::usage::{CompileUsage, ModelRole};

/// Why work stopped before it was done.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Interrupt {
    Cancelled,
    Deadline,
    /// A limit of the budget; the text says which.
    Budget(String),
}

impl std::fmt::Display for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Interrupt::Cancelled => f.write_str("cancelled"),
            Interrupt::Deadline => f.write_str("the deadline passed"),
            Interrupt::Budget(what) => write!(f, "budget exhausted: {what}"),
        }
    }
}

#[derive(Default)]
struct State {
    usage: CompileUsage,
    in_flight: [u64; 2],
    /// The first refusal, if any call was refused.
    refused: Option<Interrupt>,
}

/// Admission control for one compile; see the module docs.
pub(crate) struct Gate {
    state: Mutex<State>,
    budget: Budget,
    cancel: CancellationToken,
    deadline: Option<Instant>,
}

fn slot(role: ModelRole) -> usize {
    match role {
        ModelRole::Teacher => 0,
        ModelRole::Student => 1,
    }
}

impl Gate {
    pub(crate) fn new(
        budget: Budget,
        usage: CompileUsage,
        cancel: CancellationToken,
        deadline: Option<Instant>,
    ) -> Arc<Self> {
        Arc::new(Self { state: Mutex::new(State { usage, ..State::default() }), budget, cancel, deadline })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn usage(&self) -> CompileUsage {
        self.lock().usage.clone()
    }

    /// Cancellation or deadline, whichever holds now.
    pub(crate) fn halted(&self) -> Option<Interrupt> {
        if self.cancel.is_cancelled() {
            Some(Interrupt::Cancelled)
        } else if self.deadline.is_some_and(|d| Instant::now() >= d) {
            Some(Interrupt::Deadline)
        } else {
            None
        }
    }

    /// The first call refused since the last [`Gate::clear_refusal`], if any.
    pub(crate) fn refusal(&self) -> Option<Interrupt> {
        self.lock().refused.clone()
    }

    pub(crate) fn clear_refusal(&self) {
        self.lock().refused = None;
    }

    /// Resolves when the compile is cancelled or its deadline passes.
    pub(crate) async fn halted_wait(&self) -> Interrupt {
        match self.deadline {
            Some(deadline) => tokio::select! {
                _ = self.cancel.cancelled() => Interrupt::Cancelled,
                _ = tokio::time::sleep_until(deadline) => Interrupt::Deadline,
            },
            None => {
                self.cancel.cancelled().await;
                Interrupt::Cancelled
            }
        }
    }

    /// The tokens or dollars limit already reached, if one is.
    pub(crate) fn spent_out(&self) -> Option<String> {
        let state = self.lock();
        spent_out(&self.budget, &state.usage)
    }

    /// Calls of `role` still allowed (unlimited = `None`).
    pub(crate) fn calls_left(&self, role: ModelRole) -> Option<u64> {
        let state = self.lock();
        let limit = match role {
            ModelRole::Teacher => self.budget.max_teacher_calls,
            ModelRole::Student => self.budget.max_student_calls,
        }?;
        Some(limit.saturating_sub(state.usage.role(role).calls + state.in_flight[slot(role)]))
    }

    /// Admits one call of `role`, or refuses it (and remembers why).
    pub(crate) fn admit(self: &Arc<Self>, role: ModelRole) -> Result<Ticket, Interrupt> {
        if let Some(halt) = self.halted() {
            return Err(halt);
        }
        let mut state = self.lock();
        let limit = match role {
            ModelRole::Teacher => self.budget.max_teacher_calls,
            ModelRole::Student => self.budget.max_student_calls,
        };
        let used = state.usage.role(role).calls + state.in_flight[slot(role)];
        let refusal = match limit {
            Some(limit) if used >= limit => {
                Some(format!("{} calls: {used} of {limit} spent", role_name(role)))
            }
            _ => spent_out(&self.budget, &state.usage),
        };
        if let Some(what) = refusal {
            let interrupt = Interrupt::Budget(what);
            state.refused.get_or_insert_with(|| interrupt.clone());
            return Err(interrupt);
        }
        state.in_flight[slot(role)] += 1;
        Ok(Ticket { gate: Arc::clone(self), role, settled: false })
    }
}

fn role_name(role: ModelRole) -> &'static str {
    match role {
        ModelRole::Teacher => "teacher",
        ModelRole::Student => "student",
    }
}

fn spent_out(budget: &Budget, usage: &CompileUsage) -> Option<String> {
    if let Some(limit) = budget.max_tokens
        && usage.tokens() >= limit
    {
        return Some(format!("tokens: {} of {limit} spent", usage.tokens()));
    }
    if let Some(limit) = budget.max_usd
        && usage.usd() >= limit
    {
        return Some(format!("dollars: {:.4} of {limit:.4} spent", usage.usd()));
    }
    None
}

/// An admitted call. Settle it with the outcome; dropping it unsettled (the call's future was
/// dropped by cancellation or a deadline) counts it as a failed call, since a request that was
/// sent may well be billed.
pub(crate) struct Ticket {
    gate: Arc<Gate>,
    role: ModelRole,
    settled: bool,
}

impl Ticket {
    pub(crate) fn settle(mut self, outcome: Result<&ChatResponse, &ModelError>) {
        self.settled = true;
        let mut state = self.gate.lock();
        state.in_flight[slot(self.role)] -= 1;
        state.usage.role_mut(self.role).record(outcome);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.settled {
            let mut state = self.gate.lock();
            state.in_flight[slot(self.role)] -= 1;
            state.usage.role_mut(self.role).record_abandoned();
        }
    }
}

/// The error a refused call returns to whoever made it (the runtime, the teacher step).
pub(crate) fn refused(endpoint: &str, why: &Interrupt) -> ModelError {
    ModelError::Exhausted {
        endpoint: endpoint.to_owned(),
        attempts: 0,
        last_error: format!("not sent: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sgde_llm::Usage;

    use super::*;

    fn response(tokens: u64, cached: bool) -> ChatResponse {
        ChatResponse {
            text: String::new(),
            usage: Usage { prompt_tokens: tokens, completion_tokens: 0, estimated: false, cost_usd: 0.0 },
            latency: Duration::ZERO,
            cached,
        }
    }

    #[test]
    fn call_limits_reserve_in_flight_calls_and_cache_hits_are_free() {
        let budget = Budget { max_student_calls: Some(2), ..Budget::default() };
        let gate = Gate::new(budget, CompileUsage::default(), CancellationToken::new(), None);
        let a = gate.admit(ModelRole::Student).unwrap();
        let b = gate.admit(ModelRole::Student).unwrap();
        assert!(gate.admit(ModelRole::Student).is_err(), "two in flight fill the budget");
        assert!(gate.refusal().is_some());
        gate.clear_refusal();
        a.settle(Ok(&response(10, true)));
        let c = gate.admit(ModelRole::Student).unwrap();
        b.settle(Ok(&response(10, false)));
        drop(c);
        let usage = gate.usage();
        assert_eq!((usage.student.calls, usage.student.cached_calls, usage.student.failed_calls), (2, 1, 1));
        assert_eq!(usage.student.prompt_tokens, 10);
        assert!(gate.admit(ModelRole::Teacher).is_ok(), "teacher calls are not limited");
    }

    #[test]
    fn tokens_and_cancellation_refuse_new_calls() {
        let budget = Budget { max_tokens: Some(5), ..Budget::default() };
        let token = CancellationToken::new();
        let gate = Gate::new(budget, CompileUsage::default(), token.clone(), None);
        gate.admit(ModelRole::Teacher).unwrap().settle(Ok(&response(6, false)));
        assert!(matches!(gate.admit(ModelRole::Student), Err(Interrupt::Budget(_))));
        token.cancel();
        assert_eq!(gate.admit(ModelRole::Student).err(), Some(Interrupt::Cancelled));
    }
}
