//! What SQLite computes in Rust or differently in SQL, because it lacks Postgres' `md5`,
//! `percentile_cont` and `var_samp`, equals what Postgres computes.
//!
//! The split of a data set's rows matters most: Postgres orders rows by
//! `md5(seed::text || ':' || idx::text)`, SQLite by `sgde_store::datasets::split_order`, and the
//! two must be identical so that a data set moved between backends keeps its train, validation
//! and test rows.

use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};
use sgde_store::StoreOptions;
use sgde_store::datasets::split_order;
use sgde_store::testing::{Backend, DEFAULT_ADMIN_URL, TestDatabase};
use sgde_store::{
    DatasetRow, EVALUATION_JOB_KIND, EvaluationResult, ExecutionOutcome, ExecutionStatus, ExecutionUsage,
    NewDataset, NewExecution, NewFeedback, NewJob, NewVersion, NewWorkflow, PageRequest, Split, SplitSpec,
    Store, VariantStats,
};
use sqlx::PgPool;

/// Postgres' ranking, with the very expression of `pg::datasets` (`idx` is an `integer` there
/// too, and the seed a `bigint`).
async fn postgres_order(pool: &PgPool, seed: u64, rows: u32) -> Vec<u32> {
    let order: Vec<i32> = sqlx::query_scalar(
        "SELECT idx FROM generate_series(0, $2 - 1) AS idx ORDER BY md5($1::text || ':' || idx::text), idx",
    )
    .bind(i64::from_ne_bytes(seed.to_ne_bytes()))
    .bind(i32::try_from(rows).unwrap())
    .fetch_all(pool)
    .await
    .unwrap();
    order.into_iter().map(|i| u32::try_from(i).unwrap()).collect()
}

