//! A family of generated arithmetic word problems with known answers and programs.
//!
//! Each [`Template`] is a GSM8K-style story with named quantities and the expression that
//! answers it. [`ProblemGenerator`] fills templates with small numbers ([`Difficulty::Small`],
//! GSM8K-like) or replaces one quantity with a 6–7 digit number ([`Difficulty::Hard`], the
//! GSM-Hard construction). Because the story text is fixed, [`recognise`] can read a question
//! back into its template and numbers — that is how the simulated student "understands" it.

use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::expr::{Expr, Vars};
use crate::rng::SplitMix64;

/// One named quantity of a template.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    pub name: &'static str,
    /// Range for small problems.
    pub small: (i64, i64),
    /// Whether a hard problem may make this quantity a 6–7 digit number.
    pub may_be_large: bool,
}

/// A story with `{name}` placeholders and the expression over those names that answers it.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    pub id: &'static str,
    pub text: &'static str,
    pub expression: &'static str,
    pub quantities: &'static [Quantity],
}

const fn q(name: &'static str, lo: i64, hi: i64, may_be_large: bool) -> Quantity {
    Quantity { name, small: (lo, hi), may_be_large }
}

/// The templates. Their texts avoid the words the student reads as instructions (see
/// [`super::responder`]): "extract", "quantities", "python", "program", "code", "json".
pub const TEMPLATES: &[Template] = &[
    Template {
        id: "shop",
        text: "A shop sells {apples_per_day} apples per day for {days} days at ${price} each. How many dollars does the shop make?",
        expression: "apples_per_day * days * price",
        quantities: &[q("apples_per_day", 5, 60, true), q("days", 2, 30, false), q("price", 1, 9, true)],
    },
    Template {
        id: "eggs",
        text: "Janet's ducks lay {eggs_per_day} eggs per day. She eats {eaten} for breakfast every morning and bakes muffins with {baked} every day. She sells the rest at the market for ${price} per egg. How many dollars does she make every day?",
        expression: "(eggs_per_day - eaten - baked) * price",
        quantities: &[
            q("eggs_per_day", 12, 40, true),
            q("eaten", 1, 5, false),
            q("baked", 1, 6, false),
            q("price", 2, 5, true),
        ],
    },
    Template {
        id: "robe",
        text: "A robe takes {blue} bolts of blue fiber and {ratio} times as much white fiber. How many bolts in total does it take?",
        expression: "blue + blue * ratio",
        quantities: &[q("blue", 2, 30, true), q("ratio", 2, 5, false)],
    },
    Template {
        id: "sprints",
        text: "James runs {sprints} sprints {times} times a week. He runs {meters} meters each sprint. How many total meters does he run a week?",
        expression: "sprints * times * meters",
        quantities: &[q("sprints", 2, 6, true), q("times", 2, 5, false), q("meters", 20, 90, true)],
    },
    Template {
        id: "savings",
        text: "Maria has ${savings} in her account. She deposits ${deposit} every week for {weeks} weeks and then spends ${spent} on a bike. How many dollars does she have left?",
        expression: "savings + deposit * weeks - spent",
        quantities: &[
            q("savings", 50, 500, true),
            q("deposit", 5, 40, true),
            q("weeks", 2, 12, false),
            q("spent", 20, 90, false),
        ],
    },
    Template {
        id: "warehouse",
        text: "A warehouse has {boxes} boxes with {items} items in each box. {damaged} items are damaged. How many items are not damaged?",
        expression: "boxes * items - damaged",
        quantities: &[q("boxes", 10, 90, true), q("items", 4, 24, true), q("damaged", 1, 30, false)],
    },
    Template {
        id: "train",
        text: "A train travels at {speed} kilometers per hour for {hours} hours and then {extra} more kilometers. How many kilometers does it travel in total?",
        expression: "speed * hours + extra",
        quantities: &[q("speed", 40, 120, true), q("hours", 2, 9, false), q("extra", 5, 80, true)],
    },
    Template {
        id: "harvest",
        text: "A farmer harvests {kg_per_field} kg of potatoes from each of his {fields} fields and packs them into bags of {bag_kg} kg. How many bags does he fill?",
        expression: "kg_per_field * fields // bag_kg",
        quantities: &[q("kg_per_field", 20, 200, true), q("fields", 2, 9, false), q("bag_kg", 2, 10, false)],
    },
];

/// Small numbers (GSM8K-like) or one large number (GSM-Hard-like).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Difficulty {
    Small,
    Hard,
}

/// A generated (or recognised) problem with its ground truth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `{template}-{difficulty}-{n}` for generated problems; `{template}` for recognised ones.
    pub id: String,
    pub template: String,
    pub question: String,
    /// The quantities in template order, as `(name, value)`.
    pub quantities: Vec<(String, i64)>,
    /// The answer expression over the quantity names (Python).
    pub expression: String,
    pub answer: i64,
    pub difficulty: Difficulty,
}

