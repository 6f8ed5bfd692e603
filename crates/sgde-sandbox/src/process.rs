//! The parent's handle on one worker process: start it, send it a call, enforce the wall
//! clock, and read a death back as an error.
//!
//! Workers run in their own process group with an empty environment and `/` as working
//! directory; stdin/stdout carry the protocol and stderr is drained into a small ring buffer
//! (Rust's abort messages there tell an out-of-memory death from a crash). Killing sends
//! `SIGKILL` to the whole group, which also takes down a call's forked child.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, ChildStdout},
    task::JoinHandle,
};

use crate::{
    error::{OutputStream, SandboxError},
    limits::{Death, Limits, classify_death},
    protocol::{CallResult, Line, RequestRef, WorkerMessage, read_line_bounded},
};

/// File name of the companion worker binary.
pub const WORKER_BINARY: &str = "sgde-sandbox-worker";

/// Environment variable that overrides where [`WorkerCommand::locate`] looks.
pub const WORKER_ENV: &str = "SGDE_SANDBOX_WORKER";

/// Bytes of a worker's stderr kept for error messages.
const STDERR_TAIL_BYTES: usize = 8 << 10;
/// Longest a dead worker may take to be reaped and to close stderr.
const REAP_TIMEOUT: Duration = Duration::from_secs(2);

/// How to start a worker process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCommand {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments (e.g. `["sandbox-worker"]` when the `sgde` binary itself is the worker).
    pub args: Vec<OsString>,
}

impl WorkerCommand {
    /// A command running `program` with `args`.
    pub fn new(program: impl Into<PathBuf>, args: impl IntoIterator<Item = impl Into<OsString>>) -> Self {
        Self { program: program.into(), args: args.into_iter().map(Into::into).collect() }
    }

    /// Finds the companion binary `sgde-sandbox-worker`: the path in `SGDE_SANDBOX_WORKER`
    /// if set, else next to the current executable, else in its parent directory (tests and
    /// benchmarks run from `target/<profile>/deps`, the binary is in `target/<profile>`).
    pub fn locate() -> Result<Self, SandboxError> {
        if let Some(path) = std::env::var_os(WORKER_ENV) {
            let path = PathBuf::from(path);
            return if path.is_file() {
                Ok(Self::new(path, Vec::<OsString>::new()))
            } else {
                Err(SandboxError::Unavailable {
                    reason: format!("{WORKER_ENV}={} is not a file", path.display()),
                })
            };
        }
        let exe = std::env::current_exe().map_err(|err| SandboxError::Unavailable {
            reason: format!("cannot find the current executable: {err}"),
        })?;
        let dir = exe.parent().unwrap_or(Path::new("/"));
        let candidates = [Some(dir), dir.parent()];
        let mut searched = Vec::new();
        for candidate in candidates.into_iter().flatten() {
            let path = candidate.join(WORKER_BINARY);
            if path.is_file() {
                return Ok(Self::new(path, Vec::<OsString>::new()));
            }
            searched.push(path.display().to_string());
        }
        Err(SandboxError::Unavailable {
            reason: format!(
                "the worker binary {WORKER_BINARY} was not found (looked at {}; set {WORKER_ENV})",
                searched.join(", ")
            ),
        })
    }
}

/// What happens to a worker after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Healthy: back to the pool.
    Keep,
    /// Asked to retire (it exits by itself); replace it.
    Retire,
    /// Dead or killed; replace it.
    Dead,
}

/// The answer to one call plus the worker's fate.
pub(crate) struct Outcome {
    pub result: Result<Answer, SandboxError>,
    pub fate: Fate,
}

/// A successful call as the worker reported it.
pub(crate) struct Answer {
    pub value: serde_json::Value,
    pub stdout: String,
    pub forked: bool,
}

/// A running worker process.
pub(crate) struct WorkerProcess {
    child: Child,
    pid: i32,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr_tail: Arc<Mutex<Vec<u8>>>,
    stderr_task: Option<JoinHandle<()>>,
    next_id: u64,
    line: Vec<u8>,
    /// Calls served so far.
    pub calls: u32,
}