#[tokio::test]
async fn rust_split_order_equals_postgres_md5_order() {
    let url = std::env::var("SGDE_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
    let pool = PgPool::connect(&url).await.unwrap();
    // Seeds above i64::MAX are stored (and written into the hashed text) as negative numbers.
    for seed in [0, 1, 7, 42, 1 << 40, i64::MAX as u64, 1 << 63, u64::MAX, 12_345_678_901_234_567_890] {
        for rows in [0, 1, 2, 10, 257] {
            assert_eq!(
                split_order(seed, rows),
                postgres_order(&pool, seed, rows).await,
                "seed {seed}, {rows} rows"
            );
        }
    }
    pool.close().await;
}

/// A Postgres and an SQLite store for one test.
async fn both() -> (TestDatabase, TestDatabase) {
    let options = StoreOptions { max_connections: 4, ..StoreOptions::default() };
    let pg = TestDatabase::on(Backend::Postgres, options.clone()).await.unwrap();
    let sqlite = TestDatabase::on(Backend::Sqlite, options).await.unwrap();
    (pg, sqlite)
}

async fn rows_of(
    s: &dyn Store,
    id: uuid::Uuid,
    split: Option<Split>,
    offset: u32,
    limit: u32,
) -> Vec<DatasetRow> {
    s.dataset_rows(id, split, offset, limit).await.unwrap()
}

#[tokio::test]
async fn a_data_set_has_the_same_split_on_both_backends() {
    let (pg, sqlite) = both().await;
    let rows: Vec<(Value, Value)> =
        (0..137).map(|i| (json!({ "q": i, "x": 0.1 * f64::from(i) }), json!(i * 2))).collect();
    for seed in [3, u64::MAX - 5] {
        let new = NewDataset {
            name: format!("d{seed}"),
            description: None,
            mapping: json!({ "q": "inputs.q" }),
            split: SplitSpec { seed, train: 0.3, validation: 0.25 },
        };
        let mut per_backend = Vec::new();
        for db in [&pg, &sqlite] {
            let s = &*db.store;
            let d = s.create_dataset(&new, None).await.unwrap();
            let d = s.replace_dataset_rows(d.id, &rows).await.unwrap();
            assert_eq!((d.train_rows, d.validation_rows, d.test_rows), (41, 34, 62));
            let mut pages = Vec::new();
            for split in [None, Some(Split::Train), Some(Split::Validation), Some(Split::Test)] {
                pages.push(rows_of(s, d.id, split, 0, 1000).await);
                pages.push(rows_of(s, d.id, split, 7, 11).await);
            }
            // The rows are as uploaded, and the split is the order's cut.
            let all = &pages[0];
            let order = split_order(seed, 137);
            for row in all {
                let rank = order.iter().position(|i| *i == row.index).unwrap();
                let expected = if rank < 41 {
                    Split::Train
                } else if rank < 75 {
                    Split::Validation
                } else {
                    Split::Test
                };
                assert_eq!(row.split, expected, "row {} on {:?}", row.index, db.backend());
                assert_eq!(
                    (&row.inputs, &row.expected),
                    (&rows[row.index as usize].0, &rows[row.index as usize].1)
                );
            }
            per_backend.push(pages);
        }
        assert_eq!(per_backend[0], per_backend[1], "seed {seed}");
    }
    pg.drop_database().await.unwrap();
    sqlite.drop_database().await.unwrap();
}

/// One workflow version with executions of the given latencies (µs) routed by the policy, and
/// feedback with the given scores on the first of them.
async fn stats_of(s: &dyn Store, latencies: &[u64], scores: &[f64]) -> Vec<VariantStats> {
    let new = NewWorkflow { name: "stats".into(), description: None };
    let (wf, v) =
        s.create_workflow_with_version(&new, &NewVersion::manual(json!({ "v": 1 }), "h")).await.unwrap();
    let mut ids = Vec::new();
    for (i, latency) in latencies.iter().enumerate() {
        let outcome = ExecutionOutcome {
            status: ExecutionStatus::Succeeded,
            output: Some(json!(i)),
            error: None,
            trace: None,
            latency_us: Some(*latency),
            usage: ExecutionUsage {
                prompt_tokens: 3 * i as u64,
                completion_tokens: 1,
                cost_usd: 0.001 * i as f64,
            },
        };
        let new = NewExecution::finished(wf.id, v.id, json!({ "i": i }), Utc::now(), outcome)
            .with_route(json!({ "chosen_by": "policy" }));
        ids.push(s.insert_execution(new).await.unwrap().id);
    }
    for (id, score) in ids.iter().zip(scores) {
        let feedback = NewFeedback { correct: Some(*score > 0.5), score: Some(*score), comment: None };
        s.put_feedback(*id, &feedback, None).await.unwrap();
    }
    let now = Utc::now();
    s.variant_stats(wf.id, now - TimeDelta::hours(1), now + TimeDelta::seconds(1)).await.unwrap()
}

#[tokio::test]
async fn variant_statistics_agree_on_both_backends() {
    let (pg, sqlite) = both().await;
    let latencies: Vec<u64> = [7, 1, 10, 4, 2, 9, 3, 8, 5, 6].iter().map(|x| x * x * 1000 + 17).collect();
    let scores = [0.1, 0.25, 0.7, 0.9, 0.3, 0.35, 1.0];
    let on_pg = stats_of(&*pg.store, &latencies, &scores).await;
    let on_sqlite = stats_of(&*sqlite.store, &latencies, &scores).await;
    let (a, b) = (&on_pg[0], &on_sqlite[0]);
    // Percentiles by the same definition: exactly equal (p95 interpolates between ranks).
    assert_eq!(
        (a.latency_p50_ms, a.latency_p95_ms, a.latency_p99_ms),
        (b.latency_p50_ms, b.latency_p95_ms, b.latency_p99_ms)
    );
    assert_eq!(a.latency_p95_ms, Some((81_017.0 + (0.95 * 9.0 - 8.0) * 19_000.0) / 1000.0));
    // Sums and variances may differ in the last bits with the order of summation.
    let close = |x: Option<f64>, y: Option<f64>| (x.unwrap() - y.unwrap()).abs() < 1e-12;
    assert!(close(a.score_variance, b.score_variance), "{a:?}\n{b:?}");
    assert!(close(a.score_mean, b.score_mean) && close(a.cost_per_run_usd, b.cost_per_run_usd));
    let exact = |s: &VariantStats| {
        (s.requests, s.errors, s.tokens_per_run, s.feedback_count, s.correct, s.correct_n, s.score_n)
    };
    assert_eq!(exact(a), exact(b));
    pg.drop_database().await.unwrap();
    sqlite.drop_database().await.unwrap();
}

/// Three evaluations (two of workflow `a`) with results, listed in pages of two.
async fn evaluations_of(s: &dyn Store) -> (Vec<Vec<Value>>, Vec<Vec<EvaluationResult>>) {
    let mut ids = Vec::new();
    for (workflow, baseline) in [("a", Some(1)), ("b", None), ("a", None)] {
        let payload = json!({
            "workflow": workflow,
            "version": { "version_number": 2 },
            "baseline": baseline.map(|n| json!({ "version_number": n })),
            "examples": [{ "inputs": {}, "expected": 1 }, { "inputs": {}, "expected": 2 }],
            "source": { "dataset": "d", "split": "test", "rows": 2 },
        });
        ids.push(s.enqueue(&NewJob::new(EVALUATION_JOB_KIND, payload)).await.unwrap().id);
    }
    let version_id = uuid::Uuid::now_v7();
    let mut results = Vec::new();
    for id in &ids {
        for example in [1, 0] {
            let result = EvaluationResult {
                evaluation_id: *id,
                version_id,
                example,
                score: 0.1 * f64::from(example + 1),
                passed: example == 0,
                output: (example == 0).then(|| json!("out")),
                expected: json!(example),
                error: (example == 1).then(|| json!({ "code": "wrong" })),
                trace: None,
                tokens: 12,
                cost_usd: 0.002,
                latency_us: 345,
            };
            assert!(s.record_evaluation_result(&result).await.unwrap());
            assert!(!s.record_evaluation_result(&result).await.unwrap(), "recorded once");
        }
        results.push(s.evaluation_results(*id).await.unwrap());
    }
    let mut pages = Vec::new();
    for workflow in [None, Some("a")] {
        let mut page = PageRequest::first(2);
        loop {
            let got = s.list_evaluations(workflow, &page).await.unwrap();
            pages.push(
                got.items
                    .iter()
                    .map(|e| {
                        let position = ids.iter().position(|id| *id == e.id).unwrap();
                        json!([
                            position,
                            e.status,
                            e.workflow,
                            e.version_number,
                            e.baseline_number,
                            e.examples,
                            e.source
                        ])
                    })
                    .collect(),
            );
            let Some(next) = got.next_cursor else { break };
            page = PageRequest::after(2, next);
        }
    }
    (pages, results)
}

#[tokio::test]
async fn evaluations_list_and_results_agree_on_both_backends() {
    let (pg, sqlite) = both().await;
    let (pg_pages, pg_results) = evaluations_of(&*pg.store).await;
    let (sqlite_pages, sqlite_results) = evaluations_of(&*sqlite.store).await;
    assert_eq!(pg_pages.len(), 3, "{pg_pages:?}");
    assert_eq!(
        pg_pages[0][0],
        json!([2, "queued", "a", 2, null, 2, { "dataset": "d", "split": "test", "rows": 2 }])
    );
    assert_eq!(
        pg_pages[1],
        [json!([0, "queued", "a", 2, 1, 2, { "dataset": "d", "split": "test", "rows": 2 }])]
    );
    let positions = |page: &[Value]| page.iter().map(|e| e[0].clone()).collect::<Vec<_>>();
    assert_eq!(positions(&pg_pages[2]), [json!(2), json!(0)], "workflow a only");
    assert_eq!(pg_pages, sqlite_pages);
    // Ids differ between the two stores; everything else is the same.
    let strip = |r: &[Vec<EvaluationResult>]| -> Vec<EvaluationResult> {
        let nil = uuid::Uuid::nil();
        r.iter()
            .flatten()
            .map(|r| EvaluationResult { evaluation_id: nil, version_id: nil, ..r.clone() })
            .collect()
    };
    assert_eq!(strip(&pg_results), strip(&sqlite_results));
    assert_eq!(pg_results[0].iter().map(|r| r.example).collect::<Vec<_>>(), [0, 1], "by example");
    pg.drop_database().await.unwrap();
    sqlite.drop_database().await.unwrap();
}
