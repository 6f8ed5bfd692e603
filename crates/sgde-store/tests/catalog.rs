//! Endpoints, workflows, versions and labels.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;
use sgde_llm::EndpointConfig;
use sgde_store::testing::TestDatabase;
use sgde_store::{NewVersion, NewWorkflow, PageRequest, Store, StoreError, VersionSelector, VersionSource};
use uuid::Uuid;

fn workflow(name: &str) -> NewWorkflow {
    NewWorkflow { name: name.to_owned(), description: Some(format!("{name} workflow")) }
}

fn version(n: u32) -> NewVersion {
    NewVersion::manual(json!({ "schema": "sgde.workflow/v1", "n": n }), format!("sha256:{n:064x}"))
}

#[sgde_test_macros::both_backends]
async fn endpoints_crud_and_conflicts() {
    let db = TestDatabase::new().await.unwrap();
    let s = &*db.store;
    let mut config = EndpointConfig::new("student", "http://127.0.0.1:8080/v1", "smollm2");
    config.api_key_env = Some("STUDENT_KEY".into());
    let created = s.create_endpoint(&config).await.unwrap();
    assert_eq!(created.name, "student");
    assert_eq!(created.config, config);
    assert!(matches!(s.create_endpoint(&config).await, Err(StoreError::Conflict { what: "endpoint name" })));

    let teacher = EndpointConfig::new("teacher", "https://api.openai.com/v1", "gpt-4o");
    s.create_endpoint(&teacher).await.unwrap();
    let names: Vec<_> = s.list_endpoints().await.unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["student", "teacher"]);

    let mut renamed = config.clone();
    renamed.name = "student-v2".into();
    renamed.timeout_ms = 5_000;
    let updated = s.update_endpoint("student", &renamed).await.unwrap();
    assert_eq!(
        (updated.id, updated.name.as_str(), updated.config.timeout_ms),
        (created.id, "student-v2", 5_000)
    );
    assert!(updated.updated_at >= created.updated_at);
    assert!(matches!(s.get_endpoint("student").await, Err(StoreError::NotFound { what: "endpoint" })));
    assert!(matches!(
        s.update_endpoint("student-v2", &teacher).await,
        Err(StoreError::Conflict { what: "endpoint name" })
    ));

    s.delete_endpoint("student-v2").await.unwrap();
    assert!(matches!(s.delete_endpoint("student-v2").await, Err(StoreError::NotFound { .. })));
    assert_eq!(s.list_endpoints().await.unwrap().len(), 1);
    db.drop_database().await.unwrap();
}

