//! Compile jobs end to end: the service runs the compiler as a durable queue job against the
//! testkit's simulated student and a scripted teacher (the reference path of sgde-compiler's own
//! tests: offload the arithmetic to Python, then wrap it in consensus).

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Api, Harness, ServiceConfig, all_pages, endpoint_config, eventually};
use serde_json::{Value, json};
use sgde_testkit::reference_path::{consensus_ops, offload_ops};
use sgde_testkit::{
    Difficulty, FakeOpenAi, ProblemGenerator, ScriptedTeacher, SimulatedStudent, TeacherReply,
};

const CRITIC: &str = "You are the critic";
const EDITOR: &str = "You are the editor";

fn examples(seed: u64, count: usize) -> Vec<Value> {
    ProblemGenerator::new(seed)
        .batch(count, Difficulty::Hard)
        .into_iter()
        .map(|p| json!({"inputs": {"question": p.question}, "expected": p.answer}))
        .collect()
}

fn critique(text: &str) -> TeacherReply {
    TeacherReply::Json(json!({
        "diagnosis": text,
        "critiques": [{"node": "answer", "critique": text, "severity": "high"}]
    }))
}

fn edits(ops: Value) -> TeacherReply {
    TeacherReply::Json(json!({"rationale": "scripted", "edits": ops}))
}

fn reference_teacher() -> ScriptedTeacher {
    tagged_teacher("")
}

/// [`reference_teacher`] whose critiques start with `tag`, so that its job's iteration log can be
/// told apart from another's.
fn tagged_teacher(tag: &str) -> ScriptedTeacher {
    ScriptedTeacher::new()
        .script(
            CRITIC,
            [
                critique(&format!(
                    "{tag}The arithmetic is wrong: offload it to a code node evaluating a Python expression."
                )),
                critique(&format!(
                    "{tag}Samples disagree: wrap expression → evaluation in a 5-sample consensus."
                )),
            ],
        )
        .script(EDITOR, [edits(offload_ops()), edits(consensus_ops())])
}

/// The service with the simulated student as endpoint `student` and `teacher` as endpoint
/// `teacher`.
async fn harness(teacher: ScriptedTeacher, student_latency: Duration) -> (Harness, FakeOpenAi) {
    let student = FakeOpenAi::builder()
        .latency(student_latency)
        .responder(Arc::new(SimulatedStudent::new()))
        .start()
        .await
        .expect("student server");
    let teacher = FakeOpenAi::builder().responder(Arc::new(teacher)).start().await.expect("teacher");
    let config = ServiceConfig::default().env("SGDE_JOB_LEASE_SECS", 2);
    let h = Harness::with(student, config).await;
    h.admin().post("/v1/endpoints", &endpoint_config("teacher", &teacher)).await.expect(201);
    (h, teacher)
}

fn job_request(workflow: &str) -> Value {
    json!({
        "workflow": workflow,
        "task": "Solve arithmetic word problems about shops, farms, trains and savings.",
        "train": examples(7, 3),
        "validation": examples(1001, 5),
        "metric": {"kind": "numeric", "tolerance": 1e-6},
        "teacher": "teacher",
        "student": "student",
        "seed": 42,
        "label": "production"
    })
}

async fn submit(api: &Api, body: &Value) -> String {
    let reply = api.post("/v1/compile-jobs", body).await;
    let location = reply.header("location").map(str::to_owned);
    let job = reply.expect(202);
    let id = job["id"].as_str().expect("job id").to_owned();
    assert_eq!(location.as_deref(), Some(format!("/v1/compile-jobs/{id}").as_str()));
    assert!(job["estimate"]["first_iteration"]["student_calls"].as_u64().unwrap() > 0, "{job}");
    id
}

async fn wait_finished(api: &Api, id: &str) -> Value {
    eventually("the compile job to finish", || async {
        let job = api.get(&format!("/v1/compile-jobs/{id}")).await.expect(200);
        matches!(job["status"].as_str(), Some("succeeded" | "failed" | "cancelled")).then_some(job)
    })
    .await
}

