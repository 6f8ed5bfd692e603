//! The escape suite: every route out of the sandbox we know of must fail.
//!
//! Each test runs attacker-style code and asserts a specific refusal, so a regression that
//! lets one route through makes the test fail (the probes report "ESCAPED" rather than
//! swallowing success).

mod common;

use common::*;
use serde_json::{Value, json};
use sgde_sandbox::SandboxError;

/// Asserts that `code` fails with a Python exception of type `exc_type`.
async fn assert_raises(sandbox: &sgde_sandbox::Sandbox, code: &str, exc_type: &str) {
    match error(sandbox, code).await {
        SandboxError::User { exc_type: got, message, .. } => {
            assert_eq!(got, exc_type, "unexpected exception ({message}) for:\n{code}")
        }
        other => panic!("expected {exc_type}, got {other:?} for:\n{code}"),
    }
}

#[tokio::test]
async fn open_is_not_available() {
    let sb = sandbox(1).await;
    assert_raises(&sb, "def run():\n    return open('/etc/passwd').read()\n", "NameError").await;
    assert_raises(&sb, "def run():\n    return __builtins__.open('/etc/passwd')\n", "AttributeError").await;
}

#[tokio::test]
async fn host_modules_cannot_be_imported() {
    let sb = sandbox(1).await;
    for module in [
        "os",
        "sys",
        "posix",
        "socket",
        "_socket",
        "subprocess",
        "_posixsubprocess",
        "ctypes",
        "_ctypes",
        "_io",
        "io",
        "time",
        "gc",
        "marshal",
        "builtins",
        "importlib",
        "_imp",
        "_thread",
        "threading",
        "signal",
        "random",
        "_random",
        "pathlib",
        "shutil",
        "_frozen_importlib",
        "_frozen_importlib_external",
        "resource",
        "mmap",
        "select",
    ] {
        let code = format!("import {module}\ndef run():\n    return 'ESCAPED'\n");
        assert_raises(&sb, &code, "ImportError").await;
        let code = format!("def run():\n    __import__('{module}')\n    return 'ESCAPED'\n");
        assert_raises(&sb, &code, "ImportError").await;
    }
    assert_raises(&sb, "from os import path\n", "ImportError").await;
    assert_raises(&sb, "import json.tool\n", "ModuleNotFoundError").await;
}

#[tokio::test]
async fn eval_exec_and_compile_go_through_the_same_guard() {
    let sb = sandbox(1).await;
    assert_raises(&sb, "def run():\n    return eval(\"__import__('os')\")\n", "ImportError").await;
    assert_raises(&sb, "def run():\n    exec('import socket')\n", "ImportError").await;
    assert_raises(&sb, "def run():\n    exec(compile('import subprocess', 'x', 'exec'))\n", "ImportError")
        .await;
    assert_raises(&sb, "def run():\n    return eval(\"open('/etc/passwd')\")\n", "NameError").await;
    assert_raises(&sb, "def run():\n    exec('import sys', {})\n", "ImportError").await;
}

/// Walks the class hierarchy and the `__globals__` of importlib internals (the route that
/// defeats a Python-level import hook) and tries every host-access door from there.
const INTERNALS_PROBE: &str = r#"
def run():
    results = {}

    def attempt(name, fn):
        try:
            got = fn()
            # `_imp.create_builtin` answers None for a module it does not have.
            results[name] = 'blocked: None' if got is None else 'ESCAPED: ' + repr(got)[:80]
        except BaseException as e:
            results[name] = 'blocked: ' + type(e).__name__

    subclasses = ().__class__.__base__.__subclasses__()
    names = sorted(c.__qualname__ for c in subclasses)
    lock = [c for c in subclasses if c.__qualname__ == '_ModuleLock']
    g = lock[0].__init__.__globals__ if lock else {}
    sys = g.get('sys')
    imp = g.get('_imp')
    real_import = g.get('__import__')
    if sys is None or imp is None or real_import is None:
        raise RuntimeError('the probe could not reach the importlib internals')
    # Positive controls: the doors work for registered modules.
    assert imp.create_builtin(type('S', (), {'name': 'math'})()) is not None
    assert real_import('math') is not None

    for mod in ['posix', 'os', '_socket', 'time', 'gc', 'marshal', '_ctypes', '_signal',
                '_posixsubprocess', 'pwd', 'resource', 'mmap', 'select', '_random',
                'zlib', '_frozen_importlib_external']:
        attempt('bootstrap import ' + mod, lambda mod=mod: real_import(mod))
        attempt('create_builtin ' + mod,
                lambda mod=mod: imp.create_builtin(type('S', (), {'name': mod})()))
        attempt('sys.modules ' + mod, lambda mod=mod: sys.modules[mod])

    builtin_importer = [c for c in subclasses if c.__qualname__ == 'BuiltinImporter']
    attempt('BuiltinImporter posix',
            lambda: builtin_importer[0].find_spec('posix') or (_ for _ in ()).throw(LookupError()))
    frozen_importer = [c for c in subclasses if c.__qualname__ == 'FrozenImporter']
    attempt('FrozenImporter os',
            lambda: frozen_importer[0].find_spec('os') or (_ for _ in ()).throw(LookupError()))
    attempt('FileIO', lambda: sys.modules['_io'].FileIO('/etc/passwd'))
    attempt('_io.open', lambda: sys.modules['_io'].open('/etc/passwd').read())
    attempt('_io.open fd', lambda: sys.modules['_io'].open(1, 'w').write('x'))
    attempt('real stdout', lambda: sys.__stdout__.write('x'))
    attempt('file classes', lambda: [n for n in names if 'FileIO' in n or 'FileLoader' in n][0])
    return results
