//! Is one variant really better than another? The two tests the statistics endpoint reports:
//! a two-proportion z-test on binary feedback and Welch's t-test on scores, each with a p-value
//! and a verdict a product manager can read.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};
use utoipa::ToSchema;

/// Significance level of the verdicts.
pub const ALPHA: f64 = 0.05;

/// Fewer observations per side than this and no verdict is drawn: the normal approximation of
/// the z-test and the t-test's variance estimates are not worth reporting on less.
pub const MIN_SAMPLES: u64 = 10;

/// The outcome of comparing a variant with the control.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Comparison {
    /// `two_proportion_z` (binary feedback) or `welch_t` (scores).
    pub test: &'static str,
    /// The test statistic (z or t); positive when the variant is ahead of the control.
    pub statistic: Option<f64>,
    /// Two-sided p-value; absent when there is too little data.
    pub p_value: Option<f64>,
    /// `better`, `worse`, `no_significant_difference` or `insufficient_data`.
    pub verdict: &'static str,
    /// The verdict in words.
    pub summary: String,
}

/// Binary outcomes: `successes` out of `n`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Proportion {
    pub successes: u64,
    pub n: u64,
}

/// Sample moments of scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    pub n: u64,
    pub mean: f64,
    /// Sample variance (n − 1 in the denominator).
    pub variance: f64,
}

fn insufficient(test: &'static str, what: &str) -> Comparison {
    Comparison {
        test,
        statistic: None,
        p_value: None,
        verdict: "insufficient_data",
        summary: format!("not enough {what} yet: at least {MIN_SAMPLES} per variant are needed"),
    }
}

fn verdict(test: &'static str, statistic: f64, p_value: f64, what: &str) -> Comparison {
    let (verdict, summary) = if p_value < ALPHA && statistic > 0.0 {
        (
            "better",
            format!("the variant's {what} is significantly higher than the control's (p = {p_value:.4})"),
        )
    } else if p_value < ALPHA {
        (
            "worse",
            format!("the variant's {what} is significantly lower than the control's (p = {p_value:.4})"),
        )
    } else {
        ("no_significant_difference", format!("no significant difference in {what} (p = {p_value:.4})"))
    };
    Comparison { test, statistic: Some(statistic), p_value: Some(p_value), verdict, summary }
}

/// Two-sided p-value of a standard normal statistic.
fn normal_p(z: f64) -> f64 {
    let standard = Normal::standard();
    (2.0 * (1.0 - standard.cdf(z.abs()))).clamp(0.0, 1.0)
}

/// Two-proportion z-test with the pooled proportion, variant against control.
pub fn two_proportion_z(variant: Proportion, control: Proportion) -> Comparison {
    const TEST: &str = "two_proportion_z";
    if variant.n < MIN_SAMPLES || control.n < MIN_SAMPLES {
        return insufficient(TEST, "binary feedback");
    }
    let (n1, n2) = (variant.n as f64, control.n as f64);
    let (p1, p2) = (variant.successes as f64 / n1, control.successes as f64 / n2);
    let pooled = (variant.successes + control.successes) as f64 / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se == 0.0 {
        // Both all-correct or both all-wrong: identical, nothing to test.
        return verdict(TEST, 0.0, 1.0, "correctness rate");
    }
    let z = (p1 - p2) / se;
    verdict(TEST, z, normal_p(z), "correctness rate")
}

/// Welch's unequal-variance t-test, variant against control.
pub fn welch_t(variant: Moments, control: Moments) -> Comparison {
    const TEST: &str = "welch_t";
    if variant.n < MIN_SAMPLES || control.n < MIN_SAMPLES {
        return insufficient(TEST, "scores");
    }
    let (n1, n2) = (variant.n as f64, control.n as f64);
    let (a, b) = (variant.variance / n1, control.variance / n2);
    let se2 = a + b;
    if se2 <= 0.0 {
        // No spread on either side: the means either match exactly or differ with certainty.
        let diff = variant.mean - control.mean;
        return if diff == 0.0 {
            verdict(TEST, 0.0, 1.0, "mean score")
        } else {
            verdict(TEST, diff.signum() * f64::INFINITY, 0.0, "mean score")
        };
    }
    let t = (variant.mean - control.mean) / se2.sqrt();
    // Welch–Satterthwaite degrees of freedom.
    let df = se2 * se2 / (a * a / (n1 - 1.0) + b * b / (n2 - 1.0));
    let p = match StudentsT::new(0.0, 1.0, df) {
        Ok(dist) => (2.0 * (1.0 - dist.cdf(t.abs()))).clamp(0.0, 1.0),
        Err(_) => normal_p(t),
    };
    verdict(TEST, t, p, "mean score")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn z_test_matches_a_worked_example() {
        // 60/100 vs 45/100: pooled 0.525, se 0.07062, z 2.124, p 0.0337.
        let c = two_proportion_z(Proportion { successes: 60, n: 100 }, Proportion { successes: 45, n: 100 });
        assert!((c.statistic.unwrap_or_default() - 2.124).abs() < 1e-3, "{c:?}");
        assert!((c.p_value.unwrap_or_default() - 0.0337).abs() < 1e-3, "{c:?}");
        assert_eq!(c.verdict, "better");
    }

    #[test]
    fn z_test_without_difference_or_data() {
        let same =
            two_proportion_z(Proportion { successes: 50, n: 100 }, Proportion { successes: 50, n: 100 });
        assert_eq!(same.verdict, "no_significant_difference");
        assert_eq!(same.p_value, Some(1.0));
        let few = two_proportion_z(Proportion { successes: 5, n: 5 }, Proportion { successes: 0, n: 50 });
        assert_eq!(few.verdict, "insufficient_data");
        assert_eq!(few.p_value, None);
    }

    #[test]
    fn welch_matches_a_worked_example() {
        // Means 0.8 and 0.7, variances 0.04 and 0.09, n 30 and 40:
        // se² = 0.001333 + 0.00225 = 0.003583, t = 1.6705, df ≈ 67.0, p ≈ 0.0995.
        let c = welch_t(
            Moments { n: 30, mean: 0.8, variance: 0.04 },
            Moments { n: 40, mean: 0.7, variance: 0.09 },
        );
        assert!((c.statistic.unwrap_or_default() - 1.6705).abs() < 1e-3, "{c:?}");
        assert!((c.p_value.unwrap_or_default() - 0.0995).abs() < 2e-3, "{c:?}");
        assert_eq!(c.verdict, "no_significant_difference");
    }

    #[test]
    fn welch_sees_a_clear_loss() {
        let c = welch_t(
            Moments { n: 50, mean: 0.3, variance: 0.01 },
            Moments { n: 50, mean: 0.6, variance: 0.01 },
        );
        assert_eq!(c.verdict, "worse");
        assert!(c.p_value.unwrap_or(1.0) < 1e-6);
    }
}
