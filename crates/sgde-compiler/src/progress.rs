//! Progress events for the API's job status: iteration started and finished, a new best.
//!
//! A [`ProgressSink`] is called synchronously from the loop, so it must be quick; the usual
//! implementations forward to a channel (an `UnboundedSender` is a sink) or update shared state.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::evaluate::ScoreSummary;
use crate::outcome::StopReason;
use crate::record::IterationRecord;
use crate::usage::CompileUsage;

/// Something the loop did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProgressEvent {
    /// The compile (re)started; `iteration` is the number of iterations already done.
    Started {
        iteration: u32,
    },
    /// The starting workflow was scored.
    Baseline {
        train: ScoreSummary,
    },
    IterationStarted {
        iteration: u32,
    },
    IterationFinished {
        record: Box<IterationRecord>,
        best_score: f64,
        usage: CompileUsage,
    },
    /// A candidate was accepted.
    NewBest {
        iteration: u32,
        train: ScoreSummary,
        content_hash: String,
    },
    Finished {
        stop_reason: StopReason,
        best_score: f64,
    },
}

/// Receives [`ProgressEvent`]s; see the module docs.
pub trait ProgressSink: Send + Sync {
    fn report(&self, event: ProgressEvent);
}

impl ProgressSink for tokio::sync::mpsc::UnboundedSender<ProgressEvent> {
    fn report(&self, event: ProgressEvent) {
        // A receiver that went away only means nobody is watching.
        let _ = self.send(event);
    }
}

impl<F: Fn(ProgressEvent) + Send + Sync> ProgressSink for F {
    fn report(&self, event: ProgressEvent) {
        self(event)
    }
}
