//! The reference path: from a single `llm` node to an offloaded, consensus-wrapped workflow.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use sgde_compiler::{Compiler, EditKind, IterationOutcome, MemoryCheckpoints, ProgressEvent, StopReason};
use sgde_workflow::Node;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_becomes_offloaded_consensus_and_generalises() {
    let fixture = Fixture::new(reference_teacher()).await;
    let mut request = request();
    request.validation = examples(1001, 20);
    let checkpoints = Arc::new(MemoryCheckpoints::new());
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = {
        let events = Arc::clone(&events);
        move |e: ProgressEvent| events.lock().unwrap().push(e)
    };
    let outcome = Compiler::new(request, fixture.deps.clone())
        .unwrap()
        .with_checkpoints(checkpoints.clone())
        .with_progress(Arc::new(sink))
        .run()
        .await;

    println!(
        "baseline {:.3} → best {:.3} (validation {:?}) in {} iterations; stop {}: {}",
        outcome.initial.train.score,
        outcome.best.train.score,
        outcome.validation.as_ref().map(|v| v.score),
        outcome.iterations,
        outcome.stop_reason,
        outcome.stop_detail
    );
    for r in &outcome.history {
        println!(
            "iteration {}: {:?} candidate {:?}",
            r.iteration,
            r.outcome,
            r.candidate.as_ref().map(|c| c.score)
        );
    }
    assert_eq!(outcome.stop_reason, StopReason::Perfect, "{}", outcome.stop_detail);
    assert!(
        outcome.initial.train.score < 0.5,
        "direct answers on hard problems: {}",
        outcome.initial.train.score
    );
    assert!(outcome.best.train.stable && outcome.best.train.score == 1.0);
    let validation = outcome.validation.as_ref().expect("validation scored");
    assert_eq!((validation.runs, validation.right), (60, 60), "held-out: {validation:?}");

    // The shape: extract → 5× consensus[expression → code] (named `answer`).
    let spec = &outcome.best.spec;
    assert!(matches!(spec.nodes.get("extract"), Some(Node::Llm(_))));
    let Some(Node::Consensus(c)) = spec.nodes.get("answer") else {
        panic!("answer is not a consensus: {spec:#?}")
    };
    assert_eq!(c.samples, 5);
    assert!(matches!(c.body.nodes.get("answer"), Some(Node::Code(_))));
    assert!(matches!(c.body.nodes.get("expression"), Some(Node::Llm(_))));
    assert_eq!(outcome.best.iteration, 2);

    // The log: critiques per node, ops with summaries, accepted with a reason, scores, usage.
    assert_eq!(outcome.history.len(), 2);
    for (record, kind) in outcome.history.iter().zip([EditKind::Offloading, EditKind::Consensus]) {
        assert!(matches!(record.outcome, IterationOutcome::Accepted { .. }), "{:?}", record.outcome);
        assert_eq!(record.critiques[0].node, "answer");
        assert!(record.attempts[0].edits.iter().any(|e| e.kinds.contains(&kind) && e.allowed));
        assert!(record.attempts[0].edits.iter().all(|e| !e.summary.is_empty()));
        assert!(record.candidate.as_ref().unwrap().score > record.best_score_before);
        assert!(record.usage.teacher.calls == 2 && record.usage.student.calls > 0, "{:?}", record.usage);
        assert!(record.failures.is_empty(), "{:?}", record.failures);
    }
    assert!(outcome.history[0].node_variance.contains_key("answer"));
    assert!(
        outcome.history[1].node_variance["expression"].disagreement > 0.0,
        "{:?}",
        outcome.history[1].node_variance
    );
    assert_eq!(outcome.usage.teacher.calls, 4);
    assert!(outcome.usage.tokens() > 0);
    assert!(outcome.mean_student_tokens_per_run() > outcome.initial.train.mean_student_tokens);

    // The teacher saw traces, variance and the allowed kinds.
    let prompts = fixture.teacher_prompts();
    assert!(prompts[0].contains("## Failing runs") && prompts[0].contains("expected:"));
    assert!(prompts[0].contains("| answer | llm |"));
    assert!(prompts[1].contains("The arithmetic is wrong"), "the edit step sees the critiques");
    assert!(prompts[2].contains("extract"), "iteration 2 sees the edited workflow");

    // Checkpoints after the baseline and each iteration; progress events in order.
    let saved = checkpoints.all();
    assert_eq!(saved.iter().map(|c| c.iteration).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(saved[2].best.content_hash, outcome.best.content_hash);
    let events = events.lock().unwrap();
    assert!(matches!(events.first(), Some(ProgressEvent::Started { iteration: 0 })));
    assert!(matches!(events.last(), Some(ProgressEvent::Finished { stop_reason: StopReason::Perfect, .. })));
    assert_eq!(events.iter().filter(|e| matches!(e, ProgressEvent::NewBest { .. })).count(), 2);
    assert_eq!(fixture.script.remaining(), 0);
}
