//! Runaway steps: every limit yields its typed error, the worker is replaced, and the next
//! call is unharmed. No timing assertions: the limits themselves are the subject.

mod common;

use common::*;
use serde_json::json;
use sgde_sandbox::{Limits, OutputStream, SandboxError};

/// Small limits so that the runaways end quickly.
fn tight() -> Limits {
    Limits { cpu_ms: 300, wall_ms: 10_000, memory_bytes: 64 << 20, ..Limits::default() }
}

async fn failing(sb: &sgde_sandbox::Sandbox, code: &str, limits: Limits) -> SandboxError {
    match run_with(sb, code, json!({}), limits).await {
        Ok(out) => panic!("runaway returned {}:\n{code}", out.value),
        Err(err) => err,
    }
}

#[tokio::test]
async fn runaway_cpu_is_stopped() {
    let sb = sandbox(1).await;
    for code in [
        "def run():\n    while True:\n        pass\n",
        // A loop that swallows every exception, including any an interpreter-level
        // interrupt would raise.
        "def run():\n    while True:\n        try:\n            while True:\n                pass\n        except BaseException:\n            pass\n",
        // The same in code that runs in a fork (it imports decimal).
        "import decimal\ndef run():\n    while True:\n        try:\n            pass\n        except BaseException:\n            pass\n",
        // A single builtin that never returns to the interpreter loop.
        "def run():\n    return sum(range(10**12))\n",
        "import re\ndef run():\n    return bool(re.match(r'(a+)+$', 'a' * 64 + 'b'))\n",
    ] {
        let err = failing(&sb, code, tight()).await;
        assert_eq!(err, SandboxError::CpuLimit { cpu_ms: 300 }, "{code}");
        assert_healthy(&sb).await;
    }
}

#[tokio::test]
async fn huge_allocations_are_stopped() {
    let sb = sandbox(1).await;
    for code in [
        "def run():\n    return len([0] * 10**10)\n",
        "def run():\n    return len('a' * 10**11)\n",
        "def run():\n    x = []\n    while True:\n        x.append('x' * 10**6)\n",
        "def run():\n    return len(str(10**(10**9)))\n",
        "import decimal\ndef run():\n    return len(bytearray(10**9))\n",
    ] {
        let err = failing(&sb, code, tight()).await;
        // A huge builtin computation may hit the CPU limit before the memory limit; either
        // way the step is stopped with a limit error.
        assert!(
            matches!(err, SandboxError::MemoryLimit { .. } | SandboxError::CpuLimit { .. }),
            "{code}\n=> {err:?}"
        );
        assert_healthy(&sb).await;
    }
    assert!(sb.stats().memory_limits >= 3, "{:?}", sb.stats());
}

#[tokio::test]
async fn wall_clock_limit_kills_the_worker() {
    let sb = sandbox(1).await;
    let limits = Limits { cpu_ms: 60_000, wall_ms: 300, ..Limits::default() };
    let err = failing(&sb, "def run():\n    while True:\n        pass\n", limits).await;
    assert_eq!(err, SandboxError::Timeout { wall_ms: 300 });
    assert_healthy(&sb).await;
    let stats = sb.stats();
    assert_eq!(stats.timeouts, 1);
    assert_eq!(stats.respawns, 1);
}

#[tokio::test]
async fn deep_recursion_is_a_recursion_error() {
    let sb = sandbox(1).await;
    let code = "def f(n):\n    return f(n + 1)\n\ndef run():\n    return f(0)\n";
    match failing(&sb, code, Limits::default()).await {
        SandboxError::User { exc_type, line, .. } => {
            assert_eq!(exc_type, "RecursionError");
            assert_eq!(line, Some(2));
        }
        other => panic!("expected RecursionError, got {other:?}"),
    }
    assert_healthy(&sb).await;
    // Deeper than the default limit is refused in a fork too (where a step could raise the
    // interpreter's recursion limit, the Rust stack is the backstop).
    let code = "import collections\ndef run():\n    collections._sys.setrecursionlimit(10**6)\n    def f(n):\n        return f(n + 1)\n    return f(0)\n";
    let err = failing(&sb, code, Limits::default()).await;
    match &err {
        SandboxError::User { exc_type, .. } => assert_eq!(exc_type, "RecursionError"),
        SandboxError::MemoryLimit { .. } => {}
        other => panic!("expected a recursion or memory error, got {other:?}"),
    }
    assert_healthy(&sb).await;
}

#[tokio::test]
async fn huge_output_is_refused() {
    let sb = sandbox(1).await;
    let limits = Limits { stdout_bytes: 1000, output_bytes: 10_000, ..Limits::default() };
    let err = failing(&sb, "def run():\n    while True:\n        print('spam' * 10)\n", limits).await;
    assert_eq!(err, SandboxError::OutputTooLarge { stream: OutputStream::Stdout, limit_bytes: 1000 });
    // Swallowing the overflow exception does not help.
    let code = "def run():\n    for i in range(100):\n        try:\n            print('x' * 100)\n        except BaseException:\n            pass\n    return 1\n";
    let err = failing(&sb, code, limits).await;
    assert_eq!(err, SandboxError::OutputTooLarge { stream: OutputStream::Stdout, limit_bytes: 1000 });
    let err = failing(&sb, "def run():\n    return 'x' * 20000\n", limits).await;
    assert_eq!(err, SandboxError::OutputTooLarge { stream: OutputStream::Value, limit_bytes: 10_000 });
    let err = failing(&sb, "def run():\n    return list(range(100000))\n", limits).await;
    assert_eq!(err, SandboxError::OutputTooLarge { stream: OutputStream::Value, limit_bytes: 10_000 });
    // Within the limits, print output comes back.
    let out = run_with(&sb, "def run():\n    print('hello', 42)\n    return None\n", json!({}), limits)
        .await
        .unwrap();
    assert_eq!(out.stdout, "hello 42\n");
    assert_healthy(&sb).await;
}

#[tokio::test]
async fn invalid_limits_are_refused_before_running() {
    let sb = sandbox(1).await;
    let limits = Limits { cpu_ms: 0, ..Limits::default() };
    let err = failing(&sb, "def run():\n    return 1\n", limits).await;
    assert!(matches!(err, SandboxError::InvalidRequest { .. }), "{err:?}");
}
