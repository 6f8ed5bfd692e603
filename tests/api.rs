//! Every resource of the REST API, happy paths and error paths, against the real binary on a
//! fresh Postgres database with the testkit as the model.

mod common;

use std::sync::Arc;

use common::{Harness, all_pages, echo_spec, echo_spec_with_prompt, endpoint_config, reference_spec};
use serde_json::{Value, json};
use sgde_testkit::{Difficulty, FakeOpenAi, ProblemGenerator, Rule, SimulatedStudent};

#[sgde_test_macros::both_backends]
async fn system_routes_answer_without_a_key() {
    let h = Harness::start().await;
    let anon = h.service.anonymous();

    let health = anon.get("/healthz").await.expect(200);
    assert_eq!(health["status"], "ok");
    assert!(health["version"].is_string());
    let ready = anon.get("/readyz").await.expect(200);
    assert_eq!(ready["status"], "ok");

    // A request id is made up when absent and echoed when given.
    let r = anon.get("/healthz").await;
    assert!(r.header("x-request-id").is_some_and(|id| !id.is_empty()));
    let r =
        anon.send(anon.request(reqwest::Method::GET, "/healthz").header("x-request-id", "trace-me-42")).await;
    assert_eq!(r.header("x-request-id"), Some("trace-me-42"));

    let spec = anon.get("/openapi.json").await.expect(200);
    assert!(spec["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{}", spec["openapi"]);
    let paths = spec["paths"].as_object().expect("paths");
    for path in [
        "/v1/endpoints",
        "/v1/endpoints/{name}",
        "/v1/workflows",
        "/v1/workflows/{name}",
        "/v1/workflows/{name}/versions",
        "/v1/workflows/{name}/versions/{reference}",
        "/v1/workflows/{name}/diff",
        "/v1/workflows/{name}/labels",
        "/v1/workflows/{name}/labels/{label}",
        "/v1/workflows/{name}/labels/{label}/history",
        "/v1/workflows/{name}/label-history",
        "/v1/workflows/{name}/execute",
        "/v1/runs",
        "/v1/runs/{id}",
        "/v1/runs/{id}/cancel",
        "/v1/executions",
        "/v1/executions/{id}",
        "/v1/keys",
        "/v1/keys/{id}",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "{path} missing from /openapi.json");
    }
    assert!(spec["components"]["securitySchemes"].as_object().is_some_and(|s| !s.is_empty()));

    let docs = anon.get("/docs").await;
    assert_eq!(docs.status, 200, "{}", docs.text);
    assert!(docs.text.to_lowercase().contains("<html"), "docs is an HTML page");

    let schema = anon.get("/v1/schemas/workflow").await.expect(200);
    assert!(schema["$schema"].as_str().is_some_and(|s| s.contains("2020-12")), "{schema}");

    // Metrics count requests by route template.
    h.workflow("metered", &echo_spec()).await;
    h.admin()
        .post("/v1/workflows/metered/execute", &json!({"inputs": {"question": "hello"}}))
        .await
        .expect(200);
    let metrics = anon.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.header("content-type").is_some_and(|c| c.starts_with("text/plain")));
    assert!(metrics.text.contains("sgde_http_requests_total"), "{}", metrics.text);
    assert!(metrics.text.contains("route=\"/v1/workflows/{name}/execute\""), "{}", metrics.text);
    assert!(metrics.text.contains("sgde_executions_total{workflow=\"metered\""), "{}", metrics.text);
    assert!(metrics.text.contains("sgde_model_calls_total{workflow=\"metered\"} 1"), "{}", metrics.text);
    h.finish().await;
}

#[sgde_test_macros::both_backends]
async fn model_endpoints_are_managed_and_never_reveal_secrets() {
    let h = Harness::start().await;
    let admin = h.admin();

    let mut config = endpoint_config("teacher", &h.fake);
    config["api_key_env"] = json!("SGDE_SUITE_TEACHER_KEY");
    config["extra_headers"] = json!({"OpenAI-Organization": "org-secret-value"});
    let created = admin.post("/v1/endpoints", &config).await.expect(201);
    assert_eq!(created["name"], "teacher");
    assert_eq!(created["config"]["api_key_env"], "SGDE_SUITE_TEACHER_KEY");
    assert_eq!(created["config"]["extra_headers"]["OpenAI-Organization"], "***");
    assert!(!created.to_string().contains("org-secret-value"));

    admin.post("/v1/endpoints", &config).await.problem(409, "conflict");
    let mut bad = endpoint_config("bad name!", &h.fake);
    admin.post("/v1/endpoints", &bad).await.problem(422, "invalid_request");
    bad["name"] = json!("");
    assert_eq!(admin.post("/v1/endpoints", &bad).await.pointers(), ["/name"]);
    let mut missing = endpoint_config("x", &h.fake);
    missing.as_object_mut().unwrap().remove("model");
    let r = admin.post("/v1/endpoints", &missing).await;
    r.problem(422, "invalid_request");
    assert!(r.text.contains("model"), "names the missing field: {}", r.text);

    let list = admin.get("/v1/endpoints").await.expect(200);
    let names: Vec<&str> =
        list["items"].as_array().unwrap().iter().filter_map(|e| e["name"].as_str()).collect();
    assert!(names.contains(&"student") && names.contains(&"teacher"), "{names:?}");
    assert!(!list.to_string().contains("org-secret-value"));

    let got = admin.get("/v1/endpoints/teacher").await.expect(200);
    assert_eq!(got["id"], created["id"]);
    assert!(!got.to_string().contains("org-secret-value"));
    admin.get("/v1/endpoints/nobody").await.problem(404, "not_found");

    // Update: the name in the body must match the path.
    let mut update = config.clone();
    update["model"] = json!("sgde-teacher");
    let updated = admin.put("/v1/endpoints/teacher", &update).await.expect(200);
    assert_eq!(updated["config"]["model"], "sgde-teacher");
    assert_eq!(admin.get("/v1/endpoints/teacher").await.expect(200)["config"]["model"], "sgde-teacher");
    let r = admin.put("/v1/endpoints/student", &update).await;
    r.problem(422, "invalid_request");
    assert_eq!(r.pointers(), ["/name"]);
    let mut ghost = update.clone();
    ghost["name"] = json!("ghost");
    admin.put("/v1/endpoints/ghost", &ghost).await.problem(404, "not_found");

    assert_eq!(admin.delete("/v1/endpoints/teacher").await.status, 204);
    admin.get("/v1/endpoints/teacher").await.problem(404, "not_found");
    admin.delete("/v1/endpoints/teacher").await.problem(404, "not_found");
    // The name is free again.
    admin.post("/v1/endpoints", &config).await.expect(201);
    h.finish().await;
}

