//! [`FakeOpenAi`]: an OpenAI-compatible HTTP server on an ephemeral port, scripted for tests.
//!
//! It speaks enough of the protocol for real clients (`POST /v1/chat/completions`,
//! `GET /v1/models`), answers with realistic bodies and `usage`, and records what it saw so that
//! tests can assert on behaviour the client must have had: the request bodies, and the largest
//! number of requests it ever had in flight at once (for concurrency limits). Knobs reproduce
//! real servers' quirks: latency, ignoring `n` (llama.cpp), HTTP 500 on a `json_schema`
//! `response_format` (llama.cpp), no `usage` at all.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::call::{ChatCall, Outcome, Responder};
use crate::fault::{self, Fault, HANG_LIMIT};
use crate::rules::{Action, Rule, RuleState};
use crate::tokens::{completion_tokens, prompt_tokens};

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    /// The parsed body (a JSON string holding the raw text if the body was not JSON).
    pub body: Value,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
}

impl LoggedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Server-wide behaviour.
#[derive(Debug, Clone)]
struct Settings {
    latency: Duration,
    ignore_n: bool,
    reject_json_schema: bool,
    omit_usage: bool,
    models: Vec<String>,
}

struct Shared {
    settings: Settings,
    rules: Mutex<Vec<RuleState>>,
    responder: Option<Arc<dyn Responder>>,
    log: Mutex<Vec<LoggedRequest>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    ids: AtomicU64,
    shutdown: watch::Sender<bool>,
}

/// Configures and starts a [`FakeOpenAi`].
pub struct FakeOpenAiBuilder {
    addr: SocketAddr,
    settings: Settings,
    rules: Vec<Rule>,
    responder: Option<Arc<dyn Responder>>,
}

impl FakeOpenAiBuilder {
    /// Listen here instead of `127.0.0.1:0`.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Delay before every reply.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.settings.latency = latency;
        self
    }

    /// Answer every request with one choice, whatever `n` says (llama.cpp does).
    pub fn ignore_n(mut self, ignore: bool) -> Self {
        self.settings.ignore_n = ignore;
        self
    }

    /// Answer HTTP 500 to `response_format: {"type": "json_schema"}` (llama.cpp does).
    pub fn reject_json_schema(mut self, reject: bool) -> Self {
        self.settings.reject_json_schema = reject;
        self
    }

    /// Leave `usage` out of replies.
    pub fn omit_usage(mut self, omit: bool) -> Self {
        self.settings.omit_usage = omit;
        self
    }

    /// Model ids listed by `GET /v1/models`.
    pub fn models<S: Into<String>>(mut self, models: impl IntoIterator<Item = S>) -> Self {
        self.settings.models = models.into_iter().map(Into::into).collect();
        self
    }

    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Who answers requests no rule matched (default: echo the last user message).
    pub fn responder(mut self, responder: Arc<dyn Responder>) -> Self {
        self.responder = Some(responder);
        self
    }

    pub async fn start(self) -> std::io::Result<FakeOpenAi> {
        let listener = TcpListener::bind(self.addr).await?;
        let addr = listener.local_addr()?;
        let (shutdown, mut stop) = watch::channel(false);
        let shared = Arc::new(Shared {
            settings: self.settings,
            rules: Mutex::new(self.rules.into_iter().map(RuleState::new).collect()),
            responder: self.responder,
            log: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            ids: AtomicU64::new(0),
            shutdown,
        });
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/models", get(models))
            .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
                tracing::warn!(error = %e, "fake OpenAI server stopped");
            }
        });
        Ok(FakeOpenAi { addr, shared, task: Some(task) })
    }
}

/// A running fake server; stops when dropped.
pub struct FakeOpenAi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl FakeOpenAi {
    pub fn builder() -> FakeOpenAiBuilder {
        FakeOpenAiBuilder {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            settings: Settings {
                latency: Duration::ZERO,
                ignore_n: false,
                reject_json_schema: false,
                omit_usage: false,
                models: vec!["sgde-student".into(), "sgde-teacher".into()],
            },
            rules: Vec::new(),
            responder: None,
        }
    }

