//! A small REST client for the workflow commands, whose errors say what to fix: a server that
//! cannot be reached, a token that is refused or lacks a scope, or the problem's own detail.

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

/// Where the service is and who is calling; shared by every `sgde workflow` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Base URL of the sgde service.
    #[arg(long, env = "SGDE_URL", default_value = "http://127.0.0.1:8080", global = true)]
    pub url: String,
    /// API key (read scope for export and diff, write for apply).
    #[arg(long, env = "SGDE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

/// An answer the caller may want to inspect rather than fail on (422 with field errors).
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

pub struct Api {
    http: Client,
    base: String,
    token: String,
}

impl Api {
    pub fn new(args: &ServerArgs) -> anyhow::Result<Api> {
        let Some(token) = args.token.clone().filter(|t| !t.is_empty()) else {
            bail!("no API key: pass --token or set SGDE_TOKEN");
        };
        let http = Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Api { http, base: args.url.trim_end_matches('/').to_owned(), token })
    }

    /// One call; transport failures, 401 and 403 are errors, any other status is the answer.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Answer> {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            let why = if e.is_connect() {
                "connection failed"
            } else if e.is_timeout() {
                "timed out"
            } else {
                "request failed"
            };
            anyhow::anyhow!("cannot reach sgde at {} ({why}: {e}); check --url / SGDE_URL", self.base)
        })?;
        let status = response.status();
        let text = response.text().await.context("reading the answer")?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        match status {
            StatusCode::UNAUTHORIZED => {
                bail!("sgde at {} refused the API key (401): check --token / SGDE_TOKEN", self.base)
            }
            StatusCode::FORBIDDEN => bail!("the API key is not allowed to do this (403): {}", detail(&body)),
            _ => Ok(Answer { status, body }),
        }
    }

    /// The call, which must succeed (2xx); otherwise the problem's detail is the error.
    pub async fn expect(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let answer = self.call(method.clone(), path, body).await?;
        if !answer.status.is_success() {
            bail!("{method} {path}: {}: {}", answer.status, detail(&answer.body));
        }
        Ok(answer.body)
    }
}

/// The `detail` of a problem document, or the whole body when it is not one.
pub fn detail(body: &Value) -> String {
    body.get("detail").and_then(Value::as_str).map_or_else(|| body.to_string(), str::to_owned)
}

/// A path segment, percent-encoded (workflow names are restricted, references may not be).
pub fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}
