//! Per-call resource limits: what they mean, how a worker arms them, and how a death is
//! read back as a limit error.
//!
//! Limits are enforced by the kernel and the parent, never by the interpreter, because a
//! single builtin (`10**(10**9)`, `'a'*10**11`, a catastrophic regex) never returns to the
//! interpreter loop to be interrupted:
//!
//! * **CPU**: `setitimer(ITIMER_PROF)` with microsecond resolution raises `SIGPROF`, whose
//!   default action kills the process; `RLIMIT_CPU` (whole seconds, `SIGXCPU`) is re-armed
//!   per call as a backstop. Both are re-armed before each call because CPU time accumulates
//!   over a worker's life.
//! * **Memory**: `RLIMIT_AS` is set to the worker's current address-space size plus
//!   `memory_bytes` before each call, so the limit means "memory this call may add". An
//!   allocation beyond it fails and Rust aborts the process; the parent reads the abort
//!   message from the worker's stderr.
//! * **Wall clock**: the parent's timer; on expiry it kills the worker's process group with
//!   `SIGKILL` and starts a replacement.
//! * **Output**: the worker stops `print` past `stdout_bytes` and the JSON conversion past
//!   `output_bytes`; the parent also bounds the line it reads.
//!
//! A worker that dies is replaced; the call gets a typed error.

use serde::{Deserialize, Serialize};

use crate::error::SandboxError;

/// Limits for one call. Serialisable so that workflow specs and traces can carry them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// CPU time the call may use, in milliseconds (user + system).
    pub cpu_ms: u64,
    /// Wall-clock time the call may take, in milliseconds, measured by the parent from
    /// sending the request to reading the answer.
    pub wall_ms: u64,
    /// Address space the call may add to the idle worker, in bytes.
    pub memory_bytes: u64,
    /// Maximum size of the returned value's JSON encoding, in bytes.
    pub output_bytes: usize,
    /// Maximum size of the text written with `print`, in bytes.
    pub stdout_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cpu_ms: 2_000,
            wall_ms: 5_000,
            memory_bytes: 256 << 20,
            output_bytes: 1 << 20,
            stdout_bytes: 64 << 10,
        }
    }
}

/// Upper bounds that keep a limit meaningful and the worker protocol bounded.
const MAX_CPU_MS: u64 = 10 * 60 * 1000;
const MAX_WALL_MS: u64 = 60 * 60 * 1000;
const MIN_MEMORY_BYTES: u64 = 8 << 20;
const MAX_OUTPUT_BYTES: usize = 256 << 20;

impl Limits {
    /// Checks that every limit is usable: non-zero and within sane bounds.
    pub fn validate(&self) -> Result<(), SandboxError> {
        let invalid = |reason: String| Err(SandboxError::InvalidRequest { reason });
        if self.cpu_ms == 0 || self.cpu_ms > MAX_CPU_MS {
            return invalid(format!("cpu_ms must be in 1..={MAX_CPU_MS}, got {}", self.cpu_ms));
        }
        if self.wall_ms == 0 || self.wall_ms > MAX_WALL_MS {
            return invalid(format!("wall_ms must be in 1..={MAX_WALL_MS}, got {}", self.wall_ms));
        }
        if self.memory_bytes < MIN_MEMORY_BYTES {
            return invalid(format!(
                "memory_bytes must be at least {MIN_MEMORY_BYTES}, got {}",
                self.memory_bytes
            ));
        }
        if self.output_bytes == 0 || self.output_bytes > MAX_OUTPUT_BYTES {
            return invalid(format!(
                "output_bytes must be in 1..={MAX_OUTPUT_BYTES}, got {}",
                self.output_bytes
            ));
        }
        if self.stdout_bytes > MAX_OUTPUT_BYTES {
            return invalid(format!(
                "stdout_bytes must be at most {MAX_OUTPUT_BYTES}, got {}",
                self.stdout_bytes
            ));
        }
        Ok(())
    }

    /// The longest protocol line a worker may legitimately send for these limits: the value,
    /// the printed text escaped as JSON (at worst six bytes per byte, `\u0000`), and slack for
    /// the envelope and error messages.
    pub(crate) fn max_response_bytes(&self) -> usize {
        self.output_bytes.saturating_add(self.stdout_bytes.saturating_mul(6)).saturating_add(64 << 10)
    }
}