#[sgde_test_macros::both_backends]
async fn workflows_are_created_listed_and_deleted() {
    let h = Harness::start().await;
    let admin = h.admin();

    let created = admin
        .post("/v1/workflows", &json!({"name": "echo", "description": "says it back", "spec": echo_spec()}))
        .await
        .expect(201);
    assert_eq!(created["workflow"]["name"], "echo");
    assert_eq!(created["workflow"]["description"], "says it back");
    assert_eq!(created["version"]["number"], 1);
    assert_eq!(created["version"]["workflow_id"], created["workflow"]["id"]);
    assert!(created["version"]["content_hash"].as_str().is_some_and(|h| h.starts_with("sha256:")));

    admin.post("/v1/workflows", &json!({"name": "echo", "spec": echo_spec()})).await.problem(409, "conflict");
    for name in ["", "has space", "slash/name", &"x".repeat(101)] {
        let r = admin.post("/v1/workflows", &json!({"name": name, "spec": echo_spec()})).await;
        r.problem(422, "invalid_request");
        assert_eq!(r.pointers(), ["/name"], "{name:?}");
    }

    for i in 0..4 {
        h.workflow(&format!("wf-{i}"), &echo_spec()).await;
    }
    let all = all_pages(&admin, "/v1/workflows", 2).await;
    let names: Vec<&str> = all.iter().filter_map(|w| w["name"].as_str()).collect();
    assert_eq!(names, ["echo", "wf-0", "wf-1", "wf-2", "wf-3"], "listed by name, each once");
    admin.get("/v1/workflows?limit=0").await.problem(422, "invalid_request");
    admin.get("/v1/workflows?limit=201").await.problem(422, "invalid_request");
    admin.get("/v1/workflows?cursor=not-a-cursor").await.problem(400, "bad_request");

    let got = admin.get("/v1/workflows/echo").await.expect(200);
    assert_eq!(got["id"], created["workflow"]["id"]);
    assert_eq!(got["latest_version"], 1);
    admin.get("/v1/workflows/nope").await.problem(404, "not_found");

    let executed =
        admin.post("/v1/workflows/echo/execute", &json!({"inputs": {"question": "q"}})).await.expect(200);
    assert_eq!(admin.delete("/v1/workflows/echo").await.status, 204);
    // Its executions stay in the log.
    let kept = admin.get(&format!("/v1/executions/{}", executed["execution_id"].as_str().unwrap())).await;
    assert_eq!(kept.expect(200)["output"], "echo: q");
    admin.get("/v1/workflows/echo").await.problem(404, "not_found");
    admin.get("/v1/workflows/echo/versions").await.problem(404, "not_found");
    admin.delete("/v1/workflows/echo").await.problem(404, "not_found");
    // A deleted workflow's name can be used again, for a new workflow.
    let again = h.workflow("echo", &echo_spec()).await;
    assert_ne!(again["workflow"]["id"], created["workflow"]["id"]);
    assert_eq!(again["version"]["number"], 1);
    h.finish().await;
}

/// A spec with several mistakes, each reported with its pointer under `/spec`.
fn broken_spec() -> Value {
    json!({
        "schema": "sgde.workflow/v1",
        "inputs": {"type": "object", "properties": {"question": {"type": "string"}}},
        "output": "missing",
        "nodes": {
            "a": {"kind": "llm", "deps": ["ghost"], "prompt": "{{ inputs.nope }}"},
            "b": {"kind": "code", "code": "def run(:\n"}
        }
    })
}

