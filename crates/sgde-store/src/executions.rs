//! The execution log: what ran, on which version, with what result, at what cost.
//!
//! A synchronous execute records its finished execution with a single INSERT
//! ([`ExecutionRepo::insert_execution`]): this is the hot path, so no read-back of the large
//! JSON columns and no second statement. Asynchronous runs go through [`crate::runs`], which
//! ties an execution to its queue job. Status changes are guarded in SQL (`queued → running →
//! terminal`), so an execution reaches a terminal status at most once whoever races for it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::page::{Page, PageRequest};

/// Lifecycle of an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Queued => "queued",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Succeeded => "succeeded",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, ExecutionStatus::Succeeded | ExecutionStatus::Failed | ExecutionStatus::Cancelled)
    }

    pub(crate) fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "queued" => ExecutionStatus::Queued,
            "running" => ExecutionStatus::Running,
            "succeeded" => ExecutionStatus::Succeeded,
            "failed" => ExecutionStatus::Failed,
            "cancelled" => ExecutionStatus::Cancelled,
            other => return Err(StoreError::Corrupt(format!("unknown execution status {other:?}"))),
        })
    }
}

/// Whether the caller waited for the result (`sync`, execute) or polls for it (`async`, runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionMode {
    Sync,
    Async,
}

impl ExecutionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionMode::Sync => "sync",
            ExecutionMode::Async => "async",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self> {
        match s {
            "sync" => Ok(ExecutionMode::Sync),
            "async" => Ok(ExecutionMode::Async),
            other => Err(StoreError::Corrupt(format!("unknown execution mode {other:?}"))),
        }
    }
}

/// Tokens and money spent by one execution (all model calls summed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
}

impl From<&sgde_llm::Usage> for ExecutionUsage {
    fn from(u: &sgde_llm::Usage) -> Self {
        Self { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, cost_usd: u.cost_usd }
    }
}

/// A stored execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Execution {
    pub id: Uuid,
    pub workflow_id: Uuid,
    pub version_id: Uuid,
    pub mode: ExecutionMode,
    pub status: ExecutionStatus,
    pub inputs: Value,
    pub output: Option<Value>,
    pub error: Option<Value>,
    /// The per-node trace, when it was requested. Listings leave it out (`None`); get one
    /// execution to read it.
    pub trace: Option<Value>,
    /// Wall time of the run itself, in microseconds.
    pub latency_us: Option<u64>,
    pub usage: ExecutionUsage,
    /// How the version was chosen (label, route, variant), if not explicitly.
    pub route: Option<Value>,
    /// The queue job of an asynchronous run.
    pub job_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionOutcome {
    /// Must be terminal; a non-terminal status is refused with `Invalid`.
    pub status: ExecutionStatus,
    pub output: Option<Value>,
    pub error: Option<Value>,
    pub trace: Option<Value>,
    pub latency_us: Option<u64>,
    pub usage: ExecutionUsage,
}

impl ExecutionOutcome {
    pub fn succeeded(output: Value) -> Self {
        Self::ended(ExecutionStatus::Succeeded, Some(output), None)
    }

    pub fn failed(error: Value) -> Self {
        Self::ended(ExecutionStatus::Failed, None, Some(error))
    }

    pub fn cancelled() -> Self {
        Self::ended(ExecutionStatus::Cancelled, None, None)
    }

    fn ended(status: ExecutionStatus, output: Option<Value>, error: Option<Value>) -> Self {
        Self { status, output, error, trace: None, latency_us: None, usage: ExecutionUsage::default() }
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.status.is_terminal() { Ok(()) } else { Err(StoreError::Invalid { what: "outcome status" }) }
    }
}

/// What a caller provides to record an execution. The id is the caller's (UUID v7), so an
/// async run's job payload can name its execution before either is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewExecution {
    pub id: Uuid,
    pub workflow_id: Uuid,
    pub version_id: Uuid,
    pub mode: ExecutionMode,
    pub inputs: Value,
    pub route: Option<Value>,
    /// `None` for a queued run; the result for a finished synchronous execute.
    pub outcome: Option<ExecutionOutcome>,
    /// When the run began, for a finished execute (the row itself is written at the end).
    pub started_at: Option<DateTime<Utc>>,
}

impl NewExecution {
    /// A finished synchronous execution.
    pub fn finished(
        workflow_id: Uuid,
        version_id: Uuid,
        inputs: Value,
        started_at: DateTime<Utc>,
        outcome: ExecutionOutcome,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            workflow_id,
            version_id,
            mode: ExecutionMode::Sync,
            inputs,
            route: None,
            outcome: Some(outcome),
            started_at: Some(started_at),
        }
    }

    /// A queued asynchronous run.
    pub fn queued(workflow_id: Uuid, version_id: Uuid, inputs: Value) -> Self {
        Self {
            id: Uuid::now_v7(),
            workflow_id,
            version_id,
            mode: ExecutionMode::Async,
            inputs,
            route: None,
            outcome: None,
            started_at: None,
        }
    }

    pub fn with_route(mut self, route: Value) -> Self {
        self.route = Some(route);
        self
    }
}

/// Filters for listing executions; every field is optional and they combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionFilter {
    pub workflow_id: Option<Uuid>,
    pub version_id: Option<Uuid>,
    pub status: Option<ExecutionStatus>,
    pub mode: Option<ExecutionMode>,
    /// Inclusive lower bound on `created_at`.
    pub created_after: Option<DateTime<Utc>>,
    /// Exclusive upper bound on `created_at`.
    pub created_before: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait ExecutionRepo: Send + Sync {
    /// Records an execution with one INSERT and returns it without reading it back.
    async fn insert_execution(&self, new: NewExecution) -> Result<Execution>;

    /// One execution, trace included.
    async fn get_execution(&self, id: Uuid) -> Result<Execution>;

    /// Newest first, without traces.
    async fn list_executions(&self, filter: &ExecutionFilter, page: &PageRequest) -> Result<Page<Execution>>;

    /// `queued → running` (also accepted when already running: a re-claimed run after a worker
    /// crash); false if the execution has ended (cancelled while queued, say).
    async fn start_execution(&self, id: Uuid) -> Result<bool>;

    /// `queued | running → terminal`; false if it already ended. Outside a job lease: for
    /// crash recovery and for runs whose job is gone. Workers use
    /// [`crate::runs::RunRepo::finish_run`].
    async fn finish_execution(&self, id: Uuid, outcome: &ExecutionOutcome) -> Result<bool>;
}
