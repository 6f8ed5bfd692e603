//! Rejected edits are recorded and never applied; a worse candidate never replaces the best.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::json;
use sgde_compiler::{Compiler, IterationOutcome, MemoryCheckpoints, StopReason};
use sgde_testkit::ScriptedTeacher;
use sgde_workflow::Node;

/// Turns the expression writer into a prose solver: its replies no longer evaluate.
fn harmful_ops() -> serde_json::Value {
    json!([{"op": "set_prompt", "node": "expression",
            "system": "You are a careful assistant.",
            "prompt": "Solve the problem step by step.\n\n{{ inputs.question }}"}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worse_and_repeated_candidates_are_rejected_and_logged() {
    let teacher = ScriptedTeacher::new()
        .script(
            CRITIC,
            [
                offload_critique(),
                critique("expression", "Let the student reason step by step."),
                critique("expression", "Let the student reason step by step, really."),
                consensus_critique(),
            ],
        )
        .script(
            EDITOR,
            [edits(offload_ops()), edits(harmful_ops()), edits(harmful_ops()), edits(consensus_ops())],
        );
    let fixture = Fixture::new(teacher).await;
    let checkpoints = Arc::new(MemoryCheckpoints::new());
    let outcome = Compiler::new(request(), fixture.deps.clone())
        .unwrap()
        .with_checkpoints(checkpoints.clone())
        .run()
        .await;

    assert_eq!(outcome.stop_reason, StopReason::Perfect, "{}", outcome.stop_detail);
    let h = &outcome.history;
    assert_eq!(h.len(), 4);
    assert!(h[0].outcome.is_accepted());
    let IterationOutcome::Rejected { reason } = &h[1].outcome else { panic!("{:?}", h[1].outcome) };
    assert!(reason.contains("below the best"), "{reason}");
    let worse = h[1].candidate.as_ref().expect("the worse candidate was evaluated");
    assert!(worse.score < h[1].best_score_before);
    let IterationOutcome::Rejected { reason } = &h[2].outcome else { panic!("{:?}", h[2].outcome) };
    assert_eq!(reason, "identical to the candidate rejected in iteration 2");
    assert!(h[2].candidate.is_none());
    assert_eq!(h[2].usage.student.calls, 0, "a repeat is not evaluated again");
    assert!(h[3].outcome.is_accepted());

    // The best never went down, and the harmful prompt never reached it.
    let mut best = outcome.initial.train.score;
    for r in h {
        assert!(r.best_score_before >= best - 1e-12);
        best = r.best_score_before;
    }
    let Some(Node::Consensus(c)) = outcome.best.spec.nodes.get("answer") else { panic!() };
    let Some(Node::Llm(expression)) = c.body.nodes.get("expression") else { panic!() };
    assert!(expression.prompt.starts_with("Write a single Python expression"), "{}", expression.prompt);

    // The rejected-edit log is checkpointed and shown to the teacher afterwards.
    let last = checkpoints.last().unwrap();
    assert_eq!(last.rejected.len(), 2);
    assert!(last.rejected[0].summaries[0].contains("rewrite the system prompt and template of `expression`"));
    let prompts = fixture.teacher_prompts();
    assert!(prompts[4].contains("iteration 2: rejected because training score"), "{}", prompts[4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_progress_stops_after_patience_with_the_best_kept() {
    let teacher = ScriptedTeacher::new()
        .script(CRITIC, [offload_critique(), critique("expression", "a"), critique("expression", "b")])
        .script(EDITOR, [
            edits(offload_ops()),
            edits(harmful_ops()),
            edits(json!([{"op": "set_decoding", "node": "expression", "decoding": {"temperature": 0.7, "max_tokens": 128}}])),
        ]);
    let fixture = Fixture::new(teacher).await;
    let mut request = request();
    request.patience = 2;
    let outcome = Compiler::new(request, fixture.deps.clone()).unwrap().run().await;
    assert_eq!(outcome.stop_reason, StopReason::NoProgress, "{}", outcome.stop_detail);
    assert_eq!(outcome.history.len(), 3);
    let IterationOutcome::Rejected { reason } = &outcome.history[2].outcome else { panic!() };
    assert_eq!(reason, "the edits leave the workflow unchanged");
    assert_eq!(outcome.best.iteration, 1);
    assert!(has_code(&outcome.best.spec));
}