    /// A server with default settings and no rules (it echoes).
    pub async fn start() -> std::io::Result<Self> {
        Self::builder().start().await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API root to configure clients with: `http://127.0.0.1:{port}/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Adds a rule after the existing ones.
    pub fn push_rule(&self, rule: Rule) {
        lock(&self.shared.rules).push(RuleState::new(rule));
    }

    /// Replaces all rules.
    pub fn set_rules(&self, rules: impl IntoIterator<Item = Rule>) {
        *lock(&self.shared.rules) = rules.into_iter().map(RuleState::new).collect();
    }

    /// Every chat completion request received so far, in arrival order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.shared.log).clone()
    }

    pub fn request_count(&self) -> usize {
        lock(&self.shared.log).len()
    }

    /// The most chat completion requests ever in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Clears the request log and the in-flight maximum.
    pub fn reset(&self) {
        lock(&self.shared.log).clear();
        self.shared.max_in_flight.store(self.in_flight(), Ordering::SeqCst);
    }

    /// Stops accepting, releases hanging requests, and waits for the server task.
    pub async fn shutdown(mut self) {
        let _ = self.shared.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        let _ = self.shared.shutdown.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A poisoned lock only means a test panicked elsewhere; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts a request in flight for as long as its handler lives (also when the client hangs up
/// and the handler is dropped).
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What to do with one request, decided under the rules lock.
enum Plan {
    Texts(Vec<String>),
    Fault(Fault),
    Ask(Arc<dyn Responder>),
}

async fn chat_completions(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let _in_flight = InFlight::enter(&shared);
    let parsed = serde_json::from_slice::<Value>(&body);
    lock(&shared.log).push(LoggedRequest {
        body: parsed
            .as_ref()
            .cloned()
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned())),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
    });
    let call = match parsed.map_err(|e| e.to_string()).and_then(ChatCall::from_json) {
        Ok(call) => call,
        Err(e) => {
            return fault::error_response(
                StatusCode::BAD_REQUEST,
                &format!("invalid request: {e}"),
                "invalid_request_error",
            );
        }
    };
    if !shared.settings.latency.is_zero() {
        tokio::time::sleep(shared.settings.latency).await;
    }
    if shared.settings.reject_json_schema && call.response_format.as_deref() == Some("json_schema") {
        return fault::error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            "server_error",
        );
    }
    let choices = if shared.settings.ignore_n { 1 } else { call.n };
    let (plan, delay) = plan(&shared, &call, choices);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let outcome = match plan {
        Plan::Texts(texts) => Ok(texts),
        Plan::Fault(f) => Err(f),
        Plan::Ask(responder) => (0..choices)
            .map(|i| match responder.respond(&call, i) {
                Outcome::Reply(text) => Ok(text),
                Outcome::Fault(f) => Err(f),
            })
            .collect(),
    };
    match outcome {
        Ok(texts) => axum::Json(completion(&shared, &call, &texts)).into_response(),
        Err(Fault::Hang) => hang(&shared).await,
        Err(f) => {
            let sample = serde_json::to_vec(&completion(&shared, &call, &["The answer is 42.".to_owned()]))
                .unwrap_or_default();
            fault::render(&f, &sample)
        }
    }
}

fn plan(shared: &Shared, call: &ChatCall, choices: u32) -> (Plan, Duration) {
    let mut rules = lock(&shared.rules);
    let Some(state) = rules.iter_mut().find(|s| s.available() && s.rule.matches(call)) else {
        return match &shared.responder {
            Some(r) => (Plan::Ask(Arc::clone(r)), Duration::ZERO),
            None => {
                (Plan::Texts(vec![format!("echo: {}", call.last_user()); choices as usize]), Duration::ZERO)
            }
        };
    };
    state.used += 1;
    let delay = state.rule.delay;
    let plan = match &state.rule.action {
        Action::Reply(text) => Plan::Texts(vec![text.clone(); choices as usize]),
        Action::Fault(f) => Plan::Fault(f.clone()),
        Action::Respond(r) => Plan::Ask(Arc::clone(r)),
        Action::Sequence(_) => Plan::Texts((0..choices).filter_map(|_| state.next_in_sequence()).collect()),
    };
    (plan, delay)
}

async fn hang(shared: &Shared) -> Response {
    let mut stop = shared.shutdown.subscribe();
    let _ = tokio::time::timeout(HANG_LIMIT, stop.wait_for(|s| *s)).await;
    fault::render(&Fault::Hang, b"")
}

fn completion(shared: &Shared, call: &ChatCall, texts: &[String]) -> Value {
    let id = shared.ids.fetch_add(1, Ordering::Relaxed);
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let choices: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            json!({"index": i, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": "stop"})
        })
        .collect();
    let mut body = json!({
        "id": format!("chatcmpl-sgde-{id}"),
        "object": "chat.completion",
        "created": created,
        "model": call.model,
        "system_fingerprint": "sgde-testkit",
        "choices": choices,
    });
    if !shared.settings.omit_usage {
        let prompt = prompt_tokens(&call.messages);
        let completion: u64 = texts.iter().map(|t| completion_tokens(t)).sum();
        body["usage"] = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
    }
    body
}

async fn models(State(shared): State<Arc<Shared>>) -> Response {
    let data: Vec<Value> = shared
        .settings
        .models
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 0, "owned_by": "sgde-testkit"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}
