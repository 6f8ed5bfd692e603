//! Asynchronous runs on the durable queue: polling, cancellation, signed completion webhooks with
//! retries, and what survives the server process being killed or stopped.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use common::{Api, Harness, ServiceConfig, all_pages, echo_spec, eventually, wait_terminal};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sgde_testkit::{FakeOpenAi, Rule};
use sha2::Sha256;

async fn submit(api: &Api, question: &str) -> String {
    let r = api.post("/v1/runs", &json!({"workflow": "echo", "inputs": {"question": question}})).await;
    let location = r.header("location").map(str::to_owned);
    let run = r.expect(202);
    let id = run["id"].as_str().expect("run id").to_owned();
    assert_eq!(location.as_deref(), Some(format!("/v1/runs/{id}").as_str()));
    id
}

async fn status(api: &Api, id: &str) -> String {
    api.get(&format!("/v1/runs/{id}")).await.expect(200)["status"].as_str().unwrap().to_owned()
}

#[sgde_test_macros::both_backends]
async fn runs_are_accepted_polled_and_cancelled() {
    let fake = FakeOpenAi::builder()
        .rule(Rule::any().user("slow").delay(Duration::from_secs(60)).reply("late"))
        .rule(Rule::any().user("unparsable").reply("no number here"))
        .start()
        .await
        .unwrap();
    // One run at a time, so a second run waits in the queue; a short lease for quick heartbeats.
    let config = ServiceConfig::default().env("SGDE_RUN_CONCURRENCY", 1).env("SGDE_JOB_LEASE_SECS", 3);
    let h = Harness::with(fake, config).await;
    let admin = h.admin();
    h.workflow("echo", &echo_spec()).await;

    // Accepted (202, Location, queued), then polled to its end.
    let r = admin.post("/v1/runs", &json!({"workflow": "echo", "inputs": {"question": "hello"}})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["status"], "queued");
    assert_eq!(r.body["mode"], "async");
    let id = r.body["id"].as_str().unwrap().to_owned();
    let done = wait_terminal(&admin, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["output"], "echo: hello");
    assert!(done["started_at"].is_string() && done["finished_at"].is_string());
    assert!(done["trace"].to_string().contains("hello"), "a run keeps its trace: {done}");
    let logged = admin.get(&format!("/v1/executions/{id}")).await.expect(200);
    assert_eq!((logged["mode"].clone(), logged["status"].clone()), (json!("async"), json!("succeeded")));
    admin.post(&format!("/v1/runs/{id}/cancel"), &json!({})).await.expect(200);
    let again = admin.post(&format!("/v1/runs/{id}/cancel"), &json!({})).await.expect(200);
    assert_eq!(again["status"], "already_finished");

    // A run whose workflow fails ends `failed` with the runtime's error.
    let mut number = echo_spec();
    number["nodes"]["answer"]["parser"] = json!({"type": "number"});
    h.workflow("numeric", &number).await;
    let r =
        admin.post("/v1/runs", &json!({"workflow": "numeric", "inputs": {"question": "unparsable"}})).await;
    let failed = wait_terminal(&admin, r.expect(202)["id"].as_str().unwrap()).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "parse_error");
    assert!(failed["finished_at"].is_string());

    // Cancelling: a running run stops at its next heartbeat; a queued one at once.
    let running = submit(&admin, "slow one").await;
    eventually("the slow run to start", || async {
        (status(&admin, &running).await == "running").then_some(())
    })
    .await;
    let queued = submit(&admin, "waits behind it").await;
    assert_eq!(status(&admin, &queued).await, "queued");
    let r = admin.post(&format!("/v1/runs/{queued}/cancel"), &json!({})).await.expect(200);
    assert_eq!(r["status"], "cancelled");
    let cancelled = admin.get(&format!("/v1/runs/{queued}")).await.expect(200);
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["finished_at"].is_string() && cancelled["output"].is_null());
    let r = admin.post(&format!("/v1/runs/{running}/cancel"), &json!({})).await.expect(200);
    assert_eq!(r["status"], "cancel_requested");
    let stopped = wait_terminal(&admin, &running).await;
    assert_eq!(stopped["status"], "cancelled", "{stopped}");
    assert_eq!(stopped["error"]["code"], "cancelled");
    // The worker is free again, and the cancelled queued run never ran.
    let after = submit(&admin, "after the cancels").await;
    assert_eq!(wait_terminal(&admin, &after).await["status"], "succeeded");
    assert_eq!(status(&admin, &queued).await, "cancelled");
    let asked: Vec<String> = h.fake.requests().iter().map(|r| r.body.to_string()).collect();
    assert!(
        !asked.iter().any(|b| b.contains("waits behind it")),
        "a cancelled queued run never calls the model"
    );

    // Errors.
    let sync =
        admin.post("/v1/workflows/echo/execute", &json!({"inputs": {"question": "sync"}})).await.expect(200);
    let sync_id = sync["execution_id"].as_str().unwrap();
    admin.get(&format!("/v1/runs/{sync_id}")).await.problem(404, "not_found");
    admin.get("/v1/runs/00000000-0000-0000-0000-000000000000").await.problem(404, "not_found");
    admin
        .post("/v1/runs/00000000-0000-0000-0000-000000000000/cancel", &json!({}))
        .await
        .problem(404, "not_found");
    let r = admin.get("/v1/runs/nope").await;
    r.problem(422, "invalid_request");
    assert_eq!(r.pointers(), ["/path/id"]);
    admin.post("/v1/runs/nope/cancel", &json!({})).await.problem(422, "invalid_request");
    let bad_runs = [
        (json!({"workflow": "nope", "inputs": {"question": "x"}}), 404, "not_found", None),
        (json!({"workflow": "echo", "inputs": {"question": "x"}, "label": "canary"}), 404, "not_found", None),
        (json!({"workflow": "echo", "inputs": {"question": "x"}, "version": "9"}), 404, "not_found", None),
        (
            json!({"workflow": "echo", "inputs": {"question": 3}}),
            422,
            "invalid_request",
            Some("/inputs/question"),
        ),
        (json!({"workflow": "echo", "inputs": []}), 422, "invalid_request", Some("/inputs")),
        (
            json!({"workflow": "echo", "inputs": {"question": "x"}, "webhook_url": "ftp://x/y"}),
            422,
            "invalid_request",
            Some("/webhook_url"),
        ),
        (
            json!({"workflow": "echo", "inputs": {"question": "x"}, "webhook_url": "not a url"}),
            422,
            "invalid_request",
            Some("/webhook_url"),
        ),
        (
            json!({"workflow": "echo", "inputs": {"question": "x"}, "version": "1", "label": "x"}),
            422,
            "invalid_request",
            None,
        ),
        (json!({"inputs": {"question": "x"}}), 422, "invalid_request", None),
    ];
    for (body, code, name, pointer) in bad_runs {
        let r = admin.post("/v1/runs", &body).await;
        r.problem(code, name);
        if let Some(pointer) = pointer {
            assert_eq!(r.pointers(), [pointer], "{body}");
        }
    }
    // Nothing above was accepted: the log holds exactly the runs made on purpose.
    let runs = all_pages(&admin, "/v1/executions?mode=async", 50).await;
    assert_eq!(runs.len(), 5, "{runs:#?}");
    h.finish().await;
}

