//! Shared test doubles: a scripted in-test model client and a real sandbox pool.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sgde_llm::{ChatRequest, ChatResponse, ModelClient, ModelError, Usage};
use sgde_runtime::{PreparedWorkflow, Runtime, RuntimeConfig};
use sgde_sandbox::{Sandbox, SandboxConfig, WorkerCommand};
use sgde_workflow::WorkflowSpec;

type Script = dyn Fn(&ChatRequest) -> Result<String, ModelError> + Send + Sync;

/// A model client whose replies come from a closure, with an optional delay and counters of
/// calls and concurrency, so tests can assert what ran in parallel.
pub struct ScriptedClient {
    script: Box<Script>,
    delay: Duration,
    pub calls: AtomicUsize,
    pub in_flight: Arc<AtomicUsize>,
    pub max_in_flight: AtomicUsize,
}

impl ScriptedClient {
    pub fn new(
        script: impl Fn(&ChatRequest) -> Result<String, ModelError> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Self::with_delay(Duration::ZERO, script)
    }

    pub fn with_delay(
        delay: Duration,
        script: impl Fn(&ChatRequest) -> Result<String, ModelError> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            script: Box::new(script),
            delay,
            calls: AtomicUsize::new(0),
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight: AtomicUsize::new(0),
        })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }
}

/// Decrements the in-flight counter even when the call's future is dropped mid-way.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl ModelClient for ScriptedClient {
    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, ModelError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let _guard = InFlight(Arc::clone(&self.in_flight));
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let text = (self.script)(&request)?;
        Ok(ChatResponse {
            usage: Usage { prompt_tokens: 10, completion_tokens: 5, estimated: false, cost_usd: 0.001 },
            text,
            latency: self.delay,
            cached: false,
        })
    }
}

/// The user message of a request.
pub fn prompt(request: &ChatRequest) -> &str {
    request.messages.last().map(|m| m.content.as_str()).unwrap_or_default()
}

pub async fn sandbox() -> Sandbox {
    let worker = WorkerCommand::locate().expect(
        "the sandbox worker binary is built by `cargo test --workspace` (or `cargo build -p sgde-sandbox`)",
    );
    Sandbox::start(SandboxConfig { workers: 2, ..SandboxConfig::new(worker) }).await.expect("sandbox starts")
}

pub async fn runtime(client: Arc<ScriptedClient>) -> Runtime {
    runtime_with(client, RuntimeConfig::default()).await
}

pub async fn runtime_with(client: Arc<ScriptedClient>, config: RuntimeConfig) -> Runtime {
    Runtime::new(client, sandbox().await, config)
}

pub fn prepare(spec: Value) -> PreparedWorkflow {
    let spec = WorkflowSpec::from_value(spec).unwrap_or_else(|e| panic!("test spec is invalid: {e}"));
    PreparedWorkflow::new(spec).expect("prepares")
}

pub fn reference_spec() -> Value {
    serde_json::from_str(include_str!("../../../../examples/gsm_consensus.json"))
        .expect("reference example is JSON")
}