#[sgde_test_macros::both_backends]
async fn versions_are_validated_deduplicated_and_addressable() {
    let h = Harness::start().await;
    let admin = h.admin();

    // Invalid specs: every error at once, each with a JSON pointer into the request body.
    let r = admin.post("/v1/workflows", &json!({"name": "broken", "spec": broken_spec()})).await;
    r.problem(422, "invalid_spec");
    let pointers = r.pointers();
    for expected in ["/spec/output", "/spec/nodes/a/deps/0", "/spec/nodes/a/prompt", "/spec/nodes/b/code"] {
        assert!(pointers.iter().any(|p| p == expected), "no error at {expected}: {}", r.text);
    }
    admin.get("/v1/workflows/broken").await.problem(404, "not_found");
    // Unknown fields in a spec are named, at any depth.
    let mut typo = echo_spec();
    typo["nodes"]["answer"]["temprature"] = json!(0.2);
    let r = admin.post("/v1/workflows", &json!({"name": "typo", "spec": typo})).await;
    r.problem(422, "invalid_spec");
    assert_eq!(r.pointers(), ["/spec/nodes/answer/temprature"], "{}", r.text);
    assert!(r.body["errors"][0]["message"].as_str().unwrap().contains("temprature"));
    let mut typo = echo_spec();
    typo["outputs"] = json!("answer");
    let r = admin.post("/v1/workflows", &json!({"name": "typo", "spec": typo})).await;
    r.problem(422, "invalid_spec");
    assert!(r.text.contains("outputs"), "{}", r.text);
    let mut wrong_type = echo_spec();
    wrong_type["nodes"]["answer"]["decoding"] = json!({"temperature": "hot"});
    let r = admin.post("/v1/workflows", &json!({"name": "typo", "spec": wrong_type})).await;
    r.problem(422, "invalid_spec");
    assert!(r.pointers()[0].starts_with("/spec/nodes/answer/decoding"), "{}", r.text);

    let v1 = h.workflow("echo", &echo_spec()).await["version"].clone();

    // Identical content is the same version: 200, created false, same id.
    let same = admin.post("/v1/workflows/echo/versions", &json!({"spec": echo_spec()})).await.expect(200);
    assert_eq!(same["created"], false);
    assert_eq!(same["version"]["id"], v1["id"]);
    // Key order, whitespace and spelt-out defaults do not change the content hash.
    let mut reordered = serde_json::Map::new();
    for (k, v) in echo_spec().as_object().unwrap().iter().rev() {
        reordered.insert(k.clone(), v.clone());
    }
    let raw = serde_json::to_vec_pretty(&json!({"spec": reordered})).unwrap();
    let r = admin.post_raw("/v1/workflows/echo/versions", "application/json", raw).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["version"]["id"], v1["id"]);
    let mut defaults = echo_spec();
    defaults["nodes"]["answer"]["deps"] = json!([]);
    let r = admin.post("/v1/workflows/echo/versions", &json!({"spec": defaults})).await.expect(200);
    assert_eq!(r["version"]["id"], v1["id"]);

    let v2 = admin
        .post(
            "/v1/workflows/echo/versions",
            &json!({"spec": echo_spec_with_prompt("Q: {{ inputs.question }}"), "parent": "1"}),
        )
        .await
        .expect(201);
    assert_eq!(v2["created"], true);
    let v2 = v2["version"].clone();
    assert_eq!(v2["number"], 2);
    assert_eq!(v2["parent_version_id"], v1["id"]);
    assert_ne!(v2["content_hash"], v1["content_hash"]);
    // Posting v1's content again still finds v1, not a third version.
    let back = admin.post("/v1/workflows/echo/versions", &json!({"spec": echo_spec()})).await.expect(200);
    assert_eq!(back["version"]["number"], 1);

    // Bad parents and bad specs on an existing workflow.
    let r = admin
        .post(
            "/v1/workflows/echo/versions",
            &json!({"spec": echo_spec_with_prompt("x {{ inputs.question }}"), "parent": "7"}),
        )
        .await;
    r.problem(422, "invalid_request");
    assert_eq!(r.pointers(), ["/parent"]);
    let r = admin.post("/v1/workflows/echo/versions", &json!({"spec": broken_spec()})).await;
    r.problem(422, "invalid_spec");
    assert!(r.pointers().iter().all(|p| p.starts_with("/spec/")), "{}", r.text);
    admin.post("/v1/workflows/nope/versions", &json!({"spec": echo_spec()})).await.problem(404, "not_found");
    let r = admin.post("/v1/workflows/echo/versions", &json!({"spec": echo_spec(), "label": "x"})).await;
    r.problem(422, "invalid_request");
    assert_eq!(r.pointers(), ["/label"]);

    // Listing: newest first, paged.
    let versions = all_pages(&admin, "/v1/workflows/echo/versions", 1).await;
    let numbers: Vec<i64> = versions.iter().filter_map(|v| v["number"].as_i64()).collect();
    assert_eq!(numbers, [2, 1]);

    // Addressing: number, id, `latest`, label.
    let by_number = admin.get("/v1/workflows/echo/versions/1").await.expect(200);
    assert_eq!(by_number["id"], v1["id"]);
    assert_eq!(by_number["spec"]["nodes"]["answer"]["prompt"], "{{ inputs.question }}");
    let id = v2["id"].as_str().unwrap();
    assert_eq!(admin.get(&format!("/v1/workflows/echo/versions/{id}")).await.expect(200)["number"], 2);
    assert_eq!(admin.get("/v1/workflows/echo/versions/latest").await.expect(200)["number"], 2);
    admin.put("/v1/workflows/echo/labels/stable", &json!({"version": "1"})).await.expect(200);
    assert_eq!(admin.get("/v1/workflows/echo/versions/stable").await.expect(200)["number"], 1);

    // Invalid references.
    for reference in ["3", "0", "-1", "no-such-label", "00000000-0000-0000-0000-000000000000"] {
        admin.get(&format!("/v1/workflows/echo/versions/{reference}")).await.problem(404, "not_found");
    }
    // A version id of another workflow does not resolve here.
    let other = h.workflow("other", &echo_spec_with_prompt("other {{ inputs.question }}")).await;
    let other_id = other["version"]["id"].as_str().unwrap();
    admin.get(&format!("/v1/workflows/echo/versions/{other_id}")).await.problem(404, "not_found");
    admin.get("/v1/workflows/nope/versions/1").await.problem(404, "not_found");
    h.finish().await;
}

