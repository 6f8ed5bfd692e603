//! The pool: concurrency across workers, recycling, cancellation, start-up failures, and a
//! long run without memory growth in the service.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use sgde_sandbox::{Limits, Sandbox, SandboxError, WorkerCommand};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_run_concurrently_across_workers() {
    let sb = sandbox(2).await;
    // One worker is busy until its CPU limit ends the call ...
    let busy = {
        let sb = sb.clone();
        let limits = Limits { cpu_ms: 1_500, ..Limits::default() };
        tokio::spawn(async move {
            run_with(&sb, "def run():\n    while True:\n        pass\n", json!({}), limits).await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ... while the other answers many calls.
    for i in 0..50 {
        let out = run(&sb, "def run(i):\n    return i * i\n", json!({"i": i})).await.unwrap();
        assert_eq!(out.value, json!(i * i));
    }
    assert!(!busy.is_finished(), "the quick calls did not wait for the busy worker");
    let err = busy.await.unwrap().unwrap_err();
    assert_eq!(err, SandboxError::CpuLimit { cpu_ms: 1_500 });

    // Many concurrent callers share the two workers.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let sb = sb.clone();
        tasks.push(tokio::spawn(async move {
            run(&sb, "import math\ndef run(i):\n    return math.factorial(i % 20)\n", json!({"i": i})).await
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let expected: u64 = (1..=(i as u64 % 20)).product();
        assert_eq!(task.await.unwrap().unwrap().value, json!(expected));
    }
    let stats = sb.stats();
    assert_eq!(stats.calls, 91);
    assert_eq!(stats.cpu_limits, 1);
}

#[tokio::test]
async fn workers_are_recycled_after_n_calls() {
    let mut config = config(1);
    config.recycle_after_calls = 3;
    let sb = Sandbox::start(config).await.unwrap();
    for i in 0..10 {
        let out = run(&sb, "def run(i):\n    return i\n", json!({"i": i})).await.unwrap();
        assert_eq!(out.value, json!(i));
    }
    let stats = sb.stats();
    assert_eq!(stats.recycled, 3, "{stats:?}");
    assert!(stats.respawns >= 2, "{stats:?}");
}

#[tokio::test]
async fn a_cancelled_call_kills_its_worker_and_the_pool_heals() {
    let sb = sandbox(1).await;
    let limits = Limits { cpu_ms: 30_000, wall_ms: 30_000, ..Limits::default() };
    let call = run_with(&sb, "def run():\n    while True:\n        pass\n", json!({}), limits);
    assert!(tokio::time::timeout(Duration::from_millis(200), call).await.is_err());
    assert_healthy(&sb).await;
    let stats = sb.stats();
    assert_eq!(stats.cancelled, 1);
    assert_eq!(stats.respawns, 1);
}

#[tokio::test]
async fn a_closed_pool_refuses_calls() {
    let sb = sandbox(1).await;
    assert_healthy(&sb).await;
    sb.close();
    let err = run(&sb, "def run():\n    return 1\n", json!({})).await.unwrap_err();
    assert!(matches!(&err, SandboxError::Unavailable { reason } if reason.contains("shut down")), "{err}");
    assert_eq!(sb.stats().idle, 0);
}

#[tokio::test]
async fn start_fails_clearly_without_a_worker_binary() {
    let mut config = config(1);
    config.worker = WorkerCommand::new("/nonexistent/sgde-sandbox-worker", Vec::<String>::new());
    let err = Sandbox::start(config).await.unwrap_err();
    assert!(matches!(&err, SandboxError::Unavailable { reason } if reason.contains("cannot start")), "{err}");

    let mut config = common::config(1);
    config.worker = WorkerCommand::new("/bin/false", Vec::<String>::new());
    let err = Sandbox::start(config).await.unwrap_err();
    assert!(
        matches!(&err, SandboxError::Unavailable { reason } if reason.contains("exited during start-up")),
        "{err}"
    );
}

#[tokio::test]
async fn locate_finds_the_companion_binary() {
    if std::env::var_os(sgde_sandbox::WORKER_ENV).is_some() {
        return;
    }
    let command = WorkerCommand::locate().expect("the worker binary is next to the test's deps dir");
    assert!(command.program.ends_with(sgde_sandbox::WORKER_BINARY));
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_calls_without_memory_growth() {
    let sb = sandbox(2).await;
    let code = "import math\ndef run(i, xs):\n    if i % 500 == 499:\n        raise ValueError(i)\n    return {'i': i, 's': sum(xs), 'r': math.sqrt(i)}\n";
    let call = |i: u64| {
        let sb = sb.clone();
        async move { run(&sb, code, json!({"i": i, "xs": [1, 2, 3, i]})).await }
    };
    for i in 0..500 {
        let _ = call(i).await;
    }
    let before = resident_bytes();
    let mut errors = 0;
    for i in 0..10_000 {
        match call(i).await {
            Ok(out) => assert_eq!(out.value["s"], json!(6 + i)),
            Err(SandboxError::User { exc_type, .. }) if exc_type == "ValueError" => errors += 1,
            Err(other) => panic!("call {i}: {other}"),
        }
    }
    let after = resident_bytes();
    assert_eq!(errors, 20);
    let growth = after.saturating_sub(before);
    assert!(growth < 16 << 20, "service RSS grew by {growth} bytes over 10,000 calls");
    assert_eq!(sb.stats().crashes, 0);
}
