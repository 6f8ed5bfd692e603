//! The worker process: reads requests on stdin, answers on stdout, one at a time.
//!
//! A worker hardens itself (no core files, no file writes, not dumpable), builds and seals
//! one interpreter, narrows its system calls with a seccomp filter (see [`crate::seccomp`]),
//! announces `ready`, then serves calls:
//!
//! * **pure** code (see [`crate::purity`]) runs in the warm interpreter with the limits
//!   armed on the worker itself: the fast path, a few tens of microseconds;
//! * anything else runs in a throw-away `fork()` of the worker (see [`crate::fork`]), so any
//!   tampering dies with the child.
//!
//! A worker exits after a call that hit an interpreter panic or when its memory has grown
//! too much, telling the parent with `recycle`. It also exits on end-of-file on stdin, which
//! is how it notices that the parent is gone.

use std::{
    io::{BufRead, Write},
    panic::AssertUnwindSafe,
    process::ExitCode,
    time::Instant,
};

use crate::{
    error::SandboxError,
    exec::{self, CallValue, CodeCache},
    fork::ForkRunner,
    interp::SealedInterpreter,
    limits::enforce,
    protocol::{CallResult, Request, WorkerMessage},
    seccomp,
};

/// Compiled sources kept per worker.
const CODE_CACHE_ENTRIES: usize = 256;
/// Address-space growth over the freshly sealed worker after which it retires.
const MAX_GROWTH_BYTES: u64 = 512 << 20;

/// Entry point of a worker process; the companion binary `sgde-sandbox-worker` and the
/// `sgde` binary's hidden `sandbox-worker` subcommand both just call this.
///
/// Call it first thing in `main`, before any thread exists (no Tokio runtime, no logging
/// thread): the worker forks, which is only sound in a single-threaded process, so it
/// refuses to start otherwise. Its stdin, stdout and stderr must be pipes, as the pool
/// sets them up (writing to a regular file is forbidden inside the worker).
///
/// Exit codes: 0 after end-of-file on stdin or a requested recycle, 70 when the process
/// cannot be set up, 74 on an I/O error on the protocol pipes.
pub fn worker_main() -> ExitCode {
    let started = Instant::now();
    install_panic_hook();
    match thread_count() {
        Some(1) => {}
        count => {
            eprintln!(
                "sgde-sandbox-worker: the process must be single-threaded to fork calls \
                 (threads: {count:?}); call worker_main before starting any thread"
            );
            return ExitCode::from(70);
        }
    }
    if let Err(err) = enforce::harden_process() {
        eprintln!("sgde-sandbox-worker: cannot harden the process: {err}");
        return ExitCode::from(70);
    }
    let sandbox = match SealedInterpreter::build() {
        Ok(sandbox) => sandbox,
        Err(err) => {
            eprintln!("sgde-sandbox-worker: cannot build the interpreter: {err}");
            return ExitCode::from(70);
        }
    };
    let baseline = enforce::address_space_bytes().unwrap_or(0);
    if let Err(err) = seccomp::restrict_worker() {
        eprintln!("sgde-sandbox-worker: cannot install the seccomp filter: {err}");
        return ExitCode::from(70);
    }
    let mut out = std::io::stdout().lock();
    let ready =
        WorkerMessage::Ready { pid: std::process::id(), init_micros: started.elapsed().as_micros() as u64 };
    if send(&mut out, &ready).is_err() {
        return ExitCode::from(74);
    }

    let mut cache = CodeCache::new(CODE_CACHE_ENTRIES);
    let mut forks = ForkRunner::new();
    let mut input = std::io::stdin().lock();
    let mut line = String::new();
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) => return ExitCode::SUCCESS,
            Ok(_) => {}
            Err(err) => {
                eprintln!("sgde-sandbox-worker: cannot read a request: {err}");
                return ExitCode::from(74);
            }
        }
        let request: Request = match serde_json::from_str(&line) {
            Ok(request) => request,
            Err(err) => {
                eprintln!("sgde-sandbox-worker: malformed request: {err}");
                return ExitCode::from(74);
            }
        };
        let (result, mut recycle) = serve(&sandbox, &mut cache, &mut forks, &request);
        let grown = enforce::address_space_bytes().unwrap_or(0).saturating_sub(baseline);
        recycle |= grown > MAX_GROWTH_BYTES;
        let done = WorkerMessage::Done { id: request.id, result, recycle };
        if send(&mut out, &done).is_err() {
            return ExitCode::from(74);
        }
        if recycle {
            return ExitCode::SUCCESS;
        }
        forks.reap_exited();
    }
}

/// The number of threads in this process, from `/proc/self/status`.
fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| line.strip_prefix("Threads:")).and_then(|n| n.trim().parse().ok())
}

fn send(out: &mut impl Write, message: &WorkerMessage) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

/// Serves one request; the flag asks for the worker to retire afterwards.
fn serve(
    sandbox: &SealedInterpreter,
    cache: &mut CodeCache,
    forks: &mut ForkRunner,
    request: &Request,
) -> (CallResult, bool) {
    if let Err(err) = request.limits.validate() {
        return (CallResult::Err(err), false);
    }
    if let Err(err) = enforce::arm(&request.limits) {
        return (CallResult::Err(crashed(format!("cannot arm limits: {err}"))), true);
    }
    let compiled = cache.get_or_compile(sandbox, &request.code);
    let outcome = match compiled {
        Err(err) => Ok((CallResult::Err(err), false)),
        Ok(compiled) if compiled.purity.is_ok() => {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                exec::run(sandbox, &compiled, &request.function, &request.kwargs, &request.limits)
            }));
            match result {
                Ok(result) => Ok((into_result(result, false), false)),
                Err(_) => Ok((CallResult::Err(crashed(panic_detail())), true)),
            }
        }
        Ok(_) => Err(()),
    };
    let disarmed = enforce::disarm();
    let (result, recycle) = match outcome {
        Ok(done) => done,
        // The fork path arms its own limits in the child.
        Err(()) => (forks.run(sandbox, cache, request), false),
    };
    if let Err(err) = disarmed {
        return (CallResult::Err(crashed(format!("cannot disarm limits: {err}"))), true);
    }
    (result, recycle)
}

fn into_result(result: Result<CallValue, SandboxError>, forked: bool) -> CallResult {
    match result {
        Ok(CallValue { value, stdout }) => CallResult::Ok { value, stdout, forked },
        Err(err) => CallResult::Err(err),
    }
}

thread_local! {
    /// The message of the last panic on this (the only) thread.
    static LAST_PANIC: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Keeps panic messages for the error returned to the caller (RustPython panics on some
/// malformed inputs; the message is what makes such a crash debuggable).
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        LAST_PANIC.with_borrow_mut(|last| *last = info.to_string());
        default(info);
    }));
}

pub(crate) fn panic_detail() -> String {
    let message = LAST_PANIC.with_borrow(|last| last.clone());
    format!("interpreter panic: {}", message.lines().take(3).collect::<Vec<_>>().join(" "))
}

fn crashed(detail: String) -> SandboxError {
    SandboxError::WorkerCrashed { detail }
}
