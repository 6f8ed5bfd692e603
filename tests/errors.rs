//! What the service refuses, and how: authentication and scopes on every route, bad input of
//! every kind, idempotency keys, and start-up errors. Every refusal is an RFC 9457 problem with
//! a stable code, never a 500, and the service stays healthy afterwards.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{ADMIN_TOKEN, Api, Harness, Reply, ServiceConfig, echo_spec, endpoint_config, sgde_command};
use reqwest::Method;
use serde_json::{Value, json};
use sgde_store::testing::TestDatabase;

/// One authenticated operation and the scope it needs.
struct Route {
    method: Method,
    path: String,
    body: Option<Value>,
    scope: &'static str,
}

fn route(method: Method, path: impl Into<String>, body: Option<Value>, scope: &'static str) -> Route {
    Route { method, path: path.into(), body, scope }
}

/// Every authenticated route, with a valid body, addressing existing resources (deletes last).
fn routes(h: &Harness, run_id: &str, execution_id: &str, key_id: &str) -> Vec<Route> {
    use Method as M;
    let endpoint = endpoint_config("student", &h.fake);
    let version = json!({"spec": common::echo_spec_with_prompt("v2 {{ inputs.question }}")});
    let inputs = json!({"inputs": {"question": "q"}});
    vec![
        route(M::POST, "/v1/endpoints", Some(endpoint_config("other", &h.fake)), "write"),
        route(M::GET, "/v1/endpoints", None, "read"),
        route(M::GET, "/v1/endpoints/student", None, "read"),
        route(M::PUT, "/v1/endpoints/student", Some(endpoint), "write"),
        route(M::POST, "/v1/workflows", Some(json!({"name": "new", "spec": echo_spec()})), "write"),
        route(M::GET, "/v1/workflows", None, "read"),
        route(M::GET, "/v1/workflows/echo", None, "read"),
        route(M::POST, "/v1/workflows/echo/versions", Some(version), "write"),
        route(M::GET, "/v1/workflows/echo/versions", None, "read"),
        route(M::GET, "/v1/workflows/echo/versions/1", None, "read"),
        route(M::GET, "/v1/workflows/echo/diff?from=1&to=latest", None, "read"),
        route(
            M::POST,
            "/v1/workflows/echo/apply",
            Some(json!({"spec": echo_spec(), "label": "staging"})),
            "write",
        ),
        route(M::POST, "/v1/workflows/echo/apply/preview", Some(json!({"spec": echo_spec()})), "read"),
        route(M::GET, "/v1/workflows/echo/labels", None, "read"),
        route(M::PUT, "/v1/workflows/echo/labels/production", Some(json!({"version": "1"})), "write"),
        route(M::GET, "/v1/workflows/echo/labels/production/history", None, "read"),
        route(M::GET, "/v1/workflows/echo/label-history", None, "read"),
        route(M::POST, "/v1/workflows/echo/execute", Some(inputs.clone()), "execute"),
        route(
            M::PUT,
            "/v1/workflows/echo/policy",
            Some(json!({"variants": [{"version": "1", "weight": 100}]})),
            "write",
        ),
        route(M::GET, "/v1/workflows/echo/policy", None, "read"),
        route(M::POST, "/v1/workflows/echo/policy/promote", Some(json!({"version": "1"})), "write"),
        route(M::POST, "/v1/workflows/echo/policy/rollback", None, "write"),
        route(M::GET, "/v1/workflows/echo/policy/history", None, "read"),
        route(M::GET, "/v1/workflows/echo/stats", None, "read"),
        route(
            M::POST,
            format!("/v1/executions/{execution_id}/feedback"),
            Some(json!({"correct": true})),
            "execute",
        ),
        route(M::GET, format!("/v1/executions/{execution_id}/feedback"), None, "read"),
        route(M::POST, "/v1/runs", Some(json!({"workflow": "echo", "inputs": {"question": "q"}})), "execute"),
        route(M::GET, format!("/v1/runs/{run_id}"), None, "read"),
        route(M::POST, format!("/v1/runs/{run_id}/cancel"), None, "execute"),
        route(M::POST, "/v1/compile-jobs", Some(compile_job()), "compile"),
        route(M::GET, "/v1/compile-jobs", None, "read"),
        route(M::GET, format!("/v1/compile-jobs/{run_id}"), None, "read"),
        route(M::GET, format!("/v1/compile-jobs/{run_id}/iterations"), None, "read"),
        route(M::POST, format!("/v1/compile-jobs/{run_id}/cancel"), None, "compile"),
        route(M::GET, "/v1/executions", None, "read"),
        route(
            M::POST,
            "/v1/datasets",
            Some(json!({"name": "d", "mapping": {"q": "inputs.question", "a": "expected"}})),
            "write",
        ),
        route(M::GET, "/v1/datasets", None, "read"),
        route(M::GET, "/v1/datasets/d", None, "read"),
        route(M::PUT, "/v1/datasets/d/rows", Some(json!({"q": "x", "a": "y"})), "write"),
        route(M::GET, "/v1/datasets/d/rows", None, "read"),
        route(
            M::POST,
            "/v1/evaluations",
            Some(json!({"workflow": "echo", "version": "1", "metric": {"kind": "exact"},
            "examples": [{"inputs": {"question": "q"}, "expected": "echo: q"}]})),
            "execute",
        ),
        route(M::GET, "/v1/evaluations", None, "read"),
        route(M::GET, format!("/v1/evaluations/{run_id}"), None, "read"),
        route(M::GET, format!("/v1/evaluations/{run_id}/results"), None, "read"),
        route(M::POST, format!("/v1/evaluations/{run_id}/cancel"), None, "execute"),
        route(M::GET, format!("/v1/executions/{execution_id}"), None, "read"),
        route(M::POST, "/v1/keys", Some(json!({"name": "k", "scopes": ["read"]})), "admin"),
        route(M::GET, "/v1/keys", None, "admin"),
        route(M::DELETE, format!("/v1/keys/{key_id}"), None, "admin"),
        route(M::DELETE, "/v1/workflows/echo/policy", None, "write"),
        route(M::DELETE, "/v1/datasets/d", None, "write"),
        route(M::DELETE, "/v1/workflows/echo/labels/production", None, "write"),
        route(M::DELETE, "/v1/workflows/echo", None, "write"),
        route(M::DELETE, "/v1/endpoints/other", None, "write"),
    ]
}

