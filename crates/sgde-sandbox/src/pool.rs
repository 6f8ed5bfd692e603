//! The pool of pre-started workers and the public [`Sandbox`] handle.
//!
//! Idle workers wait in a FIFO queue guarded by a std mutex (held for a push or a pop, never
//! across an await) next to a semaphore that counts them, so a call waits fairly for a free
//! worker without polling. FIFO rather than LIFO spreads calls over all workers, which keeps
//! recycling even and finds a worker that died while idle at its next turn. A call leases one worker; when the call ends the lease returns
//! the worker, or replaces it when it died, was killed or asked to retire. Replacements start
//! in background tasks, so the caller that hit a limit gets its error at once and the pool
//! heals on its own.
//!
//! Calls are cancel-safe: dropping a call's future mid-flight kills that worker (its state
//! is unknown) and starts a replacement.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use crate::{
    error::SandboxError,
    limits::Limits,
    process::{Answer, Fate, WorkerCommand, WorkerProcess},
};

/// How the pool is built.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Number of worker processes (at least 1). One per core is the useful maximum.
    pub workers: usize,
    /// How to start a worker.
    pub worker: WorkerCommand,
    /// Limits for calls that do not bring their own.
    pub default_limits: Limits,
    /// A worker is replaced after this many calls, bounding slow leaks in the warm
    /// interpreter (RustPython here runs without a cycle collector). The default, 100,000,
    /// is generous: 20,000 calls grew a worker by about 1.4 MB, and a worker also retires by
    /// itself when its address space has grown by 512 MiB.
    pub recycle_after_calls: u32,
    /// How long a starting worker may take to report ready.
    pub startup_timeout: Duration,
    /// How long a call may wait for a free worker before failing with `Unavailable`.
    pub queue_timeout: Duration,
}

impl SandboxConfig {
    /// A configuration with one worker per available core and default limits.
    pub fn new(worker: WorkerCommand) -> Self {
        Self {
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            worker,
            default_limits: Limits::default(),
            recycle_after_calls: 100_000,
            startup_timeout: Duration::from_secs(30),
            queue_timeout: Duration::from_secs(60),
        }
    }
}

/// One call: run `function(**kwargs)` defined by `code`.
#[derive(Debug, Clone)]
pub struct CallRequest {
    /// The step's Python source. An `Arc` so a workflow can share it across runs cheaply.
    pub code: Arc<str>,
    /// The function to call, usually `run`.
    pub function: String,
    /// Keyword arguments, converted by the JSON bridge.
    pub kwargs: Map<String, Value>,
    /// Limits for this call; `None` uses the pool's defaults.
    pub limits: Option<Limits>,
}

impl CallRequest {
    /// A call of `run(**kwargs)` with the default limits.
    pub fn new(code: impl Into<Arc<str>>, kwargs: Map<String, Value>) -> Self {
        Self { code: code.into(), function: "run".into(), kwargs, limits: None }
    }

    /// The same call with explicit limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }
}

/// What a successful call returned.
#[derive(Debug, Clone, PartialEq)]
pub struct CallOutput {
    /// The function's return value.
    pub value: Value,
    /// Text the step printed.
    pub stdout: String,
    /// Wall-clock time of the call as seen by the caller, queueing included.
    pub duration: Duration,
    /// Whether the call ran in a throw-away fork (code that could reach shared interpreter
    /// state) rather than the warm interpreter.
    pub forked: bool,
}

/// Counters since the pool started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStats {
    /// Configured number of workers.
    pub workers: usize,
    /// Workers idle right now.
    pub idle: usize,
    /// Calls answered (successes and errors).
    pub calls: u64,
    /// Calls that returned a value.
    pub succeeded: u64,
    /// Successful calls that ran in a fork.
    pub forked: u64,
    /// Calls killed by the wall-clock limit.
    pub timeouts: u64,
    /// Calls stopped by the CPU limit.
    pub cpu_limits: u64,
    /// Calls stopped by the memory limit.
    pub memory_limits: u64,
    /// Worker deaths that were not a limit.
    pub crashes: u64,
    /// Replacement workers started.
    pub respawns: u64,
    /// Workers retired after `recycle_after_calls` or at their own request.
    pub recycled: u64,
    /// Failed attempts to start a worker.
    pub spawn_failures: u64,
    /// Calls abandoned by their caller mid-flight (the worker was killed).
    pub cancelled: u64,
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    succeeded: AtomicU64,
    forked: AtomicU64,
    timeouts: AtomicU64,
    cpu_limits: AtomicU64,
    memory_limits: AtomicU64,
    crashes: AtomicU64,
    respawns: AtomicU64,
    recycled: AtomicU64,
    spawn_failures: AtomicU64,
    cancelled: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct Inner {
    config: SandboxConfig,
    idle: Mutex<VecDeque<WorkerProcess>>,
    available: Semaphore,
    counters: Counters,
    /// The last reason a worker could not be started, cleared by the next success.
    spawn_error: Mutex<Option<String>>,
    runtime: tokio::runtime::Handle,
}

