//! [`StoreError`]: what can go wrong in the store, typed so that the API can answer precisely.
//!
//! Database errors are classified here, once: unique violations of *known* constraints become
//! [`StoreError::Conflict`], foreign-key violations of known constraints become
//! [`StoreError::NotFound`], connection trouble becomes [`StoreError::Unavailable`]. Anything
//! else stays a [`StoreError::Database`], which the API logs and answers with a bare 500. The
//! `Display` of a variant never contains SQL or row data; the `source` of a database error may
//! contain the server's message and belongs in logs only.

/// The one error type of sgde-store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The addressed row does not exist (or is soft-deleted). `what` names the resource:
    /// `"workflow"`, `"version"`, `"job"`, ...
    #[error("{what} not found")]
    NotFound { what: &'static str },

    /// A uniqueness rule was violated; `what` says which (`"workflow name"`, ...).
    #[error("{what} already exists")]
    Conflict { what: &'static str },

    /// The request cannot be honoured as given (a malformed cursor, an unusable token, ...).
    #[error("invalid {what}")]
    Invalid { what: &'static str },

    /// The database cannot be reached or the pool is exhausted; retrying later may work.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),

    /// A row holds a value this version of sgde cannot read (an unknown status, say): the
    /// schema and the code disagree.
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),

    /// Applying migrations failed (including a database migrated by a newer sgde).
    #[error("database migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),

    /// Any other database error.
    #[error("database error")]
    Database(#[source] sqlx::Error),
}

/// Shorthand used across the crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// `NotFound` when a query that must address one row found none.
    pub(crate) fn not_found(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |e| match e {
            sqlx::Error::RowNotFound => StoreError::NotFound { what },
            other => StoreError::from(other),
        }
    }

    /// True for errors that say nothing about the request and may go away on retry.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// How a violation of a named constraint is reported to callers.
enum Meaning {
    Conflict(&'static str),
    Missing(&'static str),
}

/// Constraints whose violation is a caller's mistake rather than a bug, by name (the names are
/// fixed in `migrations/`).
const CONSTRAINTS: &[(&str, Meaning)] = &[
    ("model_endpoints_name_key", Meaning::Conflict("endpoint name")),
    ("model_endpoints_pkey", Meaning::Conflict("endpoint id")),
    ("workflows_name_live_key", Meaning::Conflict("workflow name")),
    ("workflows_pkey", Meaning::Conflict("workflow id")),
    ("workflow_versions_pkey", Meaning::Conflict("version id")),
    ("workflow_versions_number_key", Meaning::Conflict("version number")),
    ("workflow_versions_content_hash_key", Meaning::Conflict("version content")),
    ("workflow_versions_workflow_id_fkey", Meaning::Missing("workflow")),
    ("workflow_versions_parent_fkey", Meaning::Missing("parent version")),
    ("workflow_labels_version_fkey", Meaning::Missing("version")),
    ("workflow_labels_workflow_id_fkey", Meaning::Missing("workflow")),
    ("executions_pkey", Meaning::Conflict("execution id")),
    ("executions_version_fkey", Meaning::Missing("version")),
    ("api_keys_pkey", Meaning::Conflict("api key id")),
    ("api_keys_secret_hash_key", Meaning::Conflict("api key")),
    ("jobs_pkey", Meaning::Conflict("job id")),
    ("traffic_policies_pkey", Meaning::Conflict("policy revision")),
    ("traffic_policies_shadow_fkey", Meaning::Missing("version")),
    ("execution_feedback_execution_id_fkey", Meaning::Missing("execution")),
    ("datasets_name_live_key", Meaning::Conflict("dataset name")),
];

/// The same rules on SQLite, whose messages name the columns of a violated unique index
/// ("UNIQUE constraint failed: workflows.name") rather than the index.
const SQLITE_UNIQUE: &[(&str, &str)] = &[
    ("model_endpoints.name", "endpoint name"),
    ("model_endpoints.id", "endpoint id"),
    ("workflows.name", "workflow name"),
    ("workflows.id", "workflow id"),
    ("workflow_versions.id", "version id"),
    ("workflow_versions.workflow_id, workflow_versions.number", "version number"),
    ("workflow_versions.workflow_id, workflow_versions.content_hash", "version content"),
    ("executions.id", "execution id"),
    ("api_keys.id", "api key id"),
    ("api_keys.secret_hash", "api key"),
    ("jobs.id", "job id"),
    ("traffic_policies.workflow_id, traffic_policies.revision", "policy revision"),
    ("datasets.name", "dataset name"),
];

/// SQLite result codes (primary code in the low byte) that mean "try again later": BUSY (5)
/// and LOCKED (6), which outlast the busy timeout only when another process holds the file.
fn sqlite_transient(code: &str) -> bool {
    code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
}

impl StoreError {
    /// On SQLite, a foreign-key violation does not say which key: call sites that insert rows
    /// pointing at one parent map it with this (`.map_err(StoreError::missing_parent("workflow"))`).
    pub(crate) fn missing_parent(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound { what },
            _ => StoreError::from(e),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => return StoreError::Unavailable(e),
            sqlx::Error::Database(db) => {
                let named = db.constraint().and_then(|c| CONSTRAINTS.iter().find(|(name, _)| *name == c));
                match named {
                    Some((_, Meaning::Conflict(what))) if db.is_unique_violation() => {
                        return StoreError::Conflict { what };
                    }
                    Some((_, Meaning::Missing(what))) if db.is_foreign_key_violation() => {
                        return StoreError::NotFound { what };
                    }
                    _ => {}
                }
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    if db.is_unique_violation() {
                        let columns = db.message().rsplit(": ").next().unwrap_or_default();
                        if let Some((_, what)) = SQLITE_UNIQUE.iter().find(|(c, _)| *c == columns) {
                            return StoreError::Conflict { what };
                        }
                    }
                    if db.code().as_deref().is_some_and(sqlite_transient) {
                        return StoreError::Unavailable(e);
                    }
                    return StoreError::Database(e);
                }
                // 57P01 admin_shutdown, 57P03 cannot_connect_now: the server is going away.
                if matches!(db.code().as_deref(), Some("57P01" | "57P02" | "57P03")) {
                    return StoreError::Unavailable(e);
                }
            }
            _ => {}
        }
        StoreError::Database(e)
    }
}

/// A failed query of the response cache's persistent tier, for either backend: the cache logs it
/// and calls the model instead, so the message stays generic.
pub(crate) fn cache_error(e: sqlx::Error) -> sgde_llm::CacheError {
    let e = StoreError::from(e);
    tracing::debug!(error = ?e, "model cache query failed");
    sgde_llm::CacheError(e.to_string())
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(e)
    }
}