/// A compile job the service refuses after authorisation (no endpoint `nobody`).
fn compile_job() -> Value {
    json!({
        "workflow": "compiled", "task": "Echo the question.",
        "train": [{"inputs": {"question": "q"}, "expected": "echo: q"}],
        "metric": {"kind": "exact"}, "teacher": "nobody", "student": "student"
    })
}

async fn call(api: &Api, r: &Route) -> Reply {
    let mut request = api.request(r.method.clone(), &r.path);
    if let Some(body) = &r.body {
        request = request.json(body);
    }
    api.send(request).await
}

/// `/v1/...{param}` from the OpenAPI document to a regex-free comparable shape.
fn template(path: &str) -> String {
    path.split('?')
        .next()
        .unwrap_or_default()
        .split('/')
        .map(|seg| if seg.starts_with('{') { "*" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[sgde_test_macros::both_backends]
async fn every_route_refuses_a_missing_or_wrong_key_and_a_missing_scope() {
    let h = Harness::start().await;
    let admin = h.admin();
    h.workflow("echo", &echo_spec()).await;
    let run =
        admin.post("/v1/runs", &json!({"workflow": "echo", "inputs": {"question": "q"}})).await.expect(202);
    let run_id = run["id"].as_str().unwrap().to_owned();
    let exec =
        admin.post("/v1/workflows/echo/execute", &json!({"inputs": {"question": "q"}})).await.expect(200);
    let execution_id = exec["execution_id"].as_str().unwrap().to_owned();
    let spare = admin.post("/v1/keys", &json!({"name": "spare", "scopes": ["read"]})).await.expect(201);
    let key_id = spare["key"]["id"].as_str().unwrap().to_owned();
    let table = routes(&h, &run_id, &execution_id, &key_id);

    // The table covers every secured operation the service documents.
    let openapi = h.service.anonymous().get("/openapi.json").await.expect(200);
    let covered: BTreeSet<(String, String)> =
        table.iter().map(|r| (r.method.as_str().to_lowercase(), template(&r.path))).collect();
    let mut secured = 0;
    for (path, item) in openapi["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op.get("security").is_some_and(|s| s.as_array().is_some_and(|a| !a.is_empty())) {
                secured += 1;
                let shape = template(path);
                let found = covered.iter().any(|(m, p)| {
                    m == method
                        && p.split('/').zip(shape.split('/')).all(|(a, b)| a == b || b == "*")
                        && p.split('/').count() == shape.split('/').count()
                });
                assert!(found, "{method} {path} is secured but not in the auth table");
            }
        }
    }
    assert_eq!(secured, table.len(), "the table and the documented secured operations differ");

    // One key per scope set: everything but the needed scope (and never admin).
    let all = ["write", "execute", "compile", "read"];
    let mut lacking = std::collections::HashMap::new();
    let mut only = std::collections::HashMap::new();
    for scope in ["write", "execute", "compile", "read", "admin"] {
        let others: Vec<&str> = all.iter().copied().filter(|s| *s != scope).collect();
        lacking.insert(scope, h.service.key(&format!("without {scope}"), &others).await);
        only.insert(scope, h.service.key(&format!("only {scope}"), &[scope]).await);
    }
    let anonymous = h.service.anonymous();
    let garbage = h.service.api(Some("sgde_this-is-not-a-key"));
    let admin_lookalike = h.service.api(Some(&format!("{ADMIN_TOKEN}x")));

    for r in &table {
        let what = format!("{} {}", r.method, r.path);
        for api in [&anonymous, &garbage, &admin_lookalike] {
            let reply = call(api, r).await;
            reply.problem(401, "unauthorized");
            assert_eq!(reply.header("www-authenticate"), Some("Bearer"), "{what}");
        }
        // Malformed Authorization headers.
        for header in ["Basic YWxhZGRpbjpvcGVuc2VzYW1l", "Bearer", "Bearer   ", ADMIN_TOKEN] {
            let mut request = anonymous.request(r.method.clone(), &r.path).header("authorization", header);
            if let Some(body) = &r.body {
                request = request.json(body);
            }
            anonymous.send(request).await.problem(401, "unauthorized");
        }
        let reply = call(&lacking[r.scope], r).await;
        reply.problem(403, "forbidden");
        assert!(reply.text.contains(r.scope), "{what}: the problem names the scope: {}", reply.text);
    }
    // The right scope gets past authorisation on every route (and nothing is a 500).
    for r in &table {
        let reply = call(&only[r.scope], r).await;
        assert!(
            ![401, 403].contains(&reply.status) && reply.status < 500,
            "{} {} with scope {}: {} {}",
            r.method,
            r.path,
            r.scope,
            reply.status,
            reply.text
        );
    }
    // Admin implies every scope.
    admin.get("/v1/executions").await.expect(200);
    // Probes and documentation need no key.
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json", "/v1/schemas/workflow", "/docs/"] {
        let reply = anonymous.get(path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
    }
    h.service.assert_healthy().await;
    h.finish().await;
}

/// Asserts a problem and that the service still answers.
async fn refused(h: &Harness, reply: Reply, status: u16, code: &str) -> Reply {
    reply.problem(status, code);
    h.service.assert_healthy().await;
    reply
}

fn nested(depth: usize, open: &str, close: &str) -> String {
    format!("{}{}", open.repeat(depth), close.repeat(depth))
}

#[sgde_test_macros::both_backends]
async fn bad_input_is_a_clear_problem_and_never_hurts_the_service() {
    const LIMIT: usize = 64 * 1024;
    let config =
        ServiceConfig::default().env("SGDE_BODY_LIMIT_BYTES", LIMIT).env("SGDE_REQUEST_TIMEOUT_SECS", 3);
    let fake = sgde_testkit::FakeOpenAi::builder()
        .rule(sgde_testkit::Rule::any().user("sleepy").delay(Duration::from_secs(60)).reply("late"))
        .start()
        .await
        .unwrap();
    let h = Harness::with(fake, config).await;
    let admin = h.admin();
    h.workflow("echo", &echo_spec()).await;
    let json_ct = "application/json";
    let raw = |path: &'static str, body: &[u8]| admin.post_raw(path, json_ct, body.to_vec());

    // Malformed JSON: 400 malformed_json.
    for body in [
        &b"{bad"[..],
        b"{\"name\": \"x\"",
        b"",
        b"   ",
        b"{\"name\": \"x\", \"spec\": {}} trailing",
        b"{'name': 'x'}",
        b"[1,]",
    ] {
        let r = raw("/v1/workflows", body).await;
        refused(&h, r, 400, "malformed_json").await;
    }
    let r = raw("/v1/workflows/echo/execute", b"{\"inputs\": {\"question\": \"x\",}}").await;
    refused(&h, r, 400, "malformed_json").await;

    // Wrong types: 422 with the field's pointer.
    let cases: [(&str, Value, &str); 7] = [
        ("/v1/workflows", json!({"name": 5, "spec": echo_spec()}), "/name"),
        ("/v1/workflows", json!({"name": "x", "spec": echo_spec(), "description": ["a"]}), "/description"),
        (
            "/v1/workflows/echo/execute",
            json!({"inputs": {"question": "x"}, "deadline_ms": "soon"}),
            "/deadline_ms",
        ),
        ("/v1/runs", json!({"workflow": ["echo"], "inputs": {}}), "/workflow"),
        ("/v1/keys", json!({"name": "k", "scopes": "read"}), "/scopes"),
        (
            "/v1/endpoints",
            json!({"name": "e", "base_url": "http://127.0.0.1:1/v1", "model": "m", "timeout_ms": -5}),
            "/timeout_ms",
        ),
        ("/v1/workflows/echo/versions", json!({"spec": echo_spec(), "parent": 1}), "/parent"),
    ];
    for (path, body, pointer) in cases {
        let r = admin.post(path, &body).await;
        assert_eq!(r.pointers(), [pointer], "{path}: {}", r.text);
        refused(&h, r, 422, "invalid_request").await;
    }
    let r = raw("/v1/workflows", b"null").await;
    refused(&h, r, 422, "invalid_request").await;

    // Unknown fields: in request bodies and anywhere in a spec, named.
    let r = admin
        .post("/v1/runs", &json!({"workflow": "echo", "inputs": {"question": "x"}, "webhook": "x"}))
        .await;
    assert_eq!(r.pointers(), ["/webhook"]);
    refused(&h, r, 422, "invalid_request").await;
    let mut consensus = common::reference_spec();
    consensus["nodes"]["solve"]["vote"]["quorom"] = json!(3);
    let mut body_node = common::reference_spec();
    body_node["nodes"]["solve"]["body"]["nodes"]["run"]["timeout"] = json!(5);
    let mut top = echo_spec();
    top["version"] = json!(2);
    for (spec, field) in [(consensus, "quorom"), (body_node, "timeout"), (top, "version")] {
        let r = admin.post("/v1/workflows", &json!({"name": "unknown", "spec": spec})).await;
        let pointers = r.pointers();
        assert!(pointers.iter().any(|p| p.starts_with("/spec") && p.ends_with(field)), "{field}: {}", r.text);
        assert!(r.body["errors"][0]["message"].as_str().is_some_and(|m| m.contains(field)), "{}", r.text);
        refused(&h, r, 422, "invalid_spec").await;
    }

    // Huge bodies: 413 before anything is parsed; the limit is in the detail.
    let huge = format!("{{\"name\": \"{}\", \"spec\": {{}}}}", "a".repeat(LIMIT * 4));
    for path in ["/v1/workflows", "/v1/workflows/echo/execute", "/v1/runs"] {
        let r = raw(path, huge.as_bytes()).await;
        assert!(r.text.contains(&LIMIT.to_string()), "{}", r.text);
        // The unread rest of the body ends the connection; a keep-alive client must be told.
        assert_eq!(r.header("connection"), Some("close"));
        refused(&h, r, 413, "payload_too_large").await;
    }
    let almost = json!({"inputs": {"question": "b".repeat(LIMIT - 100)}});
    admin.post("/v1/workflows/echo/execute", &almost).await.expect(200);

    // Invalid UTF-8 and lone surrogates: 400.
    for body in [
        &b"{\"name\": \"\xff\xfe\"}"[..],
        b"{\"\xc3\x28\": 1}",
        b"{\"name\": \"\xed\xa0\x80\"}",
        b"{\"name\": \"\\ud800\"}",
    ] {
        let r = raw("/v1/workflows", body).await;
        refused(&h, r, 400, "malformed_json").await;
    }
    let r = admin.get("/v1/workflows/%FF%FE").await;
    refused(&h, r, 400, "bad_request").await;

    // Deep nesting: 400, wherever it is, and no crash.
    let deep_arrays = nested(10_000, "[", "]");
    let deep_objects = nested(10_000, "{\"a\":", "}");
    let r = raw("/v1/workflows", deep_arrays.as_bytes()).await;
    refused(&h, r, 400, "malformed_json").await;
    let r = raw("/v1/workflows", deep_objects.as_bytes()).await;
    refused(&h, r, 400, "malformed_json").await;
    let in_spec = format!("{{\"name\": \"deep\", \"spec\": {deep_arrays}}}");
    let r = raw("/v1/workflows", in_spec.as_bytes()).await;
    refused(&h, r, 400, "malformed_json").await;
    let in_inputs = format!("{{\"inputs\": {{\"question\": {deep_objects}}}}}");
    let r = raw("/v1/workflows/echo/execute", in_inputs.as_bytes()).await;
    refused(&h, r, 400, "malformed_json").await;
    // Moderate nesting is fine for the parser (the input schema then refuses it).
    let moderate = format!("{{\"inputs\": {{\"question\": {}}}}}", nested(50, "[", "]"));
    let r = raw("/v1/workflows/echo/execute", moderate.as_bytes()).await;
    assert_eq!(r.pointers(), ["/inputs/question"], "{}", r.text);
    refused(&h, r, 422, "invalid_request").await;

    // Wrong or missing content type: 415. `+json` types and parameters are fine.
    let body = serde_json::to_vec(&json!({"inputs": {"question": "ct"}})).unwrap();
    for content_type in
        ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "json"]
    {
        let r = admin.post_raw("/v1/workflows/echo/execute", content_type, body.clone()).await;
        refused(&h, r, 415, "unsupported_media_type").await;
    }
    let r = admin.send(admin.request(Method::POST, "/v1/workflows/echo/execute").body(body.clone())).await;
    refused(&h, r, 415, "unsupported_media_type").await;
    for content_type in ["application/json; charset=utf-8", "Application/JSON", "application/vnd.sgde+json"] {
        admin.post_raw("/v1/workflows/echo/execute", content_type, body.clone()).await.expect(200);
    }

    // Unknown routes: 404; known routes with the wrong method: 405 with `Allow`.
    for path in ["/v1/nope", "/v2/workflows", "/v1/workflows/echo/versions/1/extra", "/"] {
        let r = admin.get(path).await;
        refused(&h, r, 404, "no_route").await;
        let r = h.service.anonymous().get(path).await;
        refused(&h, r, 404, "no_route").await;
    }
    for (method, path) in [
        (Method::DELETE, "/v1/executions"),
        (Method::PATCH, "/v1/workflows/echo"),
        (Method::PUT, "/v1/runs"),
        (Method::POST, "/healthz"),
        (Method::GET, "/v1/workflows/echo/execute"),
    ] {
        let r = admin.send(admin.request(method.clone(), path)).await;
        assert!(r.header("allow").is_some_and(|a| !a.is_empty()), "{method} {path}: no Allow header");
        refused(&h, r, 405, "method_not_allowed").await;
    }

    // Invalid Idempotency-Key values.
    let long = "k".repeat(256);
    let r = admin
        .post_idempotent("/v1/workflows/echo/execute", &long, &json!({"inputs": {"question": "x"}}))
        .await;
    assert_eq!(r.pointers(), ["/headers/Idempotency-Key"]);
    refused(&h, r, 422, "invalid_request").await;

    // A request that outlives the service's request timeout: 504, a problem like any other.
    let r = admin.post("/v1/workflows/echo/execute", &json!({"inputs": {"question": "sleepy"}})).await;
    refused(&h, r, 504, "timeout").await;

    // After all that, real work still works.
    let out = admin.post("/v1/workflows/echo/execute", &json!({"inputs": {"question": "still here"}})).await;
    assert_eq!(out.expect(200)["output"], "echo: still here");
    let logs = h.service.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    h.finish().await;
}