/// A pool of sandbox worker processes. Cheap to clone; all clones share the pool, which
/// shuts down (killing its workers) when the last clone is dropped.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").field("stats", &self.stats()).finish()
    }
}

impl Sandbox {
    /// Starts `config.workers` workers and waits until all are ready. Must be called inside
    /// a Tokio runtime; replacements are started on it later.
    pub async fn start(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        if config.workers == 0 {
            return Err(SandboxError::InvalidRequest { reason: "workers must be at least 1".into() });
        }
        config.default_limits.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|err| SandboxError::Unavailable {
            reason: format!("the sandbox needs a Tokio runtime: {err}"),
        })?;
        // Workers initialise in parallel (each builds its interpreter in its own process).
        let mut starts = tokio::task::JoinSet::new();
        for _ in 0..config.workers {
            let command = config.worker.clone();
            let timeout = config.startup_timeout;
            starts.spawn(async move { WorkerProcess::spawn(&command, timeout).await });
        }
        let mut workers = Vec::with_capacity(config.workers);
        while let Some(started) = starts.join_next().await {
            let started = started.map_err(|err| SandboxError::Unavailable {
                reason: format!("worker start-up task failed: {err}"),
            })?;
            workers.push(started?);
        }
        let count = workers.len();
        let inner = Arc::new(Inner {
            config,
            idle: Mutex::new(workers.into()),
            available: Semaphore::new(count),
            counters: Counters::default(),
            spawn_error: Mutex::new(None),
            runtime,
        });
        tracing::debug!(workers = count, "sandbox pool started");
        Ok(Sandbox { inner })
    }

    /// Runs one call on a free worker.
    #[tracing::instrument(skip_all, fields(function = %request.function))]
    pub async fn call(&self, request: CallRequest) -> Result<CallOutput, SandboxError> {
        let started = Instant::now();
        validate_function(&request.function)?;
        let limits = request.limits.unwrap_or(self.inner.config.default_limits);
        limits.validate()?;
        let mut lease = self.acquire().await?;
        let Some(worker) = lease.worker.as_mut() else {
            return Err(SandboxError::Unavailable { reason: "lease without a worker".into() });
        };
        let outcome = worker.call(&request.code, &request.function, &request.kwargs, &limits).await;
        let recycle_due = worker.calls >= self.inner.config.recycle_after_calls;
        let fate = match outcome.fate {
            Fate::Keep if recycle_due => Fate::Retire,
            fate => fate,
        };
        lease.finish(fate);
        self.count(&outcome.result);
        outcome.result.map(|Answer { value, stdout, forked }| CallOutput {
            value,
            stdout,
            duration: started.elapsed(),
            forked,
        })
    }

    /// Counters since the pool started.
    pub fn stats(&self) -> SandboxStats {
        let c = &self.inner.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SandboxStats {
            workers: self.inner.config.workers,
            idle: self.inner.idle.lock().map(|idle| idle.len()).unwrap_or(0),
            calls: get(&c.calls),
            succeeded: get(&c.succeeded),
            forked: get(&c.forked),
            timeouts: get(&c.timeouts),
            cpu_limits: get(&c.cpu_limits),
            memory_limits: get(&c.memory_limits),
            crashes: get(&c.crashes),
            respawns: get(&c.respawns),
            recycled: get(&c.recycled),
            spawn_failures: get(&c.spawn_failures),
            cancelled: get(&c.cancelled),
        }
    }

    /// Shuts the pool down: calls waiting for a worker and later calls fail with
    /// `Unavailable`, idle workers are killed now, and busy ones when their call ends.
    /// Dropping the last clone of the `Sandbox` has the same effect.
    pub fn close(&self) {
        self.inner.available.close();
        if let Ok(mut idle) = self.inner.idle.lock() {
            for mut worker in idle.drain(..) {
                worker.kill();
            }
        }
    }

    /// The configuration the pool was started with.
    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    fn count(&self, result: &Result<Answer, SandboxError>) {
        let c = &self.inner.counters;
        bump(&c.calls);
        match result {
            Ok(answer) => {
                bump(&c.succeeded);
                if answer.forked {
                    bump(&c.forked);
                }
            }
            Err(SandboxError::Timeout { .. }) => bump(&c.timeouts),
            Err(SandboxError::CpuLimit { .. }) => bump(&c.cpu_limits),
            Err(SandboxError::MemoryLimit { .. }) => bump(&c.memory_limits),
            Err(SandboxError::WorkerCrashed { .. } | SandboxError::Protocol { .. }) => bump(&c.crashes),
            Err(_) => {}
        }
    }

    async fn acquire(&self) -> Result<Lease, SandboxError> {
        loop {
            let mut worker = self.acquire_any().await?;
            // A worker that died while idle (killed from outside) is replaced rather than
            // handed a call it could only fail.
            if worker.has_exited() {
                bump(&self.inner.counters.crashes);
                drop(worker);
                replace(&self.inner);
                continue;
            }
            return Ok(Lease { worker: Some(worker), inner: self.inner.clone() });
        }
    }

    async fn acquire_any(&self) -> Result<WorkerProcess, SandboxError> {
        let inner = &self.inner;
        let waited = tokio::time::timeout(inner.config.queue_timeout, inner.available.acquire()).await;
        let permit = match waited {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => {
                return Err(SandboxError::Unavailable { reason: "the sandbox is shut down".into() });
            }
            Err(_) => {
                let last = inner.spawn_error.lock().ok().and_then(|e| e.clone());
                let reason = match last {
                    Some(err) => format!("no worker became free; last start-up failure: {err}"),
                    None => {
                        format!("no worker became free within {} ms", inner.config.queue_timeout.as_millis())
                    }
                };
                return Err(SandboxError::Unavailable { reason });
            }
        };
        permit.forget();
        let worker = inner.idle.lock().ok().and_then(|mut idle| idle.pop_front());
        worker.ok_or_else(|| SandboxError::Unavailable { reason: "idle list out of sync".into() })
    }
}

