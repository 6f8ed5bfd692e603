//! The deterministic fan-in of structural consensus.
//!
//! Given the values of N samples (or the reason each failed), the vote normalises them, groups
//! equal ones, and picks a winner by a fixed rule, so the same samples always give the same
//! answer. Failed samples abstain; a vote with fewer than `quorum` ballots fails.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sgde_workflow::{Normalize, NumberPick, TieBreak, Vote, VoteMethod, canonical_json};

/// One sample's contribution to a vote.
#[derive(Debug, Clone)]
pub enum Ballot {
    Value(Value),
    Abstain(String),
}

/// A group of equal votes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TallyEntry {
    /// The value as first voted (not normalised).
    pub value: Value,
    /// Normalised form used for comparison.
    pub key: String,
    pub count: u32,
    /// Sample indices that voted for it, ascending.
    pub samples: Vec<u32>,
}

/// The counted vote, recorded in the trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub entries: Vec<TallyEntry>,
    pub cast: u32,
    pub abstained: u32,
    pub quorum: u32,
    /// Index into `entries` of the winner, if any.
    pub winner: Option<usize>,
}

/// Why a vote produced no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoteFailure {
    #[error("quorum not met: {cast} sample(s) voted, {quorum} needed ({abstained} abstained)")]
    NoQuorum { cast: u32, quorum: u32, abstained: u32 },
    #[error("no majority: the most common value has {top} of {cast} votes")]
    NoMajority { top: u32, cast: u32 },
    #[error("tie between {tied} values with {count} votes each")]
    Tie { tied: usize, count: u32 },
}

enum Normalised {
    Number(f64),
    Key(String),
}

fn normalise(value: &Value, how: &Normalize) -> Result<Normalised, String> {
    match how {
        Normalize::Number { .. } => match value {
            Value::Number(n) => {
                n.as_f64().map(Normalised::Number).ok_or_else(|| "number out of range".to_owned())
            }
            // Numeric strings are read with the same rules as the `number` output parser.
            Value::String(s) => {
                let parser = sgde_workflow::CompiledParser::Number { pick: NumberPick::Only, integer: false };
                parser
                    .parse(s)
                    .ok()
                    .and_then(|v| v.as_f64())
                    .map(Normalised::Number)
                    .ok_or_else(|| format!("not a number: {s:?}"))
            }
            other => Err(format!("not a number: {other}")),
        },
        Normalize::Text { case_sensitive } => {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
            Ok(Normalised::Key(if *case_sensitive { collapsed } else { collapsed.to_lowercase() }))
        }
        Normalize::Json => Ok(Normalised::Key(canonical_json(value))),
    }
}

/// Counts `ballots` (indexed by sample) under `vote`.
pub fn count(ballots: &[Ballot], vote: &Vote) -> (Tally, Result<Value, VoteFailure>) {
    let tolerance = match vote.normalize {
        Normalize::Number { tolerance } => tolerance,
        _ => 0.0,
    };
    let mut entries: Vec<TallyEntry> = Vec::new();
    let mut numbers: Vec<f64> = Vec::new();
    let mut abstained = 0;
    for (sample, ballot) in ballots.iter().enumerate() {
        let sample = u32::try_from(sample).unwrap_or(u32::MAX);
        let Ballot::Value(value) = ballot else {
            abstained += 1;
            continue;
        };
        match normalise(value, &vote.normalize) {
            Err(_) => abstained += 1,
            Ok(Normalised::Number(x)) => match numbers.iter().position(|rep| (rep - x).abs() <= tolerance) {
                Some(i) => {
                    entries[i].count += 1;
                    entries[i].samples.push(sample);
                }
                None => {
                    numbers.push(x);
                    entries.push(TallyEntry {
                        value: value.clone(),
                        key: x.to_string(),
                        count: 1,
                        samples: vec![sample],
                    });
                }
            },
            Ok(Normalised::Key(key)) => match entries.iter().position(|e| e.key == key) {
                Some(i) => {
                    entries[i].count += 1;
                    entries[i].samples.push(sample);
                }
                None => {
                    entries.push(TallyEntry { value: value.clone(), key, count: 1, samples: vec![sample] })
                }
            },
        }
    }
    let cast: u32 = entries.iter().map(|e| e.count).sum();
    let mut tally = Tally { entries, cast, abstained, quorum: vote.quorum, winner: None };
    let result = decide(&mut tally, vote, &numbers);
    (tally, result)
}