#[sgde_test_macros::both_backends]
async fn idempotency_keys_replay_and_refuse_reuse() {
    let h = Harness::start().await;
    let admin = h.admin();
    h.workflow("echo", &echo_spec()).await;

    // Creating a workflow: the second call is a replay, byte for byte.
    let body = json!({"name": "idem", "spec": echo_spec()});
    let first = admin.post_idempotent("/v1/workflows", "wf-1", &body).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.header("idempotent-replayed"), None);
    let second = admin.post_idempotent("/v1/workflows", "wf-1", &body).await;
    assert_eq!((second.status, &second.text), (201, &first.text));
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(second.header("content-type"), first.header("content-type"));
    let listed = admin.get("/v1/workflows").await.expect(200);
    assert_eq!(listed["items"].as_array().unwrap().iter().filter(|w| w["name"] == "idem").count(), 1);
    // Same key, another body: 422, and nothing is created.
    let other = json!({"name": "idem-2", "spec": echo_spec()});
    admin.post_idempotent("/v1/workflows", "wf-1", &other).await.problem(422, "idempotency_key_reused");
    admin.get("/v1/workflows/idem-2").await.problem(404, "not_found");
    // The key is per caller and per route: another key's `wf-1`, or `wf-1` elsewhere, is new.
    let writer = h.service.key("writer", &["write"]).await;
    writer.post_idempotent("/v1/workflows", "wf-1", &other).await.expect(201);
    let endpoint = endpoint_config("elsewhere", &h.fake);
    let r = admin.post_idempotent("/v1/endpoints", "wf-1", &endpoint).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = admin.post_idempotent("/v1/endpoints", "wf-1", &endpoint).await;
    assert_eq!((r.status, r.header("idempotent-replayed")), (201, Some("true")));

    // Async runs: one run however often the request is retried; same Location.
    let run = json!({"workflow": "echo", "inputs": {"question": "once"}});
    let first = admin.post_idempotent("/v1/runs", "run-1", &run).await;
    assert_eq!(first.status, 202, "{}", first.text);
    let location = first.header("location").expect("Location").to_owned();
    for _ in 0..3 {
        let again = admin.post_idempotent("/v1/runs", "run-1", &run).await;
        assert_eq!((again.status, again.header("location")), (202, Some(location.as_str())));
        assert_eq!(again.text, first.text);
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
    }
    let other_run = json!({"workflow": "echo", "inputs": {"question": "twice"}});
    admin.post_idempotent("/v1/runs", "run-1", &other_run).await.problem(422, "idempotency_key_reused");
    common::wait_terminal(&admin, first.body["id"].as_str().unwrap()).await;
    let runs = common::all_pages(&admin, "/v1/executions?mode=async", 50).await;
    assert_eq!(runs.len(), 1, "{runs:#?}");

    // Execute: replayed without running the workflow again.
    let exec = json!({"inputs": {"question": "sync once"}});
    let first = admin.post_idempotent("/v1/workflows/echo/execute", "exec-1", &exec).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let model_calls = h.fake.request_count();
    let again = admin.post_idempotent("/v1/workflows/echo/execute", "exec-1", &exec).await;
    assert_eq!((again.status, &again.text), (200, &first.text));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(h.fake.request_count(), model_calls, "a replay does not call the model");
    let sync = common::all_pages(&admin, "/v1/executions?mode=sync&workflow=echo", 50).await;
    assert_eq!(sync.len(), 1);

    // Versions: a replay of a 201 is a 201 (not the 200 of content dedup).
    let version = json!({"spec": common::echo_spec_with_prompt("v2 {{ inputs.question }}")});
    admin.post_idempotent("/v1/workflows/echo/versions", "v-1", &version).await.expect(201);
    let r = admin.post_idempotent("/v1/workflows/echo/versions", "v-1", &version).await;
    assert_eq!((r.status, r.header("idempotent-replayed")), (201, Some("true")));
    assert_eq!(admin.get("/v1/workflows/echo").await.expect(200)["latest_version"], 2);

    // Keys.
    let key = json!({"name": "idem key", "scopes": ["read"]});
    let first = admin.post_idempotent("/v1/keys", "key-1", &key).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let again = admin.post_idempotent("/v1/keys", "key-1", &key).await;
    assert_eq!(again.status, 201, "{}", again.text);
    // The replay names the same key but not its token: tokens are never stored.
    let (first, again): (Value, Value) =
        (serde_json::from_str(&first.text).unwrap(), serde_json::from_str(&again.text).unwrap());
    assert_eq!(again["key"], first["key"]);
    assert!(first["token"].is_string() && again["token"].is_null(), "{again}");
    let keys = admin.get("/v1/keys").await.expect(200);
    assert_eq!(keys["items"].as_array().unwrap().iter().filter(|k| k["name"] == "idem key").count(), 1);

    // Client errors are remembered too: the same bad request gets the same answer.
    let bad = json!({"name": "bad name!", "spec": echo_spec()});
    let first = admin.post_idempotent("/v1/workflows", "bad-1", &bad).await;
    first.problem(422, "invalid_request");
    let again = admin.post_idempotent("/v1/workflows", "bad-1", &bad).await;
    again.problem(422, "invalid_request");
    assert_eq!(again.text, first.text);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    h.finish().await;
}