/// A worker taken out of the pool for one call. Dropped without [`Lease::finish`] (the call
/// was cancelled), it kills the worker and starts a replacement.
struct Lease {
    worker: Option<WorkerProcess>,
    inner: Arc<Inner>,
}

impl Lease {
    fn finish(&mut self, fate: Fate) {
        let Some(mut worker) = self.worker.take() else { return };
        match fate {
            Fate::Keep => self.inner.put_back(worker),
            Fate::Retire => {
                bump(&self.inner.counters.recycled);
                worker.kill();
                drop(worker);
                replace(&self.inner);
            }
            Fate::Dead => {
                drop(worker);
                replace(&self.inner);
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(mut worker) = self.worker.take() {
            bump(&self.inner.counters.cancelled);
            worker.kill();
            drop(worker);
            replace(&self.inner);
        }
    }
}

impl Inner {
    fn put_back(&self, mut worker: WorkerProcess) {
        if self.available.is_closed() {
            worker.kill();
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push_back(worker);
            self.available.add_permits(1);
        }
    }
}

/// Starts a replacement worker in the background, retrying with back-off until it succeeds
/// or the pool is gone.
fn replace(inner: &Arc<Inner>) {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    inner.runtime.spawn(async move {
        let mut backoff = Duration::from_millis(50);
        loop {
            let Some(inner) = weak.upgrade() else { return };
            if inner.available.is_closed() {
                return;
            }
            let command = inner.config.worker.clone();
            let timeout = inner.config.startup_timeout;
            drop(inner);
            let started = WorkerProcess::spawn(&command, timeout).await;
            let Some(inner) = weak.upgrade() else { return };
            match started {
                Ok(worker) => {
                    bump(&inner.counters.respawns);
                    if let Ok(mut last) = inner.spawn_error.lock() {
                        *last = None;
                    }
                    inner.put_back(worker);
                    return;
                }
                Err(err) => {
                    bump(&inner.counters.spawn_failures);
                    tracing::warn!(error = %err, "sandbox worker failed to start; retrying");
                    if let Ok(mut last) = inner.spawn_error.lock() {
                        *last = Some(err.to_string());
                    }
                }
            }
            drop(inner);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}

/// Function names are Python identifiers; anything else is refused before reaching a worker.
fn validate_function(name: &str) -> Result<(), SandboxError> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(SandboxError::InvalidRequest {
            reason: format!("function name {name:?} is not a Python identifier"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_is_send_sync_and_cheap_to_clone() {
        fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
        assert_send_sync_clone::<Sandbox>();
    }

    #[test]
    fn function_names_must_be_identifiers() {
        assert!(validate_function("run").is_ok());
        assert!(validate_function("_helper2").is_ok());
        assert!(validate_function("").is_err());
        assert!(validate_function("run()").is_err());
        assert!(validate_function("2run").is_err());
    }
}
