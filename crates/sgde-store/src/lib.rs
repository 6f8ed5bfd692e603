//! Persistence for sgde: repositories behind small backend-neutral traits, implemented on
//! Postgres and SQLite, and the durable job queue that async runs and compile jobs live in.
//!
//! Callers program against the traits ([`EndpointRepo`], [`WorkflowRepo`], [`VersionRepo`],
//! [`LabelRepo`], [`PolicyRepo`], [`FeedbackRepo`], [`ExecutionRepo`], [`RunRepo`], [`CompileJobRepo`], [`KeyRepo`], [`IdempotencyRepo`],
//! [`JobQueue`], [`Health`]) or the umbrella [`Store`] (`Arc<dyn Store>`), so that a second
//! backend (SQLite, for the embedded single-node default) can be added without touching them.
//! The traits speak plain serde record types (also `utoipa::ToSchema`, so the API can return
//! them) and one error type, [`StoreError`]; nothing sqlx-specific crosses them. Postgres-only
//! extras, such as enqueueing a job inside the caller's own transaction, live in [`pg`].
//!
//! # Layout
//! - [`error`]: [`StoreError`], and the one place where database errors are classified
//!   (unique violations → `Conflict` by constraint name, never SQL text to callers).
//! - [`page`]: keyset pagination with opaque cursors ([`PageRequest`], [`Page`]).
//! - [`endpoints`]: model endpoint configs by name.
//! - [`workflows`]: workflows (soft-deleted, names reusable).
//! - [`versions`]: immutable, gap-free numbered, content-addressed versions.
//! - [`labels`]: movable labels with a history of every move.
//! - [`policies`]: A/B traffic policies as revisions; [`buckets`]: sticky key → variant ranges.
//! - [`feedback`]: feedback on executions and per-variant statistics.
//! - [`datasets`]: data sets with seeded splits, and evaluation results.
//! - [`executions`]: the execution log, one INSERT per synchronous execute.
//! - [`runs`]: asynchronous runs = an execution + its job, written and finished atomically.
//! - [`keys`]: API keys hashed at rest, scopes, the bootstrap admin key.
//! - [`idempotency`]: `Idempotency-Key` records with in-progress takeover and expiry.
//! - [`compile_jobs`]: compile jobs = a queue job + request, estimate, progress, checkpoint,
//!   iteration log and result.
//! - [`jobs`]: the queue: leases, heartbeats, retries with backoff, exactly-once endings.
//! - [`pg`]: [`PgStore`], the Postgres implementation of all of the above, migrations under an
//!   advisory lock, and the persistent tier of `sgde_llm`'s response cache.
//! - [`sqlite`]: [`SqliteStore`], the same on one SQLite file (the embedded single-node default).
//! - `rows`: row structs and their conversions, shared by both backends.
//! - [`connect()`]: the backend a URL names, with [`StoreOptions`]; [`transfer`]: the copy
//!   behind `sgde migrate-store` (SQLite → Postgres).
//! - `testing` (feature `testing`): a fresh database per test.
//!
//! The SQL schema is in the workspace's top-level `migrations/` (`postgres/`, `sqlite/`),
//! embedded at compile time. All
//! queries are runtime-checked (`sqlx::query` with bound parameters; sqlx 0.9 accepts only
//! `&'static str` SQL), so building needs neither a database nor `.sqlx` data.

pub mod buckets;
pub mod compile_jobs;
mod connect;
pub mod datasets;
pub mod endpoints;
pub mod error;
pub mod executions;
pub mod feedback;
pub mod idempotency;
pub mod jobs;
pub mod keys;
pub mod labels;
mod migrations;
pub mod page;
pub mod pg;
pub mod policies;
mod rows;
pub mod runs;
pub mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transfer;
pub mod versions;
pub mod workflows;

use async_trait::async_trait;

pub use buckets::BucketRange;
pub use compile_jobs::{
    COMPILE_JOB_KIND, CompileEnd, CompileJob, CompileJobFilter, CompileJobRepo, CompilePayload, NewCompileJob,
};
pub use connect::{BackendKind, StoreOptions, connect};
pub use datasets::{
    Dataset, DatasetRepo, DatasetRow, EVALUATION_JOB_KIND, EvaluationResult, EvaluationSummary, NewDataset,
    Split, SplitSpec,
};
pub use endpoints::{Endpoint, EndpointRepo};
pub use error::{Result, StoreError};
pub use executions::{
    Execution, ExecutionFilter, ExecutionMode, ExecutionOutcome, ExecutionRepo, ExecutionStatus,
    ExecutionUsage, NewExecution,
};
pub use feedback::{Feedback, FeedbackRepo, NewFeedback, RoutePath, VariantStats};
pub use idempotency::{
    IdempotencyBegin, IdempotencyKey, IdempotencyPolicy, IdempotencyRepo, IdempotentRequest, StoredResponse,
};
pub use jobs::{CancelOutcome, FailOutcome, Heartbeat, Job, JobQueue, JobStatus, NewJob, QueueStats, Retry};
pub use keys::{ApiKey, ApiToken, CreatedApiKey, KeyRepo, NewApiKey, Scope};
pub use labels::{Label, LabelEvent, LabelMove, LabelRepo};
pub use page::{Page, PageRequest};
pub use pg::PgStore;
pub use policies::{
    DefaultTarget, PolicyChange, PolicyDraft, PolicyRepo, PolicyVariant, Promotion, ShadowVariant,
    TrafficPolicy,
};
pub use runs::{FollowUp, RUN_JOB_KIND, RunCancel, RunPayload, RunRepo};
pub use sqlite::SqliteStore;
pub use versions::{DEFAULT_LABEL, NewVersion, Version, VersionRepo, VersionSelector, VersionSource};
pub use workflows::{NewWorkflow, Workflow, WorkflowRepo};

/// Liveness and readiness of the backend.
#[async_trait]
pub trait Health: Send + Sync {
    /// One round trip to the database.
    async fn ping(&self) -> Result<()>;

    /// Whether every migration this build embeds is applied (and unchanged): readiness.
    async fn migrations_applied(&self) -> Result<bool>;

    /// Closes the connections, waiting for checked-out ones to come back (at shutdown).
    async fn close(&self);
}

/// Everything the service needs from a backend, as one object: `Arc<dyn Store>`.
pub trait Store:
    EndpointRepo
    + WorkflowRepo
    + VersionRepo
    + LabelRepo
    + PolicyRepo
    + DatasetRepo
    + FeedbackRepo
    + ExecutionRepo
    + RunRepo
    + CompileJobRepo
    + KeyRepo
    + IdempotencyRepo
    + JobQueue
    + Health
    + sgde_llm::CacheBackend
    + Send
    + Sync
{
}

impl<T> Store for T where
    T: EndpointRepo
        + WorkflowRepo
        + VersionRepo
        + LabelRepo
        + PolicyRepo
        + DatasetRepo
        + FeedbackRepo
        + ExecutionRepo
        + RunRepo
        + CompileJobRepo
        + KeyRepo
        + IdempotencyRepo
        + JobQueue
        + Health
        + sgde_llm::CacheBackend
        + Send
        + Sync
{
}
