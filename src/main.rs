//! The `sgde` command: run workflows, validate specs, and (hidden) host sandbox workers.
//!
//! Configuration is parsed here, once, with clap (flags and environment variables); library
//! crates never read the environment.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
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
