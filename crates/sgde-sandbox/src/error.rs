//! The one error type of the crate.
//!
//! [`SandboxError`] is serde-serialisable with a `kind` tag so that it travels unchanged over
//! the worker protocol (the worker builds user, compile and conversion errors; the pool adds
//! limit, crash and availability errors) and lands as-is in run traces. [`ErrorKind`] is the
//! short stable code for metrics and logs.

use serde::{Deserialize, Serialize};

/// Which captured stream overflowed its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    /// The JSON encoding of the returned value (limit: `Limits::output_bytes`).
    Value,
    /// Text written with `print` (limit: `Limits::stdout_bytes`).
    Stdout,
}

impl std::fmt::Display for OutputStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Value => "return value",
            Self::Stdout => "printed output",
        })
    }
}

/// Why a sandbox call failed.
///
/// User-facing variants (`User`, `Compile`, `MissingFunction`, `NotJson`, the limits) are
/// the step's fault and deterministic for the same code and inputs (the limits up to timing
/// noise); `WorkerCrashed`, `Protocol` and `Unavailable` are the service's.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SandboxError {
    /// The step raised an exception.
    #[error("{exc_type}: {message}{}", line_suffix(*line))]
    User {
        /// The exception's class name, e.g. `ZeroDivisionError`.
        exc_type: String,
        /// `str(exception)`, truncated to a few KiB.
        message: String,
        /// The line in the step's source where the exception was raised (the innermost
        /// frame of the step's own code), when known.
        line: Option<u32>,
    },
    /// The source does not compile.
    #[error("syntax error: {message}{}", line_suffix(*line))]
    Compile {
        /// The compiler's message.
        message: String,
        /// 1-based line of the error, when known.
        line: Option<u32>,
        /// 1-based column of the error, when known.
        column: Option<u32>,
    },
    /// The code ran but defines no callable with the requested name.
    #[error("the step defines no function `{function}`")]
    MissingFunction {
        /// The requested function name.
        function: String,
    },
    /// The returned value cannot be represented as JSON (see `json_bridge` for the rules).
    #[error("return value is not JSON: {message}")]
    NotJson {
        /// What is wrong and where, e.g. `$.items[2]: a set is not JSON; return a sorted list`.
        message: String,
    },
    /// The call ran longer than its wall-clock limit; the worker was killed.
    #[error("the step ran longer than its wall-clock limit of {wall_ms} ms")]
    Timeout {
        /// The limit that was exceeded.
        wall_ms: u64,
    },
    /// The call used more CPU time than allowed; the worker was killed.
    #[error("the step used more than its CPU limit of {cpu_ms} ms")]
    CpuLimit {
        /// The limit that was exceeded.
        cpu_ms: u64,
    },
    /// The call tried to use more memory than allowed.
    #[error("the step exceeded its memory limit of {memory_bytes} bytes{}", detail_suffix(detail))]
    MemoryLimit {
        /// The limit that was exceeded.
        memory_bytes: u64,
        /// What failed, e.g. the allocation size, when known.
        detail: Option<String>,
    },
    /// The return value or the printed output exceeded its size limit.
    #[error("the step's {stream} exceeded its limit of {limit_bytes} bytes")]
    OutputTooLarge {
        /// Which output.
        stream: OutputStream,
        /// The limit that was exceeded.
        limit_bytes: u64,
    },
    /// The worker process died for a reason that is not a limit (e.g. a stack overflow or
    /// an interpreter bug). It has been replaced.
    #[error("the sandbox worker crashed: {detail}")]
    WorkerCrashed {
        /// Exit status and the tail of the worker's stderr.
        detail: String,
    },
    /// The worker answered something that is not the protocol. It has been replaced.
    #[error("sandbox protocol error: {detail}")]
    Protocol {
        /// What was wrong.
        detail: String,
    },
    /// No worker could serve the call (none could be started, or the sandbox is shut down).
    #[error("sandbox unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
    /// The request itself is malformed (e.g. an empty function name).
    #[error("invalid sandbox request: {reason}")]
    InvalidRequest {
        /// Why.
        reason: String,
    },
}

fn line_suffix(line: Option<u32>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}

fn detail_suffix(detail: &Option<String>) -> String {
    detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default()
}

/// Stable short code of a [`SandboxError`], for metrics, logs and traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    User,
    Compile,
    MissingFunction,
    NotJson,
    Timeout,
    CpuLimit,
    MemoryLimit,
    OutputTooLarge,
    WorkerCrashed,
    Protocol,
    Unavailable,
    InvalidRequest,
}

impl ErrorKind {
    /// The snake_case code, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Compile => "compile",
            Self::MissingFunction => "missing_function",
            Self::NotJson => "not_json",
            Self::Timeout => "timeout",
            Self::CpuLimit => "cpu_limit",
            Self::MemoryLimit => "memory_limit",
            Self::OutputTooLarge => "output_too_large",
            Self::WorkerCrashed => "worker_crashed",
            Self::Protocol => "protocol",
            Self::Unavailable => "unavailable",
            Self::InvalidRequest => "invalid_request",
        }
    }
}

impl SandboxError {
    /// The error's stable kind code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::User { .. } => ErrorKind::User,
            Self::Compile { .. } => ErrorKind::Compile,
            Self::MissingFunction { .. } => ErrorKind::MissingFunction,
            Self::NotJson { .. } => ErrorKind::NotJson,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::CpuLimit { .. } => ErrorKind::CpuLimit,
            Self::MemoryLimit { .. } => ErrorKind::MemoryLimit,
            Self::OutputTooLarge { .. } => ErrorKind::OutputTooLarge,
            Self::WorkerCrashed { .. } => ErrorKind::WorkerCrashed,
            Self::Protocol { .. } => ErrorKind::Protocol,
            Self::Unavailable { .. } => ErrorKind::Unavailable,
            Self::InvalidRequest { .. } => ErrorKind::InvalidRequest,
        }
    }

    /// Whether the step (rather than the service) caused the error: retrying the same call
    /// gives the same error.
    pub fn is_step_error(&self) -> bool {
        !matches!(self, Self::WorkerCrashed { .. } | Self::Protocol { .. } | Self::Unavailable { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_with_kind_tag() {
        let err = SandboxError::User {
            exc_type: "ZeroDivisionError".into(),
            message: "division by zero".into(),
            line: Some(3),
        };
        let json = serde_json::to_value(&err).unwrap();
        assert_eq!(json["kind"], "user");
        assert_eq!(json["line"], 3);
        let back: SandboxError = serde_json::from_value(json).unwrap();
        assert_eq!(back, err);
        assert_eq!(err.to_string(), "ZeroDivisionError: division by zero (line 3)");
        assert_eq!(err.kind().as_str(), "user");
    }

    #[test]
    fn kind_codes_match_serde_tags() {
        let errors = [
            SandboxError::Timeout { wall_ms: 1 },
            SandboxError::CpuLimit { cpu_ms: 1 },
            SandboxError::OutputTooLarge { stream: OutputStream::Stdout, limit_bytes: 1 },
            SandboxError::MissingFunction { function: "run".into() },
        ];
        for err in errors {
            let json = serde_json::to_value(&err).unwrap();
            assert_eq!(json["kind"], err.kind().as_str());
        }
    }
}
