//! The split of a data set's rows is the same on every backend: Postgres orders rows by
//! `md5(seed::text || ':' || idx::text)` in SQL, SQLite (which has no `md5`) by
//! `sgde_store::datasets::split_order` in Rust, and the two orders must be identical so that a
//! data set moved between backends keeps its train/validation/test rows.

use sgde_store::datasets::split_order;
use sgde_store::testing::DEFAULT_ADMIN_URL;
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