#[sgde_test_macros::both_backends]
async fn diff_shows_node_and_text_changes() {
    let h = Harness::start().await;
    let admin = h.admin();
    h.workflow("echo", &echo_spec()).await;
    let mut v2 = echo_spec_with_prompt("Question: {{ inputs.question }}");
    v2["nodes"]["shout"] =
        json!({"kind": "code", "deps": ["answer"], "code": "def run(answer):\n    return answer.upper()\n"});
    v2["output"] = json!("shout");
    admin.post("/v1/workflows/echo/versions", &json!({"spec": v2})).await.expect(201);

    let diff = admin.get("/v1/workflows/echo/diff?from=1&to=2").await.expect(200);
    assert_eq!(diff["added"], json!(["shout"]));
    assert_eq!(diff["removed"], json!([]));
    assert_eq!(diff["fields"], json!(["output"]));
    let changed = diff["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{diff}");
    assert_eq!(changed[0]["node"], "answer");
    assert!(changed[0]["fields"].as_array().unwrap().contains(&json!("prompt")));
    let text = changed[0]["text"]["prompt"].as_str().expect("a prompt diff");
    assert!(
        text.contains("-{{ inputs.question }}") && text.contains("+Question: {{ inputs.question }}"),
        "{text}"
    );

    let reverse = admin.get("/v1/workflows/echo/diff?from=latest&to=1").await.expect(200);
    assert_eq!(reverse["removed"], json!(["shout"]));
    assert_eq!(reverse["added"], json!([]));
    let none = admin.get("/v1/workflows/echo/diff?from=2&to=latest").await.expect(200);
    assert_eq!(none, json!({"added": [], "removed": [], "changed": [], "fields": []}));

    admin.get("/v1/workflows/echo/diff?from=1&to=9").await.problem(404, "not_found");
    admin.get("/v1/workflows/nope/diff?from=1&to=2").await.problem(404, "not_found");
    let r = admin.get("/v1/workflows/echo/diff?from=1").await;
    r.problem(422, "invalid_request");
    assert!(r.text.contains("to"), "{}", r.text);
    h.finish().await;
}