/// Runs `sgde serve` expecting it to fail at start; returns (success, stderr + stdout).
async fn failed_start(env: &[(&str, &str)]) -> (bool, String) {
    let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let mut command = tokio::process::Command::from(sgde_command(&env));
    command.arg("serve").kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("sgde exits on its own when it cannot start")
        .expect("run sgde");
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stderr), String::from_utf8_lossy(&output.stdout));
    (output.status.success(), text)
}

#[tokio::test]
async fn start_up_fails_clearly_on_a_bad_database_or_config() {
    let listen = format!("127.0.0.1:{}", common::free_port());
    let base =
        [("SGDE_LISTEN", listen.as_str()), ("SGDE_ADMIN_TOKEN", ADMIN_TOKEN), ("SGDE_SANDBOX_WORKERS", "1")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut env: Vec<(&str, &str)> = base.to_vec();
        env.extend_from_slice(extra);
        env
    };

    // Nothing listens on port 1: the database is unreachable.
    let secret = "hunter2-very-secret";
    let url = "postgres://sgde:hunter2-very-secret@127.0.0.1:1/sgde";
    let (ok, text) = failed_start(&with(&[("SGDE_DATABASE_URL", url)])).await;
    assert!(!ok, "{text}");
    assert!(text.contains("database") && text.contains("127.0.0.1:1"), "names the database: {text}");
    assert!(!text.contains(secret), "the password is never printed: {text}");

    // A database that does not exist on a reachable server.
    let url = "postgres://postgres:hunter2-very-secret@127.0.0.1:5432/sgde_no_such_database";
    let (ok, text) = failed_start(&with(&[("SGDE_DATABASE_URL", url)])).await;
    assert!(!ok, "{text}");
    assert!(text.contains("sgde_no_such_database"), "{text}");
    assert!(!text.contains(secret), "{text}");

    // Neither a Postgres nor an SQLite URL.
    let (ok, text) =
        failed_start(&with(&[("SGDE_DATABASE_URL", "mysql://root:hunter2-very-secret@db/sgde")])).await;
    assert!(!ok && text.contains("postgres://") && text.contains("sqlite://"), "{text}");
    assert!(!text.contains(secret), "{text}");

    // An unreachable Postgres never falls back to the embedded store, even with a data directory
    // that holds one.
    let data = std::env::temp_dir().join(format!("sgde-fallback-{}", uuid::Uuid::new_v4().simple()));
    let data_dir = data.display().to_string();
    let mut env = base.to_vec();
    env.extend([
        ("SGDE_DATABASE_URL", "postgres://sgde@127.0.0.1:1/sgde"),
        ("SGDE_DATA_DIR", data_dir.as_str()),
    ]);
    let (ok, text) = failed_start(&env).await;
    assert!(!ok, "{text}");
    assert!(!text.contains("SQLite"), "no word of a fallback: {text}");
    assert!(!data.exists(), "nothing written to the data directory");

    // An SQLite file that cannot be created.
    let (ok, text) = failed_start(&with(&[("SGDE_DATABASE_URL", "sqlite:///proc/sgde/cannot.db")])).await;
    assert!(!ok && text.contains("/proc/sgde/cannot.db"), "{text}");

    // Bad configuration on a good database: a short admin token, an unparsable address.
    let db = TestDatabase::new().await.expect("a test database");
    let short = [
        ("SGDE_DATABASE_URL", db.url.as_str()),
        ("SGDE_LISTEN", listen.as_str()),
        ("SGDE_ADMIN_TOKEN", "tooshort"),
    ];
    let (ok, text) = failed_start(&short).await;
    assert!(!ok, "{text}");
    assert!(text.contains("admin token") && text.contains("16"), "{text}");
    assert!(!text.contains("tooshort"), "the token is never printed: {text}");
    let bad_listen = [
        ("SGDE_DATABASE_URL", db.url.as_str()),
        ("SGDE_LISTEN", "not-an-address"),
        ("SGDE_ADMIN_TOKEN", ADMIN_TOKEN),
    ];
    let (ok, text) = failed_start(&bad_listen).await;
    assert!(!ok && (text.contains("SGDE_LISTEN") || text.contains("listen")), "{text}");
    db.drop_database().await.expect("drop the test database");
}

