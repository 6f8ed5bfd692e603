//! Durability: a compile stopped after a checkpoint resumes and finishes with the same result,
//! and with a shared response cache no model call is paid twice.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use common::*;
use sgde_compiler::{
    Checkpoint, CheckpointError, CheckpointSink, CompileError, CompileOutcome, Compiler, MemoryCheckpoints,
    StopReason,
};
use tokio_util::sync::CancellationToken;

/// Saves checkpoints and "kills the process" (cancels the compile) right after iteration `at`.
struct CrashAfter {
    at: u32,
    saved: MemoryCheckpoints,
    token: CancellationToken,
}

#[async_trait]
impl CheckpointSink for CrashAfter {
    async fn save(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        self.saved.save(checkpoint).await?;
        if checkpoint.iteration == self.at {
            self.token.cancel();
        }
        Ok(())
    }
}

fn comparable(outcome: &CompileOutcome) -> Vec<(u32, String, Option<f64>, u64, u64)> {
    outcome
        .history
        .iter()
        .map(|r| {
            (
                r.iteration,
                format!("{:?}", r.outcome),
                r.candidate.as_ref().map(|c| c.score),
                r.usage.student.calls + r.usage.teacher.calls,
                r.usage.tokens(),
            )
        })
        .collect()
}

fn bodies(requests: &[sgde_testkit::LoggedRequest]) -> Vec<String> {
    requests.iter().map(|r| r.body.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_compile_finishes_the_same_without_paying_twice() {
    let mut request = request();
    request.validation = examples(1001, 5);

    // Reference: one uninterrupted compile.
    let straight = Fixture::new(reference_teacher()).await;
    let expected = Compiler::new(request.clone(), straight.deps.clone()).unwrap().run().await;
    assert_eq!(expected.stop_reason, StopReason::Perfect, "{}", expected.stop_detail);

    // The same compile, "killed" after iteration 1's checkpoint ...
    let fixture = Fixture::new(reference_teacher()).await;
    let token = CancellationToken::new();
    let sink = Arc::new(CrashAfter { at: 1, saved: MemoryCheckpoints::new(), token: token.clone() });
    let first = Compiler::new(request.clone(), fixture.deps.clone())
        .unwrap()
        .with_cancellation(token)
        .with_checkpoints(sink.clone())
        .run()
        .await;
    assert_eq!(first.stop_reason, StopReason::Cancelled);
    let checkpoint = sink.saved.last().unwrap();
    assert_eq!(checkpoint.iteration, 1);
    // ... survives serialisation (it goes to Postgres) ...
    let checkpoint: Checkpoint = serde_json::from_str(&serde_json::to_string(&checkpoint).unwrap()).unwrap();

    // ... and a "restarted process" sharing the response cache resumes it.
    let resumed =
        Compiler::new(request.clone(), fixture.restarted()).unwrap().resume(checkpoint).await.unwrap();
    assert_eq!(resumed.stop_reason, expected.stop_reason);
    assert_eq!(resumed.best.content_hash, expected.best.content_hash);
    assert_eq!(resumed.best.train, expected.best.train);
    assert_eq!(resumed.validation, expected.validation);
    assert_eq!(comparable(&resumed), comparable(&expected));
    assert_eq!(resumed.usage.student.calls, expected.usage.student.calls);
    assert_eq!(resumed.usage.teacher.calls, expected.usage.teacher.calls);

    // Not one model call more than the uninterrupted compile, and no request sent twice.
    assert_eq!(fixture.student.request_count(), straight.student.request_count());
    assert_eq!(fixture.teacher.request_count(), straight.teacher.request_count());
    for server in [&fixture.student, &fixture.teacher] {
        let sent = bodies(&server.requests());
        let unique: HashSet<&String> = sent.iter().collect();
        assert_eq!(unique.len(), sent.len(), "a request was paid twice");
    }
    assert!(
        fixture.cache.stats().hits >= 18,
        "the forward pass was replayed from the cache: {:?}",
        fixture.cache.stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_is_only_resumed_under_its_own_request() {
    let fixture = Fixture::new(reference_teacher()).await;
    let sink = Arc::new(MemoryCheckpoints::new());
    let mut request = request();
    request.budget.max_iterations = 1;
    Compiler::new(request.clone(), fixture.deps.clone()).unwrap().with_checkpoints(sink.clone()).run().await;
    let checkpoint = sink.last().unwrap();
    request.seed += 1;
    let err =
        Compiler::new(request, fixture.deps.clone()).unwrap().resume(checkpoint.clone()).await.unwrap_err();
    assert!(matches!(err, CompileError::CheckpointMismatch(_)), "{err}");
    let mut old = checkpoint;
    old.format = 0;
    let err = Compiler::new(common::request(), fixture.deps.clone()).unwrap().resume(old).await.unwrap_err();
    assert!(err.to_string().contains("format 0"), "{err}");
}

struct Broken;

#[async_trait]
impl CheckpointSink for Broken {
    async fn save(&self, _: &Checkpoint) -> Result<(), CheckpointError> {
        Err(CheckpointError("database is down".into()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_that_cannot_save_progress_stops() {
    let fixture = Fixture::new(reference_teacher()).await;
    let outcome = Compiler::new(request(), fixture.deps.clone())
        .unwrap()
        .with_checkpoints(Arc::new(Broken))
        .run()
        .await;
    assert_eq!(outcome.stop_reason, StopReason::Error);
    assert!(outcome.stop_detail.contains("database is down"), "{}", outcome.stop_detail);
    assert_eq!(fixture.teacher.request_count(), 0, "no money spent after the failed save");
}