#[sgde_test_macros::both_backends]
async fn labels_move_and_keep_their_history() {
    let h = Harness::start().await;
    let admin = h.admin();
    let v1 = h.workflow("echo", &echo_spec()).await["version"]["id"].clone();
    let v2 = admin
        .post(
            "/v1/workflows/echo/versions",
            &json!({"spec": echo_spec_with_prompt("2 {{ inputs.question }}")}),
        )
        .await
        .expect(201)["version"]["id"]
        .clone();

    assert_eq!(admin.get("/v1/workflows/echo/labels").await.expect(200)["items"], json!([]));
    let set = admin.put("/v1/workflows/echo/labels/production", &json!({"version": "1"})).await.expect(200);
    assert_eq!(set["label"]["version_id"], v1);
    assert_eq!(set["label"]["version_number"], 1);
    assert_eq!(set["previous_version_id"], Value::Null);
    // Setting it to where it already is moves nothing.
    let again = admin.put("/v1/workflows/echo/labels/production", &json!({"version": "1"})).await.expect(200);
    assert_eq!(again["label"]["version_id"], v1);
    // Move by id, then point another label at it through the first label.
    let moved = admin.put("/v1/workflows/echo/labels/production", &json!({"version": v2})).await.expect(200);
    assert_eq!(moved["previous_version_id"], v1);
    assert_eq!(moved["label"]["version_number"], 2);
    let staging =
        admin.put("/v1/workflows/echo/labels/staging", &json!({"version": "production"})).await.expect(200);
    assert_eq!(staging["label"]["version_id"], v2);
    assert_eq!(admin.get("/v1/workflows/echo/versions/production").await.expect(200)["id"], v2);

    let labels = admin.get("/v1/workflows/echo/labels").await.expect(200);
    let mut names: Vec<&str> =
        labels["items"].as_array().unwrap().iter().filter_map(|l| l["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["production", "staging"]);

    let deleted = admin.delete("/v1/workflows/echo/labels/staging").await.expect(200);
    assert_eq!(deleted["name"], "staging");
    admin.delete("/v1/workflows/echo/labels/staging").await.problem(404, "not_found");
    admin.get("/v1/workflows/echo/versions/staging").await.problem(404, "not_found");

    // History, newest first: who moved what where.
    let history = all_pages(&admin, "/v1/workflows/echo/labels/production/history", 1).await;
    let moves: Vec<(Value, Value)> =
        history.iter().map(|e| (e["from_version_id"].clone(), e["to_version_id"].clone())).collect();
    assert_eq!(moves, [(v1.clone(), v2.clone()), (Value::Null, v1.clone())], "{history:#?}");
    assert!(history.iter().all(|e| e["moved_by"].as_str().is_some_and(|m| !m.is_empty())), "{history:#?}");
    let all = admin.get("/v1/workflows/echo/label-history").await.expect(200);
    let events: Vec<(&str, Value)> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["label"].as_str().unwrap(), e["to_version_id"].clone()))
        .collect();
    assert_eq!(events[0], ("staging", Value::Null), "the delete is the newest event: {all}");
    assert_eq!(events.len(), 4, "{all}");

    // Errors: unknown version, reserved names, bad names, unknown workflow, bad bodies.
    let r = admin.put("/v1/workflows/echo/labels/production", &json!({"version": "9"})).await;
    r.problem(422, "invalid_request");
    assert_eq!(r.pointers(), ["/version"]);
    for label in ["latest", "12", "bad%20name"] {
        let r = admin.put(&format!("/v1/workflows/echo/labels/{label}"), &json!({"version": "1"})).await;
        r.problem(422, "invalid_request");
        assert_eq!(r.pointers(), ["/path/label"], "{label}");
    }
    admin
        .put("/v1/workflows/nope/labels/production", &json!({"version": "1"}))
        .await
        .problem(404, "not_found");
    admin.get("/v1/workflows/nope/labels").await.problem(404, "not_found");
    admin.get("/v1/workflows/nope/label-history").await.problem(404, "not_found");
    admin.get("/v1/workflows/nope/labels/production/history").await.problem(404, "not_found");
    admin.delete("/v1/workflows/nope/labels/production").await.problem(404, "not_found");
    let r = admin.put("/v1/workflows/echo/labels/production", &json!({"version": 1})).await;
    r.problem(422, "invalid_request");
    assert_eq!(r.pointers(), ["/version"]);
    let r = admin.put("/v1/workflows/echo/labels/production", &json!({"version": "1", "force": true})).await;
    r.problem(422, "invalid_request");
    assert_eq!(r.pointers(), ["/force"]);
    // Nothing above moved the label.
    assert_eq!(admin.get("/v1/workflows/echo/versions/production").await.expect(200)["id"], v2);
    h.finish().await;
}

