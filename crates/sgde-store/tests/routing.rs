//! Traffic policies, feedback and per-variant statistics: the store's contract, which a second
//! backend must meet as well.

use chrono::{TimeDelta, Utc};
use serde_json::json;
use sgde_store::testing::TestDatabase;
use sgde_store::{
    ExecutionOutcome, ExecutionStatus, ExecutionUsage, NewExecution, NewFeedback, NewVersion, NewWorkflow,
    PageRequest, PolicyChange, PolicyDraft, RoutePath, Store, StoreError, Version, Workflow,
};
use uuid::Uuid;

async fn three_versions(s: &dyn Store) -> (Workflow, [Version; 3]) {
    let new = NewWorkflow { name: "ab".into(), description: None };
    let (wf, v1) =
        s.create_workflow_with_version(&new, &NewVersion::manual(json!({ "v": 1 }), "h1")).await.unwrap();
    let (v2, _) = s.create_version(wf.id, &NewVersion::manual(json!({ "v": 2 }), "h2")).await.unwrap();
    let (v3, _) = s.create_version(wf.id, &NewVersion::manual(json!({ "v": 3 }), "h3")).await.unwrap();
    (wf, [v1, v2, v3])
}

fn buckets_of(policy: &sgde_store::TrafficPolicy) -> Vec<u32> {
    policy.variants.iter().map(|v| v.buckets.iter().map(|r| r.end - r.start).sum()).collect()
}

#[sgde_test_macros::both_backends]
async fn policies_are_revisions_with_rollback_promote_and_clear() {
    let db = TestDatabase::new().await.unwrap();
    let s = &*db.store;
    let (wf, [v1, v2, v3]) = three_versions(s).await;
    assert_eq!(s.current_policy(wf.id).await.unwrap(), None);
    let target = s.default_target("ab").await.unwrap();
    assert_eq!((target.version_id, target.policy), (v3.id, None));

    let draft = PolicyDraft { variants: vec![(v1.id, 9_000), (v2.id, 1_000)], shadow: Some(v3.id) };
    let first = s.set_policy(wf.id, &draft, Some("alice")).await.unwrap();
    assert_eq!(
        (first.revision, first.change, first.created_by.as_deref()),
        (1, PolicyChange::Set, Some("alice"))
    );
    assert_eq!(buckets_of(&first), vec![9_000, 1_000]);
    assert_eq!(first.variants[0].weight, 90.0);
    assert_eq!(first.shadow.as_ref().map(|s| s.version_number), Some(3));
    // The same split again writes nothing.
    assert_eq!(s.set_policy(wf.id, &draft, Some("bob")).await.unwrap(), first);

    let second = s
        .set_policy(
            wf.id,
            &PolicyDraft { variants: vec![(v1.id, 8_000), (v2.id, 2_000)], shadow: None },
            None,
        )
        .await
        .unwrap();
    assert_eq!((second.revision, second.salt.as_str()), (2, first.salt.as_str()));
    // Version 2 keeps every bucket it had.
    let kept = &first.variants[1].buckets;
    assert!(
        kept.iter().all(|r| second.variants[1].buckets.iter().any(|s| s.start <= r.start && r.end <= s.end))
    );

    let target = s.default_target("ab").await.unwrap();
    assert_eq!(target.policy.as_ref().map(|p| p.revision), Some(2));

    let rolled = s.rollback_policy(wf.id, Some("carol")).await.unwrap();
    assert_eq!((rolled.revision, rolled.change), (3, PolicyChange::Rollback));
    assert_eq!(rolled.variants, first.variants);
    assert_eq!(rolled.shadow, first.shadow);

    let promotion = s.promote_variant(wf.id, v2.id, Some("dave")).await.unwrap();
    assert_eq!((promotion.policy.revision, promotion.policy.change), (4, PolicyChange::Promote));
    assert_eq!(buckets_of(&promotion.policy), vec![10_000]);
    assert_eq!(promotion.label.label.version_id, v2.id);
    let labels = s.list_labels(wf.id).await.unwrap();
    assert_eq!((labels[0].name.as_str(), labels[0].version_id), ("production", v2.id));

    let cleared = s.clear_policy(wf.id, None).await.unwrap();
    assert_eq!((cleared.revision, cleared.change, cleared.variants.len()), (5, PolicyChange::Clear, 0));
    assert_eq!(s.current_policy(wf.id).await.unwrap(), None);
    assert!(matches!(s.clear_policy(wf.id, None).await, Err(StoreError::NotFound { what: "policy" })));
    // Routing off: the default is `production` again.
    assert_eq!(s.default_target("ab").await.unwrap().version_id, v2.id);
    assert!(s.active_policies().await.unwrap().is_empty());

    let page = s.policy_history(wf.id, &PageRequest::first(2)).await.unwrap();
    assert_eq!(page.items.iter().map(|p| p.revision).collect::<Vec<_>>(), vec![5, 4]);
    let rest = s.policy_history(wf.id, &PageRequest::after(10, page.next_cursor.unwrap())).await.unwrap();
    assert_eq!(rest.items.iter().map(|p| p.revision).collect::<Vec<_>>(), vec![3, 2, 1]);
    assert_eq!(rest.next_cursor, None);
    db.drop_database().await.unwrap();
}

