//! `sgde serve` and `sgde migrate`: configuration, start-up and graceful shutdown.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use sgde_api::models::StoreModels;
use sgde_api::rate_limit::RateLimit;
use sgde_api::{ApiConfig, AppState};
use sgde_llm::ProcessEnv;
use sgde_runtime::{Runtime, RuntimeConfig};
use sgde_sandbox::{Sandbox, SandboxConfig};
use sgde_store::transfer;
use sgde_store::{ApiToken, BackendKind, PgStore, SqliteStore, Store, StoreOptions};
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
    /// Database URL: `postgres://user:secret@host:5432/sgde` for production and several
    /// replicas, or `sqlite://path/to/sgde.db`. Unset: the embedded SQLite store in the data
    /// directory.
    #[arg(long, env = "SGDE_DATABASE_URL")]
    pub database_url: Option<Secret>,
    /// Where the embedded SQLite store lives when no database URL is given.
    #[arg(long, env = "SGDE_DATA_DIR", default_value = "sgde-data")]
    pub data_dir: PathBuf,
    /// Connections in the pool (on SQLite: readers; writes go through one connection).
    #[arg(long, env = "SGDE_DATABASE_MAX_CONNECTIONS", default_value_t = 32)]
    pub database_max_connections: u32,
}

impl DatabaseArgs {
    /// The URL to open: the configured one, or the embedded store's file in the data directory.
    fn url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.database_url {
            return Ok(url.0.clone());
        }
        let dir = std::path::absolute(&self.data_dir)
            .with_context(|| format!("cannot resolve the data directory {}", self.data_dir.display()))?;
        Ok(format!("sqlite://{}", dir.join("sgde.db").display()))
    }
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
    /// Requests per second each API key may make on average (unset: unlimited); over it, 429
    /// `rate_limited` with `Retry-After`.
    #[arg(long, env = "SGDE_RATE_LIMIT_PER_SECOND")]
    pub rate_limit_per_second: Option<NonZeroU32>,
    /// Requests a key may make at once before the average applies (default: one second's worth).
    #[arg(long, env = "SGDE_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<NonZeroU32>,
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

/// Opens the store the settings name, saying first which one: an operator must never have to
/// guess where the data went. A `postgres://` URL that does not answer is an error, never a
/// reason to fall back to SQLite.
async fn connect(args: &DatabaseArgs, migrate: bool) -> anyhow::Result<Arc<dyn Store>> {
    let url = args.url()?;
    let kind = BackendKind::of_url(&url).map_err(|_| {
        anyhow!("SGDE_DATABASE_URL must be a postgres:// or sqlite:// URL, got {}", redacted(&url))
    })?;
    match (kind, &args.database_url) {
        (BackendKind::Sqlite, None) => tracing::info!(
            database = %url,
            "no SGDE_DATABASE_URL: using the embedded SQLite store (single node; set SGDE_DATABASE_URL=postgres://... for production and several replicas)"
        ),
        (BackendKind::Sqlite, Some(_)) => {
            tracing::info!(database = %url, "using the SQLite store (single node)")
        }
        (BackendKind::Postgres, _) => tracing::info!(database = %redacted(&url), "using the Postgres store"),
    }
    let options =
        StoreOptions { max_connections: args.database_max_connections, migrate, ..StoreOptions::default() };
    // Printed with its sources (`{:#}`): the store's error names the kind of failure, its
    // sources say why (refused, authentication, permissions, ...).
    sgde_store::connect(&url, &options)
        .await
        .with_context(|| format!("cannot use the database at {}", redacted(&url)))
}

pub async fn migrate(args: DatabaseArgs) -> anyhow::Result<()> {
    let store = connect(&args, true).await?;
    store.close().await;
    println!("migrations applied");
    Ok(())
}

/// Settings of `sgde migrate-store`.
#[derive(Debug, clap::Args)]
pub struct MigrateStoreArgs {
    /// The SQLite store to copy from, e.g. `sqlite://sgde-data/sgde.db` (stop the service first).
    #[arg(long)]
    pub from: Secret,
    /// The Postgres database to copy into: migrated here, and it must hold no data yet.
    #[arg(long)]
    pub to: Secret,
}

/// Copies everything from an SQLite store into an empty Postgres database, then compares the
/// rows read from every table with the rows the target holds.
pub async fn migrate_store(args: MigrateStoreArgs) -> anyhow::Result<()> {
    let (from, to) = (&args.from.0, &args.to.0);
    if BackendKind::of_url(from).ok() != Some(BackendKind::Sqlite) {
        bail!("--from must be a sqlite:// URL, got {}", redacted(from));
    }
    if BackendKind::of_url(to).ok() != Some(BackendKind::Postgres) {
        bail!("--to must be a postgres:// URL, got {}", redacted(to));
    }
    let options = StoreOptions { max_connections: 4, ..StoreOptions::default() };
    let file = SqliteStore::file_of(from).map_err(|e| anyhow!("--from: {e}"))?;
    if !file.is_file() {
        bail!("--from: no SQLite store at {}", file.display());
    }
    let source = SqliteStore::connect(from, &options)
        .await
        .with_context(|| format!("cannot open {}", redacted(from)))?;
    let target = PgStore::connect(to, &options)
        .await
        .with_context(|| format!("cannot use the database at {}", redacted(to)))?;
    let copied = transfer::sqlite_to_postgres(&source, &target, |table, rows| {
        tracing::debug!(table, rows, "copying");
    })
    .await
    .context("the copy failed; nothing was written")?;
    let landed = transfer::count_postgres(&target).await?;
    for (copy, got) in copied.iter().zip(&landed) {
        println!("{:<24} {:>10} rows", copy.table, got.rows);
        if copy.rows != got.rows {
            bail!("{}: {} rows read from the source but {} in the target", copy.table, copy.rows, got.rows);
        }
    }
    source.close().await;
    target.close().await;
    println!(
        "copied {} rows from {} to {}",
        copied.iter().map(|c| c.rows).sum::<u64>(),
        redacted(from),
        redacted(to)
    );
    Ok(())
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let store = connect(&args.database, true).await?;
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
        rate_limit: args
            .rate_limit_per_second
            .map(|per_second| RateLimit { per_second, burst: args.rate_limit_burst.unwrap_or(per_second) }),
        ..ApiConfig::default()
    };
    let state = AppState::new(Arc::clone(&store), models, runtime, sandbox, config);
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
    store.close().await;
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