#[sgde_test_macros::both_backends]
async fn execute_picks_the_version_and_records_the_execution() {
    let fake = FakeOpenAi::builder()
        .rule(Rule::any().user("unparsable").reply("there is no number in this reply"))
        .rule(Rule::any().user("sleepy").delay(std::time::Duration::from_secs(30)).reply("late"))
        .start()
        .await
        .unwrap();
    let h = Harness::with(fake, common::ServiceConfig::default()).await;
    let admin = h.admin();
    h.workflow("echo", &echo_spec()).await;
    admin
        .post(
            "/v1/workflows/echo/versions",
            &json!({"spec": echo_spec_with_prompt("v2 {{ inputs.question }}")}),
        )
        .await
        .expect(201);
    let run = |body: Value| {
        let admin = admin.clone();
        async move { admin.post("/v1/workflows/echo/execute", &body).await }
    };

    // No label yet: the latest version.
    let out = run(json!({"inputs": {"question": "hi"}})).await.expect(200);
    assert_eq!(out["output"], "echo: v2 hi");
    assert_eq!(out["version"]["number"], 2);
    assert_eq!(out["version"]["chosen_by"], "default");
    assert!(out["execution_id"].is_string());
    assert!(out["usage"]["prompt_tokens"].as_u64().is_some_and(|t| t > 0), "{out}");
    assert!(out["latency_ms"].as_f64().is_some());
    assert!(out.get("trace").is_none(), "no trace unless asked for");

    // `production` wins over latest once it exists.
    admin.put("/v1/workflows/echo/labels/production", &json!({"version": "1"})).await.expect(200);
    let out = run(json!({"inputs": {"question": "hi"}})).await.expect(200);
    assert_eq!(out["output"], "echo: hi");
    assert_eq!(out["version"]["number"], 1);
    assert_eq!(out["version"]["chosen_by"], "default");
    let out = run(json!({"inputs": {"question": "hi"}, "version": "latest"})).await.expect(200);
    assert_eq!(
        (out["version"]["number"].clone(), out["version"]["chosen_by"].clone()),
        (json!(2), json!("version"))
    );
    let out = run(json!({"inputs": {"question": "hi"}, "label": "production"})).await.expect(200);
    assert_eq!(
        (out["version"]["number"].clone(), out["version"]["chosen_by"].clone()),
        (json!(1), json!("label"))
    );

    // The trace, on request: per node the rendered prompt and the model's raw output.
    let out =
        run(json!({"inputs": {"question": "trace me"}, "version": "2", "trace": true})).await.expect(200);
    let trace = out["trace"].to_string();
    assert!(trace.contains("v2 trace me") && trace.contains("answer"), "{trace}");

    // Bad inputs are a 422 naming the field, and nothing runs.
    let before = h.fake.request_count();
    let r = run(json!({"inputs": {}})).await;
    r.problem(422, "invalid_request");
    assert!(r.pointers().iter().all(|p| p.starts_with("/inputs")), "{}", r.text);
    let r = run(json!({"inputs": {"question": 5}})).await;
    r.problem(422, "invalid_request");
    assert_eq!(r.pointers(), ["/inputs/question"], "{}", r.text);
    let r = run(json!({"inputs": {"question": "x", "extra": 1}})).await;
    r.problem(422, "invalid_request");
    let r = run(json!({"inputs": "not an object"})).await;
    r.problem(422, "invalid_request");
    assert_eq!(r.pointers(), ["/inputs"]);
    let r = run(json!({"inputs": {"question": "x"}, "version": "1", "label": "production"})).await;
    r.problem(422, "invalid_request");
    let r = run(json!({"inputs": {"question": "x"}, "trace": "yes"})).await;
    assert_eq!(r.pointers(), ["/trace"]);
    let r = run(json!({"question": "x"})).await;
    r.problem(422, "invalid_request");
    assert_eq!(h.fake.request_count(), before, "invalid requests never reach the model");

    // Unknown workflow, version or label.
    admin
        .post("/v1/workflows/nope/execute", &json!({"inputs": {"question": "x"}}))
        .await
        .problem(404, "not_found");
    run(json!({"inputs": {"question": "x"}, "version": "3"})).await.problem(404, "not_found");
    run(json!({"inputs": {"question": "x"}, "label": "canary"})).await.problem(404, "not_found");

    // A failing run is a 422 with the runtime's code, and it is in the log.
    let mut number = echo_spec();
    number["nodes"]["answer"]["parser"] = json!({"type": "number"});
    h.workflow("numeric", &number).await;
    let r = admin.post("/v1/workflows/numeric/execute", &json!({"inputs": {"question": "unparsable"}})).await;
    r.problem(422, "parse_error");
    let failed_id = r.body["execution_id"].as_str().expect("the failed execution's id").to_owned();
    let failed = admin.get(&format!("/v1/executions/{failed_id}")).await.expect(200);
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "parse_error");
    assert_eq!(failed["error"]["node"], "answer");
    let ok =
        admin.post("/v1/workflows/numeric/execute", &json!({"inputs": {"question": "7"}})).await.expect(200);
    assert_eq!(ok["output"], 7);
    // A run past its own deadline fails with `deadline_exceeded`, and is logged too.
    let r = run(json!({"inputs": {"question": "sleepy"}, "deadline_ms": 300})).await;
    r.problem(422, "deadline_exceeded");
    let late = admin.get(&format!("/v1/executions/{}", r.body["execution_id"].as_str().unwrap())).await;
    assert_eq!(late.expect(200)["error"]["code"], "deadline_exceeded");
    h.finish().await;
}

