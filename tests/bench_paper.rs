//! `sgde bench paper` end to end on a small slice: the real CLI drives a running service whose
//! student is the testkit's simulated student and whose teacher follows the reference path
//! (offload the arithmetic to Python, then wrap it in consensus) when the arm allows it.

mod common;

use std::sync::Arc;

use common::{ADMIN_TOKEN, Harness, ServiceConfig, endpoint_config, sgde_bin};
use serde_json::json;
use sgde_testkit::reference_path::{consensus_ops, offload_ops};
use sgde_testkit::{ChatCall, Difficulty, FakeOpenAi, Outcome, ProblemGenerator, SimulatedStudent};

const EDITOR: &str = "You are the editor";

/// The workflow under edit, as the editor prompt shows it.
fn current_spec(user: &str) -> String {
    user.split("## Current workflow")
        .nth(1)
        .and_then(|s| s.split("## ").next())
        .unwrap_or_default()
        .to_owned()
}

/// A stateless teacher: the next step of the reference path for the workflow it is shown.
fn teacher(call: &ChatCall, _choice: u32) -> Outcome {
    if call.system_text().contains(EDITOR) {
        let spec = current_spec(&call.user_text());
        let edits = if !spec.contains("\"expression\"") {
            offload_ops()
        } else if !spec.contains("\"consensus\"") {
            consensus_ops()
        } else {
            json!([])
        };
        return Outcome::Reply(json!({"rationale": "reference path", "edits": edits}).to_string());
    }
    Outcome::Reply(
        json!({
            "diagnosis": "The arithmetic on large numbers is wrong.",
            "critiques": [{"node": "answer", "critique": "Offload the arithmetic; vote over samples.", "severity": "high"}]
        })
        .to_string(),
    )
}

#[sgde_test_macros::both_backends]
async fn bench_paper_runs_every_arm_and_writes_the_table() {
    let student =
        FakeOpenAi::builder().responder(Arc::new(SimulatedStudent::new())).start().await.expect("student");
    let teacher = FakeOpenAi::builder().responder(Arc::new(teacher)).start().await.expect("teacher");
    let h = Harness::with(student, ServiceConfig::default()).await;
    h.admin().post("/v1/endpoints", &endpoint_config("teacher", &teacher)).await.expect(201);

    // A GSM-Hard-shaped slice: hard generated problems, float targets, one negative (label noise).
    let dir = std::env::temp_dir().join(format!("sgde-bench-paper-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut lines: Vec<String> = ProblemGenerator::new(5)
        .batch(16, Difficulty::Hard)
        .into_iter()
        .map(|p| json!({"input": p.question, "code": "", "target": p.answer as f64}).to_string())
        .collect();
    lines.push(
        json!({"input": "A farm has 3 cows and sells 8. How many are left?", "code": "", "target": -5.0})
            .to_string(),
    );
    let data = dir.join("slice.jsonl");
    std::fs::write(&data, lines.join("\n")).expect("write the slice");
    let out = dir.join("out");

    let base = h.service.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(sgde_bin())
            .args(["bench", "paper", "--url", &base, "--teacher", "teacher", "--student", "student"])
            .arg("--data")
            .arg(&data)
            .args([
                "--m",
                "3,5",
                "--test-size",
                "12",
                "--iterations",
                "5",
                "--samples",
                "3",
                "--concurrency",
                "4",
            ])
            .arg("--out")
            .arg(&out)
            .env("SGDE_TOKEN", ADMIN_TOKEN)
            .output()
    })
    .await
    .expect("join")
    .expect("run sgde bench paper");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "sgde bench paper failed:\n{stdout}\n{stderr}");

    let csv = std::fs::read_to_string(dir.join("out/paper.csv")).expect("paper.csv");
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    let arms: Vec<(&str, &str)> = rows.iter().map(|r| (r[0], r[1])).collect();
    assert_eq!(
        arms,
        vec![
            ("zero_shot", ""),
            ("prompt_only", "3"),
            ("offloading", "3"),
            ("sgde", "3"),
            ("prompt_only", "5"),
            ("offloading", "5"),
            ("sgde", "5")
        ],
        "{csv}"
    );
    let accuracy = |arm: &str, m: &str| -> f64 {
        rows.iter().find(|r| r[0] == arm && r[1] == m).and_then(|r| r[2].parse().ok()).unwrap_or(-1.0)
    };
    // The weak student alone fails the large-number problems; prompts alone do not fix
    // arithmetic; offloading does most of it and consensus the rest.
    assert!(accuracy("zero_shot", "") <= 0.5, "{csv}");
    for m in ["3", "5"] {
        assert!(accuracy("prompt_only", m) <= 0.5, "{csv}");
        assert!(accuracy("offloading", m) > accuracy("zero_shot", ""), "{csv}");
        assert!(accuracy("sgde", m) >= 0.9 && accuracy("sgde", m) >= accuracy("offloading", m), "{csv}");
    }
    for r in &rows {
        // 12 test questions; the clean subset leaves out non-integer or negative answers.
        assert_eq!(r[5], "12", "{csv}");
        assert!(r[9].parse::<u32>().is_ok_and(|n| n <= 12), "{csv}");
    }
    let markdown = std::fs::read_to_string(dir.join("out/paper.md")).expect("paper.md");
    assert!(markdown.contains("| arm | m | accuracy (all)"), "{markdown}");
    assert!(stdout.contains("full SGDe") || markdown.contains("sgde"), "{stdout}");

    // A wrong token is a clear error, not a panic.
    let refused = std::process::Command::new(sgde_bin())
        .args(["bench", "paper", "--url", &h.service.base, "--teacher", "teacher", "--student", "student"])
        .args(["--data", "/nonexistent.jsonl", "--token", "wrong-token"])
        .output()
        .expect("run");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("token") || err.contains("401"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
    h.finish().await;
}
