//! The job queue: exclusivity, leases, heartbeats, retries, cancellation, ownership.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sgde_store::testing::TestDatabase;
use sgde_store::{CancelOutcome, FailOutcome, Heartbeat, JobStatus, NewJob, Retry, StoreError, pg};
use tokio::sync::Mutex;
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(60);

/// Lets a lease of `lease` run out (the database clock decides, so real time must pass).
async fn outlive(lease: Duration) {
    tokio::time::sleep(lease + Duration::from_millis(30)).await;
}

#[sgde_test_macros::both_backends]
async fn concurrent_workers_claim_each_job_exactly_once() {
    let db = TestDatabase::new().await.unwrap();
    let store = db.store.clone();
    const JOBS: usize = 60;
    const WORKERS: usize = 6;
    for i in 0..JOBS {
        store.enqueue(&NewJob::new("run", json!({ "i": i }))).await.unwrap();
    }
    store.enqueue(&NewJob::new("compile", json!({}))).await.unwrap();

    let claimed: Arc<Mutex<HashMap<Uuid, String>>> = Arc::default();
    let tasks: Vec<_> = (0..WORKERS)
        .map(|w| {
            let store = store.clone();
            let claimed = claimed.clone();
            tokio::spawn(async move {
                let me = format!("worker-{w}");
                while let Some(job) = store.claim(&["run"], &me, LEASE).await.unwrap() {
                    assert_eq!(job.lease_owner.as_deref(), Some(me.as_str()));
                    assert_eq!((job.status, job.attempts), (JobStatus::Running, 1));
                    let previous = claimed.lock().await.insert(job.id, me.clone());
                    assert!(previous.is_none(), "job {} claimed twice", job.id);
                    assert!(store.complete_job(job.id, &me, &json!({ "ok": true })).await.unwrap());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(claimed.lock().await.len(), JOBS);
    let stats = store.queue_stats("run").await.unwrap();
    assert_eq!((stats.queued, stats.running), (0, 0));
    assert_eq!(store.queue_stats("compile").await.unwrap().ready, 1, "other kinds untouched");
    db.drop_database().await.unwrap();
}

#[sgde_test_macros::both_backends]
async fn expired_lease_is_reclaimed_and_the_old_owner_is_refused() {
    let db = TestDatabase::new().await.unwrap();
    let s = &*db.store;
    let job = s.enqueue(&NewJob::new("run", json!({}))).await.unwrap();
    let a = s.claim(&["run"], "a", LEASE).await.unwrap().unwrap();
    assert_eq!(a.id, job.id);
    assert!(s.claim(&["run"], "b", LEASE).await.unwrap().is_none(), "leased: not claimable");
    db.expire_lease(job.id).await.unwrap();

    let b = s.claim(&["run"], "b", LEASE).await.unwrap().expect("expired lease is claimable");
    assert_eq!((b.id, b.attempts, b.lease_owner.as_deref()), (job.id, 2, Some("b")));

    // The worker that lost its lease can neither extend, complete, fail nor cancel it.
    assert_eq!(s.heartbeat(job.id, "a", LEASE).await.unwrap(), Heartbeat::Lost);
    assert!(!s.complete_job(job.id, "a", &json!("stale")).await.unwrap());
    assert_eq!(s.fail_job(job.id, "a", &json!("stale"), Retry::Never).await.unwrap(), FailOutcome::NotOwner);
    assert!(!s.ack_cancel(job.id, "a").await.unwrap());

    assert!(s.complete_job(job.id, "b", &json!({ "answer": 42 })).await.unwrap());
    let done = s.get_job(job.id).await.unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.result, Some(json!({ "answer": 42 })));
    assert!(done.lease_owner.is_none() && done.finished_at.is_some());
    assert!(!s.complete_job(job.id, "b", &json!("twice")).await.unwrap(), "terminal exactly once");
    db.drop_database().await.unwrap();
}

#[sgde_test_macros::both_backends]
async fn a_short_lease_really_expires() {
    let db = TestDatabase::new().await.unwrap();
    let s = &*db.store;
    let job = s.enqueue(&NewJob::new("run", json!({}))).await.unwrap();
    let short = Duration::from_millis(50);
    s.claim(&["run"], "crashed", short).await.unwrap().unwrap();
    outlive(short).await;
    let again = s.claim(&["run"], "survivor", LEASE).await.unwrap().expect("re-claimed by the clock alone");
    assert_eq!((again.id, again.attempts), (job.id, 2));
    db.drop_database().await.unwrap();
}

#[sgde_test_macros::both_backends]
async fn heartbeat_extends_the_lease_and_reports_cancel_requests() {
    let db = TestDatabase::new().await.unwrap();
    let s = &*db.store;
    let job = s.enqueue(&NewJob::new("run", json!({}))).await.unwrap();
    let short = Duration::from_millis(200);
    let claimed = s.claim(&["run"], "w", short).await.unwrap().unwrap();

    assert_eq!(
        s.heartbeat(job.id, "w", LEASE).await.unwrap(),
        Heartbeat::Extended { cancel_requested: false }
    );
    outlive(short).await;
    assert!(s.claim(&["run"], "thief", LEASE).await.unwrap().is_none(), "heartbeat kept the lease");
    let extended = s.get_job(job.id).await.unwrap().lease_expires_at.unwrap();
    assert!(extended > claimed.lease_expires_at.unwrap());

    assert_eq!(s.cancel_job(job.id).await.unwrap(), CancelOutcome::Requested);
    assert_eq!(
        s.heartbeat(job.id, "w", LEASE).await.unwrap(),
        Heartbeat::Extended { cancel_requested: true }
    );
    assert!(s.ack_cancel(job.id, "w").await.unwrap());
    assert_eq!(s.get_job(job.id).await.unwrap().status, JobStatus::Cancelled);
    assert_eq!(s.cancel_job(job.id).await.unwrap(), CancelOutcome::AlreadyFinished(JobStatus::Cancelled));
    db.drop_database().await.unwrap();
}

#[sgde_test_macros::both_backends]
async fn failures_retry_with_backoff_then_fail_terminally() {
    let db = TestDatabase::new().await.unwrap();
    let s = &*db.store;
    let job = s.enqueue(&NewJob::new("run", json!({})).max_attempts(3)).await.unwrap();

    // Attempt 1 fails with a long backoff: the job waits.
    s.claim(&["run"], "w", LEASE).await.unwrap().unwrap();
    let outcome =
        s.fail_job(job.id, "w", &json!({ "e": 1 }), Retry::After(Duration::from_secs(3600))).await.unwrap();
    let FailOutcome::Retrying { run_at } = outcome else { panic!("{outcome:?}") };
    assert!(run_at > chrono::Utc::now() + chrono::TimeDelta::minutes(59));
    assert!(s.claim(&["run"], "w", LEASE).await.unwrap().is_none(), "backing off");
    let stats = s.queue_stats("run").await.unwrap();
    assert_eq!((stats.queued, stats.ready), (1, 0));

    // Pull it forward (as if the hour had passed) and fail attempts 2 and 3.
    db.execute_for(
        job.id,
        "UPDATE jobs SET run_at = now() WHERE id = $1",
        "UPDATE jobs SET run_at = strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now') WHERE id = $1",
    )
    .await
    .unwrap();
    let second = s.claim(&["run"], "w", LEASE).await.unwrap().unwrap();
    assert_eq!((second.attempts, second.last_error.clone()), (2, Some(json!({ "e": 1 }))));
    let outcome = s.fail_job(job.id, "w", &json!({ "e": 2 }), Retry::After(Duration::ZERO)).await.unwrap();
    assert!(matches!(outcome, FailOutcome::Retrying { .. }));
    let third = s.claim(&["run"], "w", LEASE).await.unwrap().unwrap();
    assert_eq!(third.attempts, 3);
    let outcome = s.fail_job(job.id, "w", &json!({ "e": 3 }), Retry::After(Duration::ZERO)).await.unwrap();
    assert_eq!(outcome, FailOutcome::Failed, "no attempts left");

    let failed = s.get_job(job.id).await.unwrap();
    assert_eq!((failed.status, failed.last_error), (JobStatus::Failed, Some(json!({ "e": 3 }))));
    assert!(failed.finished_at.is_some());
    assert!(s.claim(&["run"], "w", LEASE).await.unwrap().is_none());

    // A permanent error fails at once, whatever the attempts left.
    let other = s.enqueue(&NewJob::new("run", json!({})).max_attempts(5)).await.unwrap();
    s.claim(&["run"], "w", LEASE).await.unwrap().unwrap();
    assert_eq!(
        s.fail_job(other.id, "w", &json!("bad payload"), Retry::Never).await.unwrap(),
        FailOutcome::Failed
    );
    db.drop_database().await.unwrap();
}

#[sgde_test_macros::both_backends]
async fn cancel_queued_running_and_finished_jobs() {
    let db = TestDatabase::new().await.unwrap();
    let s = &*db.store;
    let queued = s.enqueue(&NewJob::new("run", json!({}))).await.unwrap();
    assert_eq!(s.cancel_job(queued.id).await.unwrap(), CancelOutcome::Cancelled);
    assert_eq!(s.get_job(queued.id).await.unwrap().status, JobStatus::Cancelled);
    assert!(s.claim(&["run"], "w", LEASE).await.unwrap().is_none(), "cancelled jobs are never claimed");

    let running = s.enqueue(&NewJob::new("run", json!({}))).await.unwrap();
    s.claim(&["run"], "w", LEASE).await.unwrap().unwrap();
    assert_eq!(s.cancel_job(running.id).await.unwrap(), CancelOutcome::Requested);
    // A failing worker with a pending cancel ends cancelled, not retried.
    assert_eq!(
        s.fail_job(running.id, "w", &json!("interrupted"), Retry::After(Duration::ZERO)).await.unwrap(),
        FailOutcome::Cancelled
    );

    let done = s.enqueue(&NewJob::new("run", json!({}))).await.unwrap();
    s.claim(&["run"], "w", LEASE).await.unwrap().unwrap();
    s.complete_job(done.id, "w", &json!(null)).await.unwrap();
    assert_eq!(s.cancel_job(done.id).await.unwrap(), CancelOutcome::AlreadyFinished(JobStatus::Succeeded));
    assert!(matches!(s.cancel_job(Uuid::now_v7()).await, Err(StoreError::NotFound { what: "job" })));
    db.drop_database().await.unwrap();
}

#[sgde_test_macros::both_backends]
async fn release_leases_requeues_without_counting_the_attempt() {
    let db = TestDatabase::new().await.unwrap();
    let s = &*db.store;
    for _ in 0..3 {
        s.enqueue(&NewJob::new("run", json!({}))).await.unwrap();
    }
    let mine = s.claim(&["run"], "shutting-down", LEASE).await.unwrap().unwrap();
    s.claim(&["run"], "shutting-down", LEASE).await.unwrap().unwrap();
    s.claim(&["run"], "other", LEASE).await.unwrap().unwrap();

    assert_eq!(s.release_leases("shutting-down").await.unwrap(), 2);
    let released = s.get_job(mine.id).await.unwrap();
    assert_eq!((released.status, released.attempts, released.lease_owner), (JobStatus::Queued, 0, None));
    let stats = s.queue_stats("run").await.unwrap();
    assert_eq!((stats.ready, stats.running), (2, 1));
    assert!(s.claim(&["run"], "next", LEASE).await.unwrap().is_some());
    db.drop_database().await.unwrap();
}

#[sgde_test_macros::both_backends]
async fn reap_ends_jobs_whose_workers_died_with_no_attempts_left() {
    let db = TestDatabase::new().await.unwrap();
    let s = &*db.store;
    let job = s.enqueue(&NewJob::new("run", json!({ "x": 1 })).max_attempts(1)).await.unwrap();
    let cancelled = s.enqueue(&NewJob::new("run", json!({ "x": 2 })).max_attempts(3)).await.unwrap();
    s.claim(&["run"], "dead", LEASE).await.unwrap().unwrap();
    s.claim(&["run"], "dead", LEASE).await.unwrap().unwrap();
    assert_eq!(s.cancel_job(cancelled.id).await.unwrap(), CancelOutcome::Requested);
    assert!(s.reap_expired().await.unwrap().is_empty(), "leases still valid");
    db.expire_lease(job.id).await.unwrap();
    db.expire_lease(cancelled.id).await.unwrap();

    assert!(s.claim(&["run"], "w", LEASE).await.unwrap().is_none(), "neither may be re-claimed");
    let mut reaped = s.reap_expired().await.unwrap();
    reaped.sort_by_key(|j| j.id);
    let statuses: Vec<_> = reaped.iter().map(|j| (j.id, j.status)).collect();
    assert_eq!(statuses, [(job.id, JobStatus::Failed), (cancelled.id, JobStatus::Cancelled)]);
    assert_eq!(reaped[0].last_error.as_ref().unwrap()["code"], "lease_expired");
    assert!(s.reap_expired().await.unwrap().is_empty());
    db.drop_database().await.unwrap();
}

#[sgde_test_macros::both_backends]
async fn delayed_jobs_lag_and_transactional_enqueue() {
    let db = TestDatabase::new().await.unwrap();
    let s = &*db.store;
    s.enqueue(&NewJob::new("compile", json!({})).delay(Duration::from_secs(600))).await.unwrap();
    assert!(s.claim(&["compile"], "w", LEASE).await.unwrap().is_none(), "not before run_at");

    if let Some(pg) = db.pg() {
        // Postgres only: enqueued inside a caller's transaction that rolls back, no job.
        let mut tx = pg.begin().await.unwrap();
        let ghost = pg::enqueue_job(&mut *tx, &NewJob::new("run", json!({}))).await.unwrap();
        tx.rollback().await.unwrap();
        assert!(matches!(s.get_job(ghost.id).await, Err(StoreError::NotFound { .. })));
        // ... and one that commits.
        let mut tx = pg.begin().await.unwrap();
        let real = pg::enqueue_job(&mut *tx, &NewJob::new("run", json!({}))).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(s.get_job(real.id).await.unwrap().status, JobStatus::Queued);
    } else {
        s.enqueue(&NewJob::new("run", json!({}))).await.unwrap();
    }

    tokio::time::sleep(Duration::from_millis(50)).await;
    let stats = s.queue_stats("run").await.unwrap();
    assert_eq!(stats.ready, 1);
    assert!(stats.lag >= Duration::from_millis(40), "{stats:?}");
    assert_eq!(s.queue_stats("compile").await.unwrap().lag, Duration::ZERO, "nothing ready");

    assert!(matches!(
        s.enqueue(&NewJob::new("run", json!({})).max_attempts(0)).await,
        Err(StoreError::Invalid { what: "max_attempts" })
    ));
    db.drop_database().await.unwrap();
}