#[sgde_test_macros::both_backends]
async fn executions_log_is_filtered_and_paged() {
    let h = Harness::start().await;
    let admin = h.admin();
    h.workflow("a", &echo_spec()).await;
    let v2 = admin
        .post("/v1/workflows/a/versions", &json!({"spec": echo_spec_with_prompt("2 {{ inputs.question }}")}))
        .await
        .expect(201)["version"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    h.workflow("b", &echo_spec()).await;
    let mut ids_a = Vec::new();
    for i in 0..5 {
        let version = if i < 3 { "1" } else { "2" };
        let out = admin
            .post(
                "/v1/workflows/a/execute",
                &json!({"inputs": {"question": format!("q{i}")}, "version": version}),
            )
            .await
            .expect(200);
        ids_a.push(out["execution_id"].as_str().unwrap().to_owned());
    }
    let middle = chrono_now(&admin, &ids_a[2]).await;
    admin.post("/v1/workflows/b/execute", &json!({"inputs": {"question": "b"}})).await.expect(200);
    admin
        .post("/v1/workflows/b/execute", &json!({"inputs": {"question": ""}}))
        .await
        .problem(422, "invalid_request");
    let run =
        admin.post("/v1/runs", &json!({"workflow": "b", "inputs": {"question": "async"}})).await.expect(202);
    common::wait_terminal(&admin, run["id"].as_str().unwrap()).await;

    let ids =
        |items: &[Value]| items.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>();

    // All of them, newest first, every page bounded, no duplicates, no traces in lists.
    let all = all_pages(&admin, "/v1/executions", 2).await;
    assert_eq!(all.len(), 7, "5 on a, 1 sync + 1 async on b (the invalid request ran nothing)");
    assert!(all.iter().all(|e| e["trace"].is_null()));
    let created: Vec<&str> = all.iter().map(|e| e["created_at"].as_str().unwrap()).collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "newest first: {created:?}");

    let mut expected = ids_a.clone();
    expected.reverse();
    assert_eq!(ids(&all_pages(&admin, "/v1/executions?workflow=a", 2).await), expected);
    assert_eq!(all_pages(&admin, "/v1/executions?workflow=b", 50).await.len(), 2);
    let by_version = all_pages(&admin, &format!("/v1/executions?version_id={v2}"), 50).await;
    assert_eq!(ids(&by_version), [ids_a[4].clone(), ids_a[3].clone()]);
    let asynchronous = all_pages(&admin, "/v1/executions?mode=async", 50).await;
    assert_eq!(ids(&asynchronous), [run["id"].as_str().unwrap()]);
    assert_eq!(all_pages(&admin, "/v1/executions?mode=sync&workflow=b", 50).await.len(), 1);
    assert_eq!(all_pages(&admin, "/v1/executions?status=succeeded", 50).await.len(), 7);
    assert_eq!(all_pages(&admin, "/v1/executions?status=failed", 50).await.len(), 0);
    let since =
        all_pages(&admin, &format!("/v1/executions?workflow=a&since={}", urlencode(&middle)), 50).await;
    assert_eq!(ids(&since), [ids_a[4].clone(), ids_a[3].clone(), ids_a[2].clone()]);
    let until =
        all_pages(&admin, &format!("/v1/executions?workflow=a&until={}", urlencode(&middle)), 50).await;
    assert_eq!(ids(&until), [ids_a[1].clone(), ids_a[0].clone()]);

    // One execution, with its trace.
    let one = admin.get(&format!("/v1/executions/{}", ids_a[0])).await.expect(200);
    assert_eq!(one["status"], "succeeded");
    assert_eq!(one["mode"], "sync");
    assert_eq!(one["inputs"], json!({"question": "q0"}));
    assert_eq!(one["output"], "echo: q0");
    assert!(one["trace"].to_string().contains("q0"), "{one}");
    assert!(one["finished_at"].is_string() && one["latency_us"].is_u64());

    // Errors.
    admin.get("/v1/executions/00000000-0000-0000-0000-000000000000").await.problem(404, "not_found");
    let r = admin.get("/v1/executions/not-a-uuid").await;
    r.problem(422, "invalid_request");
    assert_eq!(r.pointers(), ["/path/id"]);
    admin.get("/v1/executions?workflow=nope").await.problem(404, "not_found");
    for (query, pointer) in [
        ("status=bogus", "/query/status"),
        ("mode=sometimes", "/query/mode"),
        ("since=yesterday", "/query/since"),
        ("version_id=xyz", "/query/version_id"),
        ("limit=-1", "/query/limit"),
        ("limit=1000", "/query/limit"),
    ] {
        let r = admin.get(&format!("/v1/executions?{query}")).await;
        r.problem(422, "invalid_request");
        assert_eq!(r.pointers(), [pointer], "{query}: {}", r.text);
    }
    admin.get("/v1/executions?cursor=zzz").await.problem(400, "bad_request");
    h.finish().await;
}

