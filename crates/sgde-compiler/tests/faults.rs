//! Teacher failures: malformed JSON, unknown node ids, unparsable Python, HTTP 500s, hangs. The
//! compile continues or ends cleanly with a reason; it never hangs or panics.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use sgde_compiler::{CompileOptions, Compiler, FailureKind, IterationOutcome, StopReason, TeacherStep};
use sgde_testkit::{Fault, Rule, ScriptedTeacher, TeacherReply};

/// Fails the test instead of hanging it.
async fn bounded<T>(work: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), work).await.expect("the compile hung")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_fails_the_step_and_the_compile_goes_on() {
    // The client repairs once (the second malformed reply), then the step fails.
    let teacher = ScriptedTeacher::new()
        .script(
            CRITIC,
            [
                TeacherReply::MalformedJson,
                TeacherReply::MalformedJson,
                offload_critique(),
                consensus_critique(),
            ],
        )
        .script(EDITOR, [edits(offload_ops()), edits(consensus_ops())]);
    let fixture = Fixture::new(teacher).await;
    let outcome = bounded(Compiler::new(request(), fixture.deps.clone()).unwrap().run()).await;
    assert_eq!(outcome.stop_reason, StopReason::Perfect, "{}", outcome.stop_detail);
    let first = &outcome.history[0];
    assert!(matches!(first.outcome, IterationOutcome::Failed { .. }), "{:?}", first.outcome);
    assert_eq!(first.failures[0].step, TeacherStep::Critique);
    assert_eq!(first.failures[0].kind, FailureKind::InvalidReply, "{:?}", first.failures);
    assert!(outcome.history[1].outcome.is_accepted() && outcome.history[2].outcome.is_accepted());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_node_ids_get_one_repair_round_with_the_error() {
    let unknown = json!([{"op": "offload_to_code", "node": "solve",
                          "code": "def run(inputs):\n    return 1\n"}]);
    let teacher = ScriptedTeacher::new()
        .script(CRITIC, [offload_critique()])
        .script(EDITOR, [edits(unknown), edits(offload_ops())]);
    let fixture = Fixture::new(teacher).await;
    let mut request = request();
    request.budget.max_iterations = 1;
    let outcome = bounded(Compiler::new(request, fixture.deps.clone()).unwrap().run()).await;
    let record = &outcome.history[0];
    assert!(record.outcome.is_accepted(), "{:?}", record.outcome);
    assert_eq!(record.attempts.len(), 2);
    let error = record.attempts[0].error.as_deref().unwrap();
    assert!(error.contains("unknown node `solve`"), "{error}");
    let repair = fixture.teacher_prompts().pop().unwrap();
    assert!(
        repair.contains("Your edits could not be applied") && repair.contains("unknown node `solve`"),
        "{repair}"
    );
    assert_eq!(outcome.stop_reason, StopReason::Budget);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparsable_python_twice_is_rejected_without_an_evaluation() {
    let broken = json!([{"op": "offload_to_code", "node": "answer",
                         "code": "def run(inputs:\n    return inputs['question'] *\n"}]);
    let teacher = ScriptedTeacher::new()
        .script(CRITIC, [offload_critique()])
        .script(EDITOR, [edits(broken), TeacherReply::python_that_does_not_parse()]);
    let fixture = Fixture::new(teacher).await;
    let mut request = request();
    request.budget.max_iterations = 1;
    let outcome = bounded(Compiler::new(request, fixture.deps.clone()).unwrap().run()).await;
    let record = &outcome.history[0];
    let IterationOutcome::Rejected { reason } = &record.outcome else { panic!("{:?}", record.outcome) };
    assert!(reason.contains("even after a repair round"), "{reason}");
    assert!(record.attempts[0].error.as_deref().unwrap().contains("syntax error"), "{:?}", record.attempts);
    assert!(record.candidate.is_none() && record.usage.student.calls == 0);
    assert_eq!(outcome.best.content_hash, outcome.initial.content_hash, "nothing was applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teacher_500s_end_the_compile_with_error_after_repeated_failures() {
    let setup = Setup { teacher_rules: vec![Rule::any().fault(Fault::ServerError)], ..Setup::default() };
    let fixture = Fixture::with(ScriptedTeacher::new(), setup).await;
    let outcome = bounded(Compiler::new(request(), fixture.deps.clone()).unwrap().run()).await;
    assert_eq!(outcome.stop_reason, StopReason::Error, "{}", outcome.stop_detail);
    assert!(
        outcome.stop_detail.contains("the teacher failed 3 iterations in a row"),
        "{}",
        outcome.stop_detail
    );
    assert_eq!(outcome.history.len(), 3);
    for record in &outcome.history {
        assert!(matches!(record.outcome, IterationOutcome::Failed { .. }));
        assert_eq!(record.failures[0].kind, FailureKind::Model);
    }
    assert_eq!(outcome.best.content_hash, outcome.initial.content_hash);
    assert_eq!(outcome.usage.teacher.failed_calls, 3);
    assert!(fixture.teacher.request_count() >= 6, "every call was retried by the client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teacher_outage_costs_one_iteration() {
    // 503, not 500: the client reads a 500 to a `json_schema` request as "format not supported"
    // (llama.cpp) and retries in a weaker mode, which would hide the outage.
    let unavailable = Fault::Status { status: 503, message: "overloaded".into() };
    let setup = Setup { teacher_rules: vec![Rule::any().fault(unavailable).times(2)], ..Setup::default() };
    let fixture = Fixture::with(reference_teacher(), setup).await;
    let outcome = bounded(Compiler::new(request(), fixture.deps.clone()).unwrap().run()).await;
    assert_eq!(outcome.stop_reason, StopReason::Perfect, "{}", outcome.stop_detail);
    assert!(matches!(outcome.history[0].outcome, IterationOutcome::Failed { .. }));
    assert_eq!(outcome.history.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teacher_hangs_time_out_and_the_compile_ends() {
    let setup = Setup { teacher_timeout_ms: 300, teacher_attempts: 1, ..Setup::default() };
    let fixture = Fixture::with(ScriptedTeacher::new().fallback(TeacherReply::Hang), setup).await;
    let options = CompileOptions { max_failed_iterations: 2, ..CompileOptions::default() };
    let outcome =
        bounded(Compiler::new(request(), fixture.deps.clone()).unwrap().with_options(options).run()).await;
    assert_eq!(outcome.stop_reason, StopReason::Error, "{}", outcome.stop_detail);
    assert_eq!(outcome.history.len(), 2);
    assert_eq!(
        outcome.history[0].failures[0].kind,
        FailureKind::Timeout,
        "{:?}",
        outcome.history[0].failures
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compilers_own_teacher_timeout_bounds_a_slow_endpoint() {
    let fixture = Fixture::new(ScriptedTeacher::new().fallback(TeacherReply::Hang)).await;
    let options = CompileOptions {
        teacher_timeout: Duration::from_millis(200),
        max_failed_iterations: 1,
        ..CompileOptions::default()
    };
    let outcome =
        bounded(Compiler::new(request(), fixture.deps.clone()).unwrap().with_options(options).run()).await;
    assert_eq!(outcome.stop_reason, StopReason::Error);
    let failure = &outcome.history[0].failures[0];
    assert_eq!(failure.kind, FailureKind::Timeout);
    assert!(failure.message.contains("within 200 ms"), "{}", failure.message);
    assert_eq!(outcome.usage.teacher.failed_calls, 1, "the abandoned call is counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_student_ends_the_compile_with_error() {
    let down = Fault::Status { status: 503, message: "no capacity".into() };
    let setup = Setup { student_rules: vec![Rule::any().fault(down)], ..Setup::default() };
    let fixture = Fixture::with(reference_teacher(), setup).await;
    let mut request = request();
    request.validation = examples(3, 2);
    let outcome = bounded(Compiler::new(request, fixture.deps.clone()).unwrap().run()).await;
    assert_eq!(outcome.stop_reason, StopReason::Error);
    assert!(outcome.stop_detail.contains("the student is unreachable"), "{}", outcome.stop_detail);
    assert!(outcome.validation.is_none());
    assert_eq!(fixture.teacher.request_count(), 0, "no teacher call for a compile that cannot run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phase_that_ends_the_iteration_still_records_its_time() {
    // Every teacher reply takes 100 ms. Iteration 1 ends in the edit phase (unparsable Python,
    // twice), iteration 2 in the critique phase (malformed JSON, twice).
    let broken = json!([{"op": "offload_to_code", "node": "answer",
                         "code": "def run(inputs:\n    return inputs['question'] *\n"}]);
    let script = ScriptedTeacher::new()
        .script(CRITIC, [offload_critique(), TeacherReply::MalformedJson, TeacherReply::MalformedJson])
        .script(EDITOR, [edits(broken), TeacherReply::python_that_does_not_parse()]);
    let slow = Rule::any().delay(Duration::from_millis(100)).respond_with(Arc::new(script));
    let setup = Setup { teacher_rules: vec![slow], ..Setup::default() };
    let fixture = Fixture::with(ScriptedTeacher::new(), setup).await;
    let mut request = request();
    request.budget.max_iterations = 2;
    let outcome = bounded(Compiler::new(request, fixture.deps.clone()).unwrap().run()).await;
    let (first, second) = (&outcome.history[0], &outcome.history[1]);
    assert!(matches!(first.outcome, IterationOutcome::Rejected { .. }), "{:?}", first.outcome);
    assert!(first.durations.edit_ms >= 200, "an edit and a repair reply: {:?}", first.durations);
    assert!(matches!(second.outcome, IterationOutcome::Failed { .. }), "{:?}", second.outcome);
    assert!(second.durations.critique_ms >= 200, "a reply and its repair: {:?}", second.durations);
}
