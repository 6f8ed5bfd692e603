//! `sgde workflow export | diff | apply` end to end: the real CLI against running services, two
//! of them on two databases for the round trip.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{ADMIN_TOKEN, Harness, free_port, reference_spec, sgde_bin};
use serde_json::{Value, json};

/// The reference workflow plus a consensus node whose body's output carries the consensus
/// node's own id, and a code node as the output: every node kind, nested bodies, every text field.
fn every_kind_spec() -> Value {
    let mut spec = reference_spec();
    spec["output"] = json!("final");
    spec["nodes"]["verdict"] = json!({
        "kind": "consensus", "deps": ["answer"], "samples": 3, "max_concurrency": 2,
        "body": {"output": "verdict", "nodes": {"verdict": {
            "kind": "llm", "deps": ["answer"], "model": "student", "system": "You check answers.",
            "prompt": "Is {{ answer }} a plausible answer to: {{ inputs.question }}? Say yes or no.",
            "parser": {"type": "regex", "pattern": "(yes|no)", "group": 1}, "timeout_ms": 5000
        }}},
        "vote": {"method": "majority", "normalize": {"type": "text", "case_sensitive": false},
                 "tie_break": "fail", "quorum": 2}
    });
    spec["nodes"]["final"] = json!({
        "kind": "code", "deps": ["answer", "verdict"],
        "code": "def run(answer, verdict):\n    return {\"answer\": answer, \"checked\": verdict == \"yes\"}"
    });
    spec
}

fn temp_dir(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sgde-workflow-files-{what}-{}", uuid::Uuid::now_v7()))
}

/// Runs `sgde workflow <args>` against `url` with the admin token (unless `token` says otherwise).
async fn sgde(url: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(sgde_bin());
    command.env_clear().arg("workflow").args(args).env("SGDE_URL", url);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    if let Some(token) = token {
        command.env("SGDE_TOKEN", token);
    }
    tokio::task::spawn_blocking(move || command.output().expect("run sgde")).await.expect("join")
}

/// The command's stdout; panics with both streams when it failed.
fn ok(output: &Output) -> String {
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "sgde failed\nstdout: {stdout}\nstderr: {stderr}");
    stdout.into_owned()
}

/// The command's stderr; panics when it succeeded.
fn failed(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "sgde should have failed\nstderr: {stderr}");
    stderr
}

/// Every file under `dir`, by relative path, as bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("list") {
            let entry = entry.expect("entry");
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.path().is_dir() {
                walk(&entry.path(), &format!("{name}/"), out);
            } else {
                out.insert(name, std::fs::read(entry.path()).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, "", &mut out);
    out
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("workflow.json")).expect("manifest")).expect("JSON")
}

