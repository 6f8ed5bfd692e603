//! Migrations: concurrent application, readiness, health.

use sgde_store::testing::TestDatabase;
use sgde_store::{Health, PgStore, StoreOptions};

#[tokio::test]
async fn concurrent_migrate_from_four_tasks_succeeds_once() {
    // A database with no migrations yet: `migrate: false` on creation.
    let db =
        TestDatabase::with_options(StoreOptions { migrate: false, max_connections: 8, ..Default::default() })
            .await
            .unwrap();
    assert!(!db.store.migrations_applied().await.unwrap(), "fresh database is not ready");

    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = db.url.clone();
        tasks.push(tokio::spawn(async move {
            // Separate pools, as separate replicas would have.
            let store = PgStore::connect(
                &url,
                &StoreOptions { migrate: false, max_connections: 2, ..Default::default() },
            )
            .await
            .unwrap();
            let result = store.migrate().await;
            store.close().await;
            result
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert!(db.store.migrations_applied().await.unwrap());

    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(db.store.pool())
        .await
        .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "sql"))
        .count();
    assert_eq!(applied as usize, files, "each migration applied exactly once");

    // Migrating again is a no-op.
    db.store.migrate().await.unwrap();
    db.drop_database().await.unwrap();
}

#[tokio::test]
async fn connect_migrates_and_reports_ready() {
    let db = TestDatabase::new().await.unwrap();
    db.store.ping().await.unwrap();
    assert!(db.store.migrations_applied().await.unwrap());
    db.drop_database().await.unwrap();
}

#[tokio::test]
async fn bad_urls_and_unreachable_servers_are_clear_errors() {
    let err = PgStore::connect("not a url", &StoreOptions::default()).await.unwrap_err();
    assert!(matches!(err, sgde_store::StoreError::Invalid { .. }), "{err:?}");
    assert!(!err.to_string().contains("not a url"));

    let options = StoreOptions { acquire_timeout: std::time::Duration::from_secs(2), ..Default::default() };
    // Port 1 on localhost: nothing listens there.
    let err = PgStore::connect("postgres://u:secret@127.0.0.1:1/db", &options).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(!err.to_string().contains("secret"));
}

#[tokio::test]
async fn a_schema_migrated_by_a_newer_release_is_accepted() {
    let db = TestDatabase::new().await.unwrap();
    // What a newer sgde would have recorded.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99991231000000, 'from the future', true, '\\x00', 1)",
    )
    .execute(db.store.pool())
    .await
    .unwrap();
    db.store.migrate().await.unwrap();
    assert!(db.store.migrations_applied().await.unwrap());
    db.drop_database().await.unwrap();
}
