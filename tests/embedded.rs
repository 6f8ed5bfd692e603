//! The embedded single-node default: `sgde serve` with no database configured runs on an SQLite
//! file in its data directory, says so first, survives a kill -9, and `sgde migrate-store` moves
//! everything it holds to Postgres without losing an id, a hash or a row.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Api, Service, ServiceConfig, echo_spec, endpoint_config, wait_terminal};
use serde_json::{Value, json};
use sgde_store::StoreOptions;
use sgde_store::testing::{Backend, TestDatabase};
use sgde_testkit::FakeOpenAi;

/// A data directory of its own, removed at the end of the test.
struct DataDir(PathBuf);

impl DataDir {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!("sgde-data-{}", uuid::Uuid::new_v4().simple())))
    }

    fn config(&self) -> ServiceConfig {
        ServiceConfig::default().env("SGDE_DATA_DIR", self.0.display())
    }

    fn file(&self) -> PathBuf {
        self.0.join("sgde.db")
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn executes(api: &Api, question: &str) -> Value {
    api.post("/v1/workflows/echo/execute", &json!({"inputs": {"question": question}})).await.expect(200)
}

#[tokio::test]
async fn with_no_database_configured_the_service_runs_on_sqlite_in_its_data_directory() {
    let fake = FakeOpenAi::start().await.expect("fake model");
    let data = DataDir::new();
    let mut service = Service::start_embedded(&data.config()).await;

    // The first lines of the log say which store is in use and where.
    let logs = service.logs();
    let opening = logs.lines().take(3).collect::<Vec<_>>().join("\n");
    assert!(opening.contains("embedded SQLite"), "{opening}");
    assert!(opening.contains(&data.file().display().to_string()), "{opening}");
    assert!(data.file().exists(), "the store is a file in the data directory");

    let admin = service.admin();
    admin.post("/v1/endpoints", &endpoint_config("student", &fake)).await.expect(201);
    admin.post("/v1/workflows", &json!({"name": "echo", "spec": echo_spec()})).await.expect(201);
    let first = executes(&admin, "kept").await;
    let run = admin
        .post("/v1/runs", &json!({"workflow": "echo", "inputs": {"question": "async"}}))
        .await
        .expect(202);
    let run_id = run["id"].as_str().expect("run id").to_owned();
    wait_terminal(&admin, &run_id).await;

    // kill -9 and start again on the same directory: nothing is lost.
    service.kill();
    let service = Service::start_embedded(&data.config()).await;
    let admin = service.admin();
    let execution =
        admin.get(&format!("/v1/executions/{}", first["execution_id"].as_str().expect("id"))).await;
    assert_eq!(execution.expect(200)["output"], first["output"]);
    assert_eq!(admin.get(&format!("/v1/runs/{run_id}")).await.expect(200)["status"], "succeeded");
    executes(&admin, "after the restart").await;
    assert_eq!(
        admin.get("/v1/executions?limit=10").await.expect(200)["items"].as_array().map(Vec::len),
        Some(3)
    );
}

/// Everything a user would look at after moving, read through the API.
async fn snapshot(api: &Api) -> Value {
    let mut views = serde_json::Map::new();
    for path in [
        "/v1/endpoints",
        "/v1/workflows",
        "/v1/workflows/echo",
        "/v1/workflows/echo/versions",
        "/v1/workflows/echo/versions/1",
        "/v1/workflows/echo/versions/2",
        "/v1/workflows/echo/labels",
        "/v1/workflows/echo/label-history",
        "/v1/workflows/echo/policy",
        "/v1/workflows/echo/policy/history",
        "/v1/executions?limit=100",
        "/v1/datasets/qa",
        "/v1/datasets/qa/rows?split=train&limit=100",
        "/v1/datasets/qa/rows?split=test&limit=100",
        "/v1/keys",
    ] {
        let mut view = api.get(path).await.expect(200);
        // Using a key moves its `last_used_at`: that is activity, not state to compare.
        if let Some(keys) = view["items"].as_array_mut().filter(|_| path == "/v1/keys") {
            keys.iter_mut().for_each(|k| k["last_used_at"] = Value::Null);
        }
        views.insert(path.to_owned(), view);
    }
    Value::Object(views)
}

fn sgde_migrate_store(from: &str, to: &str) -> std::process::Output {
    common::sgde_command(&Default::default())
        .args(["migrate-store", "--from", from, "--to", to])
        .output()
        .expect("run sgde migrate-store")
}

fn sqlite_url(file: &Path) -> String {
    format!("sqlite://{}", file.display())
}

#[tokio::test]
async fn migrate_store_moves_everything_from_sqlite_to_postgres() {
    let fake = FakeOpenAi::start().await.expect("fake model");
    let data = DataDir::new();
    let mut service = Service::start_embedded(&data.config()).await;
    let admin = service.admin();

    // A little of everything: endpoint, two versions, labels with history, a policy, executions
    // with feedback, an async run, a data set, an API key.
    admin.post("/v1/endpoints", &endpoint_config("student", &fake)).await.expect(201);
    admin.post("/v1/workflows", &json!({"name": "echo", "spec": echo_spec()})).await.expect(201);
    let v2 = common::echo_spec_with_prompt("Answer: {{ inputs.question }}");
    admin.post("/v1/workflows/echo/versions", &json!({"spec": v2})).await.expect(201);
    admin.put("/v1/workflows/echo/labels/production", &json!({"version": "1"})).await.expect(200);
    admin.put("/v1/workflows/echo/labels/production", &json!({"version": "2"})).await.expect(200);
    admin
        .put(
            "/v1/workflows/echo/policy",
            &json!({"variants": [{"version": "1", "weight": 70}, {"version": "2", "weight": 30}]}),
        )
        .await
        .expect(200);
    for i in 0..6 {
        let done = executes(&admin, &format!("q{i}")).await;
        let feedback = format!("/v1/executions/{}/feedback", done["execution_id"].as_str().expect("id"));
        admin.post(&feedback, &json!({"correct": i % 2 == 0})).await.expect(201);
    }
    let run = admin
        .post("/v1/runs", &json!({"workflow": "echo", "inputs": {"question": "async"}}))
        .await
        .expect(202);
    wait_terminal(&admin, run["id"].as_str().expect("run id")).await;
    admin
        .post(
            "/v1/datasets",
            &json!({"name": "qa", "mapping": {"input": "inputs.question", "target": "expected"},
                    "split": {"seed": 11, "train": 0.5, "validation": 0.2}}),
        )
        .await
        .expect(201);
    let rows = (0..40).map(|i| json!({"input": format!("{i}+1"), "target": i + 1}).to_string());
    let upload = admin
        .request(reqwest::Method::PUT, "/v1/datasets/qa/rows")
        .header("content-type", "application/x-ndjson")
        .body(rows.collect::<Vec<_>>().join("\n"));
    admin.send(upload).await.expect(200);
    let key =
        admin.post("/v1/keys", &json!({"name": "app", "scopes": ["read", "execute"]})).await.expect(201);
    let token = key["token"].as_str().expect("token").to_owned();

    let before = snapshot(&admin).await;
    service.kill();

    // Into an empty, migrated Postgres database.
    let target =
        TestDatabase::on(Backend::Postgres, StoreOptions { max_connections: 2, ..Default::default() })
            .await
            .expect("a Postgres test database");
    let from = sqlite_url(&data.file());
    let out = sgde_migrate_store(&from, &target.url);
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{report}");
    assert!(report.contains("workflow_versions") && report.contains("copied"), "{report}");

    // The same service on Postgres shows exactly the same state, and keeps working.
    let service = Service::start(&target.url, &ServiceConfig::default()).await;
    let admin = service.admin();
    let after = snapshot(&admin).await;
    for (path, view) in before.as_object().expect("object") {
        assert_eq!(&after[path], view, "{path} differs after the move");
    }
    let app = service.api(Some(&token));
    app.post("/v1/workflows/echo/execute", &json!({"inputs": {"question": "moved"}})).await.expect(200);
    admin.put("/v1/workflows/echo/labels/production", &json!({"version": "1"})).await.expect(200);
    let history = admin.get("/v1/workflows/echo/label-history").await.expect(200);
    assert_eq!(history["items"].as_array().map(Vec::len), Some(3), "{history}");

    // A second copy into the now non-empty database is refused, and changes nothing.
    let out = sgde_migrate_store(&from, &target.url);
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success() && report.contains("already holds data"), "{report}");
    // Wrong directions and missing files are clear errors.
    let out = sgde_migrate_store(&target.url, &from);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--from must be a sqlite://")
    );
    let missing = sqlite_url(&data.0.join("nope.db"));
    let out = sgde_migrate_store(&missing, &target.url);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no SQLite store"));

    drop(service);
    tokio::time::sleep(Duration::from_millis(100)).await;
    target.drop_database().await.expect("drop the test database");
}
