//! `sgde serve` and `sgde migrate`: configuration, start-up and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use sgde_api::models::StoreModels;
use sgde_api::{ApiConfig, AppState};
use sgde_llm::ProcessEnv;
use sgde_runtime::{Runtime, RuntimeConfig};
use sgde_sandbox::{Sandbox, SandboxConfig};
use sgde_store::{ApiToken, PgStore, Store, StoreOptions};
use tokio_util::sync::CancellationToken;

use crate::cli::self_worker;

/// A value that must never be printed (tokens, secrets, URLs with passwords).
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// The database connection settings shared by `serve` and `migrate`.
#[derive(Debug, clap::Args)]
pub struct DatabaseArgs {
    /// Postgres URL, e.g. `postgres://sgde:secret@127.0.0.1:5432/sgde`.
    #[arg(long, env = "SGDE_DATABASE_URL")]
    pub database_url: Secret,
    /// Connections in the pool.
    #[arg(long, env = "SGDE_DATABASE_MAX_CONNECTIONS", default_value_t = 32)]
    pub database_max_connections: u32,
}

/// Settings of `sgde serve`. Every flag has an environment variable; see the README.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Address to listen on.
    #[arg(long, env = "SGDE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Token of the bootstrap admin API key (created or restored at start).
    #[arg(long, env = "SGDE_ADMIN_TOKEN")]
    pub admin_token: Option<Secret>,
    /// Python sandbox worker processes (default: one per core).
    #[arg(long, env = "SGDE_SANDBOX_WORKERS")]
    pub sandbox_workers: Option<usize>,
    /// Async runs this replica executes at once.
    #[arg(long, env = "SGDE_RUN_CONCURRENCY", default_value_t = 16)]
    pub run_concurrency: usize,
    /// Largest request body in bytes.
    #[arg(long, env = "SGDE_BODY_LIMIT_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub body_limit_bytes: usize,
    /// Longest a request may take, in seconds.
    #[arg(long, env = "SGDE_REQUEST_TIMEOUT_SECS", default_value_t = 300)]
    pub request_timeout_secs: u64,
    /// Lease of a claimed job, in seconds: a job whose replica died is retried after it.
    #[arg(long, env = "SGDE_JOB_LEASE_SECS", default_value_t = 30)]
    pub job_lease_secs: u64,
    /// On shutdown, how long in-flight requests and runs may take to finish, in seconds.
    #[arg(long, env = "SGDE_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
    /// Secret for HMAC-signing run webhooks.
    #[arg(long, env = "SGDE_WEBHOOK_SECRET")]
    pub webhook_secret: Option<Secret>,
    /// How often idle workers poll the queue, in milliseconds.
    #[arg(long, env = "SGDE_POLL_INTERVAL_MS", default_value_t = 200)]
    pub poll_interval_ms: u64,
    /// Longest a workflow run may take, in seconds.
    #[arg(long, env = "SGDE_RUN_DEADLINE_SECS", default_value_t = 600)]
    pub run_deadline_secs: u64,
}

/// The URL without its password, for messages.
fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

async fn connect(args: &DatabaseArgs, migrate: bool) -> anyhow::Result<PgStore> {
    let url = &args.database_url.0;
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(anyhow!("SGDE_DATABASE_URL must be a postgres:// URL, got {}", redacted(url)));
    }
    let options =
        StoreOptions { max_connections: args.database_max_connections, migrate, ..StoreOptions::default() };
    PgStore::connect(url, &options).await.map_err(|e| {
        // The store's errors name the kind of failure; the source says why (refused, auth, ...).
        let mut message = format!("cannot use the database at {}: {e}", redacted(url));
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(&format!(": {s}"));
            source = s.source();
        }
        anyhow!(message)
    })
}

pub async fn migrate(args: DatabaseArgs) -> anyhow::Result<()> {
    let store = connect(&args, true).await?;
    store.close().await;
    println!("migrations applied");
    Ok(())
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let store: Arc<dyn Store> = Arc::new(connect(&args.database, true).await?);
    if let Some(token) = &args.admin_token {
        store
            .ensure_admin_key(&ApiToken::new(token.0.clone()))
            .await
            .context("cannot set up the admin key")?;
    } else {
        tracing::warn!("SGDE_ADMIN_TOKEN is not set: only existing API keys can call the API");
    }
    let workers = args
        .sandbox_workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let sandbox = Sandbox::start(SandboxConfig { workers, ..SandboxConfig::new(self_worker()?) })
        .await
        .context("cannot start the Python sandbox")?;
    let models =
        Arc::new(StoreModels::new(Arc::clone(&store), Arc::new(ProcessEnv), Duration::from_secs(10)));
    let runtime_config = RuntimeConfig {
        run_deadline: Duration::from_secs(args.run_deadline_secs),
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::new(models.clone(), sandbox.clone(), runtime_config);
    let config = ApiConfig {
        body_limit: args.body_limit_bytes,
        request_timeout: Duration::from_secs(args.request_timeout_secs),
        job_lease: Duration::from_secs(args.job_lease_secs.max(1)),
        worker_concurrency: args.run_concurrency.max(1),
        poll_interval: Duration::from_millis(args.poll_interval_ms.max(10)),
        webhook_secret: args.webhook_secret.map(|s| s.0),
        ..ApiConfig::default()
    };
    let state = AppState::new(store, models, runtime, sandbox, config);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, sandbox_workers = workers, "sgde is listening");
    let shutdown = CancellationToken::new();
    let grace = Duration::from_secs(args.shutdown_grace_secs);
    let workers = tokio::spawn(sgde_api::worker::run_workers(state.clone(), shutdown.clone(), grace));
    let signal = {
        let shutdown = shutdown.clone();
        async move {
            shutdown_signal().await;
            tracing::info!("shutting down: no new requests; letting in-flight work finish");
            shutdown.cancel();
        }
    };
    tokio::spawn(signal);
    let mut server = std::pin::pin!(sgde_api::serve(listener, state, shutdown.clone()));
    let grace_over = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = &mut server => result.context("the HTTP server failed")?,
        _ = grace_over => tracing::warn!("requests still in flight after the grace period; stopping anyway"),
    }
    if tokio::time::timeout(grace + Duration::from_secs(5), workers).await.is_err() {
        tracing::warn!("background workers did not stop in time");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
