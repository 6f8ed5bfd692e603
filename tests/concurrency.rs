//! Many callers at once: concurrent executes, races on the same resource or idempotency key, and
//! two replicas sharing one database.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    Harness, Reply, Service, ServiceConfig, all_pages, echo_spec, echo_spec_with_prompt, wait_terminal,
};
use futures::future::join_all;
use serde_json::json;
use sgde_testkit::FakeOpenAi;

fn config() -> ServiceConfig {
    ServiceConfig::default().env("SGDE_DATABASE_MAX_CONNECTIONS", 16)
}

#[sgde_test_macros::both_backends(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_executes_all_succeed_and_are_all_logged() {
    const N: usize = 100;
    let fake = FakeOpenAi::builder().latency(Duration::from_millis(50)).start().await.unwrap();
    let h = Harness::with(fake, config()).await;
    let admin = h.admin();
    h.workflow("echo", &echo_spec()).await;
    let caller = h.service.key("load", &["execute", "read"]).await;

    let replies: Vec<Reply> = join_all((0..N).map(|i| {
        let caller = caller.clone();
        async move {
            caller
                .post(
                    "/v1/workflows/echo/execute",
                    &json!({"inputs": {"question": format!("concurrent {i}")}}),
                )
                .await
        }
    }))
    .await;
    let mut ids = BTreeSet::new();
    for (i, reply) in replies.into_iter().enumerate() {
        let out = reply.expect(200);
        assert_eq!(out["output"], format!("echo: concurrent {i}"));
        assert!(ids.insert(out["execution_id"].as_str().unwrap().to_owned()), "execution ids are unique");
    }
    assert!(h.fake.max_in_flight() > 1, "the executes overlapped at the model");

    let logged = all_pages(&admin, "/v1/executions?workflow=echo", 200).await;
    let logged_ids: BTreeSet<String> = logged.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(logged.len(), N, "each execute is in the log once");
    assert_eq!(logged_ids, ids);
    assert!(logged.iter().all(|e| e["status"] == "succeeded" && e["mode"] == "sync"));
    h.service.assert_healthy().await;
    h.finish().await;
}

