//! The numbers of an evaluation report: accuracy with a Wilson interval, the clean subset of
//! numeric data sets, per-example means, and McNemar's test between two versions evaluated on
//! the same examples. Computed from the stored per-example results every time, so a report is
//! always a recount.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;
use sgde_store::EvaluationResult;
use statrs::distribution::{Binomial, DiscreteCDF};
use utoipa::ToSchema;
use uuid::Uuid;

/// z for a two-sided 95% interval.
const Z_95: f64 = 1.959_963_984_540_054;

/// A proportion with its 95% Wilson score interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Accuracy {
    pub correct: u64,
    pub total: u64,
    /// `correct / total`; absent without examples.
    pub accuracy: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
}

/// Wilson score interval of `correct` out of `total` at 95%.
pub fn wilson(correct: u64, total: u64) -> Accuracy {
    if total == 0 {
        return Accuracy { correct, total, accuracy: None, ci_low: None, ci_high: None };
    }
    let n = total as f64;
    let p = correct as f64 / n;
    let z2 = Z_95 * Z_95;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z_95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    Accuracy {
        correct,
        total,
        accuracy: Some(p),
        // The bounds are exactly 0 and 1 at the extremes (floating point lands a hair inside).
        ci_low: Some(if correct == 0 { 0.0 } else { (centre - half).max(0.0) }),
        ci_high: Some(if correct == total { 1.0 } else { (centre + half).min(1.0) }),
    }
}

/// A "clean" expected value: a number that is a non-negative integer. GSM-Hard's number
/// substitution produced fractional and negative answers to counting questions; reporting the
/// clean subset beside all rows separates model errors from label noise.
pub fn is_clean(expected: &Value) -> bool {
    let number = match expected {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    number.is_some_and(|x| x.is_finite() && x >= 0.0 && x.fract() == 0.0)
}

/// One version's results.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct VersionReport {
    pub version_id: Uuid,
    pub version_number: i32,
    /// Examples evaluated so far.
    pub done: u64,
    pub all: Accuracy,
    /// Examples whose expected value is a non-negative integer; absent when the data is not
    /// numeric.
    pub clean: Option<Accuracy>,
    pub errors: u64,
    pub mean_score: Option<f64>,
    pub tokens_per_example: Option<f64>,
    pub cost_per_example_usd: Option<f64>,
    pub latency_ms_per_example: Option<f64>,
}

/// McNemar's test on the paired outcomes of two versions.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PairedComparison {
    pub version_id: Uuid,
    pub baseline_version_id: Uuid,
    /// Examples both versions were evaluated on.
    pub pairs: u64,
    /// Right with the version, wrong with the baseline.
    pub only_version: u64,
    /// Wrong with the version, right with the baseline.
    pub only_baseline: u64,
    /// Exact two-sided McNemar p-value (binomial on the discordant pairs).
    pub p_value: Option<f64>,
    /// `better`, `worse`, `no_significant_difference` or `insufficient_data`.
    pub verdict: &'static str,
    pub summary: String,
}

pub fn version_report(version_id: Uuid, version_number: i32, results: &[&EvaluationResult]) -> VersionReport {
    let done = results.len() as u64;
    let correct = results.iter().filter(|r| r.passed).count() as u64;
    let numeric = results.iter().all(|r| {
        matches!(r.expected, Value::Number(_))
            || r.expected.as_str().is_some_and(|s| s.trim().parse::<f64>().is_ok())
    });
    let clean = (numeric && done > 0).then(|| {
        let clean: Vec<_> = results.iter().filter(|r| is_clean(&r.expected)).collect();
        wilson(clean.iter().filter(|r| r.passed).count() as u64, clean.len() as u64)
    });
    let mean = |f: &dyn Fn(&EvaluationResult) -> f64| {
        (done > 0).then(|| results.iter().map(|r| f(r)).sum::<f64>() / done as f64)
    };
    VersionReport {
        version_id,
        version_number,
        done,
        all: wilson(correct, done),
        clean,
        errors: results.iter().filter(|r| r.error.is_some()).count() as u64,
        mean_score: mean(&|r| r.score),
        tokens_per_example: mean(&|r| r.tokens as f64),
        cost_per_example_usd: mean(&|r| r.cost_usd),
        latency_ms_per_example: mean(&|r| r.latency_us as f64 / 1000.0),
    }
}

