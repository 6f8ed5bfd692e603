//! The worker process: reads requests on stdin, answers on stdout, one at a time.
//!
//! A worker hardens itself (no core files, no file writes, not dumpable), builds and seals
//! one interpreter, announces `ready`, then serves calls:
//!
//! * **pure** code (see [`crate::purity`]) runs in the warm interpreter with the limits
//!   armed on the worker itself: the fast path, a few tens of microseconds;
//! * anything else runs in a `fork()` of the worker: the child arms the limits, runs the
//!   call, sends its result through a pipe and exits, so any tampering dies with it. The
//!   fork costs well under a millisecond because the child shares the warm interpreter's
//!   pages copy-on-write.
//!
//! A worker exits after a call that hit an interpreter panic or when its memory has grown
//! too much, telling the parent with `recycle`. It also exits on end-of-file on stdin, which
//! is how it notices that the parent is gone.

use std::{
    io::{BufRead, Write},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    panic::AssertUnwindSafe,
    process::ExitCode,
    time::Instant,
};

use crate::{
    error::SandboxError,
    exec::{self, CallValue, CodeCache, Compiled},
    interp::SealedInterpreter,
    limits::{Death, classify_death, enforce},
    protocol::{CallResult, Request, WorkerMessage},
};

/// Compiled sources kept per worker.
const CODE_CACHE_ENTRIES: usize = 256;
/// Address-space growth over the freshly sealed worker after which it retires.
const MAX_GROWTH_BYTES: u64 = 512 << 20;
/// How much of a forked child's stderr is kept for error messages.
const CHILD_STDERR_BYTES: usize = 8 << 10;

/// Entry point of a worker process; the companion binary `sgde-sandbox-worker` and the
/// `sgde` binary's hidden `sandbox-worker` subcommand both just call this.
///
/// Exit codes: 0 after end-of-file on stdin or a requested recycle, 70 when the process
/// cannot be set up, 74 on an I/O error on the protocol pipes.
pub fn worker_main() -> ExitCode {
    let started = Instant::now();
    install_panic_hook();
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
    let mut out = std::io::stdout().lock();
    let ready =
        WorkerMessage::Ready { pid: std::process::id(), init_micros: started.elapsed().as_micros() as u64 };
    if send(&mut out, &ready).is_err() {
        return ExitCode::from(74);
    }

    let mut cache = CodeCache::new(CODE_CACHE_ENTRIES);
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
        let (result, mut recycle) = serve(&sandbox, &mut cache, &request);
        let grown = enforce::address_space_bytes().unwrap_or(0).saturating_sub(baseline);
        recycle |= grown > MAX_GROWTH_BYTES;
        let done = WorkerMessage::Done { id: request.id, result, recycle };
        if send(&mut out, &done).is_err() {
            return ExitCode::from(74);
        }
        if recycle {
            return ExitCode::SUCCESS;
        }
    }
}

fn send(out: &mut impl Write, message: &WorkerMessage) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