#[sgde_test_macros::both_backends]
async fn export_apply_elsewhere_export_again_is_byte_identical() {
    let (a, b) = tokio::join!(Harness::start(), Harness::start());
    let v1 = a.workflow("gsm", &reference_spec()).await;
    let v2 = a
        .admin()
        .post("/v1/workflows/gsm/versions", &json!({"spec": every_kind_spec(), "parent": "1"}))
        .await
        .expect(201);
    let (first, second) = (temp_dir("first"), temp_dir("second"));

    let out =
        ok(&sgde(&a.service.base, Some(ADMIN_TOKEN), &["export", "gsm", first.to_str().unwrap()]).await);
    assert!(out.contains("exported gsm version 2"), "{out}");
    let exported = files(&first);
    let names: Vec<&str> = exported.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "nodes/answer.py",
            "nodes/extract.prompt.txt",
            "nodes/extract.system.txt",
            "nodes/final.py",
            "nodes/solve/program.prompt.txt",
            "nodes/solve/program.system.txt",
            "nodes/solve/run.py",
            "nodes/verdict/verdict.prompt.txt",
            "nodes/verdict/verdict.system.txt",
            "workflow.json",
        ]
    );
    let m = manifest(&first);
    let hash = v2["version"]["content_hash"].clone();
    assert_eq!(m["provenance"]["content_hash"], hash);
    assert_eq!(m["provenance"]["parent"], v1["version"]["content_hash"]);
    assert_eq!(m["provenance"]["source"], "manual");
    assert_eq!(m["spec"]["nodes"]["solve"]["body"]["nodes"]["run"]["code_file"], "nodes/solve/run.py");

    // Another instance, another database: the workflow does not exist there yet.
    let out = ok(&sgde(&b.service.base, Some(ADMIN_TOKEN), &["diff", first.to_str().unwrap()]).await);
    assert!(out.contains("does not exist") && out.contains("+ solve/program"), "{out}");
    let args = ["apply", first.to_str().unwrap(), "--label", "production"];
    let out = ok(&sgde(&b.service.base, Some(ADMIN_TOKEN), &args).await);
    assert!(out.contains("created workflow gsm with version 1"), "{out}");
    assert!(out.contains("label production → version 1"), "{out}");
    let on_b = b.admin().get("/v1/workflows/gsm/versions/production").await.expect(200);
    assert_eq!(on_b["content_hash"], hash);

    let args = ["export", "gsm", "--version", "production", second.to_str().unwrap()];
    ok(&sgde(&b.service.base, Some(ADMIN_TOKEN), &args).await);
    assert_eq!(files(&second), exported, "the round trip changed a byte");

    // Idempotent: applying again (from CI on the next push) creates nothing and moves nothing.
    let args = ["apply", second.to_str().unwrap(), "--label", "production"];
    let out = ok(&sgde(&b.service.base, Some(ADMIN_TOKEN), &args).await);
    assert!(out.contains("unchanged: gsm version 1"), "{out}");
    assert!(out.contains("label production already on version 1"), "{out}");
    let versions = b.admin().get("/v1/workflows/gsm/versions").await.expect(200);
    assert_eq!(versions["items"].as_array().map(Vec::len), Some(1));
    // And back on the first instance the same folder is its existing version 2.
    let out = ok(&sgde(&a.service.base, Some(ADMIN_TOKEN), &["apply", first.to_str().unwrap()]).await);
    assert!(out.contains("unchanged: gsm version 2"), "{out}");

    for dir in [first, second] {
        let _ = std::fs::remove_dir_all(dir);
    }
    a.finish().await;
    b.finish().await;
}

#[sgde_test_macros::both_backends]
async fn a_reviewed_prompt_change_shows_in_diff_and_applies_with_a_label_move() {
    let h = Harness::start().await;
    let v1 = h.workflow("gsm", &every_kind_spec()).await;
    h.admin().put("/v1/workflows/gsm/labels/production", &json!({"version": "1"})).await.expect(200);
    let dir = temp_dir("review");
    let d = dir.to_str().unwrap();
    let url = h.service.base.as_str();
    ok(&sgde(url, Some(ADMIN_TOKEN), &["export", "gsm", "--version", "production", d]).await);
    let out = ok(&sgde(url, Some(ADMIN_TOKEN), &["diff", d]).await);
    assert!(out.starts_with("no changes: gsm version 1"), "{out}");

    // The reviewed change: one line of one prompt, inside a consensus body.
    let prompt = dir.join("nodes/solve/program.prompt.txt");
    let text = std::fs::read_to_string(&prompt).expect("prompt");
    std::fs::write(&prompt, text.replace("Reply with the expression only.", "Reply with one line.")).unwrap();
    let out = ok(&sgde(url, Some(ADMIN_TOKEN), &["diff", d, "--against", "production"]).await);
    assert!(out.contains("~ solve/program: prompt"), "{out}");
    assert!(
        out.contains("-Write a single Python expression") && out.contains("Reply with one line."),
        "{out}"
    );
    assert!(!out.contains("solve/run"), "only the edited node changed: {out}");

    let out = ok(&sgde(url, Some(ADMIN_TOKEN), &["apply", d, "--label", "production"]).await);
    assert!(out.contains("created gsm version 2"), "{out}");
    assert!(out.contains("label production → version 2"), "{out}");
    let production = h.admin().get("/v1/workflows/gsm/versions/production").await.expect(200);
    assert_eq!(production["number"], 2);
    assert!(
        production["spec"]["nodes"]["solve"]["body"]["nodes"]["program"]["prompt"]
            .as_str()
            .is_some_and(|p| p.contains("Reply with one line."))
    );

    // The new version's provenance names the reviewed version as its parent.
    ok(&sgde(url, Some(ADMIN_TOKEN), &["export", "gsm", d]).await);
    let m = manifest(&dir);
    assert_eq!(m["provenance"]["parent"], v1["version"]["content_hash"]);
    assert_eq!(m["provenance"]["content_hash"], production["content_hash"]);
    let out = ok(&sgde(url, Some(ADMIN_TOKEN), &["diff", d]).await);
    assert!(out.starts_with("no changes: gsm version 2"), "{out}");

    // Rollback is applying the old folder again: the old version, no new one.
    ok(&sgde(url, Some(ADMIN_TOKEN), &["export", "gsm", "--version", "1", d]).await);
    let out = ok(&sgde(url, Some(ADMIN_TOKEN), &["apply", d, "--label", "production"]).await);
    assert!(out.contains("unchanged: gsm version 1") && out.contains("production → version 1"), "{out}");

    let _ = std::fs::remove_dir_all(dir);
    h.finish().await;
}

