//! Several gateways on one PostgreSQL database keep their caches correct:
//! a change made through one (a revoked key, a session's new status) is
//! seen by the others within a second (`LISTEN`/`NOTIFY`). Only in
//! `contract_postgres`: SQLite has one gateway per database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::support::{TestApp, json, test_config};

/// Two gateways on one database.
async fn two_nodes() -> (TestApp, TestApp) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let a = TestApp::spawn_with(test_config(&dir), dir.clone()).await;
    let b = TestApp::spawn_with(test_config(&dir), dir.clone()).await;
    (a, b)
}

/// Waits until `done` holds, failing after `within`; returns how long it took.
async fn within<F, Fut>(within: Duration, what: &str, mut done: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if done().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_key_revoked_on_one_node_is_refused_by_the_others_within_a_second() {
    let (a, b) = two_nodes().await;
    let admin = a.key("acme", "admin").await;
    let key = a.key("acme", "read").await;
    // B has verified (and cached) the key.
    assert_eq!(
        b.get("/api/v1/sessions", &key).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        b.get("/api/v1/sessions", &key).await.status(),
        StatusCode::OK
    );
    let list = json(a.get("/api/v1/api-keys", &admin).await).await;
    let id = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| key.starts_with(k["prefix"].as_str().unwrap()))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = a.delete(&format!("/api/v1/api-keys/{id}"), &admin).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    within(
        Duration::from_secs(1),
        "B refuses the revoked key",
        || async { b.get("/api/v1/sessions", &key).await.status() == StatusCode::UNAUTHORIZED },
    )
    .await;
}

#[tokio::test]
async fn a_session_changed_on_one_node_reads_changed_on_the_others_within_a_second() {
    let (a, b) = two_nodes().await;
    let key = a.key("acme", "read,manage").await;
    let id = a.create_session(&key).await;
    let path = format!("/api/v1/sessions/{id}");
    // B reads (and caches) it as it is.
    assert_eq!(json(b.get(&path, &key).await).await["status"], "new");
    let res = a.post(&format!("{path}/connect"), &key, None).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    a.wait_for_status(&id, &key, "pairing").await;
    within(Duration::from_secs(1), "B reads the new status", || async {
        json(b.get(&path, &key).await).await["status"] == "pairing"
    })
    .await;
    // Deleted on A: gone on B.
    a.post(&format!("{path}/disconnect"), &key, None).await;
    assert_eq!(a.delete(&path, &key).await.status(), StatusCode::NO_CONTENT);
    within(Duration::from_secs(1), "B no longer finds it", || async {
        b.get(&path, &key).await.status() == StatusCode::NOT_FOUND
    })
    .await;
}
