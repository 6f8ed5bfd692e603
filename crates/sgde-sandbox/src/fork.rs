//! The fork path: running a call in a throw-away copy of the warm interpreter.
//!
//! Code that could reach shared interpreter state (see [`crate::purity`]) must not run in the
//! worker's own interpreter, or its tampering would reach the next call. A `fork()` gives a
//! copy-on-write copy of the warm, preloaded interpreter; the child arms the limits, runs
//! the call, writes its result to a pipe, closes its pipes and exits. The worker answers as
//! soon as the pipes close and reaps the child later, so the child's teardown is off the
//! critical path.
//!
//! The price is copying page tables and every page either process writes while they share
//! memory (reference counts make that most pages a call touches): about a millisecond on
//! the development machine, against tens of microseconds on the fast path. Keeping a
//! pre-forked spare child was measured and rejected: while a spare exists the *worker*
//! pays a copy for every page it writes, which made calls slower, not faster.
//!
//! The child's stderr is a pipe to the worker, so an abort message (out of memory) or a
//! panic message is read back into the error.

use std::{
    io::Write,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    panic::AssertUnwindSafe,
};

use crate::{
    error::{OutputStream, SandboxError},
    exec::{self, CodeCache},
    interp::SealedInterpreter,
    limits::{Death, Limits, classify_death, enforce},
    protocol::{CallResult, Request},
    seccomp,
};

/// How much of a child's stderr is kept for error messages.
const CHILD_STDERR_BYTES: usize = 8 << 10;

/// Runs calls in forks of the worker.
pub(crate) struct ForkRunner {
    /// Children that answered and are exiting; reaped without blocking.
    exiting: Vec<libc::pid_t>,
}

impl ForkRunner {
    pub fn new() -> Self {
        Self { exiting: Vec::new() }
    }

    /// Runs `request` in a fork and returns its result.
    pub fn run(
        &mut self,
        sandbox: &SealedInterpreter,
        cache: &mut CodeCache,
        request: &Request,
    ) -> CallResult {
        self.reap_exited();
        let child = match fork_call(sandbox, cache, request) {
            Ok(child) => child,
            Err(err) => return CallResult::Err(crashed(format!("fork failed: {err}"))),
        };
        self.collect(child, &request.limits)
    }

    /// Reads the child's answer, or reads its death back as an error.
    fn collect(&mut self, child: Child, limits: &Limits) -> CallResult {
        let Child { pid, result, stderr } = child;
        let (output, errors, overflow) = read_child(&result, &stderr, limits.max_response_bytes());
        if overflow {
            // Dropping our read end makes the child's next write fail, and it exits.
            drop(result);
            self.exiting.push(pid);
            return CallResult::Err(SandboxError::OutputTooLarge {
                stream: OutputStream::Value,
                limit_bytes: limits.output_bytes as u64,
            });
        }
        if !output.is_empty()
            && let Ok(answer) = serde_json::from_slice::<CallResult>(&output)
        {
            self.exiting.push(pid);
            return answer;
        }
        // No answer: the child died. Its exit status says why.
        let errors = String::from_utf8_lossy(&errors);
        match wait(pid, 0) {
            Ok(Some(death)) => CallResult::Err(classify_death(death, &errors, limits)),
            Ok(None) | Err(_) => CallResult::Err(crashed(format!(
                "the forked call ended without an answer; stderr: {}",
                errors.trim()
            ))),
        }
    }

    /// Reaps children that have finished exiting; called between calls.
    pub fn reap_exited(&mut self) {
        self.exiting.retain(|&pid| matches!(wait(pid, libc::WNOHANG), Ok(None)));
    }
}

/// A forked call, seen from the worker.
struct Child {
    pid: libc::pid_t,
    result: OwnedFd,
    stderr: OwnedFd,
}

fn crashed(detail: String) -> SandboxError {
    SandboxError::WorkerCrashed { detail }
}

/// Forks a child that runs `request`; the parent gets the child's pipes.
fn fork_call(
    sandbox: &SealedInterpreter,
    cache: &mut CodeCache,
    request: &Request,
) -> std::io::Result<Child> {
    let (result_read, result_write) = pipe()?;
    let (stderr_read, stderr_write) = pipe()?;
    // SAFETY: the worker is single-threaded, so the child is a consistent copy; the child
    // never returns from `child_main`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        drop((result_read, stderr_read));
        child_main(sandbox, cache, request, result_write, stderr_write);
    }
    Ok(Child { pid, result: result_read, stderr: stderr_read })
}

/// The child: run the request, answer, exit.
fn child_main(
    sandbox: &SealedInterpreter,
    cache: &mut CodeCache,
    request: &Request,
    result: OwnedFd,
    stderr: OwnedFd,
) -> ! {
    // SAFETY: dup2 and close only rearrange our own descriptors. The protocol pipes are
    // closed so that only the worker holds them (the parent sees end-of-file when the worker
    // dies, whatever its children do).
    unsafe {
        libc::dup2(stderr.as_raw_fd(), 2);
        libc::close(0);
        libc::close(1);
    }
    drop(stderr);
    if enforce::die_with_parent().is_err() || seccomp::restrict_fork().is_err() {
        exit(1);
    }
    let answer = run_request(sandbox, cache, request);
    let mut out = std::fs::File::from(result);
    let written =
        serde_json::to_vec(&answer).map_err(std::io::Error::other).and_then(|bytes| out.write_all(&bytes));
    // Close both pipes before exiting, so the worker can answer while this process tears
    // down its copy of the address space.
    drop(out);
    // SAFETY: closing our own stderr descriptor.
    unsafe { libc::close(2) };
    exit(if written.is_ok() { 0 } else { 1 })
}

fn run_request(sandbox: &SealedInterpreter, cache: &mut CodeCache, request: &Request) -> CallResult {
    if let Err(err) = enforce::arm(&request.limits) {
        return CallResult::Err(crashed(format!("cannot arm limits in the fork: {err}")));
    }
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let compiled = cache.get_or_compile(sandbox, &request.code)?;
        exec::run(sandbox, &compiled, &request.function, &request.kwargs, &request.limits)
    }))
    .unwrap_or_else(|_| Err(crashed(crate::worker::panic_detail())));
    let _ = enforce::disarm();
    match outcome {
        Ok(exec::CallValue { value, stdout }) => CallResult::Ok { value, stdout, forked: true },
        Err(err) => CallResult::Err(err),
    }
}

fn exit(code: i32) -> ! {
    // SAFETY: leave without running destructors or atexit handlers of the copied process.
    unsafe { libc::_exit(code) }
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

/// Waits for `pid` (`flags` may be `WNOHANG`); `None` when it has not ended yet.
fn wait(pid: libc::pid_t, flags: i32) -> std::io::Result<Option<Death>> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child writes the status integer we pass.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r == 0 {
            return Ok(None);
        }
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Ok(Some(if libc::WIFSIGNALED(status) {
        Death { signal: Some(libc::WTERMSIG(status)), code: None }
    } else {
        Death { signal: None, code: Some(libc::WEXITSTATUS(status)) }
    }))
}
