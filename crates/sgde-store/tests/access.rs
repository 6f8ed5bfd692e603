//! API keys and idempotency records.

use std::time::Duration;

use sgde_store::testing::TestDatabase;
use sgde_store::{
    ApiToken, IdempotencyBegin, IdempotencyKey, IdempotencyPolicy, IdempotentRequest, NewApiKey, Scope,
    StoreError, StoredResponse,
};
use uuid::Uuid;

#[sgde_test_macros::both_backends]
async fn keys_create_verify_list_revoke() {
    let db = TestDatabase::new().await.unwrap();
    let s = &*db.store;
    let created = s
        .create_key(&NewApiKey { name: "ci".into(), scopes: vec![Scope::Execute, Scope::Read, Scope::Read] })
        .await
        .unwrap();
    let token = created.token.clone();
    assert!(token.expose().starts_with("sgde_"));
    assert!(token.expose().starts_with(&created.key.prefix));
    assert_eq!(created.key.scopes, [Scope::Execute, Scope::Read], "deduplicated");

    // Only the hash is stored.
    let (stored, plaintext_anywhere) = stored_secret(&db, created.key.id, &token.expose()[5..]).await;
    assert_eq!(stored.len(), 32);
    assert!(!plaintext_anywhere);

    let verified = s.verify_key(&token).await.unwrap().expect("valid token");
    assert_eq!(verified.id, created.key.id);
    assert!(verified.allows(Scope::Execute) && !verified.allows(Scope::Admin));
    assert!(verified.last_used_at.is_some(), "first use is recorded");
    assert!(s.verify_key(&ApiToken::new("sgde_wrong")).await.unwrap().is_none());
    assert!(s.verify_key(&ApiToken::generate()).await.unwrap().is_none());

    assert!(matches!(
        s.create_key(&NewApiKey { name: "none".into(), scopes: vec![] }).await,
        Err(StoreError::Invalid { .. })
    ));
    s.create_key(&NewApiKey { name: "other".into(), scopes: vec![Scope::Write] }).await.unwrap();
    assert_eq!(s.list_keys().await.unwrap().len(), 2);

    let revoked = s.revoke_key(created.key.id).await.unwrap();
    let at = revoked.revoked_at.unwrap();
    assert!(s.verify_key(&token).await.unwrap().is_none(), "revoked keys do not verify");
    assert_eq!(s.revoke_key(created.key.id).await.unwrap().revoked_at, Some(at), "idempotent");
    assert_eq!(s.get_key(created.key.id).await.unwrap().revoked_at, Some(at));
    assert!(matches!(s.revoke_key(Uuid::now_v7()).await, Err(StoreError::NotFound { what: "api key" })));
    db.drop_database().await.unwrap();
}

#[sgde_test_macros::both_backends]
async fn admin_key_bootstrap_is_idempotent_and_rotates() {
    let db = TestDatabase::new().await.unwrap();
    let s = &*db.store;
    let first = ApiToken::new("first-admin-token-from-env");
    assert!(matches!(s.ensure_admin_key(&ApiToken::new("short")).await, Err(StoreError::Invalid { .. })));

    // Replicas starting together.
    let (a, b) = tokio::join!(s.ensure_admin_key(&first), s.ensure_admin_key(&first));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.id, b.id);
    assert!(a.bootstrap && a.allows(Scope::Admin));
    assert_eq!(a.prefix, "****", "an operator's token is not partly shown");
    assert_eq!(s.verify_key(&first).await.unwrap().unwrap().id, a.id);

    // Revoked through the API, it comes back at the next start while the environment has it.
    s.revoke_key(a.id).await.unwrap();
    assert_eq!(s.ensure_admin_key(&first).await.unwrap().revoked_at, None);

    // Rotating the environment token retires the old one.
    let second = ApiToken::new("second-admin-token-from-env");
    let rotated = s.ensure_admin_key(&second).await.unwrap();
    assert_ne!(rotated.id, a.id);
    assert!(s.verify_key(&first).await.unwrap().is_none());
    assert!(s.verify_key(&second).await.unwrap().is_some());
    let live_bootstrap =
        s.list_keys().await.unwrap().iter().filter(|k| k.bootstrap && k.revoked_at.is_none()).count();
    assert_eq!(live_bootstrap, 1);
    db.drop_database().await.unwrap();
}

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey { principal: "key-1".into(), key: k.into(), scope: "POST /v1/runs".into() }
}

fn response() -> StoredResponse {
    StoredResponse {
        status: 202,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("location".into(), "/v1/runs/1".into()),
        ],
        body: br#"{"id":"1","status":"queued"}"#.to_vec(),
    }
}