/// A webhook receiver on port 0 that keeps every body it is sent.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let log = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<Value>| {
            let log = Arc::clone(&log);
            async move {
                log.lock().unwrap().push(body.0);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[sgde_test_macros::both_backends(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_job_reaches_a_perfect_workflow_that_executes() {
    let (h, teacher) = harness(reference_teacher(), Duration::ZERO).await;
    let admin = h.admin();
    let (url, deliveries) = receiver().await;
    let mut body = job_request("arith");
    body["webhook_url"] = json!(url);
    let id = submit(&admin, &body).await;
    let job = wait_finished(&admin, &id).await;
    assert_eq!(job["status"], "succeeded", "{job}\n{}", h.service.logs());
    assert_eq!(job["stop_reason"], "perfect", "{job}");
    let progress = &job["progress"];
    assert_eq!(progress["best_score"], 1.0, "{progress}");
    assert_eq!(progress["teacher_calls"], 4, "{progress}");
    assert!(progress["student_calls"].as_u64().unwrap() > 0 && progress["tokens"].as_u64().unwrap() > 0);
    assert_eq!(progress["score_history"].as_array().unwrap().len(), 3, "{progress}");
    assert_eq!(teacher.request_count(), 4);

    // The iteration log: two accepted iterations with critiques and edits.
    let iterations = admin.get(&format!("/v1/compile-jobs/{id}/iterations")).await.expect(200);
    let items = iterations["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{iterations}");
    for (i, record) in items.iter().enumerate() {
        assert_eq!(record["iteration"], i as u64 + 1);
        assert_eq!(record["critiques"][0]["node"], "answer");
        assert!(
            record["outcome"].get("accepted").is_some() || record["outcome"].to_string().contains("ccepted")
        );
    }

    // The result: a new workflow whose version has lineage and metrics, labelled, and that runs.
    let version_id = job["result_version_id"].as_str().expect("a result version").to_owned();
    let version = admin.get("/v1/workflows/arith/versions/production").await.expect(200);
    assert_eq!(version["id"], version_id.as_str());
    assert_eq!(version["source"], "compile");
    assert_eq!(version["job_id"], id.as_str());
    assert_eq!(version["metrics"]["train_score"], 1.0);
    assert_eq!(version["metrics"]["validation_score"], 1.0, "{}", version["metrics"]);
    assert!(version["metrics"]["mean_student_tokens_per_run"].as_f64().unwrap() > 0.0);
    assert!(version["metrics"]["compile_cost"]["teacher"]["calls"].as_u64().unwrap() == 4);
    // The job's final progress counts the whole compile, validation included.
    assert_eq!(version["metrics"]["compile_cost"]["student"]["calls"], progress["student_calls"]);
    let problem = ProblemGenerator::new(4242).batch(1, Difficulty::Hard).remove(0);
    let run = admin
        .post("/v1/workflows/arith/execute", &json!({"inputs": {"question": problem.question}}))
        .await
        .expect(200);
    let output = run["output"].as_f64().or_else(|| run["output"].as_str().and_then(|s| s.parse().ok()));
    assert_eq!(output, Some(problem.answer as f64), "{run}");

    // Listing and filtering.
    let listed = admin.get("/v1/compile-jobs?workflow=arith&status=succeeded").await.expect(200);
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    let none = admin.get("/v1/compile-jobs?workflow=other").await.expect(200);
    assert!(none["items"].as_array().unwrap().is_empty());

    // The completion webhook carries the finished job.
    let delivered =
        eventually("the completion webhook", || async { deliveries.lock().unwrap().first().cloned() }).await;
    assert_eq!(delivered["event"], "compile_job.finished");
    assert_eq!(delivered["compile_job"]["id"], id.as_str());
    assert_eq!(delivered["compile_job"]["stop_reason"], "perfect");
    h.finish().await;
}

#[sgde_test_macros::both_backends(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_budget_ends_with_the_best_so_far_as_a_version() {
    let (h, teacher) = harness(reference_teacher(), Duration::ZERO).await;
    let admin = h.admin();
    let mut body = job_request("budgeted");
    body["budget"] = json!({"max_iterations": 1});
    let id = submit(&admin, &body).await;
    let job = wait_finished(&admin, &id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["stop_reason"], "budget", "{job}");
    assert_eq!(teacher.request_count(), 2, "one iteration: critique and edit");
    let best = job["progress"]["best_score"].as_f64().unwrap();
    assert!(best > job["progress"]["score_history"][0].as_f64().unwrap(), "{job}");
    let version = admin.get("/v1/workflows/budgeted/versions/production").await.expect(200);
    assert_eq!(version["id"], job["result_version_id"]);
    assert_eq!(version["metrics"]["stop_reason"], "budget");
    assert_eq!(version["metrics"]["train_score"].as_f64(), Some(best));
    h.finish().await;
}

#[sgde_test_macros::both_backends(flavor = "multi_thread", worker_threads = 2)]
async fn ablation_flags_keep_offloading_out_of_the_result() {
    let (h, _teacher) = harness(reference_teacher(), Duration::ZERO).await;
    let admin = h.admin();
    let mut body = job_request("prompts-only");
    body["allowed"] = json!({"prompts": true, "offloading": false, "consensus": false, "topology": false});
    let id = submit(&admin, &body).await;
    let job = wait_finished(&admin, &id).await;
    assert!(job["stop_reason"].is_string(), "{job}");
    // The offloading ops were recorded as not allowed, and never applied.
    let iterations = admin.get(&format!("/v1/compile-jobs/{id}/iterations")).await.expect(200);
    let edits: Vec<&Value> = iterations["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["attempts"].as_array().into_iter().flatten())
        .flat_map(|a| a["edits"].as_array().into_iter().flatten())
        .collect();
    assert!(edits.iter().any(|e| e["allowed"] == false), "{iterations}");
    if let Some(version) = job["result_version_id"].as_str() {
        let version = admin.get(&format!("/v1/workflows/prompts-only/versions/{version}")).await.expect(200);
        assert!(!version["spec"].to_string().contains(r#""kind":"code""#), "{}", version["spec"]);
    }
    h.finish().await;
}

#[sgde_test_macros::both_backends]
async fn a_budget_that_cannot_fit_one_iteration_is_refused() {
    let (h, _teacher) = harness(ScriptedTeacher::new(), Duration::ZERO).await;
    let mut body = job_request("arith");
    body["budget"] = json!({"max_student_calls": 2});
    let reply = h.admin().post("/v1/compile-jobs", &body).await;
    reply.problem(422, "invalid_request");
    assert_eq!(reply.pointers(), vec!["/budget/max_student_calls".to_owned()]);
    body["budget"] = json!({});
    body["train"] = json!([]);
    let reply = h.admin().post("/v1/compile-jobs", &body).await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.pointers(), vec!["/train".to_owned()]);
    body["train"] = json!(examples(7, 1));
    body["teacher"] = json!("nobody");
    let reply = h.admin().post("/v1/compile-jobs", &body).await;
    assert_eq!(reply.pointers(), vec!["/teacher".to_owned()]);
    let listed = h.admin().get("/v1/compile-jobs").await.expect(200);
    assert!(listed["items"].as_array().unwrap().is_empty());
    h.finish().await;
}

#[sgde_test_macros::both_backends(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_compile_job_is_cancelled_promptly() {
    // A slow student keeps the job inside its baseline evaluation.
    let (h, _teacher) = harness(reference_teacher(), Duration::from_secs(2)).await;
    let admin = h.admin();
    let id = submit(&admin, &job_request("slow")).await;
    eventually("the job to start", || async {
        let job = admin.get(&format!("/v1/compile-jobs/{id}")).await.expect(200);
        (job["status"] == "running").then_some(())
    })
    .await;
    let cancel = admin.post(&format!("/v1/compile-jobs/{id}/cancel"), &json!({})).await.expect(200);
    assert!(["cancel_requested", "cancelled"].contains(&cancel["status"].as_str().unwrap()), "{cancel}");
    let job = wait_finished(&admin, &id).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    assert_eq!(job["stop_reason"], "cancelled");
    assert!(job["result_version_id"].is_null());
    let again = admin.post(&format!("/v1/compile-jobs/{id}/cancel"), &json!({})).await.expect(200);
    assert_eq!(again["status"], "already_finished");
    admin.get(&format!("/v1/compile-jobs/{}", uuid::Uuid::new_v4())).await.problem(404, "not_found");
    h.finish().await;
}

#[sgde_test_macros::both_backends(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_resumes_the_compile_without_paying_twice() {
    // A slow teacher: between the first checkpoint and the next student call there is time to
    // look at what the student has answered so far.
    let student = FakeOpenAi::builder()
        .latency(Duration::from_millis(100))
        .responder(Arc::new(SimulatedStudent::new()))
        .start()
        .await
        .expect("student server");
    let teacher = FakeOpenAi::builder()
        .latency(Duration::from_millis(300))
        .responder(Arc::new(reference_teacher()))
        .start()
        .await
        .expect("teacher");
    let config = ServiceConfig::default().env("SGDE_JOB_LEASE_SECS", 2);
    let mut h = Harness::with(student, config.clone()).await;
    h.admin().post("/v1/endpoints", &endpoint_config("teacher", &teacher)).await.expect(201);
    let id = submit(&h.admin(), &job_request("durable")).await;

    // Iteration 1 is checkpointed: every student call so far has been answered (and cached).
    let admin = h.admin();
    eventually("the first iteration", || async {
        let iterations = admin.get(&format!("/v1/compile-jobs/{id}/iterations")).await.expect(200);
        (!iterations["items"].as_array().unwrap().is_empty()).then_some(())
    })
    .await;
    let answered: BTreeSet<String> = h.fake.requests().iter().map(|r| r.body.to_string()).collect();
    // Kill mid-iteration 2, once its teacher steps are done and its student calls have begun.
    eventually("iteration 2's evaluation", || async {
        (teacher.request_count() == 4 && h.fake.request_count() > answered.len()).then_some(())
    })
    .await;
    h.restart(&config).await;
    let before_restart = h.fake.request_count();
    let admin = h.admin();
    let job = wait_finished(&admin, &id).await;
    assert_eq!(job["status"], "succeeded", "{job}\n{}", h.service.logs());
    assert_eq!(job["stop_reason"], "perfect", "{job}");
    // Every teacher reply was used once: a repeated call would have got the next script entry.
    assert_eq!(teacher.request_count(), 4, "the teacher was asked again after the restart");
    // No student call answered before the crash was sent again (resuming re-runs the best
    // candidate's forward pass: the persistent cache answered it).
    let resent: Vec<String> = h.fake.requests()[before_restart..]
        .iter()
        .map(|r| r.body.to_string())
        .filter(|body| answered.contains(body))
        .collect();
    assert!(resent.is_empty(), "{} answered student calls were paid twice", resent.len());
    let iterations = admin.get(&format!("/v1/compile-jobs/{id}/iterations")).await.expect(200);
    assert_eq!(iterations["items"].as_array().unwrap().len(), 2);
    h.finish().await;
}

#[sgde_test_macros::both_backends(flavor = "multi_thread", worker_threads = 2)]
async fn two_compile_jobs_at_once_keep_their_logs_calls_and_results_apart() {
    // Each job has its own teacher and student endpoint, so every model call can be attributed;
    // the student's latency keeps both jobs running long enough to overlap.
    let latency = Duration::from_millis(100);
    let (h, teacher_a) = harness(tagged_teacher("[alpha] "), latency).await;
    let student_b = FakeOpenAi::builder()
        .latency(latency)
        .responder(Arc::new(SimulatedStudent::new()))
        .start()
        .await
        .expect("second student server");
    let teacher_b =
        FakeOpenAi::builder().responder(Arc::new(tagged_teacher("[beta] "))).start().await.expect("teacher");
    let admin = h.admin();
    admin.post("/v1/endpoints", &endpoint_config("student-b", &student_b)).await.expect(201);
    admin.post("/v1/endpoints", &endpoint_config("teacher-b", &teacher_b)).await.expect(201);

    // Alpha runs to a perfect score; beta has a budget of one iteration.
    let alpha = job_request("alpha");
    let mut beta = job_request("beta");
    beta["train"] = json!(examples(11, 3));
    beta["validation"] = json!(examples(2002, 5));
    beta["teacher"] = json!("teacher-b");
    beta["student"] = json!("student-b");
    beta["budget"] = json!({"max_iterations": 1});
    let (id_a, id_b) = tokio::join!(submit(&admin, &alpha), submit(&admin, &beta));
    let (path_a, path_b) = (format!("/v1/compile-jobs/{id_a}"), format!("/v1/compile-jobs/{id_b}"));
    eventually("both jobs running at the same time", || async {
        let (a, b) = tokio::join!(admin.get(&path_a), admin.get(&path_b));
        (a.expect(200)["status"] == "running" && b.expect(200)["status"] == "running").then_some(())
    })
    .await;
    let (job_a, job_b) = tokio::join!(wait_finished(&admin, &id_a), wait_finished(&admin, &id_b));
    assert_eq!(
        (&job_a["status"], &job_a["stop_reason"]),
        (&json!("succeeded"), &json!("perfect")),
        "{job_a}"
    );
    assert_eq!((&job_b["status"], &job_b["stop_reason"]), (&json!("succeeded"), &json!("budget")), "{job_b}");

    // Each job counted exactly the calls its own endpoints received.
    for (job, teacher, student, teacher_calls) in
        [(&job_a, &teacher_a, &h.fake, 4), (&job_b, &teacher_b, &student_b, 2)]
    {
        let progress = &job["progress"];
        assert_eq!(teacher.request_count(), teacher_calls, "{progress}");
        assert_eq!(progress["teacher_calls"], teacher_calls, "{progress}");
        assert_eq!(progress["student_calls"].as_u64(), Some(student.request_count() as u64), "{progress}");
    }

    // Each iteration log holds its own teacher's critiques only.
    for (id, own, other, count) in [(&id_a, "[alpha] ", "[beta] ", 2), (&id_b, "[beta] ", "[alpha] ", 1)] {
        let log = admin.get(&format!("/v1/compile-jobs/{id}/iterations")).await.expect(200);
        let records = log["items"].as_array().expect("items");
        assert_eq!(records.len(), count, "{log}");
        for (i, record) in records.iter().enumerate() {
            assert_eq!(record["iteration"], i as u64 + 1, "{record}");
            let critique = record["critiques"][0]["critique"].as_str().expect("a critique");
            assert!(critique.starts_with(own) && !critique.contains(other), "job {id}: {critique}");
        }
    }

    // Each result is its own workflow's version, with its own job's lineage and cost.
    for (workflow, job, id, teacher_calls) in [("alpha", &job_a, &id_a, 4), ("beta", &job_b, &id_b, 2)] {
        let version = admin.get(&format!("/v1/workflows/{workflow}/versions/production")).await.expect(200);
        assert_eq!(version["id"], job["result_version_id"], "{workflow}");
        assert_eq!(version["job_id"], id.as_str(), "{workflow}");
        assert_eq!(version["metrics"]["compile_cost"]["teacher"]["calls"], teacher_calls, "{workflow}");
        let student_calls = &version["metrics"]["compile_cost"]["student"]["calls"];
        assert_eq!(
            student_calls, &job["progress"]["student_calls"],
            "{workflow}: the job counts the whole compile"
        );
        assert_eq!(version["metrics"]["stop_reason"], job["stop_reason"], "{workflow}");
    }
    let spec_of = |workflow: &'static str| {
        let admin = admin.clone();
        async move {
            admin.get(&format!("/v1/workflows/{workflow}/versions/production")).await.expect(200)["spec"]
                .to_string()
        }
    };
    assert!(spec_of("alpha").await.contains(r#""kind":"consensus""#), "alpha reached the consensus step");
    assert!(!spec_of("beta").await.contains(r#""kind":"consensus""#), "beta stopped after one iteration");
    h.finish().await;
}

#[sgde_test_macros::both_backends(flavor = "multi_thread", worker_threads = 2)]
async fn the_compile_job_list_pages_by_cursor_without_gaps_or_repeats() {
    // One worker slot and a student that never answers in time: one job runs, the rest wait,
    // and nothing finishes while the list is read.
    let student = FakeOpenAi::builder()
        .latency(Duration::from_secs(120))
        .responder(Arc::new(SimulatedStudent::new()))
        .start()
        .await
        .expect("student server");
    let teacher =
        FakeOpenAi::builder().responder(Arc::new(reference_teacher())).start().await.expect("teacher");
    let h = Harness::with(student, ServiceConfig::default().env("SGDE_RUN_CONCURRENCY", 1)).await;
    let admin = h.admin();
    admin.post("/v1/endpoints", &endpoint_config("teacher", &teacher)).await.expect(201);
    let mut submitted = Vec::new();
    for i in 0..7 {
        let workflow = if i % 2 == 0 { "even" } else { "odd" };
        submitted.push(submit(&admin, &job_request(workflow)).await);
    }
    let newest_first: Vec<String> = submitted.iter().rev().cloned().collect();
    let ids = |items: Vec<Value>| -> Vec<String> {
        items.iter().map(|j| j["id"].as_str().expect("id").to_owned()).collect()
    };
    for limit in [1, 2, 3, 7, 200] {
        assert_eq!(ids(all_pages(&admin, "/v1/compile-jobs", limit).await), newest_first, "pages of {limit}");
    }
    let evens: Vec<String> = newest_first.iter().step_by(2).cloned().collect();
    assert_eq!(ids(all_pages(&admin, "/v1/compile-jobs?workflow=even", 1).await), evens);

    // The first page of a listing says there is more; the last one does not.
    let first = admin.get("/v1/compile-jobs?limit=3").await.expect(200);
    assert_eq!(first["items"].as_array().map(Vec::len), Some(3));
    assert!(first["next_cursor"].is_string(), "{first}");
    let everything = admin.get("/v1/compile-jobs").await.expect(200);
    assert!(everything.get("next_cursor").is_none(), "{everything}");
    // A job that has not scored its baseline shows a typed, zeroed progress.
    let queued = everything["items"].as_array().and_then(|items| items.first()).expect("a job");
    assert_eq!(queued["progress"]["iteration"], 0, "{queued}");
    assert_eq!(queued["progress"]["score_history"], json!([]), "{queued}");

    // Bad parameters are answered as problems naming the parameter.
    admin.get("/v1/compile-jobs?cursor=not-a-cursor").await.problem(400, "bad_request");
    let reply = admin.get("/v1/compile-jobs?limit=0").await;
    reply.problem(422, "invalid_request");
    assert_eq!(reply.pointers(), vec!["/query/limit".to_owned()]);
    let reply = admin.get("/v1/compile-jobs?status=sleeping").await;
    reply.problem(422, "invalid_request");
    assert_eq!(reply.pointers(), vec!["/query/status".to_owned()]);
    h.finish().await;
}
