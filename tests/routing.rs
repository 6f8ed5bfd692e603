//! A/B routing, black-box: traffic policies split default traffic by weight, stick by routing
//! key, move the fewest keys when weights change, never let a shadow touch a response, keep a
//! history with rollback and atomic promotion; feedback and per-variant statistics agree with
//! the execution log.

mod common;

use std::collections::HashMap;

use common::{Api, Harness, echo_spec_with_prompt};
use futures::StreamExt;
use serde_json::{Value, json};

/// Concurrent requests the tests keep in flight.
const CONCURRENCY: usize = 32;

/// Workflow `ab` with versions 1 and 2 (and 3 for shadows), each answering with its own prefix.
async fn two_versions(h: &Harness) {
    h.workflow("ab", &echo_spec_with_prompt("v1 {{ inputs.question }}")).await;
    for v in [2, 3] {
        let spec = echo_spec_with_prompt(&format!("v{v} {{{{ inputs.question }}}}"));
        h.admin().post("/v1/workflows/ab/versions", &json!({"spec": spec})).await.expect(201);
    }
}

fn split(a: f64, b: f64) -> Value {
    json!({"variants": [{"version": "1", "weight": a}, {"version": "2", "weight": b}]})
}

/// Executes `ab` once per key (concurrently) and returns key → version number.
async fn assign(api: &Api, keys: &[String]) -> HashMap<String, i64> {
    futures::stream::iter(keys.iter().cloned())
        .map(|key| async move {
            let body = json!({"inputs": {"question": "q"}, "routing_key": key});
            let reply = api.post("/v1/workflows/ab/execute", &body).await.expect(200);
            assert_eq!(reply["version"]["chosen_by"], "policy", "{reply}");
            let number = reply["version"]["number"].as_i64().expect("a version number");
            // The answer comes from the version the response names.
            assert_eq!(reply["output"], format!("echo: v{number} q"), "{reply}");
            (key, number)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}

#[sgde_test_macros::both_backends]
async fn keyed_traffic_splits_by_weight_sticks_and_moves_as_little_as_possible() {
    let h = Harness::start().await;
    two_versions(&h).await;
    let admin = h.admin();
    let policy = admin.put("/v1/workflows/ab/policy", &split(90.0, 10.0)).await.expect(200);
    assert_eq!(policy["revision"], 1);

    let keys: Vec<String> = (0..10_000).map(|i| format!("customer-{i}")).collect();
    let first = assign(&admin, &keys).await;
    let share = first.values().filter(|v| **v == 1).count() as f64 / keys.len() as f64 * 100.0;
    assert!((share - 90.0).abs() <= 1.5, "version 1 got {share:.2}% of 10,000 keys under 90/10");

    // Sticky: the same keys again (a sample, by header this time) land where they did.
    let sample: Vec<String> = keys.iter().step_by(10).cloned().collect();
    let again: Vec<(String, i64)> = futures::stream::iter(sample.iter().cloned())
        .map(|key| {
            let admin = &admin;
            async move {
                let request = admin
                    .request(reqwest::Method::POST, "/v1/workflows/ab/execute")
                    .header("x-sgde-routing-key", &key)
                    .json(&json!({"inputs": {"question": "q"}}));
                let reply = admin.send(request).await.expect(200);
                (key, reply["version"]["number"].as_i64().unwrap_or_default())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for (key, number) in &again {
        assert_eq!(first[key], *number, "key {key} changed variant without a policy change");
    }

    // 90/10 → 80/20 moves about 10% of the keys, never more than 11%, and only 1 → 2.
    admin.put("/v1/workflows/ab/policy", &split(80.0, 20.0)).await.expect(200);
    let second = assign(&admin, &keys).await;
    let moved: Vec<&String> = keys.iter().filter(|k| first[*k] != second[*k]).collect();
    let moved_share = moved.len() as f64 / keys.len() as f64 * 100.0;
    assert!((8.5..=11.0).contains(&moved_share), "{moved_share:.2}% of keys moved on 90/10 → 80/20");
    assert!(moved.iter().all(|k| first[*k] == 1 && second[*k] == 2), "a key moved against the change");

    // Rollback restores the previous assignment exactly.
    let rolled = admin.post("/v1/workflows/ab/policy/rollback", &json!(null)).await.expect(200);
    assert_eq!(rolled["change"], "rollback");
    assert_eq!(rolled["variants"][0]["weight"], 90.0);
    let third = assign(&admin, &sample).await;
    for (key, number) in &third {
        assert_eq!(first[key], *number, "rollback did not return key {key} to its variant");
    }
    h.finish().await;
}

#[sgde_test_macros::both_backends]
async fn unkeyed_traffic_is_weighted_random_and_explicit_versions_bypass_the_policy() {
    let h = Harness::start().await;
    two_versions(&h).await;
    let admin = h.admin();
    admin.put("/v1/workflows/ab/policy", &split(50.0, 50.0)).await.expect(200);
    let counts: HashMap<i64, usize> = futures::stream::iter(0..400)
        .map(|_| {
            let admin = &admin;
            async move {
                let reply =
                    admin.post("/v1/workflows/ab/execute", &json!({"inputs": {"question": "q"}})).await;
                reply.expect(200)["version"]["number"].as_i64().unwrap_or_default()
            }
        })
        .buffer_unordered(CONCURRENCY)
        .fold(HashMap::new(), |mut m, v| async move {
            *m.entry(v).or_default() += 1;
            m
        })
        .await;
    // 400 fair coin flips: 200 ± 60 is more than 6 standard deviations.
    assert!(counts.values().all(|c| (140..=260).contains(c)), "{counts:?}");

    let pinned =
        admin.post("/v1/workflows/ab/execute", &json!({"inputs": {"question": "q"}, "version": "2"})).await;
    let pinned = pinned.expect(200);
    assert_eq!(pinned["version"]["chosen_by"], "version");
    admin.put("/v1/workflows/ab/labels/staging", &json!({"version": "1"})).await.expect(200);
    let labelled = admin
        .post("/v1/workflows/ab/execute", &json!({"inputs": {"question": "q"}, "label": "staging"}))
        .await;
    let labelled = labelled.expect(200);
    assert_eq!(
        (labelled["version"]["chosen_by"].as_str(), labelled["version"]["number"].as_i64()),
        (Some("label"), Some(1))
    );
    let log =
        admin.get(&format!("/v1/executions/{}", pinned["execution_id"].as_str().unwrap_or_default())).await;
    assert_eq!(log.expect(200)["route"]["chosen_by"], "version");

    // Async runs follow the policy too, and record it.
    let run = admin
        .post("/v1/runs", &json!({"workflow": "ab", "inputs": {"question": "q"}, "routing_key": "k"}))
        .await
        .expect(202);
    assert_eq!(run["route"]["chosen_by"], "policy");
    assert_eq!(run["route"]["keyed"], true);

    // Clearing the policy sends default traffic to `production`, else the latest version.
    admin.delete("/v1/workflows/ab/policy").await.expect(200);
    admin.get("/v1/workflows/ab/policy").await.problem(404, "not_found");
    let plain =
        admin.post("/v1/workflows/ab/execute", &json!({"inputs": {"question": "q"}})).await.expect(200);
    assert_eq!(
        (plain["version"]["chosen_by"].as_str(), plain["version"]["number"].as_i64()),
        (Some("default"), Some(3))
    );
    h.finish().await;
}

#[sgde_test_macros::both_backends]
async fn invalid_policies_are_refused_with_the_field_named() {
    let h = Harness::start().await;
    two_versions(&h).await;
    let admin = h.admin();
    admin.put("/v1/workflows/ab/labels/staging", &json!({"version": "1"})).await.expect(200);
    let cases = [
        (split(90.0, 5.0), "/variants", "sum to 100"),
        (split(90.005, 9.995), "/variants/0/weight", "two decimals"),
        (split(0.0, 100.0), "/variants/0/weight", "greater than 0"),
        (split(-10.0, 110.0), "/variants/0/weight", "greater than 0"),
        (json!({"variants": []}), "/variants", "at least one"),
        (
            json!({"variants": [{"version": "1", "weight": 50}, {"version": "1", "weight": 50}]}),
            "/variants/1/version",
            "twice",
        ),
        (
            json!({"variants": [{"version": "1", "weight": 50}, {"version": "staging", "weight": 50}]}),
            "/variants/1/version",
            "already listed",
        ),
        (json!({"variants": [{"version": "9", "weight": 100}]}), "/variants/0/version", "no version `9`"),
        (json!({"variants": [{"version": "1", "weight": 100}], "shadow": "1"}), "/shadow", "variant"),
        (json!({"variants": [{"version": "1", "weight": 100}], "shadow": "nope"}), "/shadow", "no version"),
        (json!({"variants": [{"version": "1", "weight": "100"}]}), "/variants/0/weight", ""),
        (json!({"variants": [{"version": "1", "weight": 100, "extra": 1}]}), "/variants/0", ""),
    ];
    for (body, pointer, words) in cases {
        let reply = admin.put("/v1/workflows/ab/policy", &body).await;
        assert_eq!(reply.status, 422, "{body}: {}", reply.text);
        assert!(reply.pointers().iter().any(|p| p.starts_with(pointer)), "{body}: {:?}", reply.pointers());
        assert!(reply.text.contains(words), "{body}: {}", reply.text);
    }
    // Nothing was written.
    admin.get("/v1/workflows/ab/policy").await.problem(404, "not_found");
    let history = admin.get("/v1/workflows/ab/policy/history").await.expect(200);
    assert_eq!(history["items"], json!([]));
    admin.put("/v1/workflows/nope/policy", &split(50.0, 50.0)).await.problem(404, "not_found");
    admin.post("/v1/workflows/ab/policy/rollback", &json!(null)).await.problem(404, "not_found");
    admin.delete("/v1/workflows/ab/policy").await.problem(404, "not_found");
    // Bad routing keys.
    let long = "k".repeat(300);
    let reply = admin
        .post("/v1/workflows/ab/execute", &json!({"inputs": {"question": "q"}, "routing_key": long}))
        .await;
    assert_eq!(reply.pointers(), vec!["/routing_key"]);
    let request = admin
        .request(reqwest::Method::POST, "/v1/workflows/ab/execute")
        .header("x-sgde-routing-key", "a")
        .json(&json!({"inputs": {"question": "q"}, "routing_key": "b"}));
    assert_eq!(admin.send(request).await.pointers(), vec!["/routing_key"]);
    h.finish().await;
}

#[sgde_test_macros::both_backends]
async fn concurrent_policy_updates_always_leave_a_policy_summing_to_100() {
    let h = Harness::start().await;
    two_versions(&h).await;
    let admin = h.admin();
    let statuses: Vec<u16> = futures::stream::iter(0..40)
        .map(|i| {
            let admin = &admin;
            async move {
                // Every fourth update is invalid (sums to 99).
                let a = f64::from(5 + (i * 7) % 90);
                let b = if i % 4 == 3 { 99.0 - a } else { 100.0 - a };
                admin.put("/v1/workflows/ab/policy", &split(a, b)).await.status
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| [200, 422].contains(s)), "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 422).count(), 10);
    let mut revisions = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/workflows/ab/policy/history?limit=7&cursor={c}"),
            None => "/v1/workflows/ab/policy/history?limit=7".to_owned(),
        };
        let page = admin.get(&path).await.expect(200);
        revisions.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert!(!revisions.is_empty());
    for (i, policy) in revisions.iter().enumerate() {
        // Gap-free, newest first.
        assert_eq!(policy["revision"].as_u64(), Some((revisions.len() - i) as u64));
        let variants = policy["variants"].as_array().cloned().unwrap_or_default();
        let weight: f64 = variants.iter().map(|v| v["weight"].as_f64().unwrap_or_default()).sum();
        assert!((weight - 100.0).abs() < 1e-9, "revision {} sums to {weight}", policy["revision"]);
        let buckets: u64 = variants
            .iter()
            .flat_map(|v| v["buckets"].as_array().cloned().unwrap_or_default())
            .map(|r| r["end"].as_u64().unwrap_or_default() - r["start"].as_u64().unwrap_or_default())
            .sum();
        assert_eq!(buckets, 10_000, "revision {} covers {buckets} buckets", policy["revision"]);
        assert!(policy["created_by"].is_string(), "{policy}");
    }
    let current = admin.get("/v1/workflows/ab/policy").await.expect(200);
    assert_eq!(current["revision"], revisions[0]["revision"]);
    h.finish().await;
}

#[sgde_test_macros::both_backends]
async fn promotion_moves_all_traffic_and_the_production_label_together() {
    let h = Harness::start().await;
    two_versions(&h).await;
    let admin = h.admin();
    admin.put("/v1/workflows/ab/policy", &split(70.0, 30.0)).await.expect(200);
    let promoted = admin.post("/v1/workflows/ab/policy/promote", &json!({"version": "2"})).await.expect(200);
    assert_eq!(promoted["policy"]["change"], "promote");
    assert_eq!(promoted["policy"]["variants"].as_array().map(Vec::len), Some(1));
    assert_eq!(promoted["policy"]["variants"][0]["weight"], 100.0);
    assert_eq!(promoted["label"]["label"]["name"], "production");
    assert_eq!(promoted["label"]["label"]["version_number"], 2);
    let labels = admin.get("/v1/workflows/ab/labels").await.expect(200);
    assert_eq!(labels["items"][0]["version_number"], 2);
    for key in ["a", "b", "c", "d"] {
        let reply = admin
            .post("/v1/workflows/ab/execute", &json!({"inputs": {"question": "q"}, "routing_key": key}))
            .await
            .expect(200);
        assert_eq!(reply["version"]["number"], 2);
    }
    admin
        .post("/v1/workflows/ab/policy/promote", &json!({"version": "7"}))
        .await
        .problem(422, "invalid_request");
    let history = admin.get("/v1/workflows/ab/policy/history").await.expect(200);
    let changes: Vec<&str> =
        history["items"].as_array().into_iter().flatten().filter_map(|p| p["change"].as_str()).collect();
    assert_eq!(changes, vec!["promote", "set"]);
    h.finish().await;
}

#[sgde_test_macros::both_backends]
async fn a_shadow_never_changes_a_response_and_is_recorded_for_comparison() {
    let h = Harness::start().await;
    two_versions(&h).await;
    let admin = h.admin();
    let policy = json!({"variants": [{"version": "1", "weight": 100}], "shadow": "3"});
    let set = admin.put("/v1/workflows/ab/policy", &policy).await.expect(200);
    assert_eq!(set["shadow"]["version_number"], 3);
    let mut primaries = Vec::new();
    for i in 0..20 {
        let reply = admin
            .post("/v1/workflows/ab/execute", &json!({"inputs": {"question": format!("q{i}")}}))
            .await
            .expect(200);
        assert_eq!(reply["output"], format!("echo: v1 q{i}"));
        assert_eq!(reply["version"]["number"], 1);
        primaries.push(reply["execution_id"].as_str().unwrap_or_default().to_owned());
    }
    // The shadows finish in the background; wait for their records.
    let mut shadows = Vec::new();
    for _ in 0..100 {
        let log = admin.get("/v1/executions?workflow=ab&limit=200").await.expect(200);
        shadows = log["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["route"]["chosen_by"] == "shadow")
            .cloned()
            .collect();
        if shadows.len() == primaries.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(shadows.len(), primaries.len(), "every primary got a recorded shadow");
    for shadow in &shadows {
        let primary = shadow["route"]["primary_execution_id"].as_str().unwrap_or_default();
        assert!(primaries.iter().any(|p| p == primary), "{shadow}");
        assert!(shadow["output"].as_str().is_some_and(|o| o.starts_with("echo: v3 q")), "{shadow}");
    }
    let stats = admin.get("/v1/workflows/ab/stats").await.expect(200);
    let shadow_row =
        stats["variants"].as_array().into_iter().flatten().find(|v| v["stats"]["path"] == "shadow").cloned();
    assert_eq!(shadow_row.map(|r| r["stats"]["requests"].clone()), Some(json!(20)));
    h.finish().await;
}

#[sgde_test_macros::both_backends]
async fn feedback_and_statistics_agree_with_a_recount_of_the_execution_log() {
    let h = Harness::start().await;
    two_versions(&h).await;
    let admin = h.admin();
    admin.put("/v1/workflows/ab/policy", &split(60.0, 40.0)).await.expect(200);
    let executions: Vec<Value> = futures::stream::iter(0..120)
        .map(|i| {
            let admin = &admin;
            async move {
                let body =
                    json!({"inputs": {"question": format!("q{i}")}, "routing_key": format!("user-{i}")});
                admin.post("/v1/workflows/ab/execute", &body).await.expect(200)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    // Feedback on most executions: version 2 is judged correct far more often.
    let mut expected: HashMap<i64, (u64, u64, Vec<f64>)> = HashMap::new();
    for (i, e) in executions.iter().enumerate() {
        if i % 6 == 5 {
            continue;
        }
        let version = e["version"]["number"].as_i64().unwrap_or_default();
        let correct = if version == 2 { i % 10 != 0 } else { i % 3 == 0 };
        let score = if correct { 0.9 } else { 0.2 } - (i % 5) as f64 * 0.01;
        let id = e["execution_id"].as_str().unwrap_or_default();
        let body = json!({"correct": correct, "score": score, "comment": "judged"});
        let path = format!("/v1/executions/{id}/feedback");
        let first = admin.post(&path, &body).await.expect(201);
        assert_eq!(first["correct"], correct);
        // A retry replaces rather than adds.
        admin.post(&path, &body).await.expect(200);
        let entry = expected.entry(version).or_default();
        entry.0 += 1;
        entry.1 += u64::from(correct);
        entry.2.push(score);
    }

    // Recount from the execution log (through the API).
    let log = admin.get("/v1/executions?workflow=ab&limit=200").await.expect(200);
    let rows: Vec<Value> = log["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 120);
    let stats = admin.get("/v1/workflows/ab/stats").await.expect(200);
    assert_eq!(stats["policy_revision"], 1);
    let variants = stats["variants"].as_array().cloned().unwrap_or_default();
    assert_eq!(variants.len(), 2, "{stats}");
    for v in &variants {
        let number = v["stats"]["version_number"].as_i64().unwrap_or_default();
        let version_id = v["stats"]["version_id"].as_str().unwrap_or_default();
        let mine: Vec<&Value> = rows.iter().filter(|r| r["version_id"] == version_id).collect();
        assert_eq!(v["stats"]["requests"].as_u64(), Some(mine.len() as u64));
        let failed = mine.iter().filter(|r| r["status"] == "failed").count() as u64;
        assert_eq!(v["stats"]["errors"].as_u64(), Some(failed));
        let tokens: f64 = mine
            .iter()
            .map(|r| {
                r["usage"]["prompt_tokens"].as_f64().unwrap_or_default()
                    + r["usage"]["completion_tokens"].as_f64().unwrap_or_default()
            })
            .sum::<f64>()
            / mine.len() as f64;
        assert!((v["stats"]["tokens_per_run"].as_f64().unwrap_or_default() - tokens).abs() < 1e-9);
        let mut latencies: Vec<f64> = mine.iter().filter_map(|r| r["latency_us"].as_f64()).collect();
        latencies.sort_by(f64::total_cmp);
        let p50 = percentile(&latencies, 0.5) / 1000.0;
        assert!(
            (v["stats"]["latency_p50_ms"].as_f64().unwrap_or_default() - p50).abs() < 1e-6,
            "{v} vs {p50}"
        );
        let (n, correct, scores) = &expected[&number];
        assert_eq!(v["stats"]["feedback_count"].as_u64(), Some(*n));
        assert_eq!(v["stats"]["correct_n"].as_u64(), Some(*n));
        assert_eq!(v["stats"]["correct"].as_u64(), Some(*correct));
        let mean = scores.iter().sum::<f64>() / scores.len() as f64;
        assert!((v["stats"]["score_mean"].as_f64().unwrap_or_default() - mean).abs() < 1e-9);
        assert_eq!(v["weight"].as_f64(), Some(if number == 1 { 60.0 } else { 40.0 }));
        if number == 1 {
            assert_eq!(v["control"], true);
            assert!(v["correctness"].is_null());
        } else {
            assert_eq!(v["correctness"]["test"], "two_proportion_z");
            assert_eq!(v["correctness"]["verdict"], "better", "{v}");
            assert_eq!(v["scores"]["test"], "welch_t");
            assert_eq!(v["scores"]["verdict"], "better", "{v}");
        }
    }

    // Bad feedback and windows.
    let id = executions[0]["execution_id"].as_str().unwrap_or_default();
    let path = format!("/v1/executions/{id}/feedback");
    assert_eq!(admin.post(&path, &json!({"score": 1.5})).await.pointers(), vec!["/score"]);
    assert_eq!(admin.post(&path, &json!({"comment": "?"})).await.pointers(), vec!["/correct"]);
    let unknown = format!("/v1/executions/{}/feedback", uuid::Uuid::now_v7());
    admin.post(&unknown, &json!({"correct": true})).await.problem(404, "not_found");
    let backwards = "/v1/workflows/ab/stats?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z";
    assert_eq!(admin.get(backwards).await.pointers(), vec!["/query/from"]);

    // The same numbers reach Prometheus.
    let metrics = h.service.anonymous().get("/metrics").await;
    assert!(metrics.text.contains("sgde_variant_requests_1h{"), "{}", metrics.text);
    assert!(metrics.text.contains("sgde_route_decisions_total{"), "route decisions are counted");
    assert!(metrics.text.contains("sgde_feedback_total{"), "feedback is counted");
    h.finish().await;
}

/// Linear interpolation between closest ranks, as Postgres' `percentile_cont`.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}
