//! Runtime overhead and consensus latency.
//!
//! - `reference_instant`: the reference GSM workflow (extract → 5× [program → run] → answer)
//!   with a model client that answers instantly, so the time is the runtime's own plus six real
//!   sandbox calls. Goal: p50 ≤ 1 ms.
//! - `consensus_5x100ms`: five consensus samples against a client that sleeps 100 ms per call.
//!   Goal: ≤ 120 ms, i.e. the samples overlap.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use sgde_llm::{ChatRequest, ChatResponse, ModelClient, ModelError, Usage};
use sgde_runtime::{PreparedWorkflow, RunOptions, Runtime, RuntimeConfig};
use sgde_sandbox::{Sandbox, SandboxConfig, WorkerCommand};
use sgde_workflow::WorkflowSpec;

struct Instant {
    delay: Duration,
}

#[async_trait]
impl ModelClient for Instant {
    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, ModelError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let prompt = request.messages.last().map(|m| m.content.as_str()).unwrap_or_default();
        let text = if prompt.starts_with("Extract") {
            "{\"a\": 1600000, \"b\": 3, \"c\": 4, \"p\": 2}"
        } else if prompt.starts_with("guess") {
            "42"
        } else {
            "(a - b - c) * p"
        };
        Ok(ChatResponse {
            text: text.to_owned(),
            usage: Usage::default(),
            latency: self.delay,
            cached: false,
        })
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let sandbox = rt.block_on(async {
        let worker =
            WorkerCommand::locate().expect("build the worker first: cargo build --release -p sgde-sandbox");
        Sandbox::start(SandboxConfig { workers: 2, ..SandboxConfig::new(worker) }).await.expect("sandbox")
    });

    let spec =
        WorkflowSpec::from_json(include_str!("../../../examples/gsm_consensus.json")).expect("reference");
    let reference = PreparedWorkflow::new(spec).expect("prepares");
    let instant =
        Runtime::new(Arc::new(Instant { delay: Duration::ZERO }), sandbox.clone(), RuntimeConfig::default());
    let inputs = json!({"question": "Janet's ducks lay 1600000 eggs per day..."});
    let options = RunOptions::default();
    c.bench_function("reference_instant", |b| {
        b.to_async(&rt).iter(|| async {
            let report = instant.execute(&reference, inputs.clone(), &options).await;
            assert!(report.result.is_ok(), "{:?}", report.result);
        })
    });

    let consensus = WorkflowSpec::from_value(json!({
        "schema": "sgde.workflow/v1",
        "inputs": {"type": "object"},
        "output": "guess",
        "nodes": {"guess": {"kind": "consensus", "samples": 5, "vote": {"normalize": {"type": "number"}},
            "body": {"output": "g", "nodes": {"g": {"kind": "llm", "prompt": "guess", "parser": {"type": "number"}}}}}}
    }))
    .expect("consensus spec");
    let consensus = PreparedWorkflow::new(consensus).expect("prepares");
    let slow = Runtime::new(
        Arc::new(Instant { delay: Duration::from_millis(100) }),
        sandbox,
        RuntimeConfig::default(),
    );
    let mut group = c.benchmark_group("consensus");
    group.sample_size(20);
    group.bench_function("consensus_5x100ms", |b| {
        b.to_async(&rt).iter(|| async {
            let report = slow.execute(&consensus, json!({}), &options).await;
            assert!(report.result.is_ok(), "{:?}", report.result);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
