//! Sandbox benchmarks: warm call latency (fast path and fork path), cold start of a worker,
//! and throughput with two workers.
//!
//! Run with `cargo bench -p sgde-sandbox`. Besides Criterion's reports, the run prints a
//! per-call latency distribution (p50/p90/p99 over 20,000 calls), because the goal is stated
//! as a median of single calls (p50 ≤ 200 µs), which Criterion's batch means do not show.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Map, Value, json};
use sgde_sandbox::{CallRequest, Sandbox, SandboxConfig, WorkerCommand};

const SMALL: &str = "def run(a, b):\n    return a * b + 1\n";
const TYPICAL: &str = "import math\nfrom fractions import Fraction\n\ndef run(items, rate):\n    total = sum(Fraction(x) for x in items)\n    return {'total': float(total), 'with_rate': math.floor(float(total) * rate)}\n";
const FORKED: &str =
    "import decimal\n\ndef run(a, b):\n    return str(decimal.Decimal(a) / decimal.Decimal(b))\n";

fn config(workers: usize) -> SandboxConfig {
    let worker = WorkerCommand::new(env!("CARGO_BIN_EXE_sgde-sandbox-worker"), Vec::<String>::new());
    let mut config = SandboxConfig::new(worker);
    config.workers = workers;
    config.recycle_after_calls = 1_000_000;
    config
}

fn args(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

fn percentiles(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "{label}: n={} p50={:?} p90={:?} p99={:?} max={:?}",
        samples.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        samples[samples.len() - 1]
    );
}

/// Per-call latency distribution, measured call by call.
fn latency_distribution(rt: &tokio::runtime::Runtime, sandbox: &Sandbox) {
    for (label, code, kwargs) in [
        ("warm call p-values (small, fast path)", SMALL, json!({"a": 6, "b": 7})),
        ("warm call p-values (typical, fast path)", TYPICAL, json!({"items": [1, 2, 3.5], "rate": 1.1})),
        ("warm call p-values (fork path)", FORKED, json!({"a": 1, "b": 7})),
    ] {
        let request = CallRequest::new(code, args(kwargs));
        let samples = rt.block_on(async {
            for _ in 0..500 {
                let _ = sandbox.call(request.clone()).await;
            }
            let mut samples = Vec::with_capacity(20_000);
            for _ in 0..20_000 {
                let started = Instant::now();
                let out = sandbox.call(request.clone()).await;
                samples.push(started.elapsed());
                assert!(out.is_ok(), "{out:?}");
            }
            samples
        });
        percentiles(label, samples);
    }
}

fn warm_calls(c: &mut Criterion) {
    let rt = runtime();
    let sandbox = rt.block_on(Sandbox::start(config(1))).expect("sandbox starts");
    latency_distribution(&rt, &sandbox);

    let mut group = c.benchmark_group("warm_call");
    for (name, code, kwargs) in [
        ("small_fast_path", SMALL, json!({"a": 6, "b": 7})),
        ("typical_fast_path", TYPICAL, json!({"items": [1, 2, 3.5], "rate": 1.1})),
        ("fork_path", FORKED, json!({"a": 1, "b": 7})),
    ] {
        let request = CallRequest::new(code, args(kwargs));
        // `iter_custom` times a run of sequential calls inside one `block_on`, so the
        // number is the call's own latency, not the cost of entering the runtime per call.
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let request = request.clone();
                let sandbox = sandbox.clone();
                async move {
                    let started = Instant::now();
                    for _ in 0..iters {
                        sandbox.call(request.clone()).await.expect("call succeeds");
                    }
                    started.elapsed()
                }
            })
        });
    }
    group.finish();
}

fn cold_start(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("cold_start");
    group.sample_size(20);
    group.bench_function("one_worker_ready", |b| {
        b.to_async(&rt).iter(|| async {
            let sandbox = Sandbox::start(config(1)).await.expect("sandbox starts");
            drop(sandbox);
        })
    });
    group.finish();
}

fn throughput(c: &mut Criterion) {
    let rt = runtime();
    let sandbox = rt.block_on(Sandbox::start(config(2))).expect("sandbox starts");
    const BATCH: usize = 1_000;
    let request = CallRequest::new(SMALL, args(json!({"a": 6, "b": 7})));
    let mut group = c.benchmark_group("throughput_2_workers");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    group.bench_function("small_calls_4_callers", |b| {
        b.to_async(&rt).iter(|| {
            let sandbox = sandbox.clone();
            let request = request.clone();
            async move {
                let tasks: Vec<_> = (0..4)
                    .map(|_| {
                        let sandbox = sandbox.clone();
                        let request = request.clone();
                        tokio::spawn(async move {
                            for _ in 0..BATCH / 4 {
                                sandbox.call(request.clone()).await.expect("call succeeds");
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("task");
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, warm_calls, cold_start, throughput);
criterion_main!(benches);