"#;

#[tokio::test]
async fn internals_route_reaches_no_host_access() {
    let sb = sandbox(1).await;
    let out = run(&sb, INTERNALS_PROBE, json!({})).await.expect("the probe itself runs");
    assert!(out.forked, "code using dunders must run in a throw-away fork");
    let Value::Object(results) = out.value else { panic!("probe returns a dict") };
    assert!(results.len() > 40, "the probe ran all attempts: {results:?}");
    let escaped: Vec<_> =
        results.iter().filter(|(_, v)| !v.as_str().is_some_and(|s| s.starts_with("blocked"))).collect();
    assert!(escaped.is_empty(), "escapes: {escaped:#?}");
}

#[tokio::test]
async fn globals_route_to_real_builtins_finds_no_open_and_a_guarded_import() {
    let sb = sandbox(1).await;
    let code = r#"
import json
def run():
    b = json.dumps.__globals__['__builtins__']
    b = b if isinstance(b, dict) else b.__dict__
    out = {'open': 'open' in b, 'input': 'input' in b}
    try:
        b['__import__']('os')
        out['import'] = 'ESCAPED'
    except ImportError as e:
        out['import'] = 'blocked'
    return out
"#;
    assert_eq!(value(&sb, code).await, json!({"open": false, "input": false, "import": "blocked"}));
}

#[tokio::test]
async fn builtins_tampering_does_not_persist() {
    let sb = sandbox(1).await;
    let tamper = r#"
def run():
    __builtins__.len = lambda x: 42
    __builtins__.__import__ = lambda *a, **k: None
    __builtins__.sum = lambda *a: -1
    return len([1, 2, 3])
"#;
    assert_eq!(value(&sb, tamper).await, json!(42), "tampering works inside the call");
    for _ in 0..3 {
        assert_eq!(value(&sb, "def run():\n    return [len([1, 2, 3]), sum([1, 2])]\n").await, json!([3, 3]));
    }
    assert_raises(&sb, "import os\n", "ImportError").await;
}

#[tokio::test]
async fn crafted_bytecode_is_contained() {
    let sb = sandbox(1).await;
    let code = r#"
def run():
    f = lambda: 0
    f.__code__ = f.__code__.replace(co_code=b'\xff\x00' * 8)
    return f()
"#;
    // Whatever RustPython does with invalid bytecode (an exception or a crash of the
    // forked call), the step must fail and the worker must survive.
    let err = error(&sb, code).await;
    assert!(matches!(err, SandboxError::User { .. } | SandboxError::WorkerCrashed { .. }), "{err:?}");
    assert_healthy(&sb).await;
}

#[tokio::test]
async fn interpreter_panics_are_contained() {
    let sb = sandbox(1).await;
    // RustPython 0.5 panics on `__name__` of one of its internal static types; reaching it
    // needs dunders, so it runs in a fork and only that call fails.
    let code = "def run():\n    return [c.__name__ for c in object.__subclasses__()]\n";
    match error(&sb, code).await {
        SandboxError::WorkerCrashed { detail } => assert!(detail.contains("panic"), "{detail}"),
        other => panic!("expected a contained crash, got {other:?}"),
    }
    assert_healthy(&sb).await;
    assert_eq!(sb.stats().respawns, 0, "the worker itself survived");
}
