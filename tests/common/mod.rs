//! Shared harness of the black-box suite: the real `sgde` binary as a child process on a fresh
//! Postgres database, a fake OpenAI-compatible model in the test process, and a small HTTP client.
//!
//! # Layout
//! - [`Service`]: starts `sgde serve` on a free port, waits for `/readyz`, kills it on drop.
//! - [`Api`] and [`Reply`]: requests with or without a bearer token, and assertions on answers
//!   (status, problem+json and its stable `code`).
//! - [`Harness`]: database + fake model + service, with the `student` endpoint registered.
//! - Specs: [`echo_spec`] (one LLM node, the fake echoes the question back) and
//!   [`reference_spec`] (`examples/gsm_consensus.json`).
//!
//! Each test binary uses a different subset of these helpers.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sgde_store::testing::TestDatabase;
use sgde_testkit::FakeOpenAi;

/// Token of the bootstrap admin key every service in the suite starts with.
pub const ADMIN_TOKEN: &str = "sgde-suite-admin-token-0123456789";

/// How long anything in the suite may take before a poll gives up (generous: CI has 2 cores
/// shared by parallel tests).
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Environment of one `sgde serve`; defaults suit tests (one sandbox worker, fast polling).
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    env: BTreeMap<String, String>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        let mut env = BTreeMap::new();
        for (k, v) in [
            ("SGDE_ADMIN_TOKEN", ADMIN_TOKEN),
            ("SGDE_SANDBOX_WORKERS", "1"),
            ("SGDE_POLL_INTERVAL_MS", "50"),
            ("SGDE_SHUTDOWN_GRACE_SECS", "5"),
            ("SGDE_DATABASE_MAX_CONNECTIONS", "8"),
            ("RUST_LOG", "sgde=info,warn"),
            ("RUST_BACKTRACE", "1"),
        ] {
            env.insert(k.to_owned(), v.to_owned());
        }
        Self { env }
    }
}

impl ServiceConfig {
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.insert(key.to_owned(), value.to_string());
        self
    }
}

/// A port that was free a moment ago (bind port 0, read it, drop the listener).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("bind port 0")
}

/// The `sgde` binary under test.
pub fn sgde_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sgde")
}

/// `sgde` with a clean environment plus `env`; nothing of the developer's shell leaks in.
pub fn sgde_command(env: &BTreeMap<String, String>) -> Command {
    let mut command = Command::new(sgde_bin());
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.envs(env);
    command
}

/// A running `sgde serve`; SIGKILLed (with its process group) when dropped.
pub struct Service {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub base: String,
    pub database_url: String,
    log: PathBuf,
    http: reqwest::Client,
}

impl Service {
    /// Starts the service on `database_url` and waits until `/readyz` answers 200. A start that
    /// lost its port to another process is retried on a new port.
    pub async fn start(database_url: &str, config: &ServiceConfig) -> Service {
        Self::launch(Some(database_url), config).await
    }

    /// Starts the service with no database URL at all: the embedded default, in the data
    /// directory `config` names (`SGDE_DATA_DIR`).
    pub async fn start_embedded(config: &ServiceConfig) -> Service {
        Self::launch(None, config).await
    }

    async fn launch(database_url: Option<&str>, config: &ServiceConfig) -> Service {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(64)
            .build()
            .expect("reqwest client");
        let mut last_logs = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let log = std::env::temp_dir().join(format!("sgde-suite-{}.log", uuid::Uuid::new_v4().simple()));
            let file = std::fs::File::create(&log).expect("create the service log");
            let mut env = config.env.clone();
            if let Some(url) = database_url {
                env.insert("SGDE_DATABASE_URL".into(), url.to_owned());
            }
            env.insert("SGDE_LISTEN".into(), addr.to_string());
            let child = sgde_command(&env)
                .arg("serve")
                .stdin(Stdio::null())
                .stdout(file.try_clone().expect("clone log handle"))
                .stderr(file)
                .spawn()
                .expect("start the sgde binary");
            let mut service = Service {
                child: Some(child),
                addr,
                base: format!("http://{addr}"),
                database_url: database_url.unwrap_or_default().to_owned(),
                log,
                http: http.clone(),
            };
            match service.wait_ready().await {
                Ok(()) => return service,
                Err(logs) if logs.contains("cannot listen") => last_logs = logs,
                Err(logs) => panic!("sgde did not become ready:\n{logs}"),
            }
        }
        panic!("sgde could not find a free port:\n{last_logs}");
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(format!("exited with {status}\n{}", self.logs()));
            }
            if let Ok(r) = self.http.get(format!("{}/readyz", self.base)).send().await
                && r.status().as_u16() == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("no /readyz within {DEADLINE:?}\n{}", self.logs()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the service wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown code runs, leases stay held until they expire.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for the process to exit on its own.
    pub async fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the service is running");
        let pid = i32::try_from(child.id()).expect("pid fits i32");
        // SAFETY: plain kill(2) on a child we own and have not reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().expect("wait for sgde") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("sgde did not exit after SIGTERM:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn api(&self, token: Option<&str>) -> Api {
        Api { http: self.http.clone(), base: self.base.clone(), token: token.map(str::to_owned) }
    }

    /// The bootstrap admin key.
    pub fn admin(&self) -> Api {
        self.api(Some(ADMIN_TOKEN))
    }

    /// No `Authorization` header.
    pub fn anonymous(&self) -> Api {
        self.api(None)
    }

    /// A new key with exactly these scopes.
    pub async fn key(&self, name: &str, scopes: &[&str]) -> Api {
        let created =
            self.admin().post("/v1/keys", &json!({"name": name, "scopes": scopes})).await.expect(201);
        self.api(Some(created["token"].as_str().expect("token in the answer")))
    }

    /// `/healthz` and `/readyz` both answer 200.
    pub async fn assert_healthy(&self) {
        for path in ["/healthz", "/readyz"] {
            self.anonymous().get(path).await.expect(200);
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("sgde logs kept at {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// An HTTP client for one service, with or without a bearer token.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    pub base: String,
    token: Option<String>,
}

impl Api {
    /// A request to `path` (relative to the service root) with the token, if any.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("the service answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a readable body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, headers, body, text }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(self.request(Method::DELETE, path)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.send(self.request(Method::PUT, path).json(body)).await
    }

    /// POST with an `Idempotency-Key`.
    pub async fn post_idempotent(&self, path: &str, key: &str, body: &Value) -> Reply {
        self.send(self.request(Method::POST, path).header("idempotency-key", key).json(body)).await
    }

    /// POST raw bytes with a content type.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
        self.send(self.request(Method::POST, path).header("content-type", content_type).body(body)).await
    }
}