/// With a per-key limit configured, a key that exceeds it gets 429 `rate_limited` with a
/// `Retry-After`, while other keys keep their own budget, and the key is served again once its
/// bucket refills.
#[sgde_test_macros::both_backends]
async fn a_key_over_its_rate_limit_gets_429_and_others_are_unaffected() {
    let config =
        ServiceConfig::default().env("SGDE_RATE_LIMIT_PER_SECOND", 1).env("SGDE_RATE_LIMIT_BURST", 3);
    let h = Harness::with(sgde_testkit::FakeOpenAi::start().await.expect("fake model"), config).await;
    let admin = h.admin();
    let created = admin.post("/v1/keys", &json!({"name": "app", "scopes": ["read"]})).await.expect(201);
    let app = h.service.api(created["token"].as_str());

    for _ in 0..3 {
        app.get("/v1/workflows").await.expect(200);
    }
    let refused = app.get("/v1/workflows").await;
    let problem = refused.problem(429, "rate_limited");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("retry after")), "{problem}");
    let retry_after: u64 = refused.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1..=2).contains(&retry_after), "{retry_after}");

    // The admin key has a bucket of its own (two of its three requests are spent).
    admin.get("/v1/workflows").await.expect(200);
    // Unauthenticated probes are not rate-limited.
    assert_eq!(h.service.api(None).get("/healthz").await.status, 200);
    // Once the bucket refills, the key is served again.
    common::eventually("the app key is served again", || async {
        (app.get("/v1/workflows").await.status == 200).then_some(())
    })
    .await;
    h.finish().await;
}
