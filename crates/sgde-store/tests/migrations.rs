//! Migrations: concurrent application, readiness, health.

use sgde_store::testing::{Backend, TestDatabase};
use sgde_store::{PgStore, SqliteStore, StoreOptions};

#[sgde_test_macros::both_backends]
async fn concurrent_migrate_from_four_tasks_succeeds_once() {
    // A database with no migrations yet: `migrate: false` on creation.
    let db =
        TestDatabase::with_options(StoreOptions { migrate: false, max_connections: 8, ..Default::default() })
            .await
            .unwrap();
    assert!(!db.store.migrations_applied().await.unwrap(), "fresh database is not ready");

    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (url, backend) = (db.url.clone(), db.backend());
        tasks.push(tokio::spawn(async move {
            // Separate pools, as separate replicas (or processes on one file) would have.
            let options = StoreOptions { migrate: false, max_connections: 2, ..Default::default() };
            match backend {
                Backend::Postgres => {
                    let store = PgStore::connect(&url, &options).await.unwrap();
                    let result = store.migrate().await;
                    store.close().await;
                    result
                }
                Backend::Sqlite => {
                    let store = SqliteStore::connect(&url, &options).await.unwrap();
                    let result = store.migrate().await;
                    store.close().await;
                    result
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert!(db.store.migrations_applied().await.unwrap());

    let count = "SELECT count(*) FROM _sqlx_migrations WHERE success";
    let (applied, dir): (i64, _) = match (db.pg(), db.sqlite()) {
        (Some(pg), _) => (sqlx::query_scalar(count).fetch_one(pg.pool()).await.unwrap(), "postgres"),
        (_, Some(sqlite)) => (sqlx::query_scalar(count).fetch_one(sqlite.reader()).await.unwrap(), "sqlite"),
        _ => unreachable!("one backend or the other"),
    };
    let files = std::fs::read_dir(format!("{}/../../migrations/{dir}", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "sql"))
        .count();
    assert_eq!(applied as usize, files, "each migration applied exactly once");
    db.drop_database().await.unwrap();
}

#[sgde_test_macros::both_backends]
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

    // SQLite: a file that cannot be created is unavailable, not a panic or an empty store.
    let err = SqliteStore::connect("sqlite:///proc/sgde/forbidden.db", &options).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    // And the URL alone picks the backend: no scheme, no store.
    let err = sgde_store::connect("/var/lib/sgde.db", &options).await.err().expect("refused");
    assert!(matches!(err, sgde_store::StoreError::Invalid { .. }), "{err:?}");
}

#[sgde_test_macros::both_backends]
async fn a_schema_migrated_by_a_newer_release_is_accepted() {
    let db = TestDatabase::new().await.unwrap();
    // What a newer sgde would have recorded.
    let future = "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99991231000000, 'from the future', true, '\\x00', 1)";
    match (db.pg(), db.sqlite()) {
        (Some(pg), _) => {
            sqlx::query(future).execute(pg.pool()).await.unwrap();
            pg.migrate().await.unwrap();
        }
        (_, Some(sqlite)) => {
            sqlx::query(sqlx::AssertSqlSafe(future.replace("'\\x00'", "X'00'")))
                .execute(sqlite.writer())
                .await
                .unwrap();
            sqlite.migrate().await.unwrap();
        }
        _ => unreachable!("one backend or the other"),
    }
    assert!(db.store.migrations_applied().await.unwrap());
    db.drop_database().await.unwrap();
}

/// `sgde migrate-store` copies the tables it lists; a table added to the schema but not to that
/// list would be silently left behind, so the list must be exactly the schema's tables, on both
/// backends.
#[sgde_test_macros::both_backends]
async fn the_store_copy_lists_every_table_of_the_schema() {
    let db = TestDatabase::new().await.unwrap();
    let mut tables: Vec<String> = match (db.pg(), db.sqlite()) {
        (Some(pg), _) => sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
        )
        .fetch_all(pg.pool())
        .await
        .unwrap(),
        (_, Some(sqlite)) => sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )
        .fetch_all(sqlite.reader())
        .await
        .unwrap(),
        _ => unreachable!("one backend or the other"),
    };
    tables.retain(|t| t != "_sqlx_migrations");
    tables.sort();
    let mut listed: Vec<String> = sgde_store::transfer::TABLES.iter().map(|(t, _)| (*t).to_owned()).collect();
    listed.sort();
    assert_eq!(listed, tables);
    db.drop_database().await.unwrap();
}
