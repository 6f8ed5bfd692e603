//! Sticky assignment of routing keys to variants.
//!
//! A routing key hashes (with the policy's salt) into one of [`BUCKETS`] buckets; each variant
//! owns a set of bucket ranges whose size is its weight. The same key therefore lands on the same
//! variant for as long as the ranges stand. When the weights change, [`reallocate`] keeps every
//! variant's existing buckets up to its new share and only hands over the difference, so the
//! fraction of keys that change variant is the least any allocation could achieve (90/10 → 80/20
//! moves exactly 10% of the key space).

use std::ops::Range;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

/// Buckets `start..end` (half-open) of the key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BucketRange {
    pub start: u32,
    pub end: u32,
}

/// Resolution of the key space: weights are in hundredths of a percent.
pub const BUCKETS: u32 = 10_000;

/// The bucket of `key` under `salt`: a stable hash, the same on every replica and release.
pub fn bucket(salt: &str, key: &str) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    // A separator, so that ("ab", "c") and ("a", "bc") do not collide by construction.
    hasher.update([0u8]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    // 2^64 is not a multiple of 10,000; the bias (< 1e-15) is far below anything measurable.
    u32::try_from(u64::from_be_bytes(head) % u64::from(BUCKETS)).unwrap_or(0)
}

/// Index of the variant whose ranges contain `bucket`, if any.
pub fn variant_of(ranges: &[Vec<BucketRange>], bucket: u32) -> Option<usize> {
    ranges.iter().position(|owned| owned.iter().any(|r| r.start <= bucket && bucket < r.end))
}

/// Bucket ranges for the variants `targets` (version id, buckets wanted), given who owned what
/// before (`previous`, empty for a first policy). Targets must sum to [`BUCKETS`].
///
/// A variant that keeps or grows its share keeps all its buckets; one that shrinks keeps the
/// first buckets of its ranges; buckets of removed variants and the surplus of shrunk ones go
/// to the growing variants, lowest buckets first.
pub fn reallocate(previous: &[(Uuid, Vec<BucketRange>)], targets: &[(Uuid, u32)]) -> Vec<Vec<BucketRange>> {
    let mut kept: Vec<Vec<Range<u32>>> = Vec::with_capacity(targets.len());
    let mut owned_before = vec![false; previous.len()];
    for &(version, want) in targets {
        let mut mine = Vec::new();
        if let Some(i) = previous.iter().position(|(v, _)| *v == version) {
            owned_before[i] = true;
            let mut left = want;
            for r in &previous[i].1 {
                if left == 0 {
                    break;
                }
                let take = left.min(r.end - r.start);
                mine.push(r.start..r.start + take);
                left -= take;
            }
        }
        kept.push(mine);
    }
    let mut free = free_ranges(&kept);
    let mut result = Vec::with_capacity(targets.len());
    for (mut mine, &(_, want)) in kept.into_iter().zip(targets) {
        let mut missing = want - mine.iter().map(|r| r.end - r.start).sum::<u32>();
        while missing > 0 {
            let Some(first) = free.first_mut() else { break };
            let take = missing.min(first.end - first.start);
            mine.push(first.start..first.start + take);
            first.start += take;
            if first.start == first.end {
                free.remove(0);
            }
            missing -= take;
        }
        result.push(normalise(mine));
    }
    result
}

/// The buckets nobody keeps, in ascending order.
fn free_ranges(kept: &[Vec<Range<u32>>]) -> Vec<Range<u32>> {
    let mut taken: Vec<Range<u32>> = kept.iter().flatten().cloned().collect();
    taken.sort_by_key(|r| r.start);
    let mut free = Vec::new();
    let mut at = 0;
    for r in taken {
        if r.start > at {
            free.push(at..r.start);
        }
        at = at.max(r.end);
    }
    if at < BUCKETS {
        free.push(at..BUCKETS);
    }
    free
}

/// Sorted, with adjacent ranges merged.
fn normalise(mut ranges: Vec<Range<u32>>) -> Vec<BucketRange> {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<BucketRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => out.push(BucketRange { start: r.start, end: r.end }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(ranges: &[BucketRange]) -> u32 {
        ranges.iter().map(|r| r.end - r.start).sum()
    }

    fn owner_map(previous: &[(Uuid, Vec<BucketRange>)]) -> Vec<Option<Uuid>> {
        (0..BUCKETS)
            .map(|b| {
                let ranges: Vec<Vec<BucketRange>> = previous.iter().map(|(_, r)| r.clone()).collect();
                variant_of(&ranges, b).map(|i| previous[i].0)
            })
            .collect()
    }

    #[test]
    fn a_first_policy_covers_every_bucket_once_in_proportion() {
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let ranges = reallocate(&[], &[(a, 5_000), (b, 3_000), (c, 2_000)]);
        assert_eq!(ranges.iter().map(|r| size(r)).collect::<Vec<_>>(), vec![5_000, 3_000, 2_000]);
        let policy: Vec<_> = [a, b, c].into_iter().zip(ranges).collect();
        assert!(owner_map(&policy).iter().all(Option::is_some));
    }

    #[test]
    fn moving_90_10_to_80_20_moves_exactly_the_difference() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let first: Vec<_> = [a, b].into_iter().zip(reallocate(&[], &[(a, 9_000), (b, 1_000)])).collect();
        let second: Vec<_> = [a, b].into_iter().zip(reallocate(&first, &[(a, 8_000), (b, 2_000)])).collect();
        let (before, after) = (owner_map(&first), owner_map(&second));
        let moved = before.iter().zip(&after).filter(|(x, y)| x != y).count();
        assert_eq!(moved, 1_000);
        // Only a → b moves; b keeps every bucket it had.
        assert!(before.iter().zip(&after).all(|(x, y)| x == y || (*x == Some(a) && *y == Some(b))));
    }

    #[test]
    fn removing_and_adding_variants_reuses_only_the_freed_buckets() {
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let first: Vec<_> = [a, b].into_iter().zip(reallocate(&[], &[(a, 5_000), (b, 5_000)])).collect();
        let second: Vec<_> = [a, c].into_iter().zip(reallocate(&first, &[(a, 5_000), (c, 5_000)])).collect();
        let (before, after) = (owner_map(&first), owner_map(&second));
        assert!(before.iter().zip(&after).all(|(x, y)| (*x == Some(a)) == (*y == Some(a))));
        assert_eq!(after.iter().filter(|o| **o == Some(c)).count(), 5_000);
    }

    #[test]
    fn reordering_variants_moves_nothing() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let first: Vec<_> = [a, b].into_iter().zip(reallocate(&[], &[(a, 7_000), (b, 3_000)])).collect();
        let second: Vec<_> = [b, a].into_iter().zip(reallocate(&first, &[(b, 3_000), (a, 7_000)])).collect();
        assert_eq!(owner_map(&first), owner_map(&second));
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket("salt", "user-1"), bucket("salt", "user-1"));
        assert_ne!(bucket("salt", "user-1"), bucket("other", "user-1"));
        let mut counts = [0u32; 10];
        for i in 0..100_000 {
            counts[(bucket("s", &format!("key-{i}")) / 1_000) as usize] += 1;
        }
        // 10,000 expected per decile; 5 standard deviations is about ±475.
        assert!(counts.iter().all(|&c| (9_500..10_500).contains(&c)), "{counts:?}");
    }
}