impl Problem {
    /// The quantities as a JSON object in template order: what the student's extraction returns.
    pub fn quantities_json(&self) -> Value {
        Value::Object(self.quantities.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
    }

    /// The answer expression with the numbers filled in: `12 * 30 * 3`.
    pub fn numeric_expression(&self) -> String {
        match Expr::parse(&self.expression) {
            Ok(e) => e.substitute(&self.vars()).to_string(),
            Err(_) => self.expression.clone(),
        }
    }

    /// A GSM-Hard-style `def solution():` program that returns the answer.
    pub fn python(&self) -> String {
        let mut out = String::from("def solution():\n");
        out.push_str(&format!(
            "    \"\"\"{}\"\"\"\n",
            self.question.replace('\\', "\\\\").replace('"', "\\\"")
        ));
        for (name, value) in &self.quantities {
            out.push_str(&format!("    {name} = {value}\n"));
        }
        out.push_str(&format!("    result = {}\n    return result\n", self.expression));
        out
    }

    /// One row in the shape of GSM-Hard's JSONL (`input`, `code`, `target`) plus our fields.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "input": self.question,
            "code": self.python(),
            "target": self.answer,
            "template": self.template,
            "difficulty": self.difficulty,
            "quantities": self.quantities_json(),
            "expression": self.expression,
        })
    }

    pub(crate) fn vars(&self) -> Vars {
        self.quantities.iter().map(|(k, v)| (k.clone(), i128::from(*v))).collect()
    }
}

/// Generates problems deterministically from a seed.
#[derive(Debug, Clone)]
pub struct ProblemGenerator {
    rng: SplitMix64,
    counter: u64,
}

impl ProblemGenerator {
    pub fn new(seed: u64) -> Self {
        Self { rng: SplitMix64::new(seed), counter: 0 }
    }

    /// A problem from a random template.
    pub fn generate(&mut self, difficulty: Difficulty) -> Problem {
        let template = TEMPLATES[self.rng.index(TEMPLATES.len())];
        self.fill(&template, difficulty)
    }

    /// A problem from the template with this id, if it exists.
    pub fn generate_from(&mut self, template_id: &str, difficulty: Difficulty) -> Option<Problem> {
        let template = TEMPLATES.iter().find(|t| t.id == template_id)?;
        Some(self.fill(template, difficulty))
    }

    /// `count` problems cycling through the templates in order (so a small batch covers them).
    pub fn batch(&mut self, count: usize, difficulty: Difficulty) -> Vec<Problem> {
        (0..count).map(|i| self.fill(&TEMPLATES[i % TEMPLATES.len()], difficulty)).collect()
    }

    fn fill(&mut self, template: &Template, difficulty: Difficulty) -> Problem {
        self.counter += 1;
        let expr = Expr::parse(template.expression).unwrap_or(Expr::Num(0));
        let large_candidates: Vec<usize> =
            template.quantities.iter().enumerate().filter(|(_, q)| q.may_be_large).map(|(i, _)| i).collect();
        // Rejection sampling for exact division and a non-negative answer; the ranges make a
        // valid draw likely, and after many misses the last small draw is used as is.
        let mut values = Vec::new();
        for _ in 0..1000 {
            let large = (difficulty == Difficulty::Hard)
                .then(|| large_candidates[self.rng.index(large_candidates.len())]);
            values = template
                .quantities
                .iter()
                .enumerate()
                .map(|(i, q)| {
                    if Some(i) == large {
                        self.rng.range(100_000, 9_999_999)
                    } else {
                        self.rng.range(q.small.0, q.small.1)
                    }
                })
                .collect();
            let vars = to_vars(template, &values);
            if expr.divides_exactly(&vars) && expr.eval(&vars).is_some_and(|v| v >= 0) {
                break;
            }
        }
        let question = render(template.text, template, &values);
        let vars = to_vars(template, &values);
        Problem {
            id: format!(
                "{}-{}-{}",
                template.id,
                if difficulty == Difficulty::Hard { "hard" } else { "small" },
                self.counter
            ),
            template: template.id.to_owned(),
            question,
            quantities: template
                .quantities
                .iter()
                .zip(&values)
                .map(|(q, v)| (q.name.to_owned(), *v))
                .collect(),
            expression: template.expression.to_owned(),
            answer: expr.eval(&vars).and_then(|v| i64::try_from(v).ok()).unwrap_or(0),
            difficulty,
        }
    }
}

fn to_vars(template: &Template, values: &[i64]) -> Vars {
    template.quantities.iter().zip(values).map(|(q, v)| (q.name.to_owned(), i128::from(*v))).collect()
}

fn render(text: &str, template: &Template, values: &[i64]) -> String {
    let mut out = text.to_owned();
    for (q, v) in template.quantities.iter().zip(values) {
        out = out.replace(&format!("{{{}}}", q.name), &v.to_string());
    }
    out
}

