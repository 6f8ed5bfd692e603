//! `sgde bench paper`: the paper's experiment on GSM-Hard against a running sgde, through its
//! REST API — upload the data, evaluate the student alone, compile with each ablation arm for
//! each m, evaluate every result on the same test questions, and write the table as Markdown and
//! CSV (all rows and the clean subset side by side).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sgde_compiler::{Example, Metric};

/// Flags of `sgde bench paper`.
#[derive(Debug, clap::Args)]
pub struct PaperArgs {
    /// Base URL of the sgde service.
    #[arg(long, env = "SGDE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// API key with the write, execute, compile and read scopes.
    #[arg(long, env = "SGDE_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Endpoint name of the teacher (registered in the service).
    #[arg(long)]
    pub teacher: String,
    /// Endpoint name of the student (registered in the service).
    #[arg(long)]
    pub student: String,
    /// GSM-Hard as JSON Lines (`input`, `target`), e.g. gsmhardv2.jsonl.
    #[arg(long)]
    pub data: PathBuf,
    /// Training set sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "3,5")]
    pub m: Vec<u32>,
    /// Test questions per arm (the same questions for every arm).
    #[arg(long, default_value_t = 200)]
    pub test_size: u32,
    /// Seed of the split and of the compiles.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Iterations per compile.
    #[arg(long, default_value_t = 8)]
    pub iterations: u32,
    /// Samples per training example in each compile (k).
    #[arg(long, default_value_t = 3)]
    pub samples: u32,
    /// Concurrent runs of each evaluation.
    #[arg(long, default_value_t = 8)]
    pub concurrency: u32,
    /// Where to write paper.md and paper.csv.
    #[arg(long, default_value = "bench-paper")]
    pub out: PathBuf,
    /// Prefix of the workflow and data set names this run creates.
    #[arg(long, default_value = "paper")]
    pub prefix: String,
}

const TASK: &str = "Solve the arithmetic word problem. The answer is a single number.";

/// The arms after the zero-shot baseline: name, label, allowed edits.
fn arms() -> [(&'static str, &'static str, Value); 3] {
    [
        (
            "prompt_only",
            "prompt optimisation only",
            json!({"prompts": true, "offloading": false, "consensus": false, "topology": false}),
        ),
        (
            "offloading",
            "+ capability offloading",
            json!({"prompts": true, "offloading": true, "consensus": false, "topology": true}),
        ),
        (
            "sgde",
            "+ structural consensus (full SGDe)",
            json!({"prompts": true, "offloading": true, "consensus": true, "topology": true}),
        ),
    ]
}

/// One line of the table.
#[derive(Debug, Clone)]
struct Row {
    arm: String,
    m: Option<u32>,
    all: Value,
    clean: Value,
    compile_cost_usd: f64,
    tokens_per_question: f64,
    stop_reason: String,
}

struct Api {
    http: Client,
    base: String,
    token: String,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.with_context(|| format!("cannot reach sgde at {}", self.base))?;
        let status = response.status();
        let text = response.text().await.context("reading the answer")?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    /// The call, which must answer `want`; otherwise the problem's detail is the error.
    async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        want: StatusCode,
    ) -> anyhow::Result<Value> {
        let (status, value) = self.call(method.clone(), path, body).await?;
        if status == StatusCode::UNAUTHORIZED {
            bail!("the token was refused (401): check --token / SGDE_TOKEN");
        }
        if status != want {
            let detail =
                value.get("detail").and_then(Value::as_str).map_or_else(|| value.to_string(), str::to_owned);
            bail!("{method} {path}: {status}: {detail}");
        }
        Ok(value)
    }
}

