//! Workers killed from outside are replaced. In its own test binary because it kills every
//! worker process that is a child of the test process; the tests here take turns.

mod common;

use common::*;
use serde_json::json;
use sgde_sandbox::{Limits, SandboxError};

/// Serialises the tests of this file: each counts and kills all worker processes.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Pids of this process's children that run the worker binary.
fn worker_pids() -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // Fields after the parenthesised command name: state, ppid, ...
        let Some((comm, rest)) = stat.rsplit_once(") ") else { continue };
        let mut fields = rest.split_whitespace();
        let (state, ppid) = (fields.next(), fields.next());
        if comm.contains("sgde-sandbox-wo") && ppid == Some(me.as_str()) && state != Some("Z") {
            pids.push(pid);
        }
    }
    pids
}

fn kill(pid: i32) {
    // SAFETY: kill has no memory effects.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_workers_are_replaced() {
    let _turn = SERIAL.lock().await;
    let sb = sandbox(2).await;
    assert_healthy(&sb).await;
    let pids = worker_pids();
    assert_eq!(pids.len(), 2, "two workers running: {pids:?}");
    for pid in &pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(
            status.lines().any(|l| l.starts_with("Seccomp:") && l.trim_end().ends_with('2')),
            "worker {pid} runs under a seccomp filter"
        );
        assert!(status.lines().any(|l| l.starts_with("NoNewPrivs:") && l.trim_end().ends_with('1')));
    }

    // Killed while idle: the pool notices before dispatching and uses a replacement.
    for pid in &pids {
        kill(*pid);
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    for _ in 0..4 {
        assert_healthy(&sb).await;
    }
    assert_eq!(sb.stats().crashes, 2, "both dead workers were noticed: {:?}", sb.stats());

    // Killed during a call: that call fails as a crash, the next one succeeds.
    let busy = {
        let sb = sb.clone();
        let limits = Limits { cpu_ms: 20_000, wall_ms: 20_000, ..Limits::default() };
        tokio::spawn(async move {
            run_with(&sb, "def run():\n    while True:\n        pass\n", json!({}), limits).await
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    for pid in worker_pids() {
        kill(pid);
    }
    let err = busy.await.unwrap().unwrap_err();
    assert!(matches!(&err, SandboxError::WorkerCrashed { detail } if detail.contains("signal 9")), "{err:?}");
    std::thread::sleep(std::time::Duration::from_millis(100));
    // The worker killed while idle is found at its turn in the queue.
    assert_healthy(&sb).await;
    assert_healthy(&sb).await;
    // Replacements start in the background; give them time to come up.
    for _ in 0..100 {
        if worker_pids().len() == 2 && sb.stats().idle == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(worker_pids().len(), 2, "the pool is back to two workers");
    assert_eq!(sb.stats().respawns, 4, "{:?}", sb.stats());
}

/// Live (non-zombie) processes whose process group is `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some((_, rest)) = stat.rsplit_once(") ") else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // state, ppid, pgrp
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
            members.push(pid);
        }
    }
    members
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_fork_leaves_no_process_behind() {
    let _turn = SERIAL.lock().await;
    let sb = sandbox(1).await;
    assert_healthy(&sb).await;
    let before = worker_pids();
    assert_eq!(before.len(), 1);
    let limits = Limits { cpu_ms: 60_000, wall_ms: 300, ..Limits::default() };
    let code = "import decimal\ndef run():\n    while True:\n        pass\n";
    let err = run_with(&sb, code, json!({}), limits).await.unwrap_err();
    assert_eq!(err, SandboxError::Timeout { wall_ms: 300 });
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(group_members(before[0]).is_empty(), "the worker and its forked call are gone");
    assert_healthy(&sb).await;
}