/// How a process ended, in the terms [`classify_death`] needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Death {
    pub signal: Option<i32>,
    pub code: Option<i32>,
}

impl std::fmt::Display for Death {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.signal, self.code) {
            (Some(sig), _) => write!(f, "killed by signal {sig} ({})", signal_name(sig)),
            (None, Some(code)) => write!(f, "exited with code {code}"),
            (None, None) => f.write_str("ended for an unknown reason"),
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGABRT => "SIGABRT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGKILL => "SIGKILL",
        libc::SIGPROF => "SIGPROF",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGILL => "SIGILL",
        libc::SIGTERM => "SIGTERM",
        _ => "other",
    }
}

/// Reads a process death during a call as the error the caller should see. `stderr` is the
/// tail of what the process wrote to stderr (Rust's abort and stack-overflow messages).
pub(crate) fn classify_death(death: Death, stderr: &str, limits: &Limits) -> SandboxError {
    if matches!(death.signal, Some(libc::SIGPROF | libc::SIGXCPU)) {
        return SandboxError::CpuLimit { cpu_ms: limits.cpu_ms };
    }
    if let Some(line) = stderr.lines().find(|l| l.contains("memory allocation of")) {
        return SandboxError::MemoryLimit {
            memory_bytes: limits.memory_bytes,
            detail: Some(line.trim().to_owned()),
        };
    }
    if stderr.contains("has overflowed its stack") {
        return SandboxError::User {
            exc_type: "RecursionError".into(),
            message: "stack overflow: the recursion is too deep for the sandbox".into(),
            line: None,
        };
    }
    let tail = stderr.trim();
    let detail = if tail.is_empty() { death.to_string() } else { format!("{death}; stderr: {tail}") };
    SandboxError::WorkerCrashed { detail }
}

/// Worker-side arming of the limits (Linux). Everything here runs in the worker process.
pub(crate) mod enforce {
    use std::io;

    use super::Limits;