/// Runs the experiment and writes the table to `--out`.
pub async fn run(args: PaperArgs) -> anyhow::Result<()> {
    let api = Api {
        http: Client::builder().timeout(Duration::from_secs(60)).build()?,
        base: args.url.trim_end_matches('/').to_owned(),
        token: args.token.clone(),
    };
    if args.m.is_empty() || args.m.contains(&0) {
        bail!("--m takes training set sizes of at least 1");
    }
    api.expect(Method::GET, "/readyz", None, StatusCode::OK).await.context("the service is not ready")?;
    for endpoint in [&args.teacher, &args.student] {
        api.expect(Method::GET, &format!("/v1/endpoints/{endpoint}"), None, StatusCode::OK)
            .await
            .with_context(|| format!("endpoint `{endpoint}` must be registered in the service"))?;
    }
    let rows_in_file = count_rows(&args.data)?;
    let max_m = args.m.iter().copied().max().unwrap_or(1);
    let dataset = format!("{}-gsm-hard-{}", args.prefix, args.seed);
    let bar = ProgressBar::new(1 + 2 * args.m.len() as u64 * 3 + 1);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(format!("uploading {}", args.data.display()));
    upload(&api, &dataset, &args.data, args.seed, f64::from(max_m) / rows_in_file as f64).await?;
    let train = rows(&api, &dataset, "train", max_m).await?;
    if train.len() < max_m as usize {
        bail!("the data set has {} training rows, fewer than m = {max_m}", train.len());
    }
    bar.inc(1);
    let metric = Metric::Numeric { tolerance: 1e-6 };

    let mut table = Vec::new();
    // The student alone: the compiler's starting point, never edited.
    let zero_shot =
        sgde_compiler::initial_spec(TASK, &train[..1], &metric).map_err(|e| anyhow::anyhow!("{e}"))?;
    let workflow = format!("{}-zero-shot", args.prefix);
    create_or_version(&api, &workflow, &serde_json::to_value(&zero_shot)?).await?;
    bar.set_message("evaluating the student alone");
    let (all, clean, tokens) = evaluate(&api, &bar, &workflow, "latest", &dataset, &args).await?;
    bar.inc(1);
    table.push(Row {
        arm: "zero_shot".into(),
        m: None,
        all,
        clean,
        compile_cost_usd: 0.0,
        tokens_per_question: tokens,
        stop_reason: "-".into(),
    });

    for &m in &args.m {
        for (arm, label, allowed) in arms() {
            let workflow = format!("{}-m{m}-{arm}", args.prefix);
            bar.set_message(format!("compiling m={m} {label}"));
            let job = compile(&api, &bar, &workflow, &train[..m as usize], &metric, allowed, &args).await?;
            bar.inc(1);
            let stop_reason = job["stop_reason"].as_str().unwrap_or("?").to_owned();
            let cost = job["progress"]["cost_usd"].as_f64().unwrap_or(0.0);
            let version = match job["result_version_id"].as_str() {
                Some(id) => id.to_owned(),
                None => {
                    bar.println(format!(
                        "m={m} {arm}: the compile produced no version ({stop_reason}); skipped"
                    ));
                    bar.inc(1);
                    continue;
                }
            };
            bar.set_message(format!("evaluating m={m} {label}"));
            let (all, clean, tokens) = evaluate(&api, &bar, &workflow, &version, &dataset, &args).await?;
            bar.inc(1);
            table.push(Row {
                arm: arm.into(),
                m: Some(m),
                all,
                clean,
                compile_cost_usd: cost,
                tokens_per_question: tokens,
                stop_reason,
            });
        }
    }
    bar.finish_with_message("done");
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let markdown = markdown(&table, &args);
    std::fs::write(args.out.join("paper.md"), &markdown)?;
    std::fs::write(args.out.join("paper.csv"), csv(&table))?;
    println!("{markdown}");
    println!("written: {} and {}", args.out.join("paper.md").display(), args.out.join("paper.csv").display());
    Ok(())
}

fn count_rows(path: &Path) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let n = text.lines().filter(|l| !l.trim().is_empty()).count();
    if n == 0 {
        bail!("{} holds no rows", path.display());
    }
    Ok(n)
}

async fn upload(api: &Api, name: &str, path: &Path, seed: u64, train: f64) -> anyhow::Result<()> {
    let body = json!({"name": name, "mapping": {"input": "inputs.question", "target": "expected"},
        "split": {"seed": seed, "train": train, "validation": 0.0}});
    let (status, _) = api.call(Method::POST, "/v1/datasets", Some(&body)).await?;
    if ![StatusCode::CREATED, StatusCode::CONFLICT].contains(&status) {
        bail!("creating data set `{name}` failed: {status}");
    }
    let bytes = tokio::fs::read(path).await.with_context(|| format!("cannot read {}", path.display()))?;
    let response = api
        .http
        .put(format!("{}/v1/datasets/{name}/rows", api.base))
        .bearer_auth(&api.token)
        .header("content-type", "application/x-ndjson")
        .body(bytes)
        .send()
        .await?;
    if !response.status().is_success() {
        let status = response.status();
        bail!("uploading {} failed: {status}: {}", path.display(), response.text().await.unwrap_or_default());
    }
    Ok(())
}

async fn rows(api: &Api, dataset: &str, split: &str, limit: u32) -> anyhow::Result<Vec<Example>> {
    let page = api
        .expect(
            Method::GET,
            &format!("/v1/datasets/{dataset}/rows?split={split}&limit={limit}"),
            None,
            StatusCode::OK,
        )
        .await?;
    let items = page["items"].as_array().cloned().unwrap_or_default();
    Ok(items
        .into_iter()
        .map(|r| Example { inputs: r["inputs"].clone(), expected: r["expected"].clone() })
        .collect())
}

/// Creates the workflow with `spec`, or adds `spec` as a version if it exists.
async fn create_or_version(api: &Api, name: &str, spec: &Value) -> anyhow::Result<()> {
    let (status, _) =
        api.call(Method::POST, "/v1/workflows", Some(&json!({"name": name, "spec": spec}))).await?;
    match status {
        StatusCode::CREATED => Ok(()),
        StatusCode::CONFLICT => {
            // An earlier run made it: the same spec is deduplicated to its existing version.
            let path = format!("/v1/workflows/{name}/versions");
            let (status, answer) = api.call(Method::POST, &path, Some(&json!({"spec": spec}))).await?;
            if status.is_success() {
                Ok(())
            } else {
                bail!("adding a version to `{name}` failed: {status}: {answer}")
            }
        }
        other => bail!("creating workflow `{name}` failed: {other}"),
    }
}

