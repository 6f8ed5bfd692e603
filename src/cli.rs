//! Subcommands and their flags.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use sgde_llm::{EndpointConfig, EndpointRegistry, ProcessEnv, StructuredOutput};
use sgde_runtime::{PreparedWorkflow, RunOptions, Runtime, RuntimeConfig};
use sgde_sandbox::{Sandbox, SandboxConfig, WorkerCommand};
use sgde_workflow::WorkflowSpec;

#[derive(Debug, Parser)]
#[command(
    name = "sgde",
    version,
    about = "Compile agent workflows with a teacher model; serve them to a small student model."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a workflow spec file; print its content hash, or every error with its JSON pointer.
    Validate { file: PathBuf },
    /// Print the JSON Schema of workflow specs.
    Schema,
    /// Run a workflow spec once against an OpenAI-compatible endpoint and print the result.
    Run(RunArgs),
    /// Run the HTTP service (and its background workers).
    Serve(Box<crate::serve::ServeArgs>),
    /// Apply database migrations and exit.
    Migrate(crate::serve::DatabaseArgs),
    /// Copy everything from an SQLite store into an empty Postgres database (ids and hashes kept).
    MigrateStore(crate::serve::MigrateStoreArgs),
    /// Print the OpenAPI document.
    Openapi,
    /// Workflows as folders in version control: export, diff and apply against a running sgde.
    Workflow(crate::workflow_files::WorkflowArgs),
    /// Benchmarks that drive a running sgde over its API.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Internal: a sandbox worker process, started by the service itself.
    #[command(hide = true)]
    SandboxWorker,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The paper's experiment on GSM-Hard: zero-shot, prompt-only, + offloading, full SGDe, for
    /// each m; writes paper.md and paper.csv.
    Paper(Box<crate::bench_paper::PaperArgs>),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The workflow spec (JSON).
    pub file: PathBuf,
    /// Inputs as a JSON object.
    #[arg(long, default_value = "{}")]
    pub inputs: String,
    /// API root of the model server, e.g. `http://127.0.0.1:8901/v1`.
    #[arg(long, env = "SGDE_MODEL_BASE_URL")]
    pub base_url: String,
    /// Model name sent to the server.
    #[arg(long, env = "SGDE_MODEL", default_value = "default")]
    pub model: String,
    /// Name of the environment variable holding the API key (never the key itself).
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// Structured output the server supports: json_schema, json_object or none.
    #[arg(long, default_value = "json_object")]
    pub structured_output: String,
    /// Print the full trace as well.
    #[arg(long)]
    pub trace: bool,
    /// Sandbox worker processes.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Deadline of the run in seconds.
    #[arg(long, default_value_t = 300)]
    pub deadline_secs: u64,
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { file } => validate(&file),
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&sgde_workflow::spec_json_schema())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => run(args).await,
        Command::Serve(args) => crate::serve::serve(*args).await.map(|()| ExitCode::SUCCESS),
        Command::Migrate(args) => crate::serve::migrate(args).await.map(|()| ExitCode::SUCCESS),
        Command::MigrateStore(args) => crate::serve::migrate_store(args).await.map(|()| ExitCode::SUCCESS),
        Command::Openapi => {
            println!("{}", sgde_api::openapi().to_pretty_json()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Workflow(args) => crate::workflow_files::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Bench(BenchCommand::Paper(args)) => {
            crate::bench_paper::run(*args).await.map(|()| ExitCode::SUCCESS)
        }
        Command::SandboxWorker => Ok(sgde_sandbox::worker_main()),
    }
}

fn read_spec(file: &PathBuf) -> anyhow::Result<Result<WorkflowSpec, sgde_workflow::SpecErrors>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok(WorkflowSpec::from_json(&text))
}

fn validate(file: &PathBuf) -> anyhow::Result<ExitCode> {
    match read_spec(file)? {
        Ok(spec) => {
            println!("valid {}", spec.content_hash());
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for e in &errors.0 {
                println!("{e}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The sandbox workers are this same binary in its hidden worker mode.
pub fn self_worker() -> anyhow::Result<WorkerCommand> {
    let program = std::env::current_exe().context("cannot find the sgde binary to start sandbox workers")?;
    Ok(WorkerCommand { program, args: vec!["sandbox-worker".into()] })
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let spec = match read_spec(&args.file)? {
        Ok(spec) => spec,
        Err(errors) => bail!("{errors}"),
    };
    let inputs: Value = serde_json::from_str(&args.inputs).context("--inputs is not JSON")?;
    let structured_output: StructuredOutput =
        serde_json::from_value(Value::String(args.structured_output.clone())).with_context(|| {
            format!("--structured-output `{}`: use json_schema, json_object or none", args.structured_output)
        })?;
    let mut endpoint = EndpointConfig::new("cli", args.base_url, args.model);
    endpoint.api_key_env = args.api_key_env;
    endpoint.structured_output = structured_output;
    let registry = EndpointRegistry::from_configs([endpoint], &ProcessEnv, None)?;
    // Every model role the spec names goes to the one endpoint given on the command line.
    for role in ["student", "teacher"] {
        registry.alias(role, "cli")?;
    }
    let sandbox =
        Sandbox::start(SandboxConfig { workers: args.workers.max(1), ..SandboxConfig::new(self_worker()?) })
            .await
            .context("cannot start the Python sandbox")?;
    let runtime = Runtime::new(Arc::new(registry), sandbox, RuntimeConfig::default());
    let workflow = PreparedWorkflow::new(spec)?;
    let options = RunOptions { deadline: Some(Duration::from_secs(args.deadline_secs)) };
    let report = runtime.execute(&workflow, inputs, &options).await;
    let mut out = json!({
        "usage": report.usage,
        "latency_ms": report.elapsed.as_secs_f64() * 1000.0,
    });
    let ok = report.result.is_ok();
    match report.result {
        Ok(value) => out["output"] = value,
        Err(e) => out["error"] = json!({"code": e.code(), "message": e.to_string()}),
    }
    if args.trace {
        out["trace"] = serde_json::to_value(&report.trace)?;
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
