//! `sgde-testkit`: the fake model server standalone, for benchmarks and demos.
//!
//! ```text
//! sgde-testkit serve --port 8089 --profile student --latency-ms 50
//! sgde-testkit serve --port 8090 --profile teacher --teacher-script script.json
//! sgde-testkit problems --count 5 --difficulty hard --seed 1
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use sgde_testkit::{
    Difficulty, FakeOpenAi, ProblemGenerator, ScriptedTeacher, SimulatedStudent, TeacherReply,
};

#[derive(Parser)]
#[command(
    name = "sgde-testkit",
    about = "Fake OpenAI-compatible model server for sgde tests, benchmarks and demos"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve `/v1/chat/completions` and `/v1/models` until Ctrl-C.
    Serve(ServeArgs),
    /// Print generated word problems as JSON lines (GSM-Hard's fields plus ours).
    Problems {
        #[arg(long, default_value_t = 10)]
        count: usize,
        #[arg(long, value_enum, default_value_t = DifficultyArg::Hard)]
        difficulty: DifficultyArg,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

#[derive(Parser)]
struct ServeArgs {
    #[arg(long, default_value_t = 8089)]
    port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Who answers: the simulated student, a scripted teacher, or an echo.
    #[arg(long, value_enum, default_value_t = Profile::Student)]
    profile: Profile,
    /// Delay before every reply, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Answer one choice whatever `n` asks (like llama.cpp).
    #[arg(long)]
    ignore_n: bool,
    /// Answer HTTP 500 to a `json_schema` response_format (like llama.cpp).
    #[arg(long)]
    reject_json_schema: bool,
    /// For `--profile teacher`: a JSON file `[{"cue": "...", "replies": [{"text": "..."}, {"json": {...}}, "malformed_json", "hang"]}]`.
    #[arg(long)]
    teacher_script: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Profile {
    Student,
    Teacher,
    Echo,
}

#[derive(Clone, Copy, ValueEnum)]
enum DifficultyArg {
    Small,
    Hard,
}

#[derive(Deserialize)]
struct ScriptEntry {
    #[serde(default)]
    cue: Option<String>,
    replies: Vec<TeacherReply>,
}

fn teacher(path: Option<&PathBuf>) -> Result<ScriptedTeacher, String> {
    let mut teacher = ScriptedTeacher::new();
    let Some(path) = path else { return Ok(teacher) };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let entries: Vec<ScriptEntry> =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    for entry in entries {
        teacher = match entry.cue {
            Some(cue) => teacher.script(cue, entry.replies),
            None => teacher.script_any(entry.replies),
        };
    }
    Ok(teacher)
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let mut builder = FakeOpenAi::builder()
        .bind(SocketAddr::new(args.host, args.port))
        .latency(Duration::from_millis(args.latency_ms))
        .ignore_n(args.ignore_n)
        .reject_json_schema(args.reject_json_schema);
    builder = match args.profile {
        Profile::Student => builder.responder(Arc::new(SimulatedStudent::new())),
        Profile::Teacher => builder.responder(Arc::new(teacher(args.teacher_script.as_ref())?)),
        Profile::Echo => builder,
    };
    let server =
        builder.start().await.map_err(|e| format!("cannot listen on {}:{}: {e}", args.host, args.port))?;
    tracing::info!(url = %server.base_url(), "sgde-testkit serving");
    println!("sgde-testkit serving at {}", server.base_url());
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    server.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let result = match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
        Command::Problems { count, difficulty, seed } => {
            let difficulty = match difficulty {
                DifficultyArg::Small => Difficulty::Small,
                DifficultyArg::Hard => Difficulty::Hard,
            };
            for problem in ProblemGenerator::new(seed).batch(count, difficulty) {
                println!("{}", problem.to_json());
            }
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sgde-testkit: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
