//! What routing adds to a request once the policy is loaded (it arrives in the same query that
//! resolves the default version): hashing the routing key and finding its variant.
//!
//! `cargo bench -p sgde-api --bench routing`

use std::hint::black_box;

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use sgde_api::routing::pick;
use sgde_store::buckets;
use sgde_store::{PolicyChange, PolicyVariant, TrafficPolicy};
use uuid::Uuid;

/// A policy of `weights` (hundredths of a percent), allocated as the store allocates them.
fn policy(weights: &[u32]) -> TrafficPolicy {
    let targets: Vec<(Uuid, u32)> = weights.iter().map(|w| (Uuid::now_v7(), *w)).collect();
    let ranges = buckets::reallocate(&[], &targets);
    TrafficPolicy {
        workflow_id: Uuid::now_v7(),
        revision: 1,
        variants: targets
            .iter()
            .zip(ranges)
            .enumerate()
            .map(|(i, ((id, w), buckets))| PolicyVariant {
                version_id: *id,
                version_number: i32::try_from(i + 1).unwrap_or(i32::MAX),
                weight: f64::from(*w) / 100.0,
                buckets,
            })
            .collect(),
        shadow: None,
        salt: Uuid::new_v4().simple().to_string(),
        change: PolicyChange::Set,
        created_by: None,
        created_at: Utc::now(),
    }
}

fn routing(c: &mut Criterion) {
    let two = policy(&[9_000, 1_000]);
    let five = policy(&[2_000; 5]);
    let keys: Vec<String> = (0..1024).map(|i| format!("customer-{i:08}")).collect();
    let mut group = c.benchmark_group("routing");
    let mut i = 0usize;
    group.bench_function("keyed_90_10", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(pick(black_box(&two), Some(&keys[i])))
        })
    });
    group.bench_function("keyed_5_variants", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(pick(black_box(&five), Some(&keys[i])))
        })
    });
    group.bench_function("unkeyed_90_10", |b| b.iter(|| black_box(pick(black_box(&two), None))));
    group.bench_function("reallocate_after_weight_change", |b| {
        let owners: Vec<(Uuid, Vec<_>)> =
            five.variants.iter().map(|v| (v.version_id, v.buckets.clone())).collect();
        let targets: Vec<(Uuid, u32)> = five
            .variants
            .iter()
            .zip([3_000, 1_000, 2_000, 2_000, 2_000])
            .map(|(v, w)| (v.version_id, w))
            .collect();
        b.iter(|| black_box(buckets::reallocate(black_box(&owners), black_box(&targets))))
    });
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