async fn compile(
    api: &Api,
    bar: &ProgressBar,
    workflow: &str,
    train: &[Example],
    metric: &Metric,
    allowed: Value,
    args: &PaperArgs,
) -> anyhow::Result<Value> {
    let body = json!({
        "workflow": workflow, "task": TASK, "train": train, "metric": metric,
        "teacher": args.teacher, "student": args.student,
        "budget": {"max_iterations": args.iterations}, "samples_per_example": args.samples,
        "allowed": allowed, "seed": args.seed,
    });
    let job = api.expect(Method::POST, "/v1/compile-jobs", Some(&body), StatusCode::ACCEPTED).await?;
    let id = job["id"].as_str().context("the compile job has no id")?.to_owned();
    loop {
        let job = api.expect(Method::GET, &format!("/v1/compile-jobs/{id}"), None, StatusCode::OK).await?;
        match job["status"].as_str() {
            Some("succeeded" | "failed" | "cancelled") => return Ok(job),
            _ => {
                let p = &job["progress"];
                bar.set_message(format!(
                    "compiling {workflow}: iteration {}, best {:.2}",
                    p["iteration"].as_u64().unwrap_or(0),
                    p["best_score"].as_f64().unwrap_or(0.0)
                ));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Evaluates `version` on the test split; (accuracy, clean accuracy, tokens per question).
async fn evaluate(
    api: &Api,
    bar: &ProgressBar,
    workflow: &str,
    version: &str,
    dataset: &str,
    args: &PaperArgs,
) -> anyhow::Result<(Value, Value, f64)> {
    let body = json!({"workflow": workflow, "version": version, "dataset": dataset, "split": "test",
        "limit": args.test_size, "metric": {"kind": "numeric", "tolerance": 1e-6}, "concurrency": args.concurrency});
    let submitted = api.expect(Method::POST, "/v1/evaluations", Some(&body), StatusCode::ACCEPTED).await?;
    let id = submitted["id"].as_str().context("the evaluation has no id")?.to_owned();
    loop {
        let e = api.expect(Method::GET, &format!("/v1/evaluations/{id}"), None, StatusCode::OK).await?;
        match e["status"].as_str() {
            Some("succeeded") => {
                let v = &e["version"];
                return Ok((
                    v["all"].clone(),
                    v["clean"].clone(),
                    v["tokens_per_example"].as_f64().unwrap_or(0.0),
                ));
            }
            Some("failed" | "cancelled") => {
                bail!("evaluation of {workflow} ended {}: {}", e["status"], e["error"])
            }
            _ => {
                bar.set_message(format!("evaluating {workflow}: {}/{}", e["version"]["done"], e["examples"]));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

fn pct(accuracy: &Value) -> String {
    match (accuracy["accuracy"].as_f64(), accuracy["ci_low"].as_f64(), accuracy["ci_high"].as_f64()) {
        (Some(a), Some(l), Some(h)) => format!("{:.1}% [{:.1}, {:.1}]", a * 100.0, l * 100.0, h * 100.0),
        _ => "-".into(),
    }
}

fn markdown(rows: &[Row], args: &PaperArgs) -> String {
    let mut out = format!(
        "# SGDe on GSM-Hard\n\nteacher `{}`, student `{}`, {} test questions, seed {}, {} iterations, k = {}.\n\
         Accuracy with 95% Wilson intervals; *clean* counts only questions whose answer is a non-negative integer.\n\n\
         | arm | m | accuracy (all) | n | accuracy (clean) | n | compile cost (USD) | student tokens / question | stop |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        args.teacher, args.student, args.test_size, args.seed, args.iterations, args.samples
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.4} | {:.0} | {} |\n",
            r.arm,
            r.m.map_or("-".into(), |m| m.to_string()),
            pct(&r.all),
            r.all["total"],
            pct(&r.clean),
            r.clean["total"].as_u64().map_or("-".into(), |n| n.to_string()),
            r.compile_cost_usd,
            r.tokens_per_question,
            r.stop_reason
        ));
    }
    out
}

fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "arm,m,accuracy,ci_low,ci_high,n,clean_accuracy,clean_ci_low,clean_ci_high,clean_n,compile_cost_usd,student_tokens_per_question,stop_reason\n",
    );
    let num = |v: &Value| v.as_f64().map_or(String::new(), |x| format!("{x:.6}"));
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{:.6},{:.1},{}\n",
            r.arm,
            r.m.map_or(String::new(), |m| m.to_string()),
            num(&r.all["accuracy"]),
            num(&r.all["ci_low"]),
            num(&r.all["ci_high"]),
            r.all["total"].as_u64().unwrap_or(0),
            num(&r.clean["accuracy"]),
            num(&r.clean["ci_low"]),
            num(&r.clean["ci_high"]),
            r.clean["total"].as_u64().map_or(String::new(), |n| n.to_string()),
            r.compile_cost_usd,
            r.tokens_per_question,
            r.stop_reason
        ));
    }
    out
}
