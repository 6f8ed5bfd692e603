//! Preflight: estimates, refusals of budgets that cannot fit an iteration, invalid requests.

mod common;

use common::*;
use serde_json::json;
use sgde_compiler::{Budget, CompileError, Example, Metric, PriceTable, estimate};
use sgde_llm::Prices;

#[test]
fn one_iteration_and_the_whole_budget_are_estimated() {
    let mut request = request();
    request.validation = examples(5, 4);
    let prices = PriceTable {
        teacher: Prices { input_per_million_usd: 2.5, output_per_million_usd: 10.0 },
        student: Prices { input_per_million_usd: 0.1, output_per_million_usd: 0.1 },
    };
    let e = estimate(&request, &prices).unwrap();
    assert_eq!(e.baseline.student_calls, 9, "3 examples × 3 samples × 1 llm node");
    assert_eq!(e.validation.student_calls, 12);
    assert_eq!((e.per_iteration.teacher_calls, e.per_iteration.student_calls), (2, 9));
    assert_eq!(e.first_iteration.student_calls, 9 + 9 + 12);
    assert_eq!(e.full_budget.teacher_calls, 2 * u64::from(request.budget.max_iterations));
    assert!(e.per_iteration.tokens > e.baseline.tokens, "teacher prompts carry traces");
    assert!(e.per_iteration.usd > e.baseline.usd && e.baseline.usd > 0.0);
}

#[test]
fn a_budget_that_cannot_fit_one_iteration_is_refused() {
    let mut request = request();
    request.budget = Budget { max_student_calls: Some(10), ..Budget::default() };
    let err = estimate(&request, &PriceTable::default()).unwrap_err();
    let CompileError::BudgetTooSmall { resource, needed, limit, estimate } = err else { panic!("{err}") };
    assert_eq!((resource, needed, limit), ("student calls", 18.0, 10.0));
    assert_eq!(estimate.first_iteration.student_calls, 18);

    request.budget = Budget { max_teacher_calls: Some(1), ..Budget::default() };
    assert!(matches!(estimate_err(&request), CompileError::BudgetTooSmall { resource: "teacher calls", .. }));
    request.budget = Budget { max_tokens: Some(100), ..Budget::default() };
    assert!(matches!(estimate_err(&request), CompileError::BudgetTooSmall { resource: "tokens", .. }));
}

fn estimate_err(request: &sgde_compiler::CompileRequest) -> CompileError {
    estimate(request, &PriceTable::default()).unwrap_err()
}

#[test]
fn invalid_requests_name_the_field() {
    let field = |mutate: &dyn Fn(&mut sgde_compiler::CompileRequest)| {
        let mut r = request();
        mutate(&mut r);
        match r.check() {
            Err(CompileError::InvalidRequest { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(field(&|r| r.train.clear()), "train");
    assert_eq!(field(&|r| r.samples_per_example = 0), "samples_per_example");
    assert_eq!(field(&|r| r.budget.max_iterations = 0), "budget.max_iterations");
    assert_eq!(
        field(&|r| r.allowed = sgde_compiler::AllowedEdits {
            prompts: false,
            offloading: false,
            consensus: false,
            topology: false
        }),
        "allowed"
    );
    assert_eq!(field(&|r| r.metric = Metric::Python { code: "def metric(a, b:\n".into() }), "metric.code");
    assert_eq!(
        field(&|r| r.validation = vec![Example { inputs: json!({"q": "?"}), expected: json!(1) }]),
        "validation[0].inputs"
    );
    assert_eq!(field(&|r| r.teacher = " ".into()), "teacher");
    let on_the_teacher = sgde_workflow::WorkflowSpec::from_value(json!({
        "schema": "sgde.workflow/v1",
        "inputs": {"type": "object", "properties": {"question": {"type": "string"}}},
        "output": "answer",
        "nodes": {"answer": {"kind": "llm", "model": "teacher", "prompt": "{{ inputs.question }}"}}
    }))
    .unwrap();
    assert_eq!(field(&|r| r.initial = Some(on_the_teacher.clone())), "initial");
}

/// The API spawns compile jobs on the runtime: the loop's futures must be `Send`. Checked by the
/// compiler only (never called).
#[allow(dead_code)]
fn compile_futures_are_send(
    compiler: &sgde_compiler::Compiler,
    checkpoint: sgde_compiler::Checkpoint,
    deps: sgde_compiler::CompilerDeps,
) {
    fn send<T: Send>(_: T) {}
    send(compiler.run());
    send(compiler.resume(checkpoint));
    send(sgde_compiler::compile(request(), deps));
}
