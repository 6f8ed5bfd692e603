//! Deterministic Python steps: run a teacher-written `def run(...)` with JSON in and JSON
//! out, isolated from the host and bounded in CPU, wall time, memory and output.
//!
//! ```no_run
//! # async fn example() -> Result<(), sgde_sandbox::SandboxError> {
//! use sgde_sandbox::{CallRequest, Sandbox, SandboxConfig, WorkerCommand};
//!
//! let sandbox = Sandbox::start(SandboxConfig::new(WorkerCommand::locate()?)).await?;
//! let code = "def run(a, b):\n    return a * b\n";
//! let kwargs = serde_json::json!({"a": 6, "b": 7}).as_object().cloned().unwrap_or_default();
//! let out = sandbox.call(CallRequest::new(code, kwargs)).await?;
//! assert_eq!(out.value, serde_json::json!(42));
//! # Ok(()) }
//! ```
//!
//! # Why worker processes
//!
//! An in-process interpreter cannot stop a runaway builtin (`10**(10**9)` never returns to
//! the interpreter loop), leaks state between calls, and takes the service down when it
//! crashes. So calls run in a pool of pre-started worker processes (this crate's
//! `sgde-sandbox-worker` binary, or the `sgde` binary in its hidden worker mode, both calling
//! [`worker_main`]), talking JSON lines over pipes. The kernel enforces CPU and memory
//! limits inside the worker; the parent enforces wall time with `SIGKILL` and replaces dead
//! workers in the background.
//!
//! To use the `sgde` binary itself as the worker, dispatch its hidden subcommand to
//! [`worker_main`] first thing in `main` (before any runtime or logging thread starts) and
//! configure the pool with
//! `WorkerCommand::new(std::env::current_exe()?, ["sandbox-worker"])`.
//!
//! # Isolation
//!
//! * RustPython is built without its `host_env` feature: no `posix`, `_socket`, `_ctypes`,
//!   `FileIO`, `_signal`, ... in the binary at all.
//! * The interpreter's module table holds only what the allowed modules (`math`, `json`,
//!   `re`, `decimal`, `fractions`, `statistics`, `itertools`, `functools`, `collections`)
//!   need; `gc`, `marshal`, `time`, `_random` and the rest are removed before the VM starts.
//!   User imports outside the allow-list fail; `random` is a stub that refuses.
//! * A fixed hash seed and no clock or entropy make the same code and inputs give the same
//!   output. One thing stays host-dependent: object addresses (`id()`, the default `repr`
//!   of functions and plain objects, and the iteration order of sets of such objects).
//! * Each call gets fresh globals. Code that could reach shared interpreter state
//!   (dunders, attribute stores, classes, `decimal`, ...; see `purity.rs`) runs in a
//!   copy-on-write fork that is discarded afterwards, so tampering never reaches the next call.
//! * Workers get an empty environment, `/` as working directory, no core files, no file
//!   writes (`RLIMIT_FSIZE=0`), are not dumpable, and run under a seccomp filter that
//!   refuses every system call serving does not need (no `open`, `socket`, `execve`,
//!   `kill`), in case a bug in the interpreter ever gives Python code native execution.
//!
//! # Layout
//!
//! * `pool.rs`: the public [`Sandbox`] handle: the pool of workers, leases,
//!   replacement, statistics.
//! * `process.rs`: the parent's handle on one worker process ([`WorkerCommand`] says how to
//!   start it): spawning, the wall-clock limit, reading a death back as an error.
//! * `protocol.rs`: the JSON-lines messages and bounded line reading.
//! * `worker.rs`: [`worker_main`], the worker's request loop.
//! * `fork.rs`: running a call in a throw-away fork of the warm interpreter.
//! * `interp.rs`: building the sealed interpreter (registration filter, preload, import
//!   guard, `print` capture).
//! * `exec.rs`: compiling (with a per-worker code cache) and running one call.
//! * `purity.rs`: the bytecode check that decides between the warm interpreter and a fork.
//! * [`policy`]: every allow-list in one auditable place.
//! * `seccomp.rs`: the worker's system-call filter.
//! * [`limits`]: [`Limits`], how a worker arms them, and how a death maps to an error.
//! * [`json_bridge`]: the JSON ↔ Python conversion rules.
//! * [`error`]: [`SandboxError`] and its stable [`ErrorKind`] codes.

pub mod error;
mod exec;
mod fork;
mod interp;
pub mod json_bridge;
pub mod limits;
pub mod policy;
mod pool;
mod process;
mod protocol;
mod purity;
mod seccomp;
mod worker;

pub use error::{ErrorKind, OutputStream, SandboxError};
pub use limits::Limits;
pub use pool::{CallOutput, CallRequest, Sandbox, SandboxConfig, SandboxStats};
pub use process::{WORKER_BINARY, WORKER_ENV, WorkerCommand};
pub use worker::worker_main;
