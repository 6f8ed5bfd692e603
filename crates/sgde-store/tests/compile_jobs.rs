//! Compile jobs: submitted with their queue job, checkpointed, finished exactly once, cancelled,
//! listed and filtered.

use std::time::Duration;

use serde_json::{Value, json};
use sgde_store::testing::TestDatabase;
use sgde_store::{
    COMPILE_JOB_KIND, CancelOutcome, CompileEnd, CompileJobFilter, FailOutcome, JobStatus, NewCompileJob,
    PageRequest, Retry, StoreError,
};
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(60);

fn new_job(workflow: &str) -> NewCompileJob {
    NewCompileJob {
        id: Uuid::now_v7(),
        workflow: workflow.to_owned(),
        request: json!({"compile": {"task": "t"}}),
        estimate: json!({"first_iteration": {"student_calls": 9}}),
        max_attempts: 3,
    }
}

fn end(status: JobStatus, reason: &str) -> CompileEnd {
    CompileEnd {
        status,
        stop_reason: Some(reason.to_owned()),
        stop_detail: Some("done".to_owned()),
        result_version_id: None,
        error: None,
        progress: json!({"iteration": 2, "best_score": 1.0}),
    }
}

#[sgde_test_macros::both_backends]
async fn a_compile_job_is_queued_checkpointed_and_finished_once() {
    let db = TestDatabase::new().await.unwrap();
    let store = &*db.store;
    let submitted = store.submit_compile_job(&new_job("w")).await.unwrap();
    assert_eq!(submitted.status, JobStatus::Queued);
    assert_eq!(submitted.estimate["first_iteration"]["student_calls"], 9);

    let job = store.claim(&[COMPILE_JOB_KIND], "a", LEASE).await.unwrap().expect("the queue job");
    assert_eq!(job.id, submitted.id);
    assert_eq!(job.payload, json!({"compile_job_id": submitted.id}));
    assert_eq!(store.start_compile_job(job.id).await.unwrap(), None);
    assert_eq!(store.get_compile_job(job.id).await.unwrap().status, JobStatus::Running);

    // Key order survives the round trip (the resumed compile must render identical prompts).
    let checkpoint: Value =
        serde_json::from_str(r#"{"z": 1, "a": {"y": 2, "b": 3}, "iteration": 1}"#).unwrap();
    let record = json!({"iteration": 1, "outcome": {"accepted": {"reason": "better"}}});
    store.save_compile_checkpoint(job.id, &checkpoint, &[(1, record.clone())]).await.unwrap();
    // Saving again with the same record keeps one row per iteration.
    store.save_compile_checkpoint(job.id, &checkpoint, &[(1, record.clone())]).await.unwrap();
    let back = store.start_compile_job(job.id).await.unwrap().unwrap();
    assert_eq!(serde_json::to_string(&back).unwrap(), serde_json::to_string(&checkpoint).unwrap());
    assert_eq!(store.list_compile_iterations(job.id).await.unwrap(), vec![record]);

    store.update_compile_progress(job.id, &json!({"iteration": 1})).await.unwrap();
    assert_eq!(store.get_compile_job(job.id).await.unwrap().progress["iteration"], 1);

    // Only the lease owner finishes it, once.
    assert!(!store.finish_compile_job(job.id, "b", &end(JobStatus::Succeeded, "perfect")).await.unwrap());
    assert!(store.finish_compile_job(job.id, "a", &end(JobStatus::Succeeded, "perfect")).await.unwrap());
    assert!(!store.finish_compile_job(job.id, "a", &end(JobStatus::Failed, "error")).await.unwrap());
    let done = store.get_compile_job(job.id).await.unwrap();
    assert_eq!((done.status, done.stop_reason.as_deref()), (JobStatus::Succeeded, Some("perfect")));
    assert!(done.finished_at.is_some());
    assert_eq!(store.get_job(job.id).await.unwrap().status, JobStatus::Succeeded);

    assert!(matches!(
        store.get_compile_job(Uuid::now_v7()).await,
        Err(StoreError::NotFound { what: "compile job" })
    ));
    assert!(matches!(store.list_compile_iterations(Uuid::now_v7()).await, Err(StoreError::NotFound { .. })));
    db.drop_database().await.unwrap();
}

#[sgde_test_macros::both_backends]
async fn compile_jobs_are_cancelled_failed_listed_and_filtered() {
    let db = TestDatabase::new().await.unwrap();
    let store = &*db.store;
    let queued = store.submit_compile_job(&new_job("w")).await.unwrap();
    assert_eq!(store.cancel_compile_job(queued.id).await.unwrap(), CancelOutcome::Cancelled);
    let cancelled = store.get_compile_job(queued.id).await.unwrap();
    assert_eq!(
        (cancelled.status, cancelled.stop_reason.as_deref()),
        (JobStatus::Cancelled, Some("cancelled"))
    );
    assert!(matches!(
        store.cancel_compile_job(queued.id).await.unwrap(),
        CancelOutcome::AlreadyFinished(JobStatus::Cancelled)
    ));

    let running = store.submit_compile_job(&new_job("w")).await.unwrap();
    store.claim(&[COMPILE_JOB_KIND], "a", LEASE).await.unwrap().unwrap();
    store.start_compile_job(running.id).await.unwrap();
    assert_eq!(store.cancel_compile_job(running.id).await.unwrap(), CancelOutcome::Requested);
    assert_eq!(store.get_compile_job(running.id).await.unwrap().status, JobStatus::Running);
    assert!(
        store.finish_compile_job(running.id, "a", &end(JobStatus::Cancelled, "cancelled")).await.unwrap()
    );
    assert_eq!(store.get_job(running.id).await.unwrap().status, JobStatus::Cancelled);

    let failing = store.submit_compile_job(&new_job("other")).await.unwrap();
    store.claim(&[COMPILE_JOB_KIND], "a", LEASE).await.unwrap().unwrap();
    store.start_compile_job(failing.id).await.unwrap();
    let error = json!({"code": "bad_request"});
    assert_eq!(
        store.fail_compile_job(failing.id, "a", &error, Retry::Never).await.unwrap(),
        FailOutcome::Failed
    );
    let failed = store.get_compile_job(failing.id).await.unwrap();
    assert_eq!((failed.status, failed.error), (JobStatus::Failed, Some(error)));
    assert_eq!(failed.stop_reason.as_deref(), Some("error"));

    // Settling never overrides an ended compile.
    store.settle_compile_job(failing.id, JobStatus::Cancelled, None).await.unwrap();
    assert_eq!(store.get_compile_job(failing.id).await.unwrap().status, JobStatus::Failed);

    let first = PageRequest::default();
    let all = store.list_compile_jobs(&CompileJobFilter::default(), &first).await.unwrap();
    assert_eq!(all.items.iter().map(|j| j.id).collect::<Vec<_>>(), vec![failing.id, running.id, queued.id]);
    assert_eq!(all.next_cursor, None);
    let of_w = CompileJobFilter { workflow: Some("w".into()), ..CompileJobFilter::default() };
    assert_eq!(store.list_compile_jobs(&of_w, &first).await.unwrap().items.len(), 2);
    let failed_only = CompileJobFilter { status: Some(JobStatus::Failed), ..CompileJobFilter::default() };
    assert_eq!(store.list_compile_jobs(&failed_only, &first).await.unwrap().items[0].id, failing.id);
    let one = store.list_compile_jobs(&CompileJobFilter::default(), &PageRequest::first(1)).await.unwrap();
    assert_eq!(one.items.len(), 1);
    assert!(one.next_cursor.is_some());
    db.drop_database().await.unwrap();
}

/// Every item of a listing, following the cursors; checks each page's size on the way.
async fn all_pages(
    store: &dyn sgde_store::Store,
    filter: &CompileJobFilter,
    limit: u32,
) -> Vec<sgde_store::CompileJob> {
    let mut items = Vec::new();
    let mut page = PageRequest::first(limit);
    loop {
        let got = store.list_compile_jobs(filter, &page).await.unwrap();
        assert!(got.items.len() <= limit as usize);
        items.extend(got.items);
        match got.next_cursor {
            Some(cursor) => page = PageRequest::after(limit, cursor),
            None => return items,
        }
    }
}

#[sgde_test_macros::both_backends]
async fn compile_jobs_page_by_cursor_with_filters_without_gaps_or_repeats() {
    let db = TestDatabase::new().await.unwrap();
    let store = &*db.store;
    let mut submitted = Vec::new();
    for i in 0..11 {
        let workflow = if i % 3 == 0 { "thirds" } else { "rest" };
        submitted.push(store.submit_compile_job(&new_job(workflow)).await.unwrap());
    }
    // Newest first, the same order as one big page.
    let newest_first: Vec<Uuid> = submitted.iter().rev().map(|j| j.id).collect();
    for limit in [1, 2, 4, 11, 50] {
        let ids: Vec<Uuid> =
            all_pages(store, &CompileJobFilter::default(), limit).await.iter().map(|j| j.id).collect();
        assert_eq!(ids, newest_first, "pages of {limit}");
    }
    // A filter holds across pages.
    let thirds = CompileJobFilter { workflow: Some("thirds".into()), ..CompileJobFilter::default() };
    let paged = all_pages(store, &thirds, 2).await;
    assert_eq!(paged.len(), 4);
    assert!(paged.iter().all(|j| j.workflow == "thirds"));

    // Jobs submitted while a client pages through neither shift nor repeat what it reads next.
    let p1 = store.list_compile_jobs(&CompileJobFilter::default(), &PageRequest::first(5)).await.unwrap();
    store.submit_compile_job(&new_job("late")).await.unwrap();
    let p2 = store
        .list_compile_jobs(
            &CompileJobFilter::default(),
            &PageRequest::after(5, p1.next_cursor.clone().unwrap()),
        )
        .await
        .unwrap();
    let read: Vec<Uuid> = p1.items.iter().chain(&p2.items).map(|j| j.id).collect();
    assert_eq!(read, newest_first[..10]);

    // Cursors are opaque and belong to their listing.
    assert!(matches!(
        store.list_compile_jobs(&CompileJobFilter::default(), &PageRequest::after(5, "not-a-cursor")).await,
        Err(StoreError::Invalid { what: "cursor" })
    ));
    // The execution log's cursor format, for a time and id that exist here.
    let newest = &submitted[10];
    let foreign = hex::encode(format!("e1:{}.{}", newest.created_at.timestamp_micros(), newest.id.simple()));
    assert!(matches!(
        store.list_compile_jobs(&CompileJobFilter::default(), &PageRequest::after(5, foreign)).await,
        Err(StoreError::Invalid { what: "cursor" })
    ));
    db.drop_database().await.unwrap();
}