#[sgde_test_macros::both_backends]
async fn workflows_paginate_by_name_and_soft_delete_frees_the_name() {
    let db = TestDatabase::new().await.unwrap();
    let s = &*db.store;
    for name in ["c", "a", "e", "b", "d"] {
        s.create_workflow(&workflow(name)).await.unwrap();
    }
    assert!(matches!(
        s.create_workflow(&workflow("a")).await,
        Err(StoreError::Conflict { what: "workflow name" })
    ));

    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let got = s.list_workflows(&page).await.unwrap();
        assert!(got.items.len() <= 2);
        seen.extend(got.items.into_iter().map(|w| w.name));
        match got.next_cursor {
            Some(c) => page = PageRequest::after(2, c),
            None => break,
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    assert!(matches!(
        s.list_workflows(&PageRequest::after(2, "garbage")).await,
        Err(StoreError::Invalid { what: "cursor" })
    ));

    let old = s.get_workflow("a").await.unwrap();
    assert_eq!(old.latest_version, None);
    s.delete_workflow("a").await.unwrap();
    assert!(matches!(s.get_workflow("a").await, Err(StoreError::NotFound { what: "workflow" })));
    assert!(matches!(s.get_workflow_by_id(old.id).await, Err(StoreError::NotFound { .. })));
    assert!(matches!(s.delete_workflow("a").await, Err(StoreError::NotFound { .. })));
    let again = s.create_workflow(&workflow("a")).await.unwrap();
    assert_ne!(again.id, old.id);
    assert_eq!(s.list_workflows(&PageRequest::default()).await.unwrap().items.len(), 5);
    db.drop_database().await.unwrap();
}

#[sgde_test_macros::both_backends]
async fn versions_are_numbered_deduplicated_and_immutable() {
    let db = TestDatabase::new().await.unwrap();
    let s = &*db.store;
    let (wf, v1) = s.create_workflow_with_version(&workflow("gsm"), &version(1)).await.unwrap();
    assert_eq!((v1.number, wf.latest_version), (1, Some(1)));

    let (same, created) = s.create_version(wf.id, &version(1)).await.unwrap();
    assert!(!created, "identical content returns the existing version");
    assert_eq!(same, v1);

    let mut child = version(2);
    child.parent_version_id = Some(v1.id);
    child.source = VersionSource::Compile;
    child.metrics = Some(json!({ "train_score": 1.0 }));
    let (v2, created) = s.create_version(wf.id, &child).await.unwrap();
    assert!(created);
    assert_eq!((v2.number, v2.parent_version_id, v2.source), (2, Some(v1.id), VersionSource::Compile));
    assert_eq!(s.get_workflow("gsm").await.unwrap().latest_version, Some(2));

    // A parent from another workflow is refused.
    let (other, ov1) = s.create_workflow_with_version(&workflow("other"), &version(1)).await.unwrap();
    let mut foreign = version(3);
    foreign.parent_version_id = Some(ov1.id);
    assert!(matches!(
        s.create_version(wf.id, &foreign).await,
        Err(StoreError::NotFound { what: "parent version" })
    ));
    assert!(matches!(
        s.create_version(Uuid::now_v7(), &version(9)).await,
        Err(StoreError::NotFound { what: "workflow" })
    ));

    // Selectors.
    assert_eq!(s.get_version(wf.id, &VersionSelector::Number(1)).await.unwrap().id, v1.id);
    assert_eq!(s.get_version(wf.id, &VersionSelector::Id(v2.id)).await.unwrap().number, 2);
    assert_eq!(s.get_version(wf.id, &VersionSelector::Latest).await.unwrap().id, v2.id);
    assert_eq!(s.get_version(wf.id, &VersionSelector::Default).await.unwrap().id, v2.id, "no label: latest");
    s.set_label(wf.id, "production", v1.id, Some("ops")).await.unwrap();
    assert_eq!(s.get_version(wf.id, &VersionSelector::Default).await.unwrap().id, v1.id, "production label");
    assert_eq!(s.get_version(wf.id, &VersionSelector::Label("production".into())).await.unwrap().id, v1.id);
    for missing in
        [VersionSelector::Number(7), VersionSelector::Id(ov1.id), VersionSelector::Label("staging".into())]
    {
        assert!(
            matches!(s.get_version(wf.id, &missing).await, Err(StoreError::NotFound { what: "version" })),
            "{missing:?}"
        );
    }
    let (w, v) = s.resolve_version("gsm", &VersionSelector::Default).await.unwrap();
    assert_eq!((w.id, v.id), (wf.id, v1.id));
    assert!(matches!(
        s.resolve_version("nope", &VersionSelector::Latest).await,
        Err(StoreError::NotFound { what: "workflow" })
    ));
    assert_eq!(s.resolve_version("other", &VersionSelector::Latest).await.unwrap().0.id, other.id);

    // Listing, newest first, paginated.
    for n in 3..=7 {
        s.create_version(wf.id, &version(n)).await.unwrap();
    }
    let first = s.list_versions(wf.id, &PageRequest::first(4)).await.unwrap();
    assert_eq!(first.items.iter().map(|v| v.number).collect::<Vec<_>>(), [7, 6, 5, 4]);
    let rest = s.list_versions(wf.id, &PageRequest::after(4, first.next_cursor.unwrap())).await.unwrap();
    assert_eq!(rest.items.iter().map(|v| v.number).collect::<Vec<_>>(), [3, 2, 1]);
    assert_eq!(rest.next_cursor, None);

    // The database itself refuses to change a version.
    let update = db
        .execute_for(
            v1.id,
            "UPDATE workflow_versions SET metrics = '{}' WHERE id = $1",
            "UPDATE workflow_versions SET metrics = '{}' WHERE id = $1",
        )
        .await;
    assert!(update.is_err());
    db.drop_database().await.unwrap();
}

#[sgde_test_macros::both_backends]
async fn concurrent_version_creates_get_unique_consecutive_numbers() {
    let db = TestDatabase::new().await.unwrap();
    let store: Arc<dyn Store> = db.store.clone();
    let wf = store.create_workflow(&workflow("race")).await.unwrap();

    let tasks: Vec<_> = (0..10)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.create_version(wf.id, &version(n)).await })
        })
        .collect();
    // Two more posting content that is also being created, to race dedup against numbering.
    let dups: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.create_version(wf.id, &version(0)).await })
        })
        .collect();

    let mut numbers = BTreeSet::new();
    let mut content_zero = BTreeSet::new();
    for (n, t) in (0..).zip(tasks.into_iter().chain(dups)) {
        let (v, created) = t.await.unwrap().unwrap();
        if created {
            assert!(numbers.insert(v.number), "number {} handed out twice", v.number);
        }
        if n == 0 || n >= 10 {
            content_zero.insert(v.id);
        }
    }
    assert_eq!(content_zero.len(), 1, "the three posts of the same content got one version");
    assert_eq!(numbers, (1..=10).collect::<BTreeSet<_>>());
    let all = store.list_versions(wf.id, &PageRequest::first(100)).await.unwrap();
    assert_eq!(all.items.len(), 10, "no duplicate content");
    db.drop_database().await.unwrap();
}

