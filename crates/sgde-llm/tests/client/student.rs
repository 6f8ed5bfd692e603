//! The simulated student through the real client: the behaviour the compiler will rely on.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use sgde_llm::{ChatRequest, Decoding, Message, ModelClient};
use sgde_testkit::student::expr::Expr;
use sgde_testkit::{Difficulty, FakeOpenAi, ProblemGenerator, SimulatedStudent};

use crate::{client, config};

fn request(system: &str, question: &str) -> ChatRequest {
    ChatRequest {
        endpoint: "student".into(),
        messages: vec![Message::system(system), Message::user(question)],
        decoding: Decoding { temperature: Some(0.8), ..Decoding::default() },
        sample_index: 0,
        json_schema: None,
    }
}

fn last_number(text: &str) -> Option<i64> {
    text.split(|c: char| !c.is_ascii_digit() && c != '-').rev().find_map(|w| w.parse().ok())
}

async fn student_server() -> FakeOpenAi {
    FakeOpenAi::builder().responder(Arc::new(SimulatedStudent::new())).start().await.unwrap()
}

#[tokio::test]
async fn direct_answers_are_right_on_small_problems_and_mostly_wrong_on_hard_ones() {
    let server = student_server().await;
    let client = client(config(&server));
    let mut generator = ProblemGenerator::new(11);
    let solve = "Solve the math word problem. End with 'The answer is N.'";
    for problem in generator.batch(16, Difficulty::Small) {
        let reply = client.complete(request(solve, &problem.question)).await.unwrap().text;
        assert_eq!(last_number(&reply), Some(problem.answer), "{reply}");
    }
    let mut right = 0;
    let hard = generator.batch(16, Difficulty::Hard);
    for problem in &hard {
        let reply = client.complete(request(solve, &problem.question)).await.unwrap().text;
        right += usize::from(last_number(&reply) == Some(problem.answer));
    }
    println!("direct answers: 16/16 small right, {right}/{} hard right", hard.len());
    assert!(right <= hard.len() / 2, "{right}/{} hard problems right by direct answer", hard.len());
}

#[tokio::test]
async fn extraction_is_reliable_and_code_plus_consensus_is_always_right() {
    let server = student_server().await;
    let mut c = config(&server);
    c.max_concurrency = 16;
    let client = client(c);
    let hard = ProblemGenerator::new(5).batch(16, Difficulty::Hard);
    let extract = "Extract the quantities from the problem as a JSON object.";
    let mut extracted_right = 0;
    for problem in &hard {
        let mut r = request(extract, &problem.question);
        r.json_schema = Some(serde_json::json!({"type": "object"}));
        let reply: Value = serde_json::from_str(&client.complete(r).await.unwrap().text).unwrap();
        extracted_right += usize::from(reply == problem.quantities_json());
    }
    assert!(extracted_right >= hard.len() - 1, "{extracted_right}/{}", hard.len());

    let program =
        "Write a single Python expression that computes the answer. Reply with the expression only.";
    let mut single_right = 0;
    for problem in &hard {
        let samples = client.complete_n(request(program, &problem.question), 5).await;
        let values: Vec<Option<i128>> = samples
            .iter()
            .map(|s| Expr::parse(&s.as_ref().unwrap().text).ok().and_then(|e| e.eval(&BTreeMap::new())))
            .collect();
        single_right += values.iter().filter(|v| **v == Some(i128::from(problem.answer))).count();
        let mut votes: BTreeMap<i128, usize> = BTreeMap::new();
        for v in values.into_iter().flatten() {
            *votes.entry(v).or_default() += 1;
        }
        let winner = votes.iter().max_by_key(|(_, n)| **n).map(|(v, _)| *v);
        assert_eq!(winner, Some(i128::from(problem.answer)), "{}: {votes:?}", problem.question);
    }
    let n = hard.len();
    println!(
        "hard problems: extraction {extracted_right}/{n}, single expression samples {single_right}/{}, plurality of 5: {n}/{n}",
        n * 5
    );
    // Single samples are not perfect: consensus is doing real work.
    assert!(single_right < hard.len() * 5, "every single sample was right");
}
