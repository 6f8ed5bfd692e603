//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::{Map, Value, json};
use sgde_sandbox::{CallOutput, CallRequest, Limits, Sandbox, SandboxConfig, SandboxError, WorkerCommand};

/// The worker binary Cargo built for these tests.
pub fn worker() -> WorkerCommand {
    WorkerCommand::new(env!("CARGO_BIN_EXE_sgde-sandbox-worker"), Vec::<String>::new())
}

pub fn config(workers: usize) -> SandboxConfig {
    let mut config = SandboxConfig::new(worker());
    config.workers = workers;
    config.queue_timeout = Duration::from_secs(60);
    config
}

pub async fn sandbox(workers: usize) -> Sandbox {
    Sandbox::start(config(workers)).await.expect("sandbox starts")
}

pub fn kwargs(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("kwargs must be an object, got {other}"),
    }
}

/// Calls `run(**args)` defined by `code`.
pub async fn run(sandbox: &Sandbox, code: &str, args: Value) -> Result<CallOutput, SandboxError> {
    sandbox.call(CallRequest::new(code, kwargs(args))).await
}

pub async fn run_with(
    sandbox: &Sandbox,
    code: &str,
    args: Value,
    limits: Limits,
) -> Result<CallOutput, SandboxError> {
    sandbox.call(CallRequest::new(code, kwargs(args)).with_limits(limits)).await
}

/// Calls `run()` and returns its value, panicking on error.
pub async fn value(sandbox: &Sandbox, code: &str) -> Value {
    match run(sandbox, code, json!({})).await {
        Ok(out) => out.value,
        Err(err) => panic!("call failed: {err}\ncode:\n{code}"),
    }
}

/// Calls `run()` and returns its error, panicking on success.
pub async fn error(sandbox: &Sandbox, code: &str) -> SandboxError {
    match run(sandbox, code, json!({})).await {
        Ok(out) => panic!("call unexpectedly returned {}\ncode:\n{code}", out.value),
        Err(err) => err,
    }
}

/// Asserts that the pool still answers a trivial call correctly.
pub async fn assert_healthy(sandbox: &Sandbox) {
    let out = run(sandbox, "def run(a, b):\n    return a + b\n", json!({"a": 2, "b": 3}))
        .await
        .expect("a trivial call succeeds after the previous one");
    assert_eq!(out.value, json!(5));
}
