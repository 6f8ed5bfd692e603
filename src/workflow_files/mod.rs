//! `sgde workflow export | apply | diff`: compiled workflows as folders in version control.
//!
//! The folder format lives in [`sgde_workflow::folder`]; this module is the I/O around it
//! ([`fs`]) and the REST calls ([`client`]). Validation and diffing happen in the service
//! (`POST /v1/workflows/{name}/apply` and `…/apply/preview`), so a folder gets exactly the
//! errors a posted spec gets; the commands only translate the service's JSON pointers back to
//! the files they came from.
//!
//! # Layout
//! - [`client`]: the REST client and its errors (unreachable server, refused key).
//! - [`fs`]: reading and writing folders.
//! - this file: the three subcommands.

mod client;
mod fs;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sgde_workflow::{Folder, Provenance, WorkflowSpec};

pub use client::ServerArgs;
use client::{Api, detail, segment};

/// `sgde workflow …`
#[derive(Debug, clap::Args)]
pub struct WorkflowArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(subcommand)]
    pub command: WorkflowCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum WorkflowCommand {
    /// Write a version as a folder: workflow.json plus one file per prompt and code step.
    Export {
        /// The workflow's name.
        name: String,
        /// Version number, id, label or `latest`.
        #[arg(long, default_value = "latest")]
        version: String,
        /// The folder to write (its `nodes/` directory is replaced).
        dir: PathBuf,
    },
    /// Create the version a folder describes (or find it, when the content exists already).
    Apply {
        dir: PathBuf,
        /// Point this label at the version (e.g. `production`).
        #[arg(long)]
        label: Option<String>,
    },
    /// Show what `apply` would change: nodes added, removed and changed, with text diffs.
    Diff {
        dir: PathBuf,
        /// The version to compare with (number, id, label or `latest`).
        #[arg(long)]
        against: Option<String>,
    },
}

pub async fn run(args: WorkflowArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.server)?;
    match args.command {
        WorkflowCommand::Export { name, version, dir } => export(&api, &name, &version, &dir).await,
        WorkflowCommand::Apply { dir, label } => apply(&api, &dir, label.as_deref()).await,
        WorkflowCommand::Diff { dir, against } => diff(&api, &dir, against.as_deref()).await,
    }
}

async fn export(api: &Api, name: &str, reference: &str, dir: &Path) -> anyhow::Result<()> {
    let base = format!("/v1/workflows/{}/versions", segment(name));
    let version = api.expect(Method::GET, &format!("{base}/{}", segment(reference)), None).await?;
    let spec = WorkflowSpec::from_value(version["spec"].clone())
        .map_err(|e| anyhow::anyhow!("the stored spec does not parse: {e}"))?;
    let provenance = match version.get("origin").filter(|o| !o.is_null()) {
        Some(origin) => {
            serde_json::from_value(origin.clone()).context("the version's origin is malformed")?
        }
        None => {
            let parent = match version["parent_version_id"].as_str() {
                Some(id) => {
                    let parent = api.expect(Method::GET, &format!("{base}/{id}"), None).await?;
                    parent["content_hash"].as_str().map(str::to_owned)
                }
                None => None,
            };
            Provenance {
                content_hash: spec.content_hash(),
                source: version["source"].as_str().unwrap_or("manual").to_owned(),
                parent,
                compile_job: version["job_id"].as_str().map(str::to_owned),
                metrics: version.get("metrics").filter(|m| !m.is_null()).cloned(),
            }
        }
    };
    let files = sgde_workflow::folder::export(name, &spec, &provenance);
    fs::write_folder(dir, &files)?;
    println!(
        "exported {name} version {} ({}) to {}: {} files",
        version["number"],
        provenance.content_hash,
        dir.display(),
        files.len()
    );
    Ok(())
}

/// Reads and imports a folder; problems are printed one per line, naming the file.
fn read(dir: &Path) -> anyhow::Result<Folder> {
    let files = fs::read_folder(dir)?;
    sgde_workflow::folder::import(&files).map_err(|errors| {
        for e in &errors.0 {
            eprintln!("{}: {e}", dir.display());
        }
        anyhow::anyhow!("{} is not a valid workflow folder ({} problem(s))", dir.display(), errors.0.len())
    })
}