fn decide(tally: &mut Tally, vote: &Vote, numbers: &[f64]) -> Result<Value, VoteFailure> {
    if tally.cast < vote.quorum || tally.cast == 0 {
        return Err(VoteFailure::NoQuorum {
            cast: tally.cast,
            quorum: vote.quorum,
            abstained: tally.abstained,
        });
    }
    let top = tally.entries.iter().map(|e| e.count).max().unwrap_or(0);
    if vote.method == VoteMethod::Majority && top * 2 <= tally.cast {
        return Err(VoteFailure::NoMajority { top, cast: tally.cast });
    }
    let tied: Vec<usize> = (0..tally.entries.len()).filter(|&i| tally.entries[i].count == top).collect();
    let order = |i: &usize, j: &usize| -> std::cmp::Ordering {
        match (numbers.get(*i), numbers.get(*j)) {
            (Some(a), Some(b)) => a.total_cmp(b),
            _ => tally.entries[*i].key.cmp(&tally.entries[*j].key),
        }
    };
    let winner = match (tied.as_slice(), vote.tie_break) {
        ([only], _) => *only,
        (_, TieBreak::Fail) => return Err(VoteFailure::Tie { tied: tied.len(), count: top }),
        // Entries are created in sample order, so the first tied entry holds the lowest sample.
        (_, TieBreak::FirstSample) => tied[0],
        (_, TieBreak::Smallest) => tied.iter().copied().min_by(order).unwrap_or(tied[0]),
        (_, TieBreak::Largest) => tied.iter().copied().max_by(order).unwrap_or(tied[0]),
    };
    tally.winner = Some(winner);
    Ok(tally.entries[winner].value.clone())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn numbers_vote(method: VoteMethod, tie_break: TieBreak, quorum: u32) -> Vote {
        Vote { method, over: None, normalize: Normalize::Number { tolerance: 1e-6 }, tie_break, quorum }
    }

    fn ballots(values: &[Option<Value>]) -> Vec<Ballot> {
        values.iter().map(|v| v.clone().map_or(Ballot::Abstain("failed".into()), Ballot::Value)).collect()
    }

    #[test]
    fn plurality_with_numeric_tolerance_and_strings() {
        let b =
            ballots(&[Some(json!(42)), Some(json!("42.0000001")), Some(json!(41)), None, Some(json!("$42"))]);
        let (tally, result) = count(&b, &numbers_vote(VoteMethod::Plurality, TieBreak::FirstSample, 1));
        assert_eq!(result.unwrap(), json!(42));
        assert_eq!(tally.cast, 4);
        assert_eq!(tally.abstained, 1);
        assert_eq!(tally.entries[0].samples, vec![0, 1, 4]);
    }

    #[test]
    fn ties_break_by_the_fixed_rule() {
        let b = ballots(&[Some(json!(7)), Some(json!(3)), Some(json!(3)), Some(json!(7))]);
        let first = count(&b, &numbers_vote(VoteMethod::Plurality, TieBreak::FirstSample, 1)).1.unwrap();
        let smallest = count(&b, &numbers_vote(VoteMethod::Plurality, TieBreak::Smallest, 1)).1.unwrap();
        let largest = count(&b, &numbers_vote(VoteMethod::Plurality, TieBreak::Largest, 1)).1.unwrap();
        assert_eq!((first, smallest, largest), (json!(7), json!(3), json!(7)));
        let fail = count(&b, &numbers_vote(VoteMethod::Plurality, TieBreak::Fail, 1)).1;
        assert_eq!(fail, Err(VoteFailure::Tie { tied: 2, count: 2 }));
    }

    #[test]
    fn majority_needs_more_than_half() {
        let b = ballots(&[Some(json!(1)), Some(json!(2)), Some(json!(1)), Some(json!(3))]);
        let (_, result) = count(&b, &numbers_vote(VoteMethod::Majority, TieBreak::FirstSample, 1));
        assert_eq!(result, Err(VoteFailure::NoMajority { top: 2, cast: 4 }));
    }

    #[test]
    fn quorum_counts_only_real_votes() {
        let b = ballots(&[None, Some(json!("not a number")), Some(json!(5)), None, None]);
        let (tally, result) = count(&b, &numbers_vote(VoteMethod::Plurality, TieBreak::FirstSample, 2));
        assert_eq!(result, Err(VoteFailure::NoQuorum { cast: 1, quorum: 2, abstained: 4 }));
        assert_eq!(tally.winner, None);
        let all_failed = ballots(&[None, None]);
        assert!(matches!(count(&all_failed, &Vote::default()).1, Err(VoteFailure::NoQuorum { cast: 0, .. })));
    }

    #[test]
    fn text_and_json_normalisation() {
        let text = Vote { normalize: Normalize::Text { case_sensitive: false }, ..Vote::default() };
        let b = ballots(&[Some(json!("  Paris ")), Some(json!("paris")), Some(json!("Lyon"))]);
        assert_eq!(count(&b, &text).1.unwrap(), json!("  Paris "));
        let b =
            ballots(&[Some(json!({"a": 1, "b": 2})), Some(json!({"b": 2, "a": 1})), Some(json!({"a": 2}))]);
        let (tally, result) = count(&b, &Vote::default());
        assert_eq!(result.unwrap(), json!({"a": 1, "b": 2}));
        assert_eq!(tally.entries[0].count, 2);
    }
}
