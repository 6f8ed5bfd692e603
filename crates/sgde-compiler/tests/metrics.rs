//! Metrics, on deterministic code-only workflows (no model calls): the baseline is scored and
//! the compile stops before any teacher call.

mod common;

use common::*;
use serde_json::{Value, json};
use sgde_compiler::{CompileRequest, Compiler, Example, Metric, StopReason};
use sgde_testkit::ScriptedTeacher;
use sgde_workflow::WorkflowSpec;

fn code_workflow(code: &str) -> WorkflowSpec {
    WorkflowSpec::from_value(json!({
        "schema": "sgde.workflow/v1",
        "inputs": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]},
        "output": "answer",
        "nodes": {"answer": {"kind": "code", "code": code}}
    }))
    .unwrap()
}

async fn score(code: &str, metric: Metric, expected: [Value; 3]) -> (StopReason, f64, Vec<f64>) {
    let fixture = Fixture::new(ScriptedTeacher::new()).await;
    let train = [1, 2, 3]
        .into_iter()
        .zip(expected)
        .map(|(x, expected)| Example { inputs: json!({"x": x}), expected })
        .collect();
    let mut request = CompileRequest::new("Double x.", train, metric, TEACHER, STUDENT);
    request.initial = Some(code_workflow(code));
    request.budget.max_teacher_calls = Some(0);
    let outcome = Compiler::new(request, fixture.deps.clone()).unwrap().run().await;
    assert_eq!(fixture.teacher.request_count() + fixture.student.request_count(), 0);
    (outcome.stop_reason, outcome.best.train.score, outcome.best.train.per_example)
}

const DOUBLE: &str = "def run(inputs):\n    return inputs['x'] * 2\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_exact_and_a_perfect_baseline() {
    let (stop, score_, _) =
        score(DOUBLE, Metric::Numeric { tolerance: 0.0 }, [json!(2), json!("4.0"), json!(6)]).await;
    assert_eq!((stop, score_), (StopReason::Perfect, 1.0));
    let (stop, score_, per) = score(DOUBLE, Metric::Exact, [json!(2.0), json!("4"), json!(6)]).await;
    assert_eq!(stop, StopReason::Budget);
    assert!((score_ - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(per, vec![1.0, 0.0, 1.0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_metrics_run_in_the_sandbox() {
    let partial = Metric::Python {
        code: "def metric(output, expected):\n    return 1.0 if output == expected else 0.5\n".into(),
    };
    let (_, s, per) = score(DOUBLE, partial, [json!(2), json!(5), json!(6)]).await;
    assert_eq!(per, vec![1.0, 0.5, 1.0]);
    assert!((s - 2.5 / 3.0).abs() < 1e-12);
    let raising = Metric::Python { code: "def metric(output, expected):\n    return 1 / 0\n".into() };
    let (_, s, _) = score(DOUBLE, raising, [json!(2), json!(4), json!(6)]).await;
    assert_eq!(s, 0.0, "a metric that raises scores 0");
    let boolean =
        Metric::Python { code: "def metric(output, expected):\n    return output > expected\n".into() };
    let (_, _, per) = score(DOUBLE, boolean, [json!(1), json!(9), json!(1)]).await;
    assert_eq!(per, vec![1.0, 0.0, 1.0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_json_metrics_normalise() {
    let text = "def run(inputs):\n    return '  The  Answer is ' + str(inputs['x'])\n";
    let (_, _, per) = score(
        text,
        Metric::Text { case_sensitive: false },
        [json!("the answer is 1"), json!("THE ANSWER IS 2"), json!("the answer is 4")],
    )
    .await;
    assert_eq!(per, vec![1.0, 1.0, 0.0]);
    let object = "def run(inputs):\n    return {'x': inputs['x'], 'double': inputs['x'] * 2}\n";
    let (_, _, per) = score(
        object,
        Metric::Json,
        [json!("{\"double\": 2, \"x\": 1}"), json!({"x": 2.0, "double": 4}), json!({"x": 3})],
    )
    .await;
    assert_eq!(per, vec![1.0, 1.0, 0.0]);
}