/// Reads a question back into its template and numbers, wherever it appears in `text` (a prompt
/// may wrap it in instructions). Whitespace may differ; numbers may carry thousands separators.
pub fn recognise(text: &str) -> Option<Problem> {
    static PATTERNS: OnceLock<Vec<(Template, Option<Regex>)>> = OnceLock::new();
    let patterns = PATTERNS.get_or_init(|| TEMPLATES.iter().map(|t| (*t, pattern(t.text).ok())).collect());
    let mut best: Option<(usize, Problem)> = None;
    for (template, regex) in patterns {
        let Some(caps) = regex.as_ref().and_then(|r| r.captures(text)) else { continue };
        let mut quantities = Vec::new();
        for q in template.quantities {
            let raw = caps.name(q.name)?.as_str().replace(',', "");
            quantities.push((q.name.to_owned(), raw.parse::<i64>().ok()?));
        }
        let start = caps.get(0).map_or(0, |m| m.start());
        let expr = Expr::parse(template.expression).ok()?;
        let vars: Vars = quantities.iter().map(|(k, v)| (k.clone(), i128::from(*v))).collect();
        let answer = expr.eval(&vars).and_then(|v| i64::try_from(v).ok())?;
        let hard = quantities.iter().any(|(_, v)| v.abs() >= 100_000);
        let problem = Problem {
            id: template.id.to_owned(),
            template: template.id.to_owned(),
            question: caps.get(0).map_or("", |m| m.as_str()).to_owned(),
            quantities,
            expression: template.expression.to_owned(),
            answer,
            difficulty: if hard { Difficulty::Hard } else { Difficulty::Small },
        };
        // The question that appears last in the prompt is the one being asked (earlier ones are
        // few-shot examples).
        if best.as_ref().is_none_or(|(s, _)| start >= *s) {
            best = Some((start, problem));
        }
    }
    best.map(|(_, p)| p)
}

/// A regex for a template text: literal words, flexible whitespace, named number groups.
fn pattern(text: &str) -> Result<Regex, regex::Error> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&literal(&rest[..open]));
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
        let name = &rest[open + 1..close];
        out.push_str(&format!(r"(?P<{name}>\d[\d,]*)"));
        rest = rest.get(close + 1..).unwrap_or("");
    }
    out.push_str(&literal(rest));
    Regex::new(&format!("(?i){out}"))
}

fn literal(text: &str) -> String {
    let words = text.split_whitespace().map(regex::escape).collect::<Vec<_>>().join(r"\s+");
    let before = if text.starts_with(char::is_whitespace) { r"\s+" } else { "" };
    let after = if text.ends_with(char::is_whitespace) && !words.is_empty() { r"\s+" } else { "" };
    format!("{before}{words}{after}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_problems_are_consistent() {
        let mut generator = ProblemGenerator::new(42);
        for difficulty in [Difficulty::Small, Difficulty::Hard] {
            for p in generator.batch(40, difficulty) {
                let expr = Expr::parse(&p.expression).unwrap();
                assert!(expr.divides_exactly(&p.vars()), "{p:?}");
                assert_eq!(expr.eval(&p.vars()), Some(i128::from(p.answer)));
                assert!(p.answer >= 0, "{p:?}");
                let large = p.quantities.iter().filter(|(_, v)| *v >= 100_000).count();
                assert_eq!(large, usize::from(difficulty == Difficulty::Hard), "{p:?}");
                let back = recognise(&format!("Solve this.\n\n{}\n", p.question)).unwrap();
                assert_eq!((back.template.as_str(), back.answer), (p.template.as_str(), p.answer));
                assert_eq!(back.quantities, p.quantities);
                assert!(p.python().contains("return result"));
            }
        }
    }

    #[test]
    fn generation_is_deterministic_and_covers_templates() {
        let a = ProblemGenerator::new(7).batch(16, Difficulty::Hard);
        let b = ProblemGenerator::new(7).batch(16, Difficulty::Hard);
        assert_eq!(a, b);
        let ids: std::collections::BTreeSet<_> = a.iter().map(|p| p.template.clone()).collect();
        assert_eq!(ids.len(), TEMPLATES.len());
    }

    #[test]
    fn recognition_tolerates_layout() {
        let q = "A robe takes 2,287,720 bolts of blue fiber and 2 times\nas much white fiber.  How many bolts in total does it take?";
        let p = recognise(q).unwrap();
        assert_eq!(p.answer, 2_287_720 * 3);
        assert_eq!(p.difficulty, Difficulty::Hard);
        assert!(recognise("What is the capital of France?").is_none());
    }

    #[test]
    fn templates_avoid_cue_words() {
        for t in TEMPLATES {
            let text = t.text.to_lowercase();
            for cue in ["extract", "quantit", "python", "program", "code", "json", "expression", "variable"] {
                assert!(!text.contains(cue), "{} contains {cue}", t.id);
            }
        }
    }
}