#[sgde_test_macros::both_backends]
async fn labels_move_with_history() {
    let db = TestDatabase::new().await.unwrap();
    let s = &*db.store;
    let (wf, v1) = s.create_workflow_with_version(&workflow("wf"), &version(1)).await.unwrap();
    let (v2, _) = s.create_version(wf.id, &version(2)).await.unwrap();

    let set = s.set_label(wf.id, "production", v1.id, Some("alice")).await.unwrap();
    assert_eq!((set.previous_version_id, set.label.version_number), (None, 1));
    let moved = s.set_label(wf.id, "production", v2.id, Some("bob")).await.unwrap();
    assert_eq!(moved.previous_version_id, Some(v1.id));
    assert_eq!((moved.label.version_id, moved.label.updated_by.as_deref()), (v2.id, Some("bob")));
    let same = s.set_label(wf.id, "production", v2.id, Some("carol")).await.unwrap();
    assert_eq!(same.previous_version_id, Some(v2.id), "a no-op move");
    s.set_label(wf.id, "staging", v2.id, None).await.unwrap();

    let labels = s.list_labels(wf.id).await.unwrap();
    assert_eq!(labels.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(), ["production", "staging"]);

    // A version of another workflow, or none at all, cannot be labelled.
    let (_, foreign) = s.create_workflow_with_version(&workflow("x"), &version(1)).await.unwrap();
    for bad in [foreign.id, Uuid::now_v7()] {
        assert!(matches!(
            s.set_label(wf.id, "production", bad, None).await,
            Err(StoreError::NotFound { what: "version" })
        ));
    }

    let deleted = s.delete_label(wf.id, "production", Some("dave")).await.unwrap();
    assert_eq!(deleted.version_id, v2.id);
    assert!(matches!(
        s.delete_label(wf.id, "production", None).await,
        Err(StoreError::NotFound { what: "label" })
    ));

    let history = s.label_history(wf.id, Some("production"), &PageRequest::default()).await.unwrap();
    let steps: Vec<_> = history
        .items
        .iter()
        .map(|e| (e.from_version_id, e.to_version_id, e.moved_by.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        steps,
        [
            (Some(v2.id), None, "dave".to_owned()),
            (Some(v1.id), Some(v2.id), "bob".to_owned()),
            (None, Some(v1.id), "alice".to_owned()),
        ]
    );
    let all = s.label_history(wf.id, None, &PageRequest::first(2)).await.unwrap();
    assert_eq!(all.items.len(), 2);
    let rest = s.label_history(wf.id, None, &PageRequest::after(2, all.next_cursor.unwrap())).await.unwrap();
    assert_eq!(rest.items.len(), 2, "4 events in all: 3 production + 1 staging");
    assert!(rest.next_cursor.is_none());
    db.drop_database().await.unwrap();
}
