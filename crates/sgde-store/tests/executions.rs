//! The execution log and asynchronous runs.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::json;
use sgde_store::testing::TestDatabase;
use sgde_store::{
    ExecutionFilter, ExecutionMode, ExecutionOutcome, ExecutionStatus, ExecutionUsage, FailOutcome, FollowUp,
    JobStatus, NewExecution, NewVersion, NewWorkflow, PageRequest, RUN_JOB_KIND, Retry, RunCancel,
    RunPayload, Store, StoreError, Version, Workflow,
};
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(60);

async fn workflow_with_versions(s: &dyn Store, name: &str) -> (Workflow, Version, Version) {
    let new = NewWorkflow { name: name.into(), description: None };
    let (wf, v1) =
        s.create_workflow_with_version(&new, &NewVersion::manual(json!({ "v": 1 }), "h1")).await.unwrap();
    let (v2, _) = s.create_version(wf.id, &NewVersion::manual(json!({ "v": 2 }), "h2")).await.unwrap();
    (wf, v1, v2)
}

fn finished(wf: &Workflow, v: &Version, status: ExecutionStatus, n: i64) -> NewExecution {
    let outcome = ExecutionOutcome {
        status,
        output: (status == ExecutionStatus::Succeeded).then(|| json!({ "answer": n })),
        error: (status == ExecutionStatus::Failed).then(|| json!({ "code": "node_failed" })),
        trace: Some(json!({ "nodes": { "solve": { "raw": "42" } } })),
        latency_us: Some(1_500),
        usage: ExecutionUsage { prompt_tokens: 100, completion_tokens: 20, cost_usd: 0.0001 },
    };
    NewExecution::finished(wf.id, v.id, json!({ "q": n }), Utc::now(), outcome)
}

#[sgde_test_macros::both_backends]
async fn insert_get_and_refuse_inconsistent_versions() {
    let db = TestDatabase::new().await.unwrap();
    let s = &*db.store;
    let (wf, v1, _) = workflow_with_versions(s, "wf").await;
    let new = finished(&wf, &v1, ExecutionStatus::Succeeded, 7).with_route(json!({ "label": "production" }));
    let inserted = s.insert_execution(new.clone()).await.unwrap();
    assert_eq!((inserted.mode, inserted.status), (ExecutionMode::Sync, ExecutionStatus::Succeeded));
    assert!(inserted.finished_at.is_some());

    let got = s.get_execution(inserted.id).await.unwrap();
    assert_eq!(got, inserted, "the returned record is what was stored");
    assert_eq!(got.trace, new.outcome.as_ref().unwrap().trace);
    assert_eq!(got.usage.prompt_tokens, 100);

    // Same id twice, a version of another workflow, a non-terminal outcome.
    assert!(matches!(s.insert_execution(new).await, Err(StoreError::Conflict { what: "execution id" })));
    let (other, ov1, _) = workflow_with_versions(s, "other").await;
    let mixed = finished(&wf, &ov1, ExecutionStatus::Succeeded, 1);
    assert!(matches!(s.insert_execution(mixed).await, Err(StoreError::NotFound { what: "version" })));
    let mut running = finished(&other, &ov1, ExecutionStatus::Succeeded, 1);
    running.outcome.as_mut().unwrap().status = ExecutionStatus::Running;
    assert!(matches!(s.insert_execution(running).await, Err(StoreError::Invalid { .. })));
    assert!(matches!(s.get_execution(Uuid::now_v7()).await, Err(StoreError::NotFound { what: "execution" })));
    db.drop_database().await.unwrap();
}