/// The `created_at` of an execution: a boundary for time filters.
async fn chrono_now(api: &common::Api, id: &str) -> String {
    api.get(&format!("/v1/executions/{id}")).await.expect(200)["created_at"].as_str().unwrap().to_owned()
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[sgde_test_macros::both_backends]
async fn the_reference_workflow_solves_gsm_problems_end_to_end() {
    let fake = FakeOpenAi::builder().responder(Arc::new(SimulatedStudent::new())).start().await.unwrap();
    let h = Harness::with(fake, common::ServiceConfig::default()).await;
    let admin = h.admin();
    h.workflow("gsm", &reference_spec()).await;
    admin.put("/v1/workflows/gsm/labels/production", &json!({"version": "1"})).await.expect(200);

    let problems = ProblemGenerator::new(7).batch(3, Difficulty::Small);
    for problem in &problems {
        let out = admin
            .post(
                "/v1/workflows/gsm/execute",
                &json!({"inputs": {"question": problem.question}, "trace": true}),
            )
            .await
            .expect(200);
        assert_eq!(out["output"], problem.answer, "{}: {out}", problem.question);
        assert_eq!(out["version"]["chosen_by"], "default");
        // The consensus fan-out ran its samples: the extract call plus five program calls.
        assert!(out["usage"]["completion_tokens"].as_u64().is_some_and(|t| t > 0));
        let trace = out["trace"].to_string();
        assert!(trace.contains("solve") && trace.contains("answer"), "{trace}");
    }
    // The same, asynchronously.
    let problem = &problems[0];
    let run =
        admin.post("/v1/runs", &json!({"workflow": "gsm", "inputs": {"question": problem.question}})).await;
    let run = run.expect(202);
    let done = common::wait_terminal(&admin, run["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["output"], problem.answer);
    h.finish().await;
}

#[sgde_test_macros::both_backends]
async fn api_keys_are_scoped_listed_and_revoked_at_once() {
    let h = Harness::start().await;
    let admin = h.admin();
    h.workflow("echo", &echo_spec()).await;

    let created = admin
        .post("/v1/keys", &json!({"name": "ci reader", "scopes": ["read", "execute"]}))
        .await
        .expect(201);
    let token = created["token"].as_str().unwrap().to_owned();
    let key_id = created["key"]["id"].as_str().unwrap().to_owned();
    let mut scopes: Vec<&str> =
        created["key"]["scopes"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    scopes.sort_unstable();
    assert_eq!(scopes, ["execute", "read"]);
    assert!(token.starts_with(created["key"]["prefix"].as_str().unwrap()), "prefix identifies the token");
    assert!(created["key"]["revoked_at"].is_null());

    let listed = admin.get("/v1/keys").await.expect(200);
    assert!(!listed.to_string().contains(&token), "tokens are never listed");
    let items = listed["items"].as_array().unwrap();
    assert!(items.iter().any(|k| k["id"] == created["key"]["id"]));
    assert!(items.iter().any(|k| k["bootstrap"] == true), "the admin key from the environment");

    let reader = h.service.api(Some(&token));
    reader.get("/v1/workflows/echo").await.expect(200);
    reader.post("/v1/workflows/echo/execute", &json!({"inputs": {"question": "q"}})).await.expect(200);
    reader.post("/v1/workflows", &json!({"name": "x", "spec": echo_spec()})).await.problem(403, "forbidden");
    reader.get("/v1/keys").await.problem(403, "forbidden");

    let revoked = admin.delete(&format!("/v1/keys/{key_id}")).await.expect(200);
    assert!(revoked["revoked_at"].is_string());
    let r = reader.get("/v1/workflows/echo").await;
    r.problem(401, "unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    reader
        .post("/v1/workflows/echo/execute", &json!({"inputs": {"question": "q"}}))
        .await
        .problem(401, "unauthorized");
    let listed = admin.get("/v1/keys").await.expect(200);
    let entry = listed["items"].as_array().unwrap().iter().find(|k| k["id"] == created["key"]["id"]).cloned();
    assert!(entry.is_some_and(|k| k["revoked_at"].is_string()));

    // A retried creation (same Idempotency-Key) names the same key but never replays the token,
    // which is therefore not kept anywhere.
    let body = json!({"name": "retried", "scopes": ["read"]});
    let first = admin.post_idempotent("/v1/keys", "key-create-1", &body).await.expect(201);
    let again = admin.post_idempotent("/v1/keys", "key-create-1", &body).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let again = again.expect(201);
    assert_eq!(again["key"]["id"], first["key"]["id"]);
    assert!(first["token"].is_string());
    assert!(again["token"].is_null(), "{again}");

    // Errors.
    admin.delete("/v1/keys/00000000-0000-0000-0000-000000000000").await.problem(404, "not_found");
    let r = admin.delete("/v1/keys/abc").await;
    r.problem(422, "invalid_request");
    assert_eq!(r.pointers(), ["/path/id"]);
    let r = admin.post("/v1/keys", &json!({"name": "none", "scopes": []})).await;
    assert_eq!(r.pointers(), ["/scopes"]);
    let r = admin.post("/v1/keys", &json!({"name": " ", "scopes": ["read"]})).await;
    assert_eq!(r.pointers(), ["/name"]);
    let r = admin.post("/v1/keys", &json!({"name": "k", "scopes": ["superuser"]})).await;
    r.problem(422, "invalid_request");
    assert_eq!(r.pointers(), ["/scopes/0"], "{}", r.text);

    // An admin key made through the API can make keys itself; a revoked admin cannot.
    let second = admin.post("/v1/keys", &json!({"name": "ops", "scopes": ["admin"]})).await.expect(201);
    let ops = h.service.api(second["token"].as_str());
    ops.post("/v1/keys", &json!({"name": "made by ops", "scopes": ["read"]})).await.expect(201);
    admin.delete(&format!("/v1/keys/{}", second["key"]["id"].as_str().unwrap())).await.expect(200);
    ops.get("/v1/keys").await.problem(401, "unauthorized");
    h.finish().await;
}

#[sgde_test_macros::both_backends]
async fn a_consensus_fan_out_is_one_request_with_n_where_the_endpoint_supports_it() {
    let fake = FakeOpenAi::builder().responder(Arc::new(SimulatedStudent::new())).start().await.unwrap();
    let h = Harness::with(fake, common::ServiceConfig::default()).await;
    let admin = h.admin();
    h.workflow("gsm", &reference_spec()).await;
    let problem = &ProblemGenerator::new(9).batch(1, Difficulty::Hard)[0];
    let run = |admin: &common::Api| {
        let body = json!({"inputs": {"question": problem.question}, "trace": true});
        let admin = admin.clone();
        async move { admin.post("/v1/workflows/gsm/execute", &body).await.expect(200) }
    };
    // Without `supports_n`: the extract call and five program calls.
    h.fake.reset();
    let plain = run(&admin).await;
    assert_eq!(plain["output"], problem.answer, "{plain}");
    assert_eq!(h.fake.request_count(), 6);

    // With it: the five program samples are one request with n = 5, and each sample still has
    // its own reply, prompt and usage in the trace.
    let mut config = endpoint_config("student", &h.fake);
    config["supports_n"] = json!(true);
    admin.put("/v1/endpoints/student", &config).await.expect(200);
    h.fake.reset();
    let batched = run(&admin).await;
    assert_eq!(batched["output"], problem.answer, "{batched}");
    assert_eq!(h.fake.request_count(), 2, "{:?}", h.fake.requests().len());
    let samples: Vec<&Value> = batched["trace"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["node"] == "program")
        .collect();
    assert_eq!(samples.len(), 5);
    assert!(
        samples
            .iter()
            .all(|s| s["raw_output"].is_string() && s["prompt"].is_string() && s["usage"].is_object())
    );
    h.finish().await;
}
