//! The DAG walk with a scripted model client and the real sandbox.

mod common;

use std::time::Duration;

use common::{ScriptedClient, prepare, prompt, reference_spec, runtime, runtime_with};
use serde_json::{Value, json};
use sgde_llm::ModelError;
use sgde_runtime::{NodeErrorKind, RunError, RunOptions, RuntimeConfig};

fn spec(nodes: Value, output: &str) -> Value {
    json!({
        "schema": "sgde.workflow/v1",
        "inputs": {"type": "object", "properties": {"question": {"type": "string"}, "n": {"type": "integer"}}},
        "output": output,
        "nodes": nodes,
    })
}

/// Replies with the user prompt itself: the rendered template is the value.
fn echo() -> std::sync::Arc<ScriptedClient> {
    ScriptedClient::new(|r| Ok(prompt(r).to_owned()))
}

#[tokio::test]
async fn linear_chain_passes_values_along() {
    let wf = prepare(spec(
        json!({
            "a": {"kind": "llm", "prompt": "A({{ inputs.question }})"},
            "b": {"kind": "llm", "deps": ["a"], "prompt": "B({{ a }})"},
            "c": {"kind": "code", "deps": ["b"], "code": "def run(b):\n    return b + '!'\n"},
        }),
        "c",
    ));
    let rt = runtime(echo()).await;
    let report = rt.execute(&wf, json!({"question": "q"}), &RunOptions::default()).await;
    assert_eq!(report.result.unwrap(), json!("B(A(q))!"));
    let order: Vec<&str> = report.trace.nodes.iter().map(|t| t.node.as_str()).collect();
    assert_eq!(order, ["a", "b", "c"]);
    let a = report.trace.of("a").next().unwrap();
    assert_eq!(a.prompt.as_deref(), Some("A(q)"));
    assert_eq!(a.raw_output.as_deref(), Some("A(q)"));
    assert_eq!(a.usage.unwrap().prompt_tokens, 10);
    assert_eq!(report.usage.prompt_tokens, 20, "two model calls");
    assert!(report.trace.nodes.iter().all(|t| t.end_us >= t.start_us));
}

#[tokio::test]
async fn diamond_branches_overlap() {
    let client = ScriptedClient::with_delay(Duration::from_millis(50), |r| Ok(prompt(r).to_owned()));
    let wf = prepare(spec(
        json!({
            "a": {"kind": "llm", "prompt": "{{ inputs.question }}"},
            "b": {"kind": "llm", "deps": ["a"], "prompt": "b{{ a }}"},
            "c": {"kind": "llm", "deps": ["a"], "prompt": "c{{ a }}"},
            "d": {"kind": "code", "deps": ["b", "c"], "code": "def run(b, c):\n    return [b, c]\n"},
        }),
        "d",
    ));
    let rt = runtime(client.clone()).await;
    let report = rt.execute(&wf, json!({"question": "x"}), &RunOptions::default()).await;
    assert_eq!(report.result.unwrap(), json!(["bx", "cx"]));
    assert_eq!(client.max_in_flight(), 2, "b and c ran at the same time");
}

#[tokio::test]
async fn a_hundred_independent_nodes_run_at_once() {
    let mut nodes = serde_json::Map::new();
    let mut deps = Vec::new();
    for i in 0..100 {
        nodes.insert(
            format!("n{i}"),
            json!({"kind": "llm", "prompt": format!("{i}"), "parser": {"type": "number"}}),
        );
        deps.push(format!("n{i}"));
    }
    nodes.insert("sum".into(), json!({"kind": "code", "deps": deps, "code": "def run(**values):\n    return sum(values[k] for k in values if k != 'inputs')\n"}));
    let client = ScriptedClient::with_delay(Duration::from_millis(20), |r| Ok(prompt(r).to_owned()));
    let wf = prepare(spec(Value::Object(nodes), "sum"));
    let rt = runtime(client.clone()).await;
    let report = rt.execute(&wf, json!({}), &RunOptions::default()).await;
    assert_eq!(report.result.unwrap(), json!(4950));
    assert_eq!(client.max_in_flight(), 100);
    assert_eq!(client.calls(), 100);
}

#[tokio::test]
async fn deep_chains_run_in_order() {
    let mut nodes = serde_json::Map::new();
    nodes.insert("n0".into(), json!({"kind": "llm", "prompt": "0", "parser": {"type": "number"}}));
    for i in 1..150 {
        nodes.insert(
            format!("n{i}"),
            json!({"kind": "llm", "deps": [format!("n{}", i - 1)], "prompt": format!("{{{{ n{} + 1 }}}}", i - 1), "parser": {"type": "number"}}),
        );
    }
    let wf = prepare(spec(Value::Object(nodes), "n149"));
    let client = echo();
    let rt = runtime(client.clone()).await;
    let report = rt.execute(&wf, json!({}), &RunOptions::default()).await;
    assert_eq!(report.result.unwrap(), json!(149));
    assert_eq!(client.max_in_flight(), 1);
}