#[sgde_test_macros::both_backends]
async fn list_filters_and_paginates_newest_first() {
    let db = TestDatabase::new().await.unwrap();
    let s = &*db.store;
    let (a, a1, a2) = workflow_with_versions(s, "a").await;
    let (b, b1, _) = workflow_with_versions(s, "b").await;
    let mut ids = Vec::new();
    for n in 0..12 {
        let (wf, v) = match n % 3 {
            0 => (&a, &a1),
            1 => (&a, &a2),
            _ => (&b, &b1),
        };
        let status = if n % 4 == 0 { ExecutionStatus::Failed } else { ExecutionStatus::Succeeded };
        ids.push(s.insert_execution(finished(wf, v, status, n)).await.unwrap().id);
    }
    let queued = s.submit_run(NewExecution::queued(b.id, b1.id, json!({})), 3, None).await.unwrap().0;

    // Everything, two pages of 7 + 6, newest first, no traces.
    let all = ExecutionFilter::default();
    let p1 = s.list_executions(&all, &PageRequest::first(7)).await.unwrap();
    let p2 = s.list_executions(&all, &PageRequest::after(7, p1.next_cursor.clone().unwrap())).await.unwrap();
    assert!(p2.next_cursor.is_none());
    let listed: Vec<Uuid> = p1.items.iter().chain(&p2.items).map(|e| e.id).collect();
    let mut expected = ids.clone();
    expected.push(queued.id);
    expected.reverse();
    assert_eq!(listed, expected);
    assert!(p1.items.iter().all(|e| e.trace.is_none()), "listings leave traces out");

    let count =
        |f: ExecutionFilter| async move { s.list_executions(&f, &PageRequest::first(100)).await.unwrap() };
    assert_eq!(count(ExecutionFilter { workflow_id: Some(a.id), ..all.clone() }).await.items.len(), 8);
    assert_eq!(count(ExecutionFilter { version_id: Some(a2.id), ..all.clone() }).await.items.len(), 4);
    let failed = count(ExecutionFilter { status: Some(ExecutionStatus::Failed), ..all.clone() }).await;
    assert_eq!(failed.items.len(), 3);
    assert!(failed.items.iter().all(|e| e.status == ExecutionStatus::Failed));
    let async_runs = count(ExecutionFilter { mode: Some(ExecutionMode::Async), ..all.clone() }).await;
    assert_eq!(async_runs.items.iter().map(|e| e.id).collect::<Vec<_>>(), [queued.id]);
    let combined = ExecutionFilter {
        workflow_id: Some(a.id),
        version_id: Some(a1.id),
        status: Some(ExecutionStatus::Failed),
        ..all.clone()
    };
    assert_eq!(count(combined).await.items.len(), 1, "n = 0");

    // Time range: rows are stamped by the database clock, so bound by a stored timestamp.
    let pivot = s.get_execution(ids[6]).await.unwrap().created_at;
    let since = count(ExecutionFilter { created_after: Some(pivot), ..all.clone() }).await;
    assert!(since.items.iter().all(|e| e.created_at >= pivot));
    assert!(since.items.iter().any(|e| e.id == ids[6]), "lower bound is inclusive");
    let before = count(ExecutionFilter { created_before: Some(pivot), ..all.clone() }).await;
    assert!(before.items.iter().all(|e| e.created_at < pivot));
    assert_eq!(since.items.len() + before.items.len(), 13);
    let future = Utc::now() + TimeDelta::hours(1);
    assert!(count(ExecutionFilter { created_after: Some(future), ..all.clone() }).await.items.is_empty());

    // Paginating a filtered listing.
    let f = ExecutionFilter { workflow_id: Some(a.id), ..all.clone() };
    let mut seen = Vec::new();
    let mut page = PageRequest::first(3);
    loop {
        let got = s.list_executions(&f, &page).await.unwrap();
        seen.extend(got.items.iter().map(|e| e.id));
        match got.next_cursor {
            Some(c) => page = PageRequest::after(3, c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8);
    // A cursor of another listing is refused.
    let versions = s.list_versions(a.id, &PageRequest::first(1)).await.unwrap();
    assert!(matches!(
        s.list_executions(&all, &PageRequest::after(3, versions.next_cursor.unwrap())).await,
        Err(StoreError::Invalid { what: "cursor" })
    ));
    db.drop_database().await.unwrap();
}

#[sgde_test_macros::both_backends]
async fn runs_submit_claim_finish_exactly_once() {
    let db = TestDatabase::new().await.unwrap();
    let s = &*db.store;
    let (wf, v1, _) = workflow_with_versions(s, "wf").await;
    let (execution, job) =
        s.submit_run(NewExecution::queued(wf.id, v1.id, json!({ "q": 1 })), 3, None).await.unwrap();
    assert_eq!(
        (execution.status, execution.mode, execution.job_id),
        (ExecutionStatus::Queued, ExecutionMode::Async, Some(job.id))
    );
    assert_eq!(job.kind, RUN_JOB_KIND);
    let payload: RunPayload = serde_json::from_value(job.payload.clone()).unwrap();
    assert_eq!(payload.execution_id, execution.id);

    // Worker A claims and starts, then stalls; its lease expires and B takes over.
    s.claim(&[RUN_JOB_KIND], "a", LEASE).await.unwrap().unwrap();
    assert!(s.start_execution(execution.id).await.unwrap());
    db.expire_lease(job.id).await.unwrap();
    s.claim(&[RUN_JOB_KIND], "b", LEASE).await.unwrap().unwrap();
    assert!(s.start_execution(execution.id).await.unwrap(), "re-start of a re-claimed run");

    let mut outcome = ExecutionOutcome::succeeded(json!({ "answer": 42 }));
    outcome.latency_us = Some(10);
    assert!(s.finish_run(job.id, "b", execution.id, &outcome).await.unwrap());
    // A's late result is refused and changes nothing.
    let stale = ExecutionOutcome::succeeded(json!({ "answer": -1 }));
    assert!(!s.finish_run(job.id, "a", execution.id, &stale).await.unwrap());

    let done = s.get_execution(execution.id).await.unwrap();
    assert_eq!((done.status, done.output), (ExecutionStatus::Succeeded, Some(json!({ "answer": 42 }))));
    assert!(done.started_at.is_some() && done.finished_at.is_some());
    assert_eq!(s.get_job(job.id).await.unwrap().status, JobStatus::Succeeded);
    assert!(!s.finish_execution(execution.id, &stale).await.unwrap(), "terminal exactly once");
    assert!(!s.start_execution(execution.id).await.unwrap());

    assert!(matches!(
        s.submit_run(NewExecution::finished(wf.id, v1.id, json!({}), Utc::now(), stale), 3, None).await,
        Err(StoreError::Invalid { .. })
    ));
    db.drop_database().await.unwrap();
}

#[sgde_test_macros::both_backends]
async fn failed_runs_retry_then_fail_the_execution() {
    let db = TestDatabase::new().await.unwrap();
    let s = &*db.store;
    let (wf, v1, _) = workflow_with_versions(s, "wf").await;
    let (execution, job) =
        s.submit_run(NewExecution::queued(wf.id, v1.id, json!({})), 2, None).await.unwrap();

    s.claim(&[RUN_JOB_KIND], "w", LEASE).await.unwrap().unwrap();
    s.start_execution(execution.id).await.unwrap();
    let err = json!({ "code": "model_unavailable" });
    let first = s.fail_run(job.id, "w", execution.id, &err, Retry::After(Duration::ZERO)).await.unwrap();
    assert!(matches!(first, FailOutcome::Retrying { .. }));
    assert_eq!(s.get_execution(execution.id).await.unwrap().status, ExecutionStatus::Queued, "waiting again");

    s.claim(&[RUN_JOB_KIND], "w", LEASE).await.unwrap().unwrap();
    s.start_execution(execution.id).await.unwrap();
    assert_eq!(
        s.fail_run(job.id, "w", execution.id, &err, Retry::After(Duration::ZERO)).await.unwrap(),
        FailOutcome::Failed
    );
    let failed = s.get_execution(execution.id).await.unwrap();
    assert_eq!((failed.status, failed.error), (ExecutionStatus::Failed, Some(err.clone())));
    assert_eq!(
        s.fail_run(job.id, "w", execution.id, &err, Retry::Never).await.unwrap(),
        FailOutcome::NotOwner
    );
    db.drop_database().await.unwrap();
}

#[sgde_test_macros::both_backends]
async fn cancelling_runs() {
    let db = TestDatabase::new().await.unwrap();
    let s = &*db.store;
    let (wf, v1, _) = workflow_with_versions(s, "wf").await;

    // Queued: cancelled at once, never claimed.
    let (queued, queued_job) =
        s.submit_run(NewExecution::queued(wf.id, v1.id, json!({})), 3, None).await.unwrap();
    assert_eq!(s.cancel_run(queued.id).await.unwrap(), RunCancel::Cancelled);
    assert_eq!(s.get_execution(queued.id).await.unwrap().status, ExecutionStatus::Cancelled);
    assert_eq!(s.get_job(queued_job.id).await.unwrap().status, JobStatus::Cancelled);
    assert!(s.claim(&[RUN_JOB_KIND], "w", LEASE).await.unwrap().is_none());
    assert!(!s.start_execution(queued.id).await.unwrap());

    // Running: requested; the worker sees it at heartbeat and records the cancellation.
    let (running, job) = s.submit_run(NewExecution::queued(wf.id, v1.id, json!({})), 3, None).await.unwrap();
    s.claim(&[RUN_JOB_KIND], "w", LEASE).await.unwrap().unwrap();
    s.start_execution(running.id).await.unwrap();
    assert_eq!(s.cancel_run(running.id).await.unwrap(), RunCancel::Requested);
    assert_eq!(
        s.heartbeat(job.id, "w", LEASE).await.unwrap(),
        sgde_store::Heartbeat::Extended { cancel_requested: true }
    );
    assert!(s.finish_run(job.id, "w", running.id, &ExecutionOutcome::cancelled()).await.unwrap());
    assert_eq!(s.get_execution(running.id).await.unwrap().status, ExecutionStatus::Cancelled);
    assert_eq!(s.get_job(job.id).await.unwrap().status, JobStatus::Cancelled);

    // Finished: nothing to do. Unknown: not found.
    assert_eq!(s.cancel_run(running.id).await.unwrap(), RunCancel::AlreadyFinished);
    assert!(matches!(s.cancel_run(Uuid::now_v7()).await, Err(StoreError::NotFound { what: "execution" })));
    db.drop_database().await.unwrap();
}

/// A run's follow-up (its completion webhook) is queued by the transaction that records the
/// run's end — success, final failure or cancellation — and never before, twice, or by a worker
/// that no longer owns the run.
#[sgde_test_macros::both_backends]
async fn a_runs_follow_up_is_queued_exactly_when_it_ends() {
    let db = TestDatabase::new().await.unwrap();
    let s = &*db.store;
    let (wf, v1, _) = workflow_with_versions(s, "wf").await;
    let announce = |n: u32| FollowUp { kind: "announce".into(), payload: json!({ "n": n }), max_attempts: 4 };
    let announced = || async { s.queue_stats("announce").await.unwrap().queued };
    let submit = |n: u32| async move {
        s.submit_run(NewExecution::queued(wf.id, v1.id, json!({})), 2, Some(announce(n))).await.unwrap()
    };

    // Succeeded: queued with the outcome, once.
    let (done, job) = submit(1).await;
    let payload: RunPayload = serde_json::from_value(job.payload.clone()).unwrap();
    assert_eq!(payload.on_end, Some(announce(1)));
    s.claim(&[RUN_JOB_KIND], "w", LEASE).await.unwrap().unwrap();
    s.start_execution(done.id).await.unwrap();
    assert_eq!(announced().await, 0, "nothing before the end");
    assert!(!s.finish_run(job.id, "other", done.id, &finished_outcome()).await.unwrap(), "not the owner");
    assert_eq!(announced().await, 0, "a worker that lost the run announces nothing");
    assert!(s.finish_run(job.id, "w", done.id, &finished_outcome()).await.unwrap());
    assert_eq!(announced().await, 1);
    let follow_up = s.claim(&["announce"], "n", LEASE).await.unwrap().unwrap();
    assert_eq!((follow_up.payload, follow_up.max_attempts), (json!({ "n": 1 }), 4));

    // Failed: not on a retried attempt, only on the last.
    let (failing, job) = submit(2).await;
    let err = json!({ "code": "model_unavailable" });
    for (attempt, expected) in [(1, 0), (2, 1)] {
        s.claim(&[RUN_JOB_KIND], "w", LEASE).await.unwrap().unwrap();
        s.start_execution(failing.id).await.unwrap();
        s.fail_run(job.id, "w", failing.id, &err, Retry::After(Duration::ZERO)).await.unwrap();
        assert_eq!(announced().await, expected, "after attempt {attempt}");
    }
    assert_eq!(s.get_execution(failing.id).await.unwrap().status, ExecutionStatus::Failed);
    s.claim(&["announce"], "n", LEASE).await.unwrap().unwrap();

    // Cancelled while queued: announced by the cancellation itself; a second cancel adds nothing.
    let (cancelled, _) = submit(3).await;
    assert_eq!(s.cancel_run(cancelled.id).await.unwrap(), RunCancel::Cancelled);
    assert_eq!(s.cancel_run(cancelled.id).await.unwrap(), RunCancel::AlreadyFinished);
    assert_eq!(announced().await, 1);

    // Without a follow-up, nothing is queued.
    let (plain, job) = s.submit_run(NewExecution::queued(wf.id, v1.id, json!({})), 2, None).await.unwrap();
    s.claim(&[RUN_JOB_KIND], "w", LEASE).await.unwrap().unwrap();
    s.start_execution(plain.id).await.unwrap();
    assert!(s.finish_run(job.id, "w", plain.id, &finished_outcome()).await.unwrap());
    assert_eq!(announced().await, 1);
    db.drop_database().await.unwrap();
}

fn finished_outcome() -> ExecutionOutcome {
    ExecutionOutcome {
        status: ExecutionStatus::Succeeded,
        output: Some(json!(42)),
        error: None,
        trace: None,
        latency_us: Some(10),
        usage: ExecutionUsage::default(),
    }
}