#[sgde_test_macros::both_backends]
async fn invalid_drafts_write_nothing() {
    let db = TestDatabase::new().await.unwrap();
    let s = &*db.store;
    let (wf, [v1, v2, _]) = three_versions(s).await;
    let (other, _) = s
        .create_workflow_with_version(
            &NewWorkflow { name: "other".into(), description: None },
            &NewVersion::manual(json!({ "v": 9 }), "h9"),
        )
        .await
        .unwrap();
    let foreign = s.get_version(other.id, &sgde_store::VersionSelector::Latest).await.unwrap();
    let cases = [
        (PolicyDraft { variants: vec![(v1.id, 9_000), (v2.id, 900)], shadow: None }, "weights"),
        (PolicyDraft { variants: vec![], shadow: None }, "weights"),
        (PolicyDraft { variants: vec![(v1.id, 10_000), (v2.id, 0)], shadow: None }, "weights"),
        (PolicyDraft { variants: vec![(v1.id, 5_000), (v1.id, 5_000)], shadow: None }, "variants"),
        (PolicyDraft { variants: vec![(foreign.id, 10_000)], shadow: None }, "version"),
        (PolicyDraft { variants: vec![(v1.id, 10_000)], shadow: Some(Uuid::now_v7()) }, "version"),
    ];
    for (draft, what) in cases {
        let err = s.set_policy(wf.id, &draft, None).await.unwrap_err();
        assert!(err.to_string().contains(what), "{draft:?}: {err}");
    }
    assert!(s.policy_history(wf.id, &PageRequest::first(10)).await.unwrap().items.is_empty());
    assert!(matches!(
        s.rollback_policy(wf.id, None).await,
        Err(StoreError::NotFound { what: "previous policy" })
    ));
    assert!(matches!(
        s.set_policy(Uuid::now_v7(), &PolicyDraft { variants: vec![(v1.id, 10_000)], shadow: None }, None)
            .await,
        Err(StoreError::NotFound { what: "workflow" })
    ));
    db.drop_database().await.unwrap();
}

#[sgde_test_macros::both_backends]
async fn feedback_is_one_record_per_execution_and_statistics_follow_the_log() {
    let db = TestDatabase::new().await.unwrap();
    let s = &*db.store;
    let (wf, [v1, v2, v3]) = three_versions(s).await;
    let mut ids = Vec::new();
    for (i, (version, path, status, latency)) in [
        (&v1, "policy", ExecutionStatus::Succeeded, 1_000),
        (&v1, "policy", ExecutionStatus::Succeeded, 3_000),
        (&v1, "policy", ExecutionStatus::Failed, 2_000),
        (&v2, "policy", ExecutionStatus::Succeeded, 5_000),
        (&v3, "shadow", ExecutionStatus::Succeeded, 7_000),
        (&v1, "version", ExecutionStatus::Succeeded, 9_000),
    ]
    .into_iter()
    .enumerate()
    {
        let outcome = ExecutionOutcome {
            status,
            output: (status == ExecutionStatus::Succeeded).then(|| json!(i)),
            error: (status == ExecutionStatus::Failed).then(|| json!({ "code": "node_failed" })),
            trace: None,
            latency_us: Some(latency),
            usage: ExecutionUsage {
                prompt_tokens: 10 * (i as u64 + 1),
                completion_tokens: 5,
                cost_usd: 0.001,
            },
        };
        let new = NewExecution::finished(wf.id, version.id, json!({ "q": i }), Utc::now(), outcome)
            .with_route(json!({ "chosen_by": path }));
        ids.push(s.insert_execution(new).await.unwrap().id);
    }
    let judged = NewFeedback { correct: Some(true), score: Some(0.75), comment: Some("good".into()) };
    let (first, created) = s.put_feedback(ids[0], &judged, Some("app")).await.unwrap();
    assert!(created);
    let (again, created) = s.put_feedback(ids[0], &judged, Some("app")).await.unwrap();
    assert!(!created);
    assert_eq!(again, first);
    let changed = NewFeedback { correct: Some(false), score: None, comment: None };
    let (replaced, _) = s.put_feedback(ids[0], &changed, Some("app")).await.unwrap();
    assert_eq!((replaced.correct, replaced.score), (Some(false), None));
    s.put_feedback(ids[1], &NewFeedback { correct: Some(true), score: Some(1.0), comment: None }, None)
        .await
        .unwrap();
    assert!(matches!(
        s.put_feedback(Uuid::now_v7(), &judged, None).await,
        Err(StoreError::NotFound { what: "execution" })
    ));
    assert!(matches!(
        s.put_feedback(ids[2], &NewFeedback { correct: None, score: None, comment: None }, None).await,
        Err(StoreError::Invalid { .. })
    ));
    assert_eq!(s.get_feedback(ids[1]).await.unwrap().score, Some(1.0));

    let now = Utc::now();
    let stats = s.variant_stats(wf.id, now - TimeDelta::hours(1), now + TimeDelta::seconds(1)).await.unwrap();
    // Explicitly chosen executions are not part of the experiment.
    assert_eq!(stats.len(), 3, "{stats:?}");
    let one = stats.iter().find(|v| v.version_id == v1.id).unwrap();
    assert_eq!((one.path, one.requests, one.errors), (RoutePath::Policy, 3, 1));
    assert_eq!(one.latency_p50_ms, Some(2.0));
    assert_eq!(one.tokens_per_run, Some((15.0 + 25.0 + 35.0) / 3.0));
    assert_eq!((one.feedback_count, one.correct, one.correct_n, one.score_n), (2, 1, 2, 1));
    // Feedback mean: the score where given (1.0), else correct as 0/1 (0).
    assert_eq!(one.feedback_mean, Some(0.5));
    let shadow = stats.iter().find(|v| v.path == RoutePath::Shadow).unwrap();
    assert_eq!((shadow.version_id, shadow.requests), (v3.id, 1));
    let empty = s.variant_stats(wf.id, now - TimeDelta::hours(3), now - TimeDelta::hours(2)).await.unwrap();
    assert!(empty.is_empty());
    db.drop_database().await.unwrap();
}