/// An answer, read in full.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body as JSON (`null` when it is not JSON).
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// The JSON body, after checking the status.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        self.body
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Checks an RFC 9457 answer: status, content type, and the stable `code`.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "a problem must be application/problem+json: {}",
            self.text
        );
        assert_eq!(self.body["code"], code, "unexpected problem code: {}", self.text);
        assert_eq!(self.body["status"], status, "status in the body: {}", self.text);
        assert!(
            self.body["type"].as_str().is_some_and(|t| t.ends_with(code)),
            "type names the code: {}",
            self.text
        );
        assert!(self.body["title"].is_string() && self.body["detail"].is_string(), "{}", self.text);
        &self.body
    }

    /// The JSON pointers of a 422's field errors.
    pub fn pointers(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| errors.iter().filter_map(|e| e["pointer"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

/// The fake model's settings as an endpoint named `name`.
pub fn endpoint_config(name: &str, fake: &FakeOpenAi) -> Value {
    json!({
        "name": name,
        "base_url": fake.base_url(),
        "model": "sgde-student",
        "timeout_ms": 30_000,
        "max_concurrency": 256,
    })
}

/// A workflow of one LLM node: the fake model (no rules) answers `echo: <question>`.
pub fn echo_spec() -> Value {
    echo_spec_with_prompt("{{ inputs.question }}")
}

/// [`echo_spec`] with another prompt template (a different version of the same shape).
pub fn echo_spec_with_prompt(prompt: &str) -> Value {
    json!({
        "schema": "sgde.workflow/v1",
        "description": "Echo the question (the fake model repeats the prompt).",
        "inputs": {
            "type": "object",
            "properties": {"question": {"type": "string", "minLength": 1}},
            "required": ["question"],
            "additionalProperties": false
        },
        "output": "answer",
        "nodes": {
            "answer": {"kind": "llm", "model": "student", "prompt": prompt, "parser": {"type": "text"}}
        }
    })
}

/// The reference workflow, `examples/gsm_consensus.json`.
pub fn reference_spec() -> Value {
    serde_json::from_str(include_str!("../../examples/gsm_consensus.json")).expect("the example is JSON")
}

/// A database, a fake model and the service, with the fake registered as endpoint `student`.
pub struct Harness {
    pub service: Service,
    pub fake: FakeOpenAi,
    db: Option<TestDatabase>,
}

impl Harness {
    /// Default fake (it echoes) and default service settings.
    pub async fn start() -> Harness {
        Self::with(FakeOpenAi::start().await.expect("fake model"), ServiceConfig::default()).await
    }

    pub async fn with(fake: FakeOpenAi, config: ServiceConfig) -> Harness {
        let db = TestDatabase::new().await.expect("a test database");
        let service = Service::start(&db.url, &config).await;
        service.admin().post("/v1/endpoints", &endpoint_config("student", &fake)).await.expect(201);
        Harness { service, fake, db: Some(db) }
    }

    pub fn admin(&self) -> Api {
        self.service.admin()
    }

    pub fn database_url(&self) -> &str {
        &self.service.database_url
    }

    /// Creates workflow `name` with `spec` as version 1; returns the answer.
    pub async fn workflow(&self, name: &str, spec: &Value) -> Value {
        self.admin().post("/v1/workflows", &json!({"name": name, "spec": spec})).await.expect(201)
    }

    /// Replaces the running service (after a kill, say) with a new one on the same database.
    pub async fn restart(&mut self, config: &ServiceConfig) {
        self.service.kill();
        self.service = Service::start(self.db.as_ref().map(|d| d.url.as_str()).expect("db"), config).await;
    }

    /// Stops the service and drops the database.
    pub async fn finish(mut self) {
        self.service.kill();
        if let Some(db) = self.db.take() {
            db.drop_database().await.expect("drop the test database");
        }
    }
}

/// Polls `GET /v1/runs/{id}` until the run is terminal; returns it.
pub async fn wait_terminal(api: &Api, id: &str) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let run = api.get(&format!("/v1/runs/{id}")).await.expect(200);
        if matches!(run["status"].as_str(), Some("succeeded" | "failed" | "cancelled")) {
            return run;
        }
        assert!(Instant::now() < deadline, "run {id} still {} after {DEADLINE:?}", run["status"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = f().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every item of a paged list, following `next_cursor`.
pub async fn all_pages(api: &Api, path: &str, limit: u32) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let page = api.get(&url).await.expect(200);
        let batch = page["items"].as_array().expect("items").clone();
        assert!(batch.len() <= limit as usize, "a page holds at most `limit` items");
        items.extend(batch);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}