#[sgde_test_macros::both_backends]
async fn invalid_folders_unreachable_servers_and_refused_keys_fail_clearly() {
    let h = Harness::start().await;
    h.workflow("gsm", &every_kind_spec()).await;
    let dir = temp_dir("invalid");
    let d = dir.to_str().unwrap();
    let url = h.service.base.as_str();
    ok(&sgde(url, Some(ADMIN_TOKEN), &["export", "gsm", d]).await);

    // Python that does not parse: the error names the .py file and the spec pointer.
    let code = dir.join("nodes/final.py");
    std::fs::write(&code, "def run(answer, verdict):\n    return (\n").unwrap();
    let err = failed(&sgde(url, Some(ADMIN_TOKEN), &["apply", d]).await);
    assert!(err.contains("nodes/final.py: /spec/nodes/final/code:"), "{err}");
    let err = failed(&sgde(url, Some(ADMIN_TOKEN), &["diff", d]).await);
    assert!(err.contains("nodes/final.py"), "{err}");

    // A manifest mistake: the manifest and the pointer inside it.
    ok(&sgde(url, Some(ADMIN_TOKEN), &["export", "gsm", d]).await);
    let text = std::fs::read_to_string(dir.join("workflow.json")).unwrap();
    std::fs::write(dir.join("workflow.json"), text.replace("\"samples\": 3", "\"samples\": 0")).unwrap();
    let err = failed(&sgde(url, Some(ADMIN_TOKEN), &["apply", d]).await);
    assert!(err.contains("workflow.json: /spec/nodes/verdict/samples:"), "{err}");

    // Folder problems found before any call: a missing file, a file no node uses.
    ok(&sgde(url, Some(ADMIN_TOKEN), &["export", "gsm", d]).await);
    std::fs::remove_file(dir.join("nodes/extract.system.txt")).unwrap();
    std::fs::write(dir.join("nodes/stale.py"), "def run():\n    return 1\n").unwrap();
    let err = failed(&sgde(url, Some(ADMIN_TOKEN), &["apply", d]).await);
    assert!(
        err.contains("/spec/nodes/extract/system_file") && err.contains("nodes/extract.system.txt"),
        "{err}"
    );
    assert!(err.contains("nodes/stale.py: no node"), "{err}");

    // Nothing of the above created a version.
    let versions = h.admin().get("/v1/workflows/gsm/versions").await.expect(200);
    assert_eq!(versions["items"].as_array().map(Vec::len), Some(1));

    // A bad label is the service's error, attributed to the flag.
    ok(&sgde(url, Some(ADMIN_TOKEN), &["export", "gsm", d]).await);
    let err = failed(&sgde(url, Some(ADMIN_TOKEN), &["apply", d, "--label", "latest"]).await);
    assert!(err.contains("--label: /label:"), "{err}");

    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let err = failed(&sgde(&nowhere, Some(ADMIN_TOKEN), &["apply", d]).await);
    assert!(err.contains(&format!("cannot reach sgde at {nowhere}")), "{err}");
    let err = failed(&sgde(url, Some("sgde_not-a-key"), &["export", "gsm", d]).await);
    assert!(err.contains("refused the API key (401)"), "{err}");
    let err = failed(&sgde(url, None, &["diff", d]).await);
    assert!(err.contains("no API key: pass --token or set SGDE_TOKEN"), "{err}");
    let reader = h.admin().post("/v1/keys", &json!({"name": "reader", "scopes": ["read"]})).await.expect(201);
    let err = failed(&sgde(url, reader["token"].as_str(), &["apply", d]).await);
    assert!(err.contains("403"), "{err}");
    let err = failed(&sgde(url, Some(ADMIN_TOKEN), &["export", "nope", d]).await);
    assert!(err.contains("404"), "{err}");

    let _ = std::fs::remove_dir_all(dir);
    h.finish().await;
}
