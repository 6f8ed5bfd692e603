//! [`SimulatedStudent`]: reads the prompt, recognises the problem, picks a task from the prompt's
//! cues, and answers with the profile's error model. See the crate docs for the cue table.

use serde_json::{Value, json};

use super::expr::{Expr, Op};
use super::mistakes::StudentProfile;
use super::problems::{Problem, recognise};
use crate::call::{ChatCall, Outcome, Responder};
use crate::rng::{SplitMix64, fnv1a};

/// What the prompt asks the student to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// "extract the quantities / variables / numbers": a JSON object of the named quantities.
    ExtractQuantities,
    /// "python expression": one expression with the numbers filled in.
    WriteExpression,
    /// "python", "program", "code", "def solution": a `def solution():` program.
    WriteProgram,
    /// Anything else: solve it in the head and state the answer.
    Solve,
}

/// How the reply should be shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Text,
    /// "only the number", "just the number", "final answer only".
    NumberOnly,
    /// The prompt says "json" or the request has a JSON `response_format`.
    Json,
}

/// Decides the task and the reply shape from the request (the problem's own text excluded, so a
/// story can never trigger an instruction).
pub fn read_cues(call: &ChatCall, problem: Option<&Problem>) -> (Task, Shape) {
    let mut text = format!("{}\n{}", call.system_text(), call.user_text()).to_lowercase();
    if let Some(p) = problem {
        text = text.replace(&p.question.to_lowercase(), " ");
    }
    let has = |cues: &[&str]| cues.iter().any(|c| text.contains(c));
    let task = if has(&["extract", "quantities", "variables", "list the numbers", "given numbers"]) {
        Task::ExtractQuantities
    } else if has(&["expression"]) && !has(&["program", "function", "def solution"]) {
        Task::WriteExpression
    } else if has(&["python", "program", "code", "def solution"]) {
        Task::WriteProgram
    } else {
        Task::Solve
    };
    let shape = if call.wants_json_format() || has(&["json"]) || task == Task::ExtractQuantities {
        Shape::Json
    } else if has(&["only the number", "just the number", "final answer only", "only the final answer"]) {
        Shape::NumberOnly
    } else {
        Shape::Text
    };
    (task, shape)
}

/// A small model that is good at reading and writing code, bad at large-number arithmetic.
#[derive(Debug, Clone, Default)]
pub struct SimulatedStudent {
    profile: StudentProfile,
}

impl SimulatedStudent {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_profile(profile: StudentProfile) -> Self {
        Self { profile }
    }

    pub fn profile(&self) -> &StudentProfile {
        &self.profile
    }

    /// The reply for choice `choice` of `call`. Deterministic in (prompt, seed, choice); at
    /// temperature 0 in the prompt alone, as greedy decoding is.
    pub fn reply(&self, call: &ChatCall, choice: u32) -> String {
        let prompt: String =
            call.messages.iter().map(|m| format!("{}\u{1f}{}\u{1e}", m.role, m.content)).collect();
        let mut rng = if call.temperature == Some(0.0) {
            SplitMix64::from_parts(&[fnv1a(&prompt)])
        } else {
            SplitMix64::from_parts(&[fnv1a(&prompt), call.seed.unwrap_or(0), u64::from(choice)])
        };
        let problem = recognise(&call.user_text()).or_else(|| recognise(&call.system_text()));
        let (task, shape) = read_cues(call, problem.as_ref());
        let Some(problem) = problem else {
            return match shape {
                Shape::Json => json!({"error": "I do not recognise a problem I can solve."}).to_string(),
                _ => "I'm sorry, I do not know how to solve this.".to_owned(),
            };
        };
        match task {
            Task::ExtractQuantities => self.extract(&problem, &mut rng).to_string(),
            Task::WriteExpression => {
                let expression = self.expression(&problem, &mut rng);
                wrap(call, shape, "expression", Value::String(expression.clone()), expression)
            }
            Task::WriteProgram => {
                let program = self.program(&problem, &mut rng);
                let fenced = format!("```python\n{program}```");
                wrap(call, shape, "program", Value::String(program), fenced)
            }
            Task::Solve => {
                let (steps, answer) = self.solve(&problem, &mut rng);
                match shape {
                    Shape::NumberOnly => answer.to_string(),
                    Shape::Json => wrap(call, shape, "answer", json!(answer), String::new()),
                    Shape::Text => {
                        format!("Let's compute step by step.\n{}\nThe answer is {answer}.", steps.join("\n"))
                    }
                }
            }
        }
    }

    /// The quantities as JSON, each large number copied with the profile's copy error.
    fn extract(&self, problem: &Problem, rng: &mut SplitMix64) -> Value {
        Value::Object(
            problem.quantities.iter().map(|(k, v)| (k.clone(), json!(self.profile.copy(*v, rng)))).collect(),
        )
    }

    /// The answer expression as the student writes it: with the profile's program error one
    /// operator is wrong, and large numbers are copied with the profile's copy error.
    fn written(&self, problem: &Problem, rng: &mut SplitMix64) -> (Expr, Vec<(String, i64)>) {
        let mut expr = Expr::parse(&problem.expression).unwrap_or(Expr::Num(0));
        if rng.chance(self.profile.program_operator_error) && expr.op_count() > 0 {
            let at = rng.index(expr.op_count());
            expr = expr.with_op(at, &|op| match op {
                Op::Add => Op::Sub,
                Op::Sub => Op::Add,
                Op::Mul => Op::Add,
                Op::FloorDiv => Op::Mul,
            });
        }
        let copied =
            problem.quantities.iter().map(|(k, v)| (k.clone(), self.profile.copy(*v, rng))).collect();
        (expr, copied)
    }