/// Serves one request; the flag asks for the worker to retire afterwards.
fn serve(sandbox: &SealedInterpreter, cache: &mut CodeCache, request: &Request) -> (CallResult, bool) {
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
        Ok(compiled) => Err(compiled),
    };
    let disarmed = enforce::disarm();
    let (result, recycle) = match outcome {
        Ok(done) => done,
        // The fork path arms its own limits in the child.
        Err(compiled) => (forked(sandbox, &compiled, request), false),
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

fn panic_detail() -> String {
    let message = LAST_PANIC.with_borrow(|last| last.clone());
    format!("interpreter panic: {}", message.lines().take(3).collect::<Vec<_>>().join(" "))
}

fn crashed(detail: String) -> SandboxError {
    SandboxError::WorkerCrashed { detail }
}

/// Runs the call in a forked child and returns its result (or the reason it died).
fn forked(sandbox: &SealedInterpreter, compiled: &Compiled, request: &Request) -> CallResult {
    let limits = &request.limits;
    let (result_read, result_write) = match pipe() {
        Ok(fds) => fds,
        Err(err) => return CallResult::Err(crashed(format!("pipe failed: {err}"))),
    };
    let (err_read, err_write) = match pipe() {
        Ok(fds) => fds,
        Err(err) => return CallResult::Err(crashed(format!("pipe failed: {err}"))),
    };
    // SAFETY: the worker is single-threaded, so the child is a consistent copy; the child
    // only runs the interpreter and leaves with `_exit`, never returning into this frame.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let err = std::io::Error::last_os_error();
        return CallResult::Err(crashed(format!("fork failed: {err}")));
    }
    if pid == 0 {
        drop(result_read);
        drop(err_read);
        child(sandbox, compiled, request, result_write, err_write);
    }
    drop(result_write);
    drop(err_write);
    let max = limits.max_response_bytes();
    let (output, stderr, overflow) = read_child(&result_read, &err_read, max);
    if overflow {
        // SAFETY: kill and waitpid on our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let death = wait(pid);
    if overflow {
        return CallResult::Err(SandboxError::OutputTooLarge {
            stream: crate::error::OutputStream::Value,
            limit_bytes: limits.output_bytes as u64,
        });
    }
    let stderr = String::from_utf8_lossy(&stderr);
    match death {
        Ok(Death { signal: None, code: Some(0) }) => match serde_json::from_slice(&output) {
            Ok(result) => result,
            Err(err) => CallResult::Err(SandboxError::Protocol {
                detail: format!("the forked call sent an unreadable result: {err}"),
            }),
        },
        Ok(death) => CallResult::Err(classify_death(death, &stderr, limits)),
        Err(err) => CallResult::Err(crashed(format!("waitpid failed: {err}"))),
    }
}

/// The forked child: arm limits, run, send, `_exit`.
fn child(
    sandbox: &SealedInterpreter,
    compiled: &Compiled,
    request: &Request,
    result_write: OwnedFd,
    err_write: OwnedFd,
) -> ! {
    // SAFETY: dup2 onto stderr and _exit are async-signal-safe and touch only our fds.
    unsafe {
        libc::dup2(err_write.as_raw_fd(), 2);
    }
    let outcome = enforce::die_with_parent()
        .and_then(|()| enforce::arm(&request.limits))
        .map_err(|err| crashed(format!("cannot arm limits in the fork: {err}")))
        .and_then(|()| {
            std::panic::catch_unwind(AssertUnwindSafe(|| {
                exec::run(sandbox, compiled, &request.function, &request.kwargs, &request.limits)
            }))
            .unwrap_or_else(|_| Err(crashed(panic_detail())))
        });
    let _ = enforce::disarm();
    let result = into_result(outcome, true);
    let mut file = std::fs::File::from(result_write);
    let written =
        serde_json::to_vec(&result).map_err(std::io::Error::other).and_then(|bytes| file.write_all(&bytes));
    // SAFETY: leave without running destructors or atexit handlers of the copied process.
    unsafe { libc::_exit(if written.is_ok() { 0 } else { 1 }) }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Reads the child's result and stderr pipes until both close. Returns the result bytes, the
/// stderr tail, and whether the result exceeded `max` (reading then stops).
fn read_child(result: &OwnedFd, stderr: &OwnedFd, max: usize) -> (Vec<u8>, Vec<u8>, bool) {
    let mut output = Vec::new();
    let mut errors = Vec::new();
    let mut open = [true, true];
    let mut chunk = [0u8; 16 << 10];
    while open[0] || open[1] {
        let mut fds = [
            libc::pollfd { fd: result.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: stderr.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        for (fd, is_open) in fds.iter_mut().zip(open) {
            if !is_open {
                fd.fd = -1;
            }
        }
        // SAFETY: poll reads and writes the array we pass.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if ready < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        for (i, fd) in fds.iter().enumerate() {
            if !open[i] || fd.revents == 0 {
                continue;
            }
            // SAFETY: read into our stack buffer from a descriptor we own.
            let n = unsafe { libc::read(fd.fd, chunk.as_mut_ptr().cast(), chunk.len()) };
            if n <= 0 {
                open[i] = false;
                continue;
            }
            let bytes = &chunk[..n as usize];
            if i == 0 {
                output.extend_from_slice(bytes);
                if output.len() > max {
                    return (output, errors, true);
                }
            } else {
                errors.extend_from_slice(bytes);
                if errors.len() > CHILD_STDERR_BYTES {
                    errors.drain(..errors.len() - CHILD_STDERR_BYTES);
                }
            }
        }
    }
    (output, errors, false)
}

fn wait(pid: libc::pid_t) -> std::io::Result<Death> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child writes the status integer we pass.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Ok(if libc::WIFSIGNALED(status) {
        Death { signal: Some(libc::WTERMSIG(status)), code: None }
    } else {
        Death { signal: None, code: Some(libc::WEXITSTATUS(status)) }
    })
}