#[sgde_test_macros::both_backends(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_get_one_resource_and_consistent_answers() {
    let h = Harness::with(FakeOpenAi::start().await.unwrap(), config()).await;
    let admin = h.admin();
    h.workflow("echo", &echo_spec()).await;

    // The same new workflow name, 10 times at once: one 201, the rest 409.
    let replies = join_all((0..10).map(|_| {
        let admin = admin.clone();
        async move { admin.post("/v1/workflows", &json!({"name": "raced", "spec": echo_spec()})).await }
    }))
    .await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    assert_eq!(created, 1, "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    for r in replies.iter().filter(|r| r.status != 201) {
        r.problem(409, "conflict");
    }

    // The same new version content, 20 times at once: one 201, nineteen 200, one version id.
    let spec = echo_spec_with_prompt("raced {{ inputs.question }}");
    let replies = join_all((0..20).map(|_| {
        let admin = admin.clone();
        let spec = spec.clone();
        async move { admin.post("/v1/workflows/echo/versions", &json!({"spec": spec})).await }
    }))
    .await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 19, "{statuses:?}");
    let version_ids: BTreeSet<String> = replies.iter().map(|r| r.body["version"]["id"].to_string()).collect();
    assert_eq!(version_ids.len(), 1);
    assert_eq!(all_pages(&admin, "/v1/workflows/echo/versions", 50).await.len(), 2);

    // Different new versions at once: numbers stay gap-free and unique.
    let replies = join_all((0..10).map(|i| {
        let admin = admin.clone();
        async move {
            let spec = echo_spec_with_prompt(&format!("variant {i}: {{{{ inputs.question }}}}"));
            admin.post("/v1/workflows/echo/versions", &json!({"spec": spec})).await
        }
    }))
    .await;
    let mut numbers: Vec<i64> =
        replies.into_iter().map(|r| r.expect(201)["version"]["number"].as_i64().unwrap()).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (3..=12).collect::<Vec<_>>());

    // One Idempotency-Key, 20 concurrent submits: one run; every answer is the original or a 409.
    let body = json!({"workflow": "echo", "inputs": {"question": "exactly once"}});
    let replies = join_all((0..20).map(|_| {
        let admin = admin.clone();
        let body = body.clone();
        async move { admin.post_idempotent("/v1/runs", "same-key", &body).await }
    }))
    .await;
    let accepted: Vec<&Reply> = replies.iter().filter(|r| r.status == 202).collect();
    assert!(!accepted.is_empty());
    let run_ids: BTreeSet<String> = accepted.iter().map(|r| r.body["id"].to_string()).collect();
    assert_eq!(run_ids.len(), 1, "one run, however the requests interleave");
    for r in replies.iter().filter(|r| r.status != 202) {
        r.problem(409, "idempotency_key_in_progress");
    }
    let id = accepted[0].body["id"].as_str().unwrap();
    wait_terminal(&admin, id).await;
    assert_eq!(all_pages(&admin, "/v1/executions?mode=async", 50).await.len(), 1);

    // Concurrent label moves: every move answered, the history consistent with the final state.
    let replies = join_all((0..20).map(|i| {
        let admin = admin.clone();
        async move {
            let version = (i % 3 + 1).to_string();
            admin.put("/v1/workflows/echo/labels/production", &json!({"version": version})).await
        }
    }))
    .await;
    assert!(replies.into_iter().all(|r| r.status == 200));
    let label = admin.get("/v1/workflows/echo/versions/production").await.expect(200);
    let history = all_pages(&admin, "/v1/workflows/echo/labels/production/history", 200).await;
    assert_eq!(history[0]["to_version_id"], label["id"], "the newest move is where the label points");
    assert!(history.last().unwrap()["from_version_id"].is_null(), "the first event creates the label");
    for pair in history.windows(2) {
        assert_eq!(pair[0]["from_version_id"], pair[1]["to_version_id"], "moves chain without gaps");
    }
    h.service.assert_healthy().await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_database_and_one_queue() {
    const RUNS: usize = 24;
    let fake = FakeOpenAi::builder().latency(Duration::from_millis(100)).start().await.unwrap();
    let config = config().env("SGDE_RUN_CONCURRENCY", 3);
    let h = Harness::with(fake, config.clone()).await;
    // The second replica migrates nothing new and restores the same admin key.
    let second = Service::start(h.database_url(), &config).await;
    let replicas = [h.admin(), second.admin()];
    h.workflow("echo", &echo_spec()).await;

    // What one replica writes, the other reads.
    assert_eq!(replicas[1].get("/v1/workflows/echo").await.expect(200)["latest_version"], 1);
    let key = replicas[1].post("/v1/keys", &json!({"name": "shared", "scopes": ["read"]})).await.expect(201);
    h.service.api(key["token"].as_str()).get("/v1/workflows").await.expect(200);

    let submitted = join_all((0..RUNS).map(|i| {
        let api = replicas[i % 2].clone();
        async move {
            let r = api
                .post("/v1/runs", &json!({"workflow": "echo", "inputs": {"question": format!("r{i}")}}))
                .await;
            r.expect(202)["id"].as_str().unwrap().to_owned()
        }
    }))
    .await;
    for (i, id) in submitted.iter().enumerate() {
        // Poll through the other replica than the one that accepted it.
        let run = wait_terminal(&replicas[(i + 1) % 2], id).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["output"], format!("echo: r{i}"));
    }
    let logged = all_pages(&replicas[0], "/v1/executions?mode=async", 200).await;
    let ids: BTreeSet<&str> = logged.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!((logged.len(), ids.len()), (RUNS, RUNS), "each run recorded once");
    // Each question reached the model once: no run was executed by both replicas.
    let requests = h.fake.requests();
    for i in 0..RUNS {
        let question = format!("r{i}");
        let calls = requests
            .iter()
            .filter(|r| {
                r.body["messages"].as_array().and_then(|m| m.last()).is_some_and(|m| m["content"] == question)
            })
            .count();
        assert_eq!(calls, 1, "{question} ran {calls} times");
    }
    drop(second);
    h.finish().await;
}
