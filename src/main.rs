//! The `sgde` command: run workflows, validate specs, and (hidden) host sandbox workers.
//!
//! Configuration is parsed here, once, with clap (flags and environment variables); library
//! crates never read the environment.

mod bench_paper;
mod cli;
mod serve;
mod workflow_files;

use std::process::ExitCode;

use clap::Parser;

/// The service allocates per request (JSON documents, traces, HTTP buffers) on several threads,
/// and the sandbox workers (this same binary) run an allocation-heavy interpreter; mimalloc's
/// thread-local free lists serve both with far less contention and bookkeeping than glibc's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    if let Err(e) = load_config_file() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let args = cli::Cli::parse();
    // The worker must not start a tokio runtime or a tracing subscriber: it is a bare
    // request/response loop on its pipes.
    if let cli::Command::SandboxWorker = args.command {
        return sgde_sandbox::worker_main();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "sgde=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::dispatch(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `SGDE_CONFIG` names an optional file of `KEY=VALUE` lines (the same names as the environment
/// variables, `#` comments allowed). Variables already set in the environment win.
fn load_config_file() -> Result<(), String> {
    let Ok(path) = std::env::var("SGDE_CONFIG") else { return Ok(()) };
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read SGDE_CONFIG file {path}: {e}"))?;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("{path}:{}: expected KEY=VALUE", n + 1));
        };
        let key = key.trim();
        if !key.starts_with("SGDE_") {
            return Err(format!("{path}:{}: `{key}` is not an sgde setting (they start with SGDE_)", n + 1));
        }
        if std::env::var_os(key).is_none() {
            // SAFETY: called at the very start of main, before any thread is spawned.
            unsafe { std::env::set_var(key, value.trim().trim_matches('"')) };
        }
    }
    Ok(())
}