fn consensus(samples: u32, vote: Value) -> Value {
    spec(
        json!({
            "guess": {"kind": "consensus", "samples": samples, "vote": vote,
                "body": {"output": "g", "nodes": {"g": {"kind": "llm", "prompt": "guess", "parser": {"type": "number"}}}}},
        }),
        "guess",
    )
}

#[tokio::test]
async fn consensus_samples_run_concurrently_and_vote() {
    // Samples 1..=5 (sample_index) answer 7, 7, 3, 7, 3.
    let client = ScriptedClient::with_delay(Duration::from_millis(30), |r| {
        Ok(match r.sample_index {
            3 | 5 => "3",
            _ => "The answer is 7",
        }
        .to_owned())
    });
    let wf = prepare(consensus(5, json!({"normalize": {"type": "number"}, "quorum": 3})));
    let rt = runtime(client.clone()).await;
    let report = rt.execute(&wf, json!({}), &RunOptions::default()).await;
    assert_eq!(report.result.unwrap(), json!(7));
    assert_eq!(client.max_in_flight(), 5, "all samples in flight together");
    let node = report.trace.of("guess").next().unwrap();
    let tally = node.tally.as_ref().unwrap();
    assert_eq!(tally.cast, 5);
    assert_eq!(tally.entries[tally.winner.unwrap()].count, 3);
    let samples: Vec<u32> = report.trace.of("g").filter_map(|t| t.sample).collect();
    assert_eq!(samples.len(), 5);
    assert!(report.trace.nodes.iter().any(|t| t.path == "guess[2]/g"));
}

#[tokio::test]
async fn consensus_ties_use_the_fixed_tie_break() {
    let client = ScriptedClient::new(|r| Ok(if r.sample_index % 2 == 0 { "10" } else { "20" }.to_owned()));
    let rt = runtime(client).await;
    let first = prepare(consensus(4, json!({"normalize": {"type": "number"}, "tie_break": "first_sample"})));
    assert_eq!(rt.execute(&first, json!({}), &RunOptions::default()).await.result.unwrap(), json!(20));
    let smallest = prepare(consensus(4, json!({"normalize": {"type": "number"}, "tie_break": "smallest"})));
    assert_eq!(rt.execute(&smallest, json!({}), &RunOptions::default()).await.result.unwrap(), json!(10));
    let fail = prepare(consensus(4, json!({"normalize": {"type": "number"}, "tie_break": "fail"})));
    let err = rt.execute(&fail, json!({}), &RunOptions::default()).await.result.unwrap_err();
    let RunError::Node(e) = err else { panic!("{err}") };
    assert_eq!((e.node.as_str(), e.kind), ("guess", NodeErrorKind::Vote));
}

#[tokio::test]
async fn consensus_with_every_sample_failing_reports_quorum() {
    let client = ScriptedClient::new(|_| Ok("no number here".to_owned()));
    let wf = prepare(consensus(3, json!({"normalize": {"type": "number"}})));
    let rt = runtime(client).await;
    let report = rt.execute(&wf, json!({}), &RunOptions::default()).await;
    let RunError::Node(e) = report.result.unwrap_err() else { panic!() };
    assert_eq!(e.kind, NodeErrorKind::Vote);
    assert!(e.message.contains("quorum"), "{e}");
    let failed: Vec<_> = report.trace.of("g").filter(|t| !t.succeeded()).collect();
    assert_eq!(failed.len(), 3, "each failed sample is in the trace");
    assert_eq!(failed[0].error.as_ref().unwrap().kind, NodeErrorKind::Parse);
}

#[tokio::test]
async fn consensus_quorum_not_met_when_some_samples_fail() {
    let client = ScriptedClient::new(|r| {
        if r.sample_index <= 3 {
            Err(ModelError::Rejected { endpoint: "student".into(), status: 400, message: "bad".into() })
        } else {
            Ok("5".to_owned())
        }
    });
    let wf = prepare(consensus(5, json!({"normalize": {"type": "number"}, "quorum": 3})));
    let rt = runtime(client).await;
    let report = rt.execute(&wf, json!({}), &RunOptions::default()).await;
    let RunError::Node(e) = report.result.unwrap_err() else { panic!() };
    assert!(e.message.contains("2 sample(s) voted, 3 needed"), "{e}");
}

#[tokio::test]
async fn node_timeouts_name_the_node() {
    let client = ScriptedClient::with_delay(Duration::from_secs(30), |_| Ok("late".to_owned()));
    let wf = prepare(spec(json!({"slow": {"kind": "llm", "prompt": "x", "timeout_ms": 50}}), "slow"));
    let rt = runtime(client).await;
    let report = rt.execute(&wf, json!({}), &RunOptions::default()).await;
    let RunError::Node(e) = report.result.unwrap_err() else { panic!() };
    assert_eq!((e.node.as_str(), e.kind), ("slow", NodeErrorKind::Timeout));
}