#[sgde_test_macros::both_backends]
async fn idempotency_states() {
    let db = TestDatabase::new().await.unwrap();
    let s = &*db.store;
    let policy = IdempotencyPolicy::default();
    let req = IdempotentRequest::new(key("k1"), br#"{"inputs":{"q":1}}"#);

    assert_eq!(s.begin_idempotent(&req, &policy).await.unwrap(), IdempotencyBegin::Started);
    assert_eq!(s.begin_idempotent(&req, &policy).await.unwrap(), IdempotencyBegin::InProgress);
    let other_body = IdempotentRequest::new(key("k1"), br#"{"inputs":{"q":2}}"#);
    assert_eq!(s.begin_idempotent(&other_body, &policy).await.unwrap(), IdempotencyBegin::Mismatch);

    s.complete_idempotent(&req.key, &response()).await.unwrap();
    assert_eq!(s.begin_idempotent(&req, &policy).await.unwrap(), IdempotencyBegin::Completed(response()));
    assert_eq!(s.begin_idempotent(&other_body, &policy).await.unwrap(), IdempotencyBegin::Mismatch);

    // The same key from another principal or on another route is a different record.
    let mut elsewhere = req.clone();
    elsewhere.key.principal = "key-2".into();
    assert_eq!(s.begin_idempotent(&elsewhere, &policy).await.unwrap(), IdempotencyBegin::Started);
    elsewhere.key.scope = "POST /v1/workflows".into();
    assert_eq!(s.begin_idempotent(&elsewhere, &policy).await.unwrap(), IdempotencyBegin::Started);

    // Abandoned after a failure: the retry starts afresh.
    let req2 = IdempotentRequest::new(key("k2"), b"{}");
    assert_eq!(s.begin_idempotent(&req2, &policy).await.unwrap(), IdempotencyBegin::Started);
    s.abandon_idempotent(&req2.key).await.unwrap();
    assert_eq!(s.begin_idempotent(&req2, &policy).await.unwrap(), IdempotencyBegin::Started);

    // A placeholder whose server died is taken over after the lock timeout, by the same request
    // only.
    let quick = IdempotencyPolicy { lock_timeout: Duration::from_millis(1), ..policy };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let req2_other = IdempotentRequest::new(key("k2"), b"{\"x\":1}");
    assert_eq!(s.begin_idempotent(&req2_other, &quick).await.unwrap(), IdempotencyBegin::Mismatch);
    assert_eq!(s.begin_idempotent(&req2, &quick).await.unwrap(), IdempotencyBegin::Started);

    // Expired records are forgotten, lazily by `begin` and in bulk by `purge`.
    let expired = IdempotencyPolicy { ttl: Duration::from_millis(1), ..policy };
    assert_eq!(s.begin_idempotent(&other_body, &expired).await.unwrap(), IdempotencyBegin::Started);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(s.purge_idempotency(Duration::from_millis(1)).await.unwrap() >= 3);
    assert_eq!(s.purge_idempotency(Duration::from_secs(3600)).await.unwrap(), 0);
    db.drop_database().await.unwrap();
}

#[sgde_test_macros::both_backends]
async fn concurrent_begins_have_one_owner() {
    let db = TestDatabase::new().await.unwrap();
    let policy = IdempotencyPolicy::default();
    let req = IdempotentRequest::new(key("race"), b"{}");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = db.store.clone();
            let req = req.clone();
            tokio::spawn(async move { store.begin_idempotent(&req, &policy).await.unwrap() })
        })
        .collect();
    let mut started = 0;
    for t in tasks {
        match t.await.unwrap() {
            IdempotencyBegin::Started => started += 1,
            IdempotencyBegin::InProgress => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(started, 1);
    db.drop_database().await.unwrap();
}

/// The stored hash of a key, and whether the token's secret appears in any column of any key.
async fn stored_secret(db: &TestDatabase, id: uuid::Uuid, secret: &str) -> (Vec<u8>, bool) {
    const HASH: &str = "SELECT secret_hash FROM api_keys WHERE id = $1";
    if let Some(pg) = db.pg() {
        let stored = sqlx::query_scalar(HASH).bind(id).fetch_one(pg.pool()).await.unwrap();
        let anywhere = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM api_keys k WHERE k::text LIKE '%' || $1 || '%')",
        )
        .bind(secret)
        .fetch_one(pg.pool())
        .await
        .unwrap();
        (stored, anywhere)
    } else {
        let sqlite = db.sqlite().unwrap();
        let stored = sqlx::query_scalar(HASH).bind(id).fetch_one(sqlite.reader()).await.unwrap();
        let anywhere = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM api_keys WHERE
                 (name || prefix || hex(secret_hash) || scopes || hex(id)) LIKE '%' || $1 || '%')",
        )
        .bind(secret)
        .fetch_one(sqlite.reader())
        .await
        .unwrap();
        (stored, anywhere)
    }
}
