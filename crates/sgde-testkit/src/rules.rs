//! Scripted behaviour of the fake server: ordered rules, first match wins.
//!
//! A rule matches on the model name, the system text and the user text (substring or regex)
//! and then replies, fails with a [`Fault`], or hands over to a [`Responder`]. `times(n)` makes
//! a rule apply to its first `n` matching requests only — "fail the first two, then succeed" is
//! a faulting rule with `times(2)` in front of a replying one.

use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

use crate::call::{ChatCall, Responder};
use crate::fault::Fault;

/// How a rule matches a text.
#[derive(Debug, Clone)]
pub enum TextMatch {
    Contains(String),
    Regex(Regex),
}

impl TextMatch {
    /// A regex matcher; panics on an invalid pattern (a bug in the test that wrote it).
    pub fn regex(pattern: &str) -> Self {
        match Regex::new(pattern) {
            Ok(r) => Self::Regex(r),
            Err(e) => panic!("invalid regex in a test rule: {e}"),
        }
    }

    pub fn is_match(&self, text: &str) -> bool {
        match self {
            Self::Contains(needle) => text.contains(needle.as_str()),
            Self::Regex(r) => r.is_match(text),
        }
    }
}

impl From<&str> for TextMatch {
    fn from(s: &str) -> Self {
        Self::Contains(s.to_owned())
    }
}

impl From<String> for TextMatch {
    fn from(s: String) -> Self {
        Self::Contains(s)
    }
}

/// What a matching rule does.
#[derive(Clone)]
pub enum Action {
    /// The same text for every choice.
    Reply(String),
    /// Successive texts for successive choices and requests; the last one repeats.
    Sequence(Vec<String>),
    Fault(Fault),
    Respond(Arc<dyn Responder>),
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Reply(t) => f.debug_tuple("Reply").field(t).finish(),
            Self::Sequence(t) => f.debug_tuple("Sequence").field(t).finish(),
            Self::Fault(x) => f.debug_tuple("Fault").field(x).finish(),
            Self::Respond(_) => f.write_str("Respond(..)"),
        }
    }
}

/// One scripted behaviour; build with the chained methods.
#[derive(Debug, Clone)]
pub struct Rule {
    pub(crate) model: Option<String>,
    pub(crate) system: Option<TextMatch>,
    pub(crate) user: Option<TextMatch>,
    pub(crate) action: Action,
    pub(crate) times: Option<u32>,
    pub(crate) delay: Duration,
}

impl Default for Rule {
    fn default() -> Self {
        Self::any()
    }
}

impl Rule {
    /// Matches every request; replies `"ok"` until told otherwise.
    pub fn any() -> Self {
        Self {
            model: None,
            system: None,
            user: None,
            action: Action::Reply("ok".into()),
            times: None,
            delay: Duration::ZERO,
        }
    }

    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    pub fn system(mut self, matcher: impl Into<TextMatch>) -> Self {
        self.system = Some(matcher.into());
        self
    }

    pub fn user(mut self, matcher: impl Into<TextMatch>) -> Self {
        self.user = Some(matcher.into());
        self
    }

    pub fn reply(mut self, text: impl Into<String>) -> Self {
        self.action = Action::Reply(text.into());
        self
    }

    pub fn replies<S: Into<String>>(mut self, texts: impl IntoIterator<Item = S>) -> Self {
        self.action = Action::Sequence(texts.into_iter().map(Into::into).collect());
        self
    }

    pub fn fault(mut self, fault: Fault) -> Self {
        self.action = Action::Fault(fault);
        self
    }

    pub fn respond_with(mut self, responder: Arc<dyn Responder>) -> Self {
        self.action = Action::Respond(responder);
        self
    }

    /// Applies to the first `n` matching requests only.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    /// Waits this long before acting (on top of the server's latency).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub(crate) fn matches(&self, call: &ChatCall) -> bool {
        self.model.as_ref().is_none_or(|m| *m == call.model)
            && self.system.as_ref().is_none_or(|m| m.is_match(&call.system_text()))
            && self.user.as_ref().is_none_or(|m| m.is_match(&call.user_text()))
    }
}

/// A rule with its use counters.
#[derive(Debug)]
pub(crate) struct RuleState {
    pub rule: Rule,
    pub used: u32,
    pub next_reply: usize,
}

impl RuleState {
    pub fn new(rule: Rule) -> Self {
        Self { rule, used: 0, next_reply: 0 }
    }

    pub fn available(&self) -> bool {
        self.rule.times.is_none_or(|n| self.used < n)
    }

    /// The next text of a [`Action::Sequence`].
    pub fn next_in_sequence(&mut self) -> Option<String> {
        let Action::Sequence(texts) = &self.rule.action else { return None };
        let text = texts.get(self.next_reply.min(texts.len().saturating_sub(1))).cloned();
        self.next_reply += 1;
        text
    }
}
