//! Budget exhaustion, deadlines and cancellation: the compile stops with the best so far and
//! says why.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use sgde_compiler::{Budget, Compiler, IterationOutcome, ProgressEvent, StopReason};
use sgde_testkit::{Rule, ScriptedTeacher, TeacherReply};
use tokio_util::sync::CancellationToken;

async fn bounded<T>(work: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), work).await.expect("the compile hung")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn student_calls_run_out_and_the_best_so_far_is_kept() {
    let fixture = Fixture::new(reference_teacher()).await;
    let mut request = request();
    // Baseline 9 calls, iteration 1's candidate 18 (extract + expression per run): 27. Iteration
    // 2 would need 18 more.
    request.budget = Budget { max_student_calls: Some(30), ..Budget::default() };
    let outcome = bounded(Compiler::new(request, fixture.deps.clone()).unwrap().run()).await;
    assert_eq!(outcome.stop_reason, StopReason::Budget, "{}", outcome.stop_detail);
    assert!(outcome.stop_detail.contains("student calls"), "{}", outcome.stop_detail);
    assert_eq!(outcome.best.iteration, 1);
    assert!(has_code(&outcome.best.spec));
    assert_eq!(outcome.usage.student.calls, 27);
    assert_eq!(fixture.teacher.request_count(), 2, "no teacher call for an iteration that cannot be paid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teacher_calls_and_iterations_are_budgets_too() {
    let fixture = Fixture::new(reference_teacher()).await;
    let mut request = request();
    request.budget = Budget { max_teacher_calls: Some(3), ..Budget::default() };
    let outcome = bounded(Compiler::new(request, fixture.deps.clone()).unwrap().run()).await;
    assert_eq!(outcome.stop_reason, StopReason::Budget);
    assert!(outcome.stop_detail.contains("teacher calls"), "{}", outcome.stop_detail);
    assert_eq!((outcome.iterations, outcome.usage.teacher.calls), (1, 2));

    let fixture = Fixture::new(reference_teacher()).await;
    let mut request = common::request();
    request.budget.max_iterations = 1;
    let outcome = bounded(Compiler::new(request, fixture.deps.clone()).unwrap().run()).await;
    assert_eq!(outcome.stop_reason, StopReason::Budget);
    assert_eq!(outcome.stop_detail, "iteration limit (1) reached");
    assert_eq!(outcome.best.iteration, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_tokens_mid_iteration_interrupts_it() {
    // Measure the baseline's tokens (no teacher call allowed), then allow one token more: the
    // critique is admitted, the edit step is refused.
    let fixture = Fixture::new(reference_teacher()).await;
    let mut probe = request();
    probe.budget.max_teacher_calls = Some(0);
    let baseline = bounded(Compiler::new(probe, fixture.deps.clone()).unwrap().run()).await;
    assert_eq!(baseline.stop_reason, StopReason::Budget);
    let tokens = baseline.usage.tokens();

    let fixture = Fixture::new(reference_teacher()).await;
    let mut request = request();
    request.budget.max_tokens = Some(tokens + 1);
    let outcome = bounded(Compiler::new(request, fixture.deps.clone()).unwrap().run()).await;
    assert_eq!(outcome.stop_reason, StopReason::Budget, "{}", outcome.stop_detail);
    assert!(outcome.stop_detail.contains("tokens"), "{}", outcome.stop_detail);
    let record = &outcome.history[0];
    assert!(matches!(record.outcome, IterationOutcome::Interrupted { .. }), "{:?}", record.outcome);
    assert_eq!(record.usage.teacher.calls, 1);
    assert_eq!(outcome.best.content_hash, outcome.initial.content_hash);
    assert_eq!(outcome.best.train.runs, 9, "the best so far keeps its scores");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_stops_a_slow_teacher() {
    let slow = ScriptedTeacher::new().fallback(TeacherReply::Hang);
    let setup = Setup {
        teacher_rules: vec![Rule::any().delay(Duration::from_secs(60)).reply("{}")],
        ..Setup::default()
    };
    let fixture = Fixture::with(slow, setup).await;
    let mut request = request();
    request.budget.max_duration_ms = Some(1_500);
    let outcome = bounded(Compiler::new(request, fixture.deps.clone()).unwrap().run()).await;
    assert_eq!(outcome.stop_reason, StopReason::Deadline, "{}", outcome.stop_detail);
    assert!(outcome.history.iter().all(|r| matches!(r.outcome, IterationOutcome::Interrupted { .. })));

    let mut request = common::request();
    let past = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64 - 1_000;
    request.budget.deadline_unix_ms = Some(past);
    let outcome = bounded(Compiler::new(request, fixture.deps.clone()).unwrap().run()).await;
    assert_eq!(outcome.stop_reason, StopReason::Deadline);
    assert_eq!((outcome.iterations, outcome.best.train.runs), (0, 0), "nothing was run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_between_calls_and_during_a_call() {
    // Cancelled as iteration 1 starts: no teacher call is ever sent.
    let fixture = Fixture::new(reference_teacher()).await;
    let token = CancellationToken::new();
    let cancel = {
        let token = token.clone();
        move |e: ProgressEvent| {
            if matches!(e, ProgressEvent::IterationStarted { iteration: 1 }) {
                token.cancel();
            }
        }
    };
    let outcome = bounded(
        Compiler::new(request(), fixture.deps.clone())
            .unwrap()
            .with_cancellation(token)
            .with_progress(Arc::new(cancel))
            .run(),
    )
    .await;
    assert_eq!(outcome.stop_reason, StopReason::Cancelled);
    assert_eq!(fixture.teacher.request_count(), 0);
    assert_eq!(outcome.best.train.runs, 9);

    // Cancelled while the teacher hangs: the call is dropped and the compile returns.
    let fixture = Fixture::new(ScriptedTeacher::new().fallback(TeacherReply::Hang)).await;
    let token = CancellationToken::new();
    let compile = Compiler::new(request(), fixture.deps.clone()).unwrap().with_cancellation(token.clone());
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel();
    });
    let outcome = bounded(compile.run()).await;
    canceller.await.unwrap();
    assert_eq!(outcome.stop_reason, StopReason::Cancelled);
    assert!(matches!(
        outcome.history.last().map(|r| &r.outcome),
        Some(IterationOutcome::Interrupted { .. }) | None
    ));
    assert_eq!(
        outcome.usage.teacher.failed_calls, outcome.usage.teacher.calls,
        "the abandoned call is counted"
    );
}