/// McNemar's exact test of `version` against `baseline` over the examples both have.
pub fn mcnemar(
    version: (Uuid, &[&EvaluationResult]),
    baseline: (Uuid, &[&EvaluationResult]),
) -> PairedComparison {
    let base: HashMap<u32, bool> = baseline.1.iter().map(|r| (r.example, r.passed)).collect();
    let (mut pairs, mut b, mut c) = (0u64, 0u64, 0u64);
    for r in version.1 {
        if let Some(&other) = base.get(&r.example) {
            pairs += 1;
            match (r.passed, other) {
                (true, false) => b += 1,
                (false, true) => c += 1,
                _ => {}
            }
        }
    }
    let discordant = b + c;
    let (p_value, verdict, summary) = if pairs == 0 {
        (None, "insufficient_data", "no example was evaluated with both versions".to_owned())
    } else if discordant == 0 {
        (
            Some(1.0),
            "no_significant_difference",
            "both versions got exactly the same examples right".to_owned(),
        )
    } else {
        // Under H0 the discordant pairs split evenly: b ~ Binomial(b + c, 1/2).
        let p = match Binomial::new(0.5, discordant) {
            Ok(dist) => (2.0 * dist.cdf(b.min(c))).min(1.0),
            Err(_) => 1.0,
        };
        if p < 0.05 && b > c {
            (
                Some(p),
                "better",
                format!(
                    "the version is significantly more accurate ({b} vs {c} discordant examples, p = {p:.4})"
                ),
            )
        } else if p < 0.05 {
            (
                Some(p),
                "worse",
                format!(
                    "the version is significantly less accurate ({b} vs {c} discordant examples, p = {p:.4})"
                ),
            )
        } else {
            (
                Some(p),
                "no_significant_difference",
                format!("no significant difference ({b} vs {c} discordant examples, p = {p:.4})"),
            )
        }
    };
    PairedComparison {
        version_id: version.0,
        baseline_version_id: baseline.0,
        pairs,
        only_version: b,
        only_baseline: c,
        p_value,
        verdict,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn result(example: u32, passed: bool) -> EvaluationResult {
        EvaluationResult {
            evaluation_id: Uuid::nil(),
            version_id: Uuid::nil(),
            example,
            score: if passed { 1.0 } else { 0.0 },
            passed,
            output: None,
            expected: json!(example),
            error: None,
            trace: None,
            tokens: 10,
            cost_usd: 0.0,
            latency_us: 1000,
        }
    }

    #[test]
    fn wilson_matches_a_worked_example() {
        // 81 of 263: p = 0.308, Wilson 95% [0.255, 0.366].
        let a = wilson(81, 263);
        assert!((a.ci_low.unwrap_or_default() - 0.2553).abs() < 1e-3, "{a:?}");
        assert!((a.ci_high.unwrap_or_default() - 0.3662).abs() < 1e-3, "{a:?}");
        let none = wilson(0, 0);
        assert_eq!(none.accuracy, None);
        let all = wilson(10, 10);
        assert_eq!(all.ci_high, Some(1.0));
        assert!(all.ci_low.unwrap_or(1.0) < 1.0);
    }

    #[test]
    fn clean_means_non_negative_integer() {
        assert!(is_clean(&json!(42.0)));
        assert!(is_clean(&json!("7")));
        assert!(!is_clean(&json!(-3.0)));
        assert!(!is_clean(&json!(2.5)));
        assert!(!is_clean(&json!("abc")));
    }

    #[test]
    fn mcnemar_exact_p_value() {
        // 10 discordant pairs split 9/1: p = 2 * P(X <= 1 | n=10, 1/2) = 2 * 11/1024 = 0.02148.
        let version: Vec<EvaluationResult> = (0..20).map(|i| result(i, i < 15)).collect();
        let baseline: Vec<EvaluationResult> = (0..20).map(|i| result(i, i < 6 || i == 19)).collect();
        let v: Vec<&EvaluationResult> = version.iter().collect();
        let b: Vec<&EvaluationResult> = baseline.iter().collect();
        let c = mcnemar((Uuid::nil(), &v), (Uuid::max(), &b));
        assert_eq!((c.pairs, c.only_version, c.only_baseline), (20, 9, 1));
        assert!((c.p_value.unwrap_or_default() - 0.021_484_375).abs() < 1e-9, "{c:?}");
        assert_eq!(c.verdict, "better");
        let same = mcnemar((Uuid::nil(), &v), (Uuid::nil(), &v));
        assert_eq!(same.verdict, "no_significant_difference");
    }

    #[test]
    fn version_report_counts_the_clean_subset() {
        let mut rows: Vec<EvaluationResult> = (0..4).map(|i| result(i, i % 2 == 0)).collect();
        rows[1].expected = json!(-1.0);
        let refs: Vec<&EvaluationResult> = rows.iter().collect();
        let r = version_report(Uuid::nil(), 1, &refs);
        assert_eq!((r.all.correct, r.all.total), (2, 4));
        let clean = r.clean.unwrap_or_else(|| wilson(0, 0));
        assert_eq!((clean.correct, clean.total), (2, 3));
        assert_eq!(r.tokens_per_example, Some(10.0));
    }
}