impl WorkerProcess {
    /// Starts a worker and waits for its `ready` line.
    pub async fn spawn(command: &WorkerCommand, startup_timeout: Duration) -> Result<Self, SandboxError> {
        let unavailable = |reason: String| SandboxError::Unavailable { reason };
        let mut child = tokio::process::Command::new(&command.program)
            .args(&command.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_clear()
            .current_dir("/")
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| unavailable(format!("cannot start {}: {err}", command.program.display())))?;
        let pid = child.id().and_then(|id| i32::try_from(id).ok()).unwrap_or(0);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(unavailable("worker pipes are missing".into()));
        };
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        let stderr_task = tokio::spawn(drain_stderr(stderr, stderr_tail.clone()));
        let mut worker = Self {
            child,
            pid,
            stdin,
            stdout: BufReader::with_capacity(64 << 10, stdout),
            stderr_tail,
            stderr_task: Some(stderr_task),
            next_id: 1,
            line: Vec::new(),
            calls: 0,
        };
        let ready = tokio::time::timeout(
            startup_timeout,
            read_line_bounded(&mut worker.stdout, &mut worker.line, 64 << 10),
        )
        .await;
        match ready {
            Ok(Ok(Line::Complete)) => match serde_json::from_slice(&worker.line) {
                Ok(WorkerMessage::Ready { .. }) => Ok(worker),
                _ => Err(unavailable(format!(
                    "worker sent {:?} instead of ready",
                    String::from_utf8_lossy(&worker.line)
                ))),
            },
            Ok(Ok(_)) | Ok(Err(_)) => {
                let death = worker.reap().await;
                Err(unavailable(format!("worker exited during start-up ({death}): {}", worker.stderr_text())))
            }
            Err(_) => {
                worker.kill();
                Err(unavailable(format!("worker not ready within {} ms", startup_timeout.as_millis())))
            }
        }
    }

    /// Sends one call and waits for its answer, at most `limits.wall_ms`.
    pub async fn call(
        &mut self,
        code: &str,
        function: &str,
        kwargs: &serde_json::Map<String, serde_json::Value>,
        limits: &Limits,
    ) -> Outcome {
        let id = self.next_id;
        self.next_id += 1;
        let request = RequestRef { id, code, function, kwargs, limits };
        let mut line = match serde_json::to_vec(&request) {
            Ok(line) => line,
            Err(err) => {
                return Outcome {
                    result: Err(SandboxError::InvalidRequest { reason: err.to_string() }),
                    fate: Fate::Keep,
                };
            }
        };
        line.push(b'\n');
        let max = limits.max_response_bytes();
        let exchange = async {
            self.stdin.write_all(&line).await?;
            self.stdin.flush().await?;
            read_line_bounded(&mut self.stdout, &mut self.line, max).await
        };
        let read = tokio::time::timeout(Duration::from_millis(limits.wall_ms), exchange).await;
        self.calls += 1;
        match read {
            Err(_) => {
                self.kill();
                self.dead(SandboxError::Timeout { wall_ms: limits.wall_ms })
            }
            Ok(Ok(Line::Complete)) => self.answer(id),
            Ok(Ok(Line::TooLong)) => {
                self.kill();
                self.dead(SandboxError::OutputTooLarge {
                    stream: OutputStream::Value,
                    limit_bytes: limits.output_bytes as u64,
                })
            }
            // End of file or a broken pipe: the worker died during the call.
            Ok(Ok(Line::Eof)) | Ok(Err(_)) => {
                self.kill();
                let death = self.reap().await;
                let error = classify_death(death, &self.stderr_text(), limits);
                self.dead(error)
            }
        }
    }

    fn answer(&mut self, id: u64) -> Outcome {
        match serde_json::from_slice::<WorkerMessage>(&self.line) {
            Ok(WorkerMessage::Done { id: got, result, recycle }) if got == id => {
                let fate = if recycle { Fate::Retire } else { Fate::Keep };
                let result = match result {
                    CallResult::Ok { value, stdout, forked } => Ok(Answer { value, stdout, forked }),
                    CallResult::Err(err) => Err(err),
                };
                Outcome { result, fate }
            }
            Ok(other) => {
                self.kill();
                self.dead(SandboxError::Protocol {
                    detail: format!("expected the answer to call {id}, got {other:?}"),
                })
            }
            Err(err) => {
                self.kill();
                self.dead(SandboxError::Protocol { detail: format!("unreadable answer: {err}") })
            }
        }
    }

    fn dead(&self, error: SandboxError) -> Outcome {
        Outcome { result: Err(error), fate: Fate::Dead }
    }

    /// Whether the process has already ended (killed from outside while idle, say).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `SIGKILL` to the worker's process group (the worker and any forked call).
    pub fn kill(&mut self) {
        if self.pid > 0 {
            // SAFETY: kill has no memory effects; the group id is our un-reaped child's pid,
            // so it cannot have been reused.
            unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        }
        let _ = self.child.start_kill();
    }

    /// Waits for the process to end and for its stderr to close.
    async fn reap(&mut self) -> Death {
        let status = tokio::time::timeout(REAP_TIMEOUT, self.child.wait()).await;
        if let Some(task) = self.stderr_task.take() {
            let _ = tokio::time::timeout(REAP_TIMEOUT, task).await;
        }
        use std::os::unix::process::ExitStatusExt;
        match status {
            Ok(Ok(status)) => Death { signal: status.signal(), code: status.code() },
            _ => Death { signal: None, code: None },
        }
    }

    fn stderr_text(&self) -> String {
        let tail = self.stderr_tail.lock().map(|t| t.clone()).unwrap_or_default();
        String::from_utf8_lossy(&tail).trim().to_owned()
    }
}

async fn drain_stderr(mut stderr: tokio::process::ChildStderr, tail: Arc<Mutex<Vec<u8>>>) {
    let mut chunk = [0u8; 4096];
    loop {
        match stderr.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let Ok(mut tail) = tail.lock() else { return };
                tail.extend_from_slice(&chunk[..n]);
                if tail.len() > STDERR_TAIL_BYTES {
                    let excess = tail.len() - STDERR_TAIL_BYTES;
                    tail.drain(..excess);
                }
            }
        }
    }
}
