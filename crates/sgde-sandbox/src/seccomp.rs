//! A seccomp filter for worker processes: defence in depth below the interpreter.
//!
//! The interpreter has no host-access modules, so Python code cannot open a file or a
//! socket. But RustPython is a large body of Rust with `unsafe` inside, and a memory-safety
//! bug reachable from Python would hand an attacker the worker's system calls. After the
//! interpreter is built, the worker therefore installs a filter that allows only what serving
//! calls needs (reading and writing its pipes, memory management, limits, forking a call
//! and waiting for it) and makes every other system call fail with `EPERM`: no `open`, no
//! `socket`, no `execve`, no `kill`. A forked call adds a second filter that also forbids
//! forking, so a compromised call cannot multiply.
//!
//! Failing with `EPERM` rather than killing keeps an unexpected but harmless system call in
//! some rarely used library path from taking the worker down; the security property (no new
//! file, socket or process) is the same. Only x86-64 and aarch64 are covered; elsewhere the
//! filter is skipped.

use std::io;

/// `AUDIT_ARCH_*` of the architectures the filter knows the system-call numbers of.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// System calls a worker needs after start-up (measured with `strace` over the test suite).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn worker_syscalls() -> Vec<libc::c_long> {
    let mut calls = vec![
        // The protocol pipes and a forked call's pipes.
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_close,
        libc::SYS_ppoll,
        libc::SYS_pread64,
        libc::SYS_pipe2,
        libc::SYS_dup3,
        libc::SYS_fcntl,
        // Memory.
        libc::SYS_brk,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_madvise,
        libc::SYS_mprotect,
        // Limits.
        libc::SYS_prlimit64,
        libc::SYS_getrlimit,
        libc::SYS_setrlimit,
        libc::SYS_setitimer,
        libc::SYS_getitimer,
        libc::SYS_getrusage,
        // Forking a call and waiting for it.
        libc::SYS_clone,
        libc::SYS_clone3,
        libc::SYS_wait4,
        libc::SYS_set_robust_list,
        libc::SYS_getppid,
        libc::SYS_getpid,
        libc::SYS_gettid,
        // A forked call narrows its own filter further.
        libc::SYS_seccomp,
        // Runtime basics.
        libc::SYS_futex,
        libc::SYS_getrandom,
        libc::SYS_clock_gettime,
        libc::SYS_gettimeofday,
        libc::SYS_sched_yield,
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigaction,
        libc::SYS_sigaltstack,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([libc::SYS_poll, libc::SYS_dup2, libc::SYS_pipe]);
    calls
}

/// System calls a forked call may no longer make on top of the worker's filter.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn fork_denied_syscalls() -> Vec<libc::c_long> {
    let mut calls = vec![libc::SYS_clone, libc::SYS_clone3, libc::SYS_seccomp];
    #[cfg(target_arch = "x86_64")]
    calls.extend([libc::SYS_fork, libc::SYS_vfork]);
    calls
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter { code: code as u16, jt: 0, jf: 0, k }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code: code as u16, jt, jf, k }
}

const LOAD_NR: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
const JEQ: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
const RET: u32 = libc::BPF_RET | libc::BPF_K;
/// Offsets in `struct seccomp_data`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
const ARG0_OFFSET: u32 = 16;

/// Builds a filter: on the expected architecture, calls in `listed` get `on_listed`, `prctl`
/// is allowed only for `PR_SET_PDEATHSIG` when `allow_pdeathsig`, and everything else gets
/// `otherwise`. A foreign architecture (e.g. the x32 ABI) kills the process.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn build(
    listed: &[libc::c_long],
    on_listed: u32,
    otherwise: u32,
    allow_pdeathsig: bool,
) -> Vec<libc::sock_filter> {
    let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let mut prog = vec![
        stmt(LOAD_NR, ARCH_OFFSET),
        jump(JEQ, AUDIT_ARCH, 1, 0),
        stmt(RET, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(LOAD_NR, NR_OFFSET),
    ];
    #[cfg(target_arch = "x86_64")]
    {
        // x32 system calls share the architecture value but set this bit.
        prog.push(jump(libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K, 0x4000_0000, 0, 1));
        prog.push(stmt(RET, libc::SECCOMP_RET_KILL_PROCESS));
    }
    for &nr in listed {
        prog.push(jump(JEQ, nr as u32, 0, 1));
        prog.push(stmt(RET, on_listed));
    }
    if allow_pdeathsig {
        prog.push(jump(JEQ, libc::SYS_prctl as u32, 0, 4));
        prog.push(stmt(LOAD_NR, ARG0_OFFSET));
        prog.push(jump(JEQ, libc::PR_SET_PDEATHSIG as u32, 0, 1));
        prog.push(stmt(RET, libc::SECCOMP_RET_ALLOW));
        prog.push(stmt(RET, eperm));
    }
    prog.push(stmt(RET, otherwise));
    prog
}

/// Installs `prog`. The first filter also sets `no_new_privs` (required for an unprivileged
/// filter); later ones inherit it and could not set it anyway (`prctl` is filtered).
fn install(prog: &[libc::sock_filter], first: bool) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len()).map_err(|_| io::Error::other("filter too long"))?,
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: prctl and seccomp read the filter program we pass, which outlives the calls.
    unsafe {
        if first && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &fprog as *const libc::sock_fprog,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Restricts the worker to the system calls serving needs.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) fn restrict_worker() -> io::Result<()> {
    let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    install(&build(&worker_syscalls(), libc::SECCOMP_RET_ALLOW, eperm, true), true)
}

/// Additionally forbids a forked call to fork again.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) fn restrict_fork() -> io::Result<()> {
    let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    install(&build(&fork_denied_syscalls(), eperm, libc::SECCOMP_RET_ALLOW, false), false)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) fn restrict_worker() -> io::Result<()> {
    Ok(())
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) fn restrict_fork() -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, any(target_arch = "x86_64", target_arch = "aarch64")))]
mod tests {
    use super::*;

    #[test]
    fn filters_are_well_formed() {
        let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        for prog in [
            build(&worker_syscalls(), libc::SECCOMP_RET_ALLOW, eperm, true),
            build(&fork_denied_syscalls(), eperm, libc::SECCOMP_RET_ALLOW, false),
        ] {
            assert!(prog.len() < 256, "jump offsets fit in a byte");
            let last = prog.last().expect("non-empty");
            assert_eq!(u32::from(last.code), RET, "ends with a return");
        }
    }

    #[test]
    fn dangerous_calls_are_not_listed() {
        let allowed = worker_syscalls();
        for nr in [
            libc::SYS_openat,
            libc::SYS_execve,
            libc::SYS_socket,
            libc::SYS_connect,
            libc::SYS_kill,
            libc::SYS_tgkill,
            libc::SYS_ptrace,
            libc::SYS_unlinkat,
        ] {
            assert!(!allowed.contains(&nr), "syscall {nr} must not be allowed");
        }
    }
}