/// One delivery as the receiver saw it.
#[derive(Debug, Clone)]
struct Delivery {
    headers: HeaderMap,
    body: Vec<u8>,
}

/// A webhook receiver on port 0 that fails its first `fail_first` deliveries with HTTP 500.
async fn receiver(fail_first: usize) -> (String, Arc<Mutex<Vec<Delivery>>>) {
    let seen: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let log = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let log = Arc::clone(&log);
            async move {
                let mut log = log.lock().unwrap();
                log.push(Delivery { headers, body: body.to_vec() });
                if log.len() <= fail_first {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// Checks `X-Sgde-Signature: t=<unix>,v1=<hex hmac-sha256(secret, "t.body")>`.
fn verify_signature(secret: &str, delivery: &Delivery) {
    let header = delivery.headers.get("x-sgde-signature").expect("signed").to_str().unwrap();
    let parts: BTreeMap<&str, &str> = header.split(',').filter_map(|p| p.split_once('=')).collect();
    let t = parts["t"];
    assert!(t.parse::<i64>().is_ok(), "{header}");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&delivery.body);
    let signature = hex::decode(parts["v1"]).expect("hex signature");
    mac.verify_slice(&signature).expect("the signature verifies with the shared secret");
    // And a signature over another body does not.
    let mut forged = <Hmac<Sha256> as KeyInit>::new_from_slice(b"another secret").unwrap();
    forged.update(format!("{t}.").as_bytes());
    forged.update(&delivery.body);
    assert!(forged.verify_slice(&signature).is_err());
}

#[sgde_test_macros::both_backends]
async fn completion_webhooks_are_signed_and_retried() {
    const SECRET: &str = "whsec-suite-0123456789";
    let config = ServiceConfig::default().env("SGDE_WEBHOOK_SECRET", SECRET);
    let h = Harness::with(FakeOpenAi::start().await.unwrap(), config).await;
    let admin = h.admin();
    h.workflow("echo", &echo_spec()).await;
    let (url, seen) = receiver(1).await;

    let r = admin
        .post("/v1/runs", &json!({"workflow": "echo", "inputs": {"question": "ping"}, "webhook_url": url}))
        .await;
    let id = r.expect(202)["id"].as_str().unwrap().to_owned();
    assert_eq!(wait_terminal(&admin, &id).await["status"], "succeeded");

    // The first delivery gets a 500; the retry (with backoff) succeeds; then no more.
    let deliveries = eventually("a retried webhook delivery", || async {
        let seen = seen.lock().unwrap().clone();
        (seen.len() >= 2).then_some(seen)
    })
    .await;
    for delivery in &deliveries {
        verify_signature(SECRET, delivery);
        assert_eq!(delivery.headers["content-type"], "application/json");
        assert_eq!(delivery.headers["x-sgde-event"], "run.finished");
        let body: Value = serde_json::from_slice(&delivery.body).unwrap();
        assert_eq!(body["event"], "run.finished");
        assert_eq!(body["run"]["id"], id.as_str());
        assert_eq!(body["run"]["status"], "succeeded");
        assert_eq!(body["run"]["output"], "echo: ping");
    }
    let ids: BTreeSet<&str> =
        deliveries.iter().map(|d| d.headers["x-sgde-delivery"].to_str().unwrap()).collect();
    assert_eq!(ids.len(), 1, "a retry keeps its delivery id, for de-duplication");

    // A run that fails is announced too, once the receiver answers 2xx.
    let mut number = echo_spec();
    number["nodes"]["answer"]["parser"] = json!({"type": "number"});
    h.workflow("numeric", &number).await;
    let r = admin
        .post("/v1/runs", &json!({"workflow": "numeric", "inputs": {"question": "none"}, "webhook_url": url}))
        .await;
    let failed = r.expect(202)["id"].as_str().unwrap().to_owned();
    assert_eq!(wait_terminal(&admin, &failed).await["status"], "failed");
    let delivery = eventually("the failed run's webhook", || async {
        let seen = seen.lock().unwrap().clone();
        seen.into_iter().find(|d| d.body.windows(failed.len()).any(|w| w == failed.as_bytes()))
    })
    .await;
    verify_signature(SECRET, &delivery);
    let body: Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(body["run"]["status"], "failed");
    assert_eq!(body["run"]["error"]["code"], "parse_error");
    h.service.assert_healthy().await;
    h.finish().await;
}

/// Every run of `ids`, read again: (status, finished_at, output).
async fn outcomes(api: &Api, ids: &[String]) -> BTreeMap<String, (Value, Value, Value)> {
    let mut out = BTreeMap::new();
    for id in ids {
        let run = api.get(&format!("/v1/runs/{id}")).await.expect(200);
        out.insert(id.clone(), (run["status"].clone(), run["finished_at"].clone(), run["output"].clone()));
    }
    out
}

#[sgde_test_macros::both_backends]
async fn a_killed_server_loses_no_accepted_run() {
    const RUNS: usize = 30;
    let fake = FakeOpenAi::builder().latency(Duration::from_millis(300)).start().await.unwrap();
    // Two runs at a time: 30 runs take several seconds, so the kill lands with most pending.
    let config = ServiceConfig::default().env("SGDE_RUN_CONCURRENCY", 2).env("SGDE_JOB_LEASE_SECS", 2);
    let mut h = Harness::with(fake, config.clone()).await;
    let admin = h.admin();
    h.workflow("echo", &echo_spec()).await;

    let mut ids = Vec::new();
    for i in 0..RUNS {
        ids.push(submit(&admin, &format!("question {i}")).await);
    }
    // Kill the server mid-way: some runs done, some in flight, the rest queued.
    let done_before = eventually("some runs to finish", || async {
        let done = all_pages(&admin, "/v1/executions?mode=async&status=succeeded", 50).await;
        (done.len() >= 4).then_some(done)
    })
    .await;
    // Kill while a model call is in flight, so that at least one run must be re-claimed after
    // its dead lease expires (the premise checked at the end).
    eventually("a model call in flight", || async { (h.fake.in_flight() > 0).then_some(()) }).await;
    h.service.kill();
    let before_kill: BTreeSet<String> =
        done_before.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert!(before_kill.len() < RUNS, "the kill must land while runs are still pending");

    // A new process on the same database picks everything up once the dead leases expire.
    h.restart(&config.clone().env("SGDE_RUN_CONCURRENCY", 8)).await;
    let admin = h.admin();
    let first_read = outcomes(&admin, &ids).await;
    for id in &ids {
        wait_terminal(&admin, id).await;
    }
    let finished = outcomes(&admin, &ids).await;
    for (i, id) in ids.iter().enumerate() {
        let (status, finished_at, output) = &finished[id];
        assert_eq!(status, "succeeded", "run {i}");
        assert!(finished_at.is_string(), "run {i}");
        assert_eq!(output, &json!(format!("echo: question {i}")), "run {i}");
    }
    // Runs that had finished before the kill were not run again.
    for id in &before_kill {
        assert_eq!(first_read[id], finished[id], "run {id} was recorded twice");
    }
    // The log has each accepted run exactly once.
    let logged = all_pages(&admin, "/v1/executions?mode=async", 7).await;
    let logged_ids: Vec<String> = logged.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    let unique: BTreeSet<&String> = logged_ids.iter().collect();
    assert_eq!((logged_ids.len(), unique.len()), (RUNS, RUNS));
    assert_eq!(unique, ids.iter().collect::<BTreeSet<_>>());
    // Nothing is left in the queue, and outcomes stay put past another lease period.
    let metrics = h.service.anonymous().get("/metrics").await.text;
    assert!(metrics.contains("sgde_queue_depth{kind=\"run\"} 0"), "{metrics}");
    assert!(metrics.contains("sgde_queue_running{kind=\"run\"} 0"), "{metrics}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(outcomes(&admin, &ids).await, finished, "an outcome changed after it was recorded");
    // Every question reached the model; those in flight at the kill reached it twice: the dead
    // server's attempt was lost with it, and the run was taken over once its lease expired.
    let mut asked: BTreeMap<String, usize> = BTreeMap::new();
    for request in h.fake.requests() {
        let last = request.body["messages"].as_array().and_then(|m| m.last()).cloned();
        if let Some(text) = last.as_ref().and_then(|m| m["content"].as_str()) {
            *asked.entry(text.to_owned()).or_default() += 1;
        }
    }
    for i in 0..RUNS {
        assert!(asked.contains_key(&format!("question {i}")), "question {i} never reached the model");
    }
    assert!(asked.values().any(|n| *n > 1), "no run was in flight at the kill: {asked:?}");
    h.finish().await;
}

#[sgde_test_macros::both_backends]
async fn sigterm_lets_in_flight_work_finish() {
    let fake = FakeOpenAi::builder().latency(Duration::from_millis(800)).start().await.unwrap();
    let config = ServiceConfig::default().env("SGDE_SHUTDOWN_GRACE_SECS", 20).env("SGDE_JOB_LEASE_SECS", 2);
    let mut h = Harness::with(fake, config.clone()).await;
    let admin = h.admin();
    h.workflow("echo", &echo_spec()).await;

    let runs = [submit(&admin, "async a").await, submit(&admin, "async b").await];
    let sync = {
        let admin = admin.clone();
        tokio::spawn(async move {
            admin.post("/v1/workflows/echo/execute", &json!({"inputs": {"question": "in flight"}})).await
        })
    };
    eventually("all three calls at the model", || async { (h.fake.in_flight() >= 3).then_some(()) }).await;
    let exit = h.service.terminate().await;
    assert!(exit.success(), "a graceful stop exits 0: {exit}\n{}", h.service.logs());

    // The request in flight got its answer; the runs in flight were finished, not abandoned.
    let reply = sync.await.unwrap();
    assert_eq!(reply.expect(200)["output"], "echo: in flight");
    h.restart(&config).await;
    let admin = h.admin();
    for (id, question) in runs.iter().zip(["async a", "async b"]) {
        let run = admin.get(&format!("/v1/runs/{id}")).await.expect(200);
        assert_eq!(run["status"], "succeeded", "finished during the grace period: {run}");
        assert_eq!(run["output"], format!("echo: {question}"));
    }
    h.finish().await;
}
