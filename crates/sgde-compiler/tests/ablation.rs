//! The ablation flags restrict the edits the compiler applies, whatever the teacher proposes.

mod common;

use common::*;
use sgde_compiler::{AllowedEdits, Compiler, EditKind, IterationOutcome, StopReason};
use sgde_testkit::ScriptedTeacher;
use sgde_workflow::Node;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_only_never_offloads() {
    // A teacher that keeps proposing the offloading edits.
    let teacher = ScriptedTeacher::new()
        .script(CRITIC, vec![offload_critique(); 8])
        .script(EDITOR, vec![edits(offload_ops()); 16]);
    let fixture = Fixture::new(teacher).await;
    let mut request = request();
    request.allowed = AllowedEdits::prompts_only();
    let outcome = Compiler::new(request, fixture.deps.clone()).unwrap().run().await;

    assert_eq!(outcome.stop_reason, StopReason::NoProgress, "{}", outcome.stop_detail);
    assert!(!has_code(&outcome.best.spec), "prompts-only compiled Python: {:#?}", outcome.best.spec);
    for record in &outcome.history {
        for edit in record.attempts.iter().flat_map(|a| &a.edits) {
            let structural = edit.kinds.iter().any(|k| *k != EditKind::Prompts);
            assert_eq!(edit.allowed, !structural, "{}", edit.summary);
        }
        assert!(!record.outcome.is_accepted(), "{:?}", record.outcome);
    }
    // The prompt-only part of the edits alone references `extract`, which does not exist: the
    // candidate is invalid, the teacher is told, and nothing is applied.
    let IterationOutcome::Rejected { reason } = &outcome.history[0].outcome else { panic!() };
    assert!(reason.contains("could not be applied"), "{reason}");
    let prompts = fixture.teacher_prompts();
    assert!(
        prompts[0]
            .contains("- offloading (offload_to_code, set_code, insert_node of a `code` node): NOT ALLOWED")
    );
    assert!(prompts[0].contains("- prompts (set_prompt, set_decoding, set_parser): ALLOWED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_consensus_the_wrap_is_dropped() {
    let mut request = request();
    request.allowed = AllowedEdits { consensus: false, ..AllowedEdits::default() };
    request.patience = 1;
    let fixture = Fixture::new(reference_teacher()).await;
    let outcome = Compiler::new(request, fixture.deps.clone()).unwrap().run().await;
    assert!(outcome.history[0].outcome.is_accepted());
    let IterationOutcome::Rejected { reason } = &outcome.history[1].outcome else {
        panic!("{:?}", outcome.history[1].outcome)
    };
    assert_eq!(reason, "none of the edits is of an allowed kind");
    assert!(!outcome.history[1].attempts[0].edits[0].allowed);
    assert!(has_code(&outcome.best.spec));
    assert!(!outcome.best.spec.nodes.iter().any(|(_, n)| matches!(n, Node::Consensus(_))));
    assert_eq!(outcome.history[1].usage.student.calls, 0, "nothing to evaluate");
}
