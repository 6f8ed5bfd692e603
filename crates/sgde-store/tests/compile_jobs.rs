//! Compile jobs: submitted with their queue job, checkpointed, finished exactly once, cancelled,
//! listed and filtered.

use std::time::Duration;

use serde_json::{Value, json};
use sgde_store::testing::TestDatabase;
use sgde_store::{
    COMPILE_JOB_KIND, CancelOutcome, CompileEnd, CompileJobFilter, CompileJobRepo, FailOutcome, JobQueue,
    JobStatus, NewCompileJob, Retry, StoreError,
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

#[tokio::test]
async fn a_compile_job_is_queued_checkpointed_and_finished_once() {
    let db = TestDatabase::new().await.unwrap();
    let store = &db.store;
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

#[tokio::test]
async fn compile_jobs_are_cancelled_failed_listed_and_filtered() {
    let db = TestDatabase::new().await.unwrap();
    let store = &db.store;
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

    let all = store.list_compile_jobs(&CompileJobFilter::default()).await.unwrap();
    assert_eq!(all.iter().map(|j| j.id).collect::<Vec<_>>(), vec![failing.id, running.id, queued.id]);
    let of_w = CompileJobFilter { workflow: Some("w".into()), ..CompileJobFilter::default() };
    assert_eq!(store.list_compile_jobs(&of_w).await.unwrap().len(), 2);
    let failed_only = CompileJobFilter { status: Some(JobStatus::Failed), ..CompileJobFilter::default() };
    assert_eq!(store.list_compile_jobs(&failed_only).await.unwrap()[0].id, failing.id);
    let one = CompileJobFilter { limit: Some(1), ..CompileJobFilter::default() };
    assert_eq!(store.list_compile_jobs(&one).await.unwrap().len(), 1);
    db.drop_database().await.unwrap();
}