    fn set_soft(resource: libc::__rlimit_resource_t, soft: u64) -> io::Result<()> {
        let mut current = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
        if unsafe { libc::getrlimit(resource, &mut current) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let wanted = libc::rlimit { rlim_cur: soft.min(current.rlim_max), rlim_max: current.rlim_max };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(resource, &wanted) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn set_both(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
        let wanted = libc::rlimit { rlim_cur: value, rlim_max: value };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(resource, &wanted) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// One-time hardening of a worker process: no core files, no file writes, not
    /// ptrace-able or dumpable.
    ///
    /// The worker does not ask for a parent-death signal: the kernel sends it when the
    /// *thread* that spawned the process exits, and the pool spawns from whatever runtime
    /// thread runs the respawn. A worker whose parent dies reads end-of-file on stdin and
    /// exits; one busy in a runaway call is ended by its CPU limit.
    pub(crate) fn harden_process() -> io::Result<()> {
        set_both(libc::RLIMIT_CORE, 0)?;
        // Pipes are not files: the protocol still works, but writing any regular file fails.
        set_both(libc::RLIMIT_FSIZE, 0)?;
        // SAFETY: prctl with these constant arguments has no memory effects.
        unsafe {
            if libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Asks the kernel to SIGKILL this process when the thread that forked it exits, then
    /// checks that the parent did not already die before the request took effect. Used by
    /// the per-call fork, whose parent is the single-threaded worker.
    pub(crate) fn die_with_parent() -> io::Result<()> {
        // SAFETY: getppid and prctl with constant arguments have no memory effects.
        unsafe {
            let parent = libc::getppid();
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent || parent == 1 {
                libc::_exit(1);
            }
        }
        Ok(())
    }

    /// CPU time this process has used so far.
    fn cpu_used() -> std::time::Duration {
        // SAFETY: getrusage fills the zeroed struct we pass.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_SELF, &mut usage);
            usage
        };
        let secs = usage.ru_utime.tv_sec + usage.ru_stime.tv_sec;
        let micros = usage.ru_utime.tv_usec + usage.ru_stime.tv_usec;
        std::time::Duration::from_secs(secs.max(0) as u64)
            + std::time::Duration::from_micros(micros.max(0) as u64)
    }

    /// `/proc/self/statm`, opened once: re-reading an open proc file at offset 0 gives fresh
    /// numbers, costs one `pread` instead of an open/read/close, and keeps working after the
    /// seccomp filter forbids opening files. A forked call inherits the worker's descriptor
    /// and so reads the worker's size, which is its own size at the fork.
    static STATM: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();

    /// Opens `/proc/self/statm` for [`address_space_bytes`]; call before the seccomp filter.
    pub(crate) fn open_statm() -> io::Result<()> {
        if STATM.get().is_none() {
            let _ = STATM.set(std::fs::File::open("/proc/self/statm")?);
        }
        Ok(())
    }

    /// The process's current virtual address-space size, from `/proc/self/statm`.
    pub(crate) fn address_space_bytes() -> io::Result<u64> {
        use std::os::unix::fs::FileExt;
        open_statm()?;
        let file = STATM.get().ok_or_else(|| io::Error::other("statm not open"))?;
        let mut buf = [0u8; 128];
        let n = file.read_at(&mut buf, 0)?;
        let pages: u64 = std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|s| s.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| io::Error::other("unreadable /proc/self/statm"))?;
        // SAFETY: sysconf has no memory effects.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Ok(pages * page.max(4096) as u64)
    }

    fn set_cpu_timer(millis: u64) -> io::Result<()> {
        let timer = libc::itimerval {
            it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 },
            it_value: libc::timeval {
                tv_sec: (millis / 1000) as libc::time_t,
                tv_usec: ((millis % 1000) * 1000) as libc::suseconds_t,
            },
        };
        // SAFETY: setitimer reads the struct we pass; a null old-value pointer is allowed.
        if unsafe { libc::setitimer(libc::ITIMER_PROF, &timer, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Arms CPU and memory limits for the call about to run in this process.
    pub(crate) fn arm(limits: &Limits) -> io::Result<()> {
        let used = cpu_used();
        let backstop_secs = used.as_secs() + limits.cpu_ms.div_ceil(1000) + 1;
        set_soft(libc::RLIMIT_CPU, backstop_secs)?;
        set_cpu_timer(limits.cpu_ms)?;
        let address_space = address_space_bytes()?;
        set_soft(libc::RLIMIT_AS, address_space.saturating_add(limits.memory_bytes))
    }

    /// Lifts the per-call limits again (the worker's own bookkeeping between calls must not
    /// be charged to a step).
    pub(crate) fn disarm() -> io::Result<()> {
        set_cpu_timer(0)?;
        set_soft(libc::RLIMIT_CPU, libc::RLIM_INFINITY)?;
        set_soft(libc::RLIMIT_AS, libc::RLIM_INFINITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let limits = Limits::default();
        limits.validate().unwrap();
        assert_eq!(limits.cpu_ms, 2_000);
        assert_eq!(limits.memory_bytes, 256 * 1024 * 1024);
    }

    #[test]
    fn invalid_limits_are_rejected() {
        let limits = Limits { cpu_ms: 0, ..Limits::default() };
        assert!(limits.validate().is_err());
        let limits = Limits { memory_bytes: 1, ..Limits::default() };
        assert!(limits.validate().is_err());
    }

    #[test]
    fn partial_limits_deserialise_with_defaults() {
        let limits: Limits = serde_json::from_str(r#"{"cpu_ms": 10}"#).unwrap();
        assert_eq!(limits.cpu_ms, 10);
        assert_eq!(limits.wall_ms, Limits::default().wall_ms);
    }

    #[test]
    fn deaths_are_classified() {
        let limits = Limits::default();
        let cpu = classify_death(Death { signal: Some(libc::SIGPROF), code: None }, "", &limits);
        assert_eq!(cpu, SandboxError::CpuLimit { cpu_ms: 2_000 });
        let oom = classify_death(
            Death { signal: Some(libc::SIGABRT), code: None },
            "memory allocation of 8000000000 bytes failed\n",
            &limits,
        );
        assert!(matches!(oom, SandboxError::MemoryLimit { .. }));
        let other = classify_death(Death { signal: Some(libc::SIGSEGV), code: None }, "", &limits);
        assert!(matches!(other, SandboxError::WorkerCrashed { .. }));
    }
}