    /// One Python expression with the numbers filled in: `(16 - 3 - 4) * 2`.
    fn expression(&self, problem: &Problem, rng: &mut SplitMix64) -> String {
        let (expr, copied) = self.written(problem, rng);
        let vars = copied.into_iter().map(|(k, v)| (k, i128::from(v))).collect();
        expr.substitute(&vars).to_string()
    }

    /// A GSM-Hard-style `def solution():` program.
    fn program(&self, problem: &Problem, rng: &mut SplitMix64) -> String {
        let (expr, copied) = self.written(problem, rng);
        let mut out = String::from("def solution():\n");
        for (name, value) in &copied {
            out.push_str(&format!("    {name} = {value}\n"));
        }
        out.push_str(&format!("    result = {expr}\n    return result\n"));
        out
    }

    /// Mental arithmetic over the answer expression: the steps shown and the final value.
    fn solve(&self, problem: &Problem, rng: &mut SplitMix64) -> (Vec<String>, i128) {
        let expr = Expr::parse(&problem.expression).unwrap_or(Expr::Num(0));
        let mut steps = Vec::new();
        let value = expr.eval_with(&problem.vars(), &mut |op, a, b| {
            let result = self.profile.compute(op, a, b, rng)?;
            steps.push(format!("{a} {} {b} = {result}", op.symbol()));
            Some(result)
        });
        (steps, value.unwrap_or(0))
    }
}

/// JSON `{key: value}` (the key taken from a one-property response schema when there is one),
/// or the plain text.
fn wrap(call: &ChatCall, shape: Shape, default_key: &str, value: Value, text: String) -> String {
    if shape != Shape::Json {
        return text;
    }
    let key = call
        .json_schema
        .as_ref()
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .filter(|p| p.len() == 1)
        .and_then(|p| p.keys().next().cloned())
        .unwrap_or_else(|| default_key.to_owned());
    let mut object = serde_json::Map::new();
    object.insert(key, value);
    Value::Object(object).to_string()
}

impl Responder for SimulatedStudent {
    fn respond(&self, call: &ChatCall, choice: u32) -> Outcome {
        Outcome::Reply(self.reply(call, choice))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::student::problems::{Difficulty, ProblemGenerator};

    fn call(system: &str, user: &str, seed: u64, temperature: f64) -> ChatCall {
        ChatCall::from_json(json!({
            "model": "s", "seed": seed, "temperature": temperature,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]
        }))
        .unwrap()
    }

    #[test]
    fn cues_select_task_and_shape() {
        let q = ProblemGenerator::new(1).generate(Difficulty::Small).question;
        let p = recognise(&q);
        let cases = [
            ("Extract the quantities.", Task::ExtractQuantities, Shape::Json),
            ("List the variables as JSON.", Task::ExtractQuantities, Shape::Json),
            ("Write a Python expression for the answer.", Task::WriteExpression, Shape::Text),
            ("Write a Python program.", Task::WriteProgram, Shape::Text),
            ("Answer in JSON with the code.", Task::WriteProgram, Shape::Json),
            ("Solve it. Reply with only the number.", Task::Solve, Shape::NumberOnly),
            ("Solve it.", Task::Solve, Shape::Text),
        ];
        for (system, task, shape) in cases {
            assert_eq!(read_cues(&call(system, &q, 0, 1.0), p.as_ref()), (task, shape), "{system}");
        }
    }

    #[test]
    fn replies_are_deterministic_and_vary_by_seed_unless_greedy() {
        let student = SimulatedStudent::new();
        let q = ProblemGenerator::new(2).generate(Difficulty::Hard).question;
        let a = student.reply(&call("Solve it.", &q, 1, 1.0), 0);
        assert_eq!(a, student.reply(&call("Solve it.", &q, 1, 1.0), 0));
        let varied: std::collections::BTreeSet<String> =
            (0..20).map(|seed| student.reply(&call("Solve it.", &q, seed, 1.0), 0)).collect();
        assert!(varied.len() > 1);
        let greedy: std::collections::BTreeSet<String> =
            (0..20).map(|seed| student.reply(&call("Solve it.", &q, seed, 0.0), seed as u32)).collect();
        assert_eq!(greedy.len(), 1);
    }

    #[test]
    fn shapes_and_unknown_problems() {
        let student = SimulatedStudent::with_profile(StudentProfile::perfect());
        let p = ProblemGenerator::new(3).generate(Difficulty::Hard);
        assert_eq!(
            student.reply(&call("Only the number, please.", &p.question, 0, 1.0), 0),
            p.answer.to_string()
        );
        let text = student.reply(&call("Solve it.", &p.question, 0, 1.0), 0);
        assert!(text.ends_with(&format!("The answer is {}.", p.answer)), "{text}");
        let program = student.reply(&call("Write a Python program.", &p.question, 0, 1.0), 0);
        assert!(
            program.starts_with("```python\ndef solution():\n") && program.contains("return result"),
            "{program}"
        );
        let extract = student.reply(&call("Extract the quantities.", &p.question, 0, 1.0), 0);
        assert_eq!(serde_json::from_str::<Value>(&extract).unwrap(), p.quantities_json());
        let mut with_schema = call("Solve it.", &p.question, 0, 1.0);
        with_schema.response_format = Some("json_schema".into());
        with_schema.json_schema =
            Some(json!({"type": "object", "properties": {"result": {"type": "integer"}}}));
        assert_eq!(student.reply(&with_schema, 0), json!({"result": p.answer}).to_string());
        assert!(student.reply(&call("Solve it.", "What is love?", 0, 1.0), 0).contains("do not know"));
    }
}