#[tokio::test]
async fn the_run_deadline_stops_everything_and_keeps_the_partial_trace() {
    let client = ScriptedClient::with_delay(Duration::from_millis(200), |r| Ok(prompt(r).to_owned()));
    let wf = prepare(spec(
        json!({
            "a": {"kind": "code", "code": "def run(inputs):\n    return 'fast'\n"},
            "b": {"kind": "llm", "deps": ["a"], "prompt": "{{ a }}"},
        }),
        "b",
    ));
    let config = RuntimeConfig { run_deadline: Duration::from_secs(60), ..RuntimeConfig::default() };
    let rt = runtime_with(client.clone(), config).await;
    let options = RunOptions { deadline: Some(Duration::from_millis(100)) };
    let report = rt.execute(&wf, json!({}), &options).await;
    assert_eq!(report.result.unwrap_err(), RunError::Deadline { deadline_ms: 100 });
    assert_eq!(report.trace.nodes.len(), 1, "the finished node is kept: {:?}", report.trace);
    assert_eq!(client.in_flight(), 0, "the model call was cancelled");
}

#[tokio::test]
async fn dropping_the_run_cancels_calls_in_flight() {
    let client = ScriptedClient::with_delay(Duration::from_secs(60), |_| Ok("never".to_owned()));
    let wf = prepare(consensus(4, json!({})));
    let rt = runtime(client.clone()).await;
    let options = RunOptions::default();
    let run = rt.execute(&wf, json!({}), &options);
    tokio::select! {
        _ = run => panic!("the run cannot finish"),
        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
    }
    assert_eq!(client.calls(), 4, "all samples had started");
    assert_eq!(client.in_flight(), 0, "and were all cancelled when the run was dropped");
}

#[tokio::test]
async fn code_errors_carry_the_node_and_the_line() {
    let wf = prepare(spec(
        json!({"boom": {"kind": "code", "code": "def run(inputs):\n    x = 1\n    return x / 0\n"}}),
        "boom",
    ));
    let rt = runtime(echo()).await;
    let report = rt.execute(&wf, json!({}), &RunOptions::default()).await;
    let RunError::Node(e) = report.result.unwrap_err() else { panic!() };
    assert_eq!((e.node.as_str(), e.kind), ("boom", NodeErrorKind::Code));
    assert!(e.message.contains("ZeroDivisionError"), "{e}");
    assert!(e.message.contains('3'), "names line 3: {e}");
}

#[tokio::test]
async fn template_errors_are_node_errors() {
    let wf = prepare(spec(
        json!({
            "a": {"kind": "llm", "prompt": "x", "parser": {"type": "json"}},
            "b": {"kind": "llm", "deps": ["a"], "prompt": "{{ a.missing }}"},
        }),
        "b",
    ));
    let rt = runtime(ScriptedClient::new(|_| Ok("{\"present\": 1}".to_owned()))).await;
    let report = rt.execute(&wf, json!({}), &RunOptions::default()).await;
    let RunError::Node(e) = report.result.unwrap_err() else { panic!() };
    assert_eq!((e.node.as_str(), e.kind), ("b", NodeErrorKind::Template));
}

#[tokio::test]
async fn inputs_are_checked_against_the_schema() {
    let wf = prepare(spec(json!({"a": {"kind": "llm", "prompt": "{{ inputs.question }}"}}), "a"));
    let client = echo();
    let rt = runtime(client.clone()).await;
    let report = rt.execute(&wf, json!({"question": 42}), &RunOptions::default()).await;
    let RunError::Inputs { errors } = report.result.unwrap_err() else { panic!() };
    assert!(errors[0].contains("/question"), "{errors:?}");
    assert_eq!(client.calls(), 0);
}

/// A scripted GSM student: extracts the quantities, writes the program right in 3 of 5 samples.
fn gsm_student() -> std::sync::Arc<ScriptedClient> {
    ScriptedClient::new(|r| {
        let p = prompt(r);
        if p.starts_with("Extract the quantities") {
            Ok("Sure! ```json\n{\"eggs_per_day\": 1600000, \"eaten\": 3, \"baked\": 4, \"price\": 2}\n```"
                .to_owned())
        } else if r.sample_index == 2 {
            Ok("(eggs_per_day - eaten - baked) * price + 1".to_owned())
        } else if r.sample_index == 4 {
            Ok("this is not python".to_owned())
        } else {
            Ok("```python\n(eggs_per_day - eaten - baked) * price\n```".to_owned())
        }
    })
}

#[tokio::test]
async fn the_reference_workflow_runs_end_to_end() {
    let wf = prepare(reference_spec());
    let client = gsm_student();
    let rt = runtime(client.clone()).await;
    let question = "Janet's ducks lay 1600000 eggs per day. She eats three and bakes with four. She sells the rest at $2 each. How much does she make?";
    let report = rt.execute(&wf, json!({"question": question}), &RunOptions::default()).await;
    assert_eq!(report.result.clone().unwrap(), json!(3199986), "{:#?}", report.trace);
    assert_eq!(client.calls(), 6, "1 extract + 5 program samples");
    let solve = report.trace.of("solve").next().unwrap();
    let tally = solve.tally.as_ref().unwrap();
    assert_eq!((tally.cast, tally.abstained), (4, 1), "the sample that wrote prose abstained");
    let failed_run = report.trace.nodes.iter().find(|t| t.path == "solve[3]/run").unwrap();
    assert_eq!(failed_run.error.as_ref().unwrap().kind, NodeErrorKind::Code);
}
