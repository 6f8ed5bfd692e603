//! Data sets and evaluations, black-box: JSON Lines uploads with a field mapping and per-line
//! errors, seeded splits, and evaluations as async jobs whose reports (Wilson intervals, the
//! clean subset, McNemar against a baseline) recount their per-example outcomes.

mod common;

use std::sync::Arc;

use common::{Harness, eventually, reference_spec};
use serde_json::{Value, json};
use sgde_testkit::{Difficulty, FakeOpenAi, ProblemGenerator, SimulatedStudent};

/// GSM-Hard-shaped lines (`input`, `code`, `target`) of generated hard problems.
fn gsm_hard_lines(seed: u64, count: usize) -> String {
    ProblemGenerator::new(seed)
        .batch(count, Difficulty::Hard)
        .into_iter()
        .map(|p| json!({"input": p.question, "code": "def solution(): ...", "target": p.answer}).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The student answering directly: a single `llm` node with a number parser.
fn zero_shot_spec() -> Value {
    json!({
        "schema": "sgde.workflow/v1",
        "inputs": {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]},
        "output": "answer",
        "nodes": {"answer": {"kind": "llm", "model": "student",
            "system": "Solve the arithmetic word problem. End your reply with the final answer as a number.",
            "prompt": "{{ inputs.question }}", "parser": {"type": "number"}}}
    })
}

async fn upload(h: &Harness, name: &str, body: String) -> common::Reply {
    let admin = h.admin();
    let request = admin
        .request(reqwest::Method::PUT, &format!("/v1/datasets/{name}/rows"))
        .header("content-type", "application/x-ndjson")
        .body(body);
    admin.send(request).await
}

/// The evaluation once it has succeeded.
async fn finished(admin: &common::Api, id: &str) -> Value {
    eventually("the evaluation", || async move {
        let e = admin.get(&format!("/v1/evaluations/{id}")).await.expect(200);
        (e["status"] == "succeeded").then_some(e)
    })
    .await
}

#[sgde_test_macros::both_backends]
async fn datasets_upload_validate_and_split_by_seed() {
    let h = Harness::start().await;
    let admin = h.admin();
    let mapping = json!({"input": "inputs.question", "target": "expected"});
    let created = admin
        .post("/v1/datasets", &json!({"name": "gsm-hard", "mapping": mapping, "split": {"seed": 7, "train": 0.2, "validation": 0.1}}))
        .await
        .expect(201);
    assert_eq!(created["rows"], 0);
    admin
        .post("/v1/datasets", &json!({"name": "gsm-hard", "mapping": mapping}))
        .await
        .problem(409, "conflict");
    for (body, pointer) in [
        (json!({"name": "x", "mapping": {"input": "inputs.question"}}), "/mapping"),
        (json!({"name": "x", "mapping": {"input": "question", "target": "expected"}}), "/mapping/input"),
        (
            json!({"name": "x", "mapping": mapping, "split": {"seed": 1, "train": 0.8, "validation": 0.5}}),
            "/split/validation",
        ),
        (json!({"name": "bad name", "mapping": mapping}), "/name"),
    ] {
        assert_eq!(admin.post("/v1/datasets", &body).await.pointers(), vec![pointer], "{body}");
    }

    // Streamed upload of 50 rows; the `code` field is ignored.
    let loaded = upload(&h, "gsm-hard", gsm_hard_lines(1, 50)).await.expect(200);
    assert_eq!((loaded["rows"].as_u64(), loaded["train_rows"].as_u64()), (Some(50), Some(10)));
    assert_eq!((loaded["validation_rows"].as_u64(), loaded["test_rows"].as_u64()), (Some(5), Some(35)));
    let test = admin.get("/v1/datasets/gsm-hard/rows?split=test&limit=1000").await.expect(200);
    let train = admin.get("/v1/datasets/gsm-hard/rows?split=train&limit=1000").await.expect(200);
    assert_eq!(test["items"].as_array().map(Vec::len), Some(35));
    assert_eq!(train["items"].as_array().map(Vec::len), Some(10));
    assert!(test["items"][0]["inputs"]["question"].is_string());
    assert!(test["items"][0].get("code").is_none() && test["items"][0]["inputs"].get("code").is_none());
    // The split is a function of the seed: reading again gives the same rows.
    let again = admin.get("/v1/datasets/gsm-hard/rows?split=train&limit=1000").await.expect(200);
    assert_eq!(again, train);

    // A bad upload stores nothing and names every bad line and field.
    let bad = format!("{}\nnot json\n{{\"input\": \"q\"}}\n[1]\n", gsm_hard_lines(2, 2));
    let reply = upload(&h, "gsm-hard", bad).await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(reply.pointers(), vec!["/lines/3", "/lines/4/target", "/lines/5"]);
    assert_eq!(admin.get("/v1/datasets/gsm-hard").await.expect(200)["rows"], 50);
    let wrong_type = admin
        .request(reqwest::Method::PUT, "/v1/datasets/gsm-hard/rows")
        .header("content-type", "application/json")
        .body("{}");
    admin.send(wrong_type).await.problem(415, "unsupported_media_type");
    upload(&h, "nope", gsm_hard_lines(1, 1)).await.problem(404, "not_found");
    assert_eq!(upload(&h, "gsm-hard", "\n\n".into()).await.pointers(), vec!["/lines"]);
    h.finish().await;
}

#[sgde_test_macros::both_backends]
async fn an_evaluation_reports_accuracy_and_compares_two_versions() {
    let fake =
        FakeOpenAi::builder().responder(Arc::new(SimulatedStudent::new())).start().await.expect("fake");
    let h = Harness::with(fake, common::ServiceConfig::default()).await;
    let admin = h.admin();
    h.workflow("gsm", &zero_shot_spec()).await;
    admin.post("/v1/workflows/gsm/versions", &json!({"spec": reference_spec()})).await.expect(201);
    let mapping = json!({"input": "inputs.question", "target": "expected"});
    admin
        .post("/v1/datasets", &json!({"name": "hard", "mapping": mapping, "split": {"seed": 3}}))
        .await
        .expect(201);
    // Targets as GSM-Hard has them: floats, one negative (label noise).
    let mut lines = gsm_hard_lines(11, 24);
    lines
        .push_str("\n{\"input\": \"A shop has 5 apples and sells 9. How many are left?\", \"target\": -4.0}");
    upload(&h, "hard", lines).await.expect(200);

    let submitted = admin
        .post(
            "/v1/evaluations",
            &json!({
                "workflow": "gsm", "version": "2", "baseline": "1", "dataset": "hard",
                "metric": {"kind": "numeric", "tolerance": 1e-6}, "concurrency": 4
            }),
        )
        .await
        .expect(202);
    let id = submitted["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(submitted["examples"], 25);
    let done = finished(&admin, &id).await;
    let version = &done["version"];
    let baseline = &done["baseline"];
    assert_eq!((version["done"].as_u64(), baseline["done"].as_u64()), (Some(25), Some(25)));
    // The compiled shape gets the hard problems right; the student alone does not.
    let acc = version["all"]["accuracy"].as_f64().unwrap_or_default();
    let base = baseline["all"]["accuracy"].as_f64().unwrap_or(1.0);
    assert!(acc >= 0.9 && base <= 0.5, "{done}");
    let (low, high) = (
        version["all"]["ci_low"].as_f64().unwrap_or(2.0),
        version["all"]["ci_high"].as_f64().unwrap_or(-1.0),
    );
    assert!(low <= acc && acc <= high && high <= 1.0, "{done}");
    // The clean subset leaves out the negative target.
    assert_eq!(version["clean"]["total"], 24);
    assert_eq!(done["comparison"]["verdict"], "better", "{done}");
    assert!(done["comparison"]["p_value"].as_f64().unwrap_or(1.0) < 0.05);

    // The report is a recount of the outcomes; failures carry their traces.
    let results = admin.get(&format!("/v1/evaluations/{id}/results")).await.expect(200);
    let items = results["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 50);
    let version_id = version["version_id"].as_str().unwrap_or_default();
    let passed = items.iter().filter(|r| r["version_id"] == version_id && r["passed"] == true).count() as u64;
    assert_eq!(version["all"]["correct"].as_u64(), Some(passed));
    let failed = admin.get(&format!("/v1/evaluations/{id}/results?passed=false")).await.expect(200);
    for r in failed["items"].as_array().into_iter().flatten() {
        assert!(r["trace"].is_object() || r["error"].is_object(), "{r}");
    }
    let tokens = version["tokens_per_example"].as_f64().unwrap_or_default();
    assert!(tokens > 0.0);

    // Listed, newest first, without the examples.
    let listed = common::all_pages(&admin, "/v1/evaluations?workflow=gsm", 1).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(
        (listed[0]["version_number"].as_i64(), listed[0]["baseline_number"].as_i64()),
        (Some(2), Some(1))
    );
    assert_eq!(listed[0]["examples"], 25);
    assert_eq!(listed[0]["status"], "succeeded");
    assert!(listed[0].get("version").is_none());
    assert!(common::all_pages(&admin, "/v1/evaluations?workflow=other", 10).await.is_empty());
    h.finish().await;
}

#[sgde_test_macros::both_backends]
async fn evaluation_requests_are_validated() {
    let h = Harness::start().await;
    let admin = h.admin();
    h.workflow("echo", &common::echo_spec()).await;
    let metric = json!({"kind": "exact"});
    let cases = [
        (json!({"workflow": "echo", "version": "1", "metric": metric}), "/examples"),
        (
            json!({"workflow": "echo", "version": "9", "metric": metric, "examples": [{"inputs": {"question": "q"}, "expected": "x"}]}),
            "/version",
        ),
        (json!({"workflow": "echo", "version": "1", "dataset": "none", "metric": metric}), "/dataset"),
        (
            json!({"workflow": "echo", "version": "1", "baseline": "1", "metric": metric, "examples": [{"inputs": {"question": "q"}, "expected": "x"}]}),
            "/baseline",
        ),
        (
            json!({"workflow": "echo", "version": "1", "metric": metric, "concurrency": 0, "examples": [{"inputs": {"question": "q"}, "expected": "x"}]}),
            "/concurrency",
        ),
        (
            json!({"workflow": "echo", "version": "1", "metric": metric, "examples": [{"inputs": {"nope": 1}, "expected": "x"}]}),
            "/examples/0/inputs",
        ),
        (
            json!({"workflow": "echo", "version": "1", "metric": {"kind": "python", "code": "def metric(:"}, "examples": [{"inputs": {"question": "q"}, "expected": "x"}]}),
            "/metric",
        ),
    ];
    for (body, pointer) in cases {
        let reply = admin.post("/v1/evaluations", &body).await;
        assert_eq!(reply.status, 422, "{body}: {}", reply.text);
        assert_eq!(reply.pointers(), vec![pointer], "{body}");
    }
    admin.get(&format!("/v1/evaluations/{}", uuid::Uuid::now_v7())).await.problem(404, "not_found");
    // Inline examples work too (the fake echoes: `echo: q`).
    let submitted = admin
        .post("/v1/evaluations", &json!({"workflow": "echo", "version": "1", "metric": {"kind": "text"},
            "examples": [{"inputs": {"question": "q"}, "expected": "echo: q"}, {"inputs": {"question": "r"}, "expected": "no"}]}))
        .await
        .expect(202);
    let id = submitted["id"].as_str().unwrap_or_default().to_owned();
    let done = finished(&admin, &id).await;
    assert_eq!(
        (done["version"]["all"]["correct"].as_u64(), done["version"]["all"]["total"].as_u64()),
        (Some(1), Some(2))
    );
    assert!(done["version"]["clean"].is_null(), "text data has no clean subset");
    // A second one: the list pages newest first without gaps.
    let second = admin
        .post(
            "/v1/evaluations",
            &json!({"workflow": "echo", "version": "1", "metric": {"kind": "exact"},
            "examples": [{"inputs": {"question": "q"}, "expected": "echo: q"}]}),
        )
        .await
        .expect(202);
    let listed = common::all_pages(&admin, "/v1/evaluations", 1).await;
    let ids: Vec<&str> = listed.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids, vec![second["id"].as_str().unwrap_or_default(), id.as_str()]);
    admin.get("/v1/evaluations?cursor=nonsense").await.problem(400, "bad_request");
    admin.get("/v1/evaluations?limit=0").await.problem(422, "invalid_request");
    h.finish().await;
}
