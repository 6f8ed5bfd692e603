//! The fork path: running a call in a throw-away copy of the warm interpreter.
//!
//! Code that could reach shared interpreter state (see [`crate::purity`]) must not run in the
//! worker's own interpreter, or its tampering would reach the next call. A `fork()` gives a
//! copy-on-write copy of the warm, preloaded interpreter for the price of copying page tables
//! and the pages the call writes; the copy is discarded afterwards.
//!
//! To keep that price off the critical path the worker keeps one **spare** child ready: it
//! was forked after the previous answer, has run a small pure warm-up call (so the pages
//! every call writes, frames, allocator arenas and common type objects, are already its own)
//! and is blocked reading its request pipe. A call hands its request line to the spare,
//! which arms the limits, runs, writes its result, closes its pipes and exits; the worker
//! answers as soon as the pipes close and reaps the child later. The first forked call of a
//! worker forks synchronously; a worker that never sees impure code never forks.
//!
//! The child's stderr is a pipe to the worker, so an abort message (out of memory) or a
//! panic message is read back into the error.

use std::{
    io::Write,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    panic::AssertUnwindSafe,
};

use serde_json::Map;

use crate::{
    error::{OutputStream, SandboxError},
    exec::{self, CodeCache},
    interp::SealedInterpreter,
    limits::{Death, Limits, classify_death, enforce},
    protocol::{CallResult, Request},
};

/// How much of a child's stderr is kept for error messages.
const CHILD_STDERR_BYTES: usize = 8 << 10;

/// Pure code run by each spare before it waits for its request, touching what every call
/// touches.
const WARM_UP: &str = "def run(a, b, s):\n    d = {'k': [a, b, (a, b)], 's': s.upper() + str(a)}\n    print(f'{a}:{b}', d)\n    return {'sum': sum(d['k'][:2]), 'len': len(d['s']), 'ok': a < b}\n";

/// A forked child waiting for its request.
struct Spare {
    pid: libc::pid_t,
    request: OwnedFd,
    result: OwnedFd,
    stderr: OwnedFd,
}

/// Runs calls in forks of the worker, keeping one spare ready.
pub(crate) struct ForkRunner {
    spare: Option<Spare>,
    /// Children that answered and are exiting; reaped without blocking.
    exiting: Vec<libc::pid_t>,
    /// Whether any call needed a fork yet (a worker that only sees pure code never forks).
    used: bool,
}

impl ForkRunner {
    pub fn new() -> Self {
        Self { spare: None, exiting: Vec::new(), used: false }
    }

    /// Runs `request` (whose raw line is `line`) in a fork and returns its result.
    pub fn run(
        &mut self,
        sandbox: &SealedInterpreter,
        cache: &mut CodeCache,
        line: &str,
        request: &Request,
    ) -> CallResult {
        self.reap_exited();
        self.used = true;
        let mut spare = match self.spare.take() {
            Some(spare) => spare,
            None => match fork_spare(sandbox, cache) {
                Ok(spare) => spare,
                Err(err) => return CallResult::Err(crashed(format!("fork failed: {err}"))),
            },
        };
        if let Err(err) = send(&spare.request, line) {
            // The spare died while waiting (killed from outside); use a fresh one.
            kill(spare.pid);
            self.exiting.push(spare.pid);
            spare = match fork_spare(sandbox, cache) {
                Ok(spare) => spare,
                Err(fork_err) => {
                    return CallResult::Err(crashed(format!("fork failed: {fork_err} ({err})")));
                }
            };
            if let Err(err) = send(&spare.request, line) {
                kill(spare.pid);
                self.exiting.push(spare.pid);
                return CallResult::Err(crashed(format!("cannot reach the forked call: {err}")));
            }
        }
        self.collect(spare, &request.limits)
    }

    /// Forks the next spare if forks are in use and there is none. Called after an answer
    /// has been sent.
    pub fn prepare(&mut self, sandbox: &SealedInterpreter, cache: &mut CodeCache) {
        self.reap_exited();
        if self.used && self.spare.is_none() {
            self.spare = fork_spare(sandbox, cache).ok();
        }
    }

    /// Reads the child's answer, or reads its death back as an error.
    fn collect(&mut self, spare: Spare, limits: &Limits) -> CallResult {
        let Spare { pid, request, result, stderr } = spare;
        drop(request);
        let (output, errors, overflow) = read_child(&result, &stderr, limits.max_response_bytes());
        if overflow {
            kill(pid);
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

    fn reap_exited(&mut self) {
        self.exiting.retain(|&pid| matches!(wait(pid, libc::WNOHANG), Ok(None)));
    }
}

fn crashed(detail: String) -> SandboxError {
    SandboxError::WorkerCrashed { detail }
}

fn kill(pid: libc::pid_t) {
    // SAFETY: kill on our own un-reaped child has no memory effects.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

fn send(fd: &OwnedFd, line: &str) -> std::io::Result<()> {
    let mut file = std::fs::File::from(fd.try_clone()?);
    file.write_all(line.as_bytes())?;
    file.write_all(b"\n")
}

/// Forks a spare: the child warms up and waits; the parent gets its pipes.
fn fork_spare(sandbox: &SealedInterpreter, cache: &mut CodeCache) -> std::io::Result<Spare> {
    let (request_read, request_write) = pipe()?;
    let (result_read, result_write) = pipe()?;
    let (stderr_read, stderr_write) = pipe()?;
    // SAFETY: the worker is single-threaded, so the child is a consistent copy; the child
    // never returns from `spare_main`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        drop((request_write, result_read, stderr_read));
        spare_main(sandbox, cache, request_read, result_write, stderr_write);
    }
    Ok(Spare { pid, request: request_write, result: result_read, stderr: stderr_read })
}

/// The spare child: warm up, wait for one request, run it, answer, exit.
fn spare_main(
    sandbox: &SealedInterpreter,
    cache: &mut CodeCache,
    request: OwnedFd,
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
    if enforce::die_with_parent().is_err() {
        exit(1);
    }
    warm_up(sandbox, cache);

    let mut line = String::new();
    let read = std::io::BufRead::read_line(
        &mut std::io::BufReader::new(std::fs::File::from(request)),
        &mut line,
    );
    if !matches!(read, Ok(n) if n > 0) {
        // The worker discarded this spare (it is exiting).
        exit(0);
    }
    let answer = match serde_json::from_str::<Request>(&line) {
        Ok(request) => run_request(sandbox, cache, &request),
        Err(err) => CallResult::Err(SandboxError::Protocol {
            detail: format!("the forked call got an unreadable request: {err}"),
        }),
    };
    let mut out = std::fs::File::from(result);
    let written = serde_json::to_vec(&answer)
        .map_err(std::io::Error::other)
        .and_then(|bytes| out.write_all(&bytes));
    // Close both pipes before exiting, so the worker can answer while this process tears
    // down its copy of the address space.
    drop(out);
    // SAFETY: closing our own stderr descriptor.
    unsafe { libc::close(2) };
    exit(if written.is_ok() { 0 } else { 1 })
}

fn warm_up(sandbox: &SealedInterpreter, cache: &mut CodeCache) {
    let Ok(compiled) = cache.get_or_compile(sandbox, WARM_UP) else { return };
    let args = serde_json::json!({"a": 1, "b": 2, "s": "warm"});
    let kwargs = args.as_object().cloned().unwrap_or_else(Map::new);
    let _ = exec::run(sandbox, &compiled, "run", &kwargs, &Limits::default());
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