/// Turns a 422 into one line per error, each with its file and the service's pointer.
fn refused(dir: &Path, folder: &Folder, body: &Value) -> anyhow::Error {
    let errors = body["errors"].as_array().cloned().unwrap_or_default();
    for e in &errors {
        let pointer = e["pointer"].as_str().unwrap_or_default();
        let message = e["message"].as_str().unwrap_or_default();
        let file = match pointer.strip_prefix("/spec") {
            Some(inner) if inner.is_empty() || inner.starts_with('/') => folder.locate(inner).file,
            _ if pointer == "/label" => "--label".to_owned(),
            _ => sgde_workflow::folder::MANIFEST.to_owned(),
        };
        eprintln!("{}: {file}: {pointer}: {message}", dir.display());
    }
    if errors.is_empty() {
        anyhow::anyhow!("{} was refused: {}", dir.display(), detail(body))
    } else {
        anyhow::anyhow!("{} is invalid ({} error(s)): {}", dir.display(), errors.len(), detail(body))
    }
}

async fn apply(api: &Api, dir: &Path, label: Option<&str>) -> anyhow::Result<()> {
    let folder = read(dir)?;
    let body = json!({"spec": folder.spec, "provenance": folder.provenance, "label": label});
    let path = format!("/v1/workflows/{}/apply", segment(&folder.name));
    let answer = api.call(Method::POST, &path, Some(&body)).await?;
    if answer.status == StatusCode::UNPROCESSABLE_ENTITY {
        return Err(refused(dir, &folder, &answer.body));
    }
    if !answer.status.is_success() {
        bail!("POST {path}: {}: {}", answer.status, detail(&answer.body));
    }
    let a = &answer.body;
    let (number, hash) = (&a["version"]["number"], a["version"]["content_hash"].as_str().unwrap_or("?"));
    let name = &folder.name;
    if a["workflow_created"] == true {
        println!("created workflow {name} with version {number} ({hash})");
    } else if a["created"] == true {
        println!("created {name} version {number} ({hash})");
    } else {
        println!("unchanged: {name} version {number} already has this content ({hash})");
    }
    if let (Some(label), Some(moved)) = (label, a.get("label")) {
        if moved["previous_version_id"] == a["version"]["id"] {
            println!("label {label} already on version {number}");
        } else {
            println!("label {label} → version {number}");
        }
    }
    Ok(())
}

async fn diff(api: &Api, dir: &Path, against: Option<&str>) -> anyhow::Result<()> {
    let folder = read(dir)?;
    let body = json!({"spec": folder.spec, "against": against});
    let path = format!("/v1/workflows/{}/apply/preview", segment(&folder.name));
    let answer = api.call(Method::POST, &path, Some(&body)).await?;
    if answer.status == StatusCode::UNPROCESSABLE_ENTITY {
        return Err(refused(dir, &folder, &answer.body));
    }
    if !answer.status.is_success() {
        bail!("POST {path}: {}: {}", answer.status, detail(&answer.body));
    }
    print!("{}", render_preview(&folder.name, &answer.body));
    Ok(())
}

/// The preview as a reviewer reads it: a header, then `+`, `-` and `~` lines per node path,
/// changed fields, and unified diffs of prompts and code.
fn render_preview(name: &str, preview: &Value) -> String {
    let mut out = String::new();
    let hash = preview["content_hash"].as_str().unwrap_or("?");
    let Some(against) = preview.get("against") else {
        out.push_str(&format!("workflow {name} does not exist: apply creates it ({hash})\n"));
        for node in preview["diff"]["added"].as_array().into_iter().flatten() {
            out.push_str(&format!("+ {}\n", node.as_str().unwrap_or_default()));
        }
        return out;
    };
    let number = &against["number"];
    if preview["unchanged"] == true {
        out.push_str(&format!("no changes: {name} version {number} has this content ({hash})\n"));
        return out;
    }
    out.push_str(&format!("{name}: changes against version {number} → {hash}\n"));
    let d = &preview["diff"];
    let list = |key: &str| d[key].as_array().cloned().unwrap_or_default();
    for field in list("fields") {
        out.push_str(&format!("~ {} (workflow field)\n", field.as_str().unwrap_or_default()));
    }
    for node in list("added") {
        out.push_str(&format!("+ {}\n", node.as_str().unwrap_or_default()));
    }
    for node in list("removed") {
        out.push_str(&format!("- {}\n", node.as_str().unwrap_or_default()));
    }
    for change in list("changed") {
        let fields: Vec<&str> =
            change["fields"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let kind = change["kind"].as_str().map(|k| format!(" [{k}]")).unwrap_or_default();
        out.push_str(&format!(
            "~ {}{kind}: {}\n",
            change["node"].as_str().unwrap_or_default(),
            fields.join(", ")
        ));
        for text in change["text"].as_object().into_iter().flat_map(|m| m.values()) {
            out.push_str(text.as_str().unwrap_or_default());
            if !out.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out
}
