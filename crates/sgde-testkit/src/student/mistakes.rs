//! The student's error model: when its arithmetic goes wrong, and how.
//!
//! Errors are drawn per operation from the operand sizes, and look like real LLM slips on large
//! numbers (GSM-Hard): one digit off, a dropped carry, two digits swapped, a lost or extra zero.
//! A wrong value is always different from the right one, so a slip is never silently harmless.

use super::expr::Op;
use crate::rng::SplitMix64;

/// Error rates of the simulated student; [`StudentProfile::default`] is the documented profile
/// (see the crate docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StudentProfile {
    /// Per operation whose operands have at most 4 digits (and result at most 6).
    pub small_error: f64,
    /// Per `+`/`-` with a 5-digit operand (or a 7-digit result).
    pub medium_add_error: f64,
    /// Per `*`/`//` with a 5-digit operand (or a 7-digit result).
    pub medium_mul_error: f64,
    /// Per `+`/`-` with an operand of 6 or more digits (or a result of 8 or more).
    pub large_add_error: f64,
    /// Per `*`/`//` with an operand of 6 or more digits (or a result of 8 or more).
    pub large_mul_error: f64,
    /// Per written program or expression: one operator replaced by a wrong one.
    pub program_operator_error: f64,
    /// Per number of 6 or more digits copied into JSON or a program: one digit slips.
    pub copy_error: f64,
}

impl Default for StudentProfile {
    fn default() -> Self {
        Self {
            small_error: 0.0,
            medium_add_error: 0.05,
            medium_mul_error: 0.3,
            large_add_error: 0.35,
            large_mul_error: 0.9,
            program_operator_error: 0.12,
            copy_error: 0.02,
        }
    }
}

fn digits(v: i128) -> usize {
    v.unsigned_abs().to_string().len()
}

impl StudentProfile {
    /// A profile that never errs: for tests of plumbing rather than of robustness.
    pub fn perfect() -> Self {
        Self {
            small_error: 0.0,
            medium_add_error: 0.0,
            medium_mul_error: 0.0,
            large_add_error: 0.0,
            large_mul_error: 0.0,
            program_operator_error: 0.0,
            copy_error: 0.0,
        }
    }

    /// Probability that computing `a op b = result` in the head goes wrong.
    pub fn op_error(&self, op: Op, a: i128, b: i128, result: i128) -> f64 {
        let operand = digits(a).max(digits(b));
        let result = digits(result);
        let multiplicative = matches!(op, Op::Mul | Op::FloorDiv);
        if operand >= 6 || result >= 8 {
            if multiplicative { self.large_mul_error } else { self.large_add_error }
        } else if operand >= 5 || result >= 7 {
            if multiplicative { self.medium_mul_error } else { self.medium_add_error }
        } else {
            self.small_error
        }
    }

    /// Mental arithmetic: the exact result, or with probability [`Self::op_error`] a plausible
    /// wrong one.
    pub fn compute(&self, op: Op, a: i128, b: i128, rng: &mut SplitMix64) -> Option<i128> {
        let exact = op.apply(a, b)?;
        if rng.chance(self.op_error(op, a, b, exact)) { Some(slip(exact, rng)) } else { Some(exact) }
    }

    /// Copying a number: large numbers occasionally get one digit wrong.
    pub fn copy(&self, value: i64, rng: &mut SplitMix64) -> i64 {
        if digits(i128::from(value)) >= 6 && rng.chance(self.copy_error) {
            i64::try_from(digit_slip(i128::from(value), rng)).unwrap_or(value)
        } else {
            value
        }
    }
}

/// A plausible wrong value near `v`: one of digit slip, dropped carry, transposition, lost zero.
pub fn slip(v: i128, rng: &mut SplitMix64) -> i128 {
    for _ in 0..8 {
        let wrong = match rng.index(4) {
            0 => digit_slip(v, rng),
            1 => dropped_carry(v, rng),
            2 => transposed(v, rng),
            _ => lost_zero(v, rng),
        };
        if wrong != v {
            return wrong;
        }
    }
    v + 1
}

fn with_digits(v: i128, edit: impl FnOnce(&mut Vec<u8>)) -> i128 {
    let mut d: Vec<u8> = v.unsigned_abs().to_string().into_bytes();
    edit(&mut d);
    let magnitude: i128 = String::from_utf8_lossy(&d).parse().unwrap_or(0);
    if v < 0 { -magnitude } else { magnitude }
}

/// One digit one up or down (never creating a leading zero).
fn digit_slip(v: i128, rng: &mut SplitMix64) -> i128 {
    let up = rng.chance(0.5);
    let position = rng.index(digits(v));
    with_digits(v, |d| {
        let c = d[position] - b'0';
        let mut n = if up { (c + 1) % 10 } else { (c + 9) % 10 };
        if position == 0 && n == 0 && d.len() > 1 {
            n = c + 1;
        }
        d[position] = b'0' + n.min(9);
    })
}

/// Off by a power of ten, as when a carry is forgotten.
fn dropped_carry(v: i128, rng: &mut SplitMix64) -> i128 {
    let len = digits(v);
    let k = u32::try_from(rng.range(1, (len as i64 - 1).max(1))).unwrap_or(1);
    let step = 10i128.pow(k);
    if v.abs() >= step { v - step * v.signum() } else { v + step }
}

/// Two adjacent digits swapped.
fn transposed(v: i128, rng: &mut SplitMix64) -> i128 {
    let len = digits(v);
    if len < 2 {
        return v + 1;
    }
    let i = rng.index(len - 1);
    with_digits(v, |d| {
        if !(i == 0 && d[1] == b'0') {
            d.swap(i, i + 1);
        }
    })
}

/// A zero lost or added at the end.
fn lost_zero(v: i128, rng: &mut SplitMix64) -> i128 {
    if v % 10 == 0 && v != 0 && rng.chance(0.7) { v / 10 } else { v.saturating_mul(10) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slips_are_wrong_but_close_in_shape() {
        let mut rng = SplitMix64::new(1);
        for v in [0i128, 7, 10, 42, 1800, 4_933_828, 9_867_630, -55] {
            for _ in 0..200 {
                let w = slip(v, &mut rng);
                assert_ne!(w, v);
            }
        }
    }

    #[test]
    fn small_numbers_are_safe_large_ones_are_not() {
        let p = StudentProfile::default();
        assert_eq!(p.op_error(Op::Mul, 60, 30, 1800), 0.0);
        assert_eq!(p.op_error(Op::Mul, 1800, 9, 16200), 0.0);
        assert_eq!(p.op_error(Op::Mul, 2_287_720, 2, 4_575_440), p.large_mul_error);
        assert_eq!(p.op_error(Op::Add, 2_287_720, 4_575_440, 6_863_160), p.large_add_error);
        let mut rng = SplitMix64::new(3);
        let wrong =
            (0..1000).filter(|_| p.compute(Op::Mul, 1_793_815, 60, &mut rng) != Some(107_628_900)).count();
        assert!((850..=950).contains(&wrong), "{wrong}");
    }
}
