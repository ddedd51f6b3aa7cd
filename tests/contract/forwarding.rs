//! Any gateway answers any request: a live call runs on the node that owns
//! the session, forwarded there once with the inter-node signature; reads
//! are answered where they arrive. Two apps share one database; a test
//! [`SessionOwnership`] (the port) places the sessions.

use std::sync::{Arc, Mutex};

use reqwest::{Method, StatusCode};
use serde_json::json;
use wagate_domain::{NodeId, SessionId};
use wagate_store::{SessionOwner, SessionOwnership, StoreError};

use crate::support::{GHOST_MESSAGE, TestApp, assert_error, json, routes, test_config};

const SECRET: &str = "forwarding-tests-cluster-secret-0123456789";

/// Where the test says every session's live calls run.
#[derive(Debug)]
struct Placed(Mutex<SessionOwner>);

impl Placed {
    fn here() -> Arc<Self> {
        Arc::new(Self(Mutex::new(SessionOwner::Here)))
    }

    fn set(&self, owner: SessionOwner) {
        *self.0.lock().unwrap() = owner;
    }
}

#[async_trait::async_trait]
impl SessionOwnership for Placed {
    async fn owner_for_call(&self, _: &SessionId) -> Result<SessionOwner, StoreError> {
        Ok(self.0.lock().unwrap().clone())
    }
}

/// Another node, reachable at `url`.
fn node_at(url: &str) -> SessionOwner {
    SessionOwner::Node {
        id: NodeId::parse("node_01HZY0N4Q8ZK3J4M7ZC9W4X2QF").unwrap(),
        advertise_url: url.to_owned(),
    }
}

/// Two gateways on one database, each placing sessions as its `Placed`
/// says (both `Here` at first), with the cluster secrets given.
async fn two_nodes(
    secret_a: &str,
    secret_b: &str,
) -> ((TestApp, Arc<Placed>), (TestApp, Arc<Placed>)) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let start = async |secret: &str| {
        let mut config = test_config(&dir);
        config.cluster.secret = Some(wagate::config::Secret::new(secret.to_owned()));
        let placed = Placed::here();
        let app = TestApp::spawn_placed(config, dir.clone(), Some(placed.clone())).await;
        (app, placed)
    };
    let b = start(secret_b).await;
    let a = start(secret_a).await;
    (a, b)
}

#[tokio::test]
async fn live_calls_run_on_the_owner_and_reads_where_they_arrive() {
    let ((a, at_a), (b, _)) = two_nodes(SECRET, SECRET).await;
    let key = a.key("acme", "read,send,manage").await;
    let id = a.create_session(&key).await;
    let base = format!("/api/v1/sessions/{id}");
    at_a.set(node_at(&b.address));

    // Connecting through A connects on B; its QR is B's.
    let res = a.post(&format!("{base}/connect"), &key, None).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert!(res.headers().get("x-request-id").is_some());
    b.wait_for_status(&id, &key, "pairing").await;
    let qr = a.get(&format!("{base}/qr?format=svg"), &key).await;
    assert_eq!(qr.status(), StatusCode::OK);
    assert_eq!(qr.headers()["content-type"], "image/svg+xml");

    // A body goes along, verified by its digest.
    let id = a.create_session(&key).await;
    let base = format!("/api/v1/sessions/{id}");
    a.post(&format!("{base}/connect"), &key, None).await;
    b.wait_for_status(&id, &key, "pairing").await;
    let res = a
        .post(
            &format!("{base}/pairing-code"),
            &key,
            Some(json!({ "phoneNumber": "+44 20 7946 0958" })),
        )
        .await;
    let status = res.status();
    let body = json(res).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["code"].as_str().unwrap().len(), 9);
    let bad = a
        .post(
            &format!("{base}/pairing-code"),
            &key,
            Some(json!({ "phoneNumber": "12" })),
        )
        .await;
    let e = assert_error(bad, 400, "invalid_argument").await;
    assert_eq!(e["details"]["field"], "phoneNumber");
    b.wait_for_status(&id, &key, "connected").await;

    // A contact lookup through A is B's answer, unchanged.
    let about = format!("{base}/contacts/14155550123@s.whatsapp.net/about");
    let (via_a, on_b) = (a.get(&about, &key).await, b.get(&about, &key).await);
    assert_eq!(via_a.status(), on_b.status());
    assert_eq!(json(via_a).await, json(on_b).await);
    assert_eq!(
        a.get(&format!("{base}/blocklist"), &key).await.status(),
        StatusCode::OK
    );

    // Counted on both sides.
    let metrics = |app: &TestApp| {
        let app = app.address.clone();
        async move {
            reqwest::get(format!("{app}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    assert!(
        metrics(&a)
            .await
            .contains(r#"wagate_forwarded_calls_total{outcome="forwarded"} 7"#)
    );
    assert!(
        metrics(&b)
            .await
            .contains(r#"wagate_forwarded_calls_total{outcome="admitted"} 7"#)
    );

    // A has no client for the session: every answer above was B's.
    at_a.set(SessionOwner::Here);
    let e = assert_error(
        a.get(&format!("{base}/blocklist"), &key).await,
        501,
        "not_implemented",
    )
    .await;
    assert!(e["details"]["status"].is_string(), "{e}");
}

#[tokio::test]
async fn with_no_owner_live_calls_are_503_and_reads_answer() {
    let ((a, at_a), _b) = two_nodes(SECRET, SECRET).await;
    let key = a.key("acme", "read,send,manage,admin").await;
    let id = a.create_session(&key).await;
    at_a.set(SessionOwner::Nobody);
    let live = |method: &Method, path: &str| {
        let session = format!("/api/v1/sessions/{id}");
        let rest = path.strip_prefix(&session);
        match rest {
            None => false,
            Some("") => *method == Method::DELETE,
            Some("/messages" | "/groups") => *method == Method::POST,
            // A message is read here; edited or deleted by its owner.
            Some(r) if r == format!("/messages/{GHOST_MESSAGE}") => *method != Method::GET,
            Some(r) => {
                !r.starts_with("/messages/") || r.contains("/media") || r.contains("/reaction")
            }
        }
    };
    // The OpenAPI document declares the owner's 503 (with Retry-After) on
    // exactly the operations that answer it.
    let doc = json(a.get("/openapi.json", &key).await).await;
    let declared = |method: &Method, path: &str| {
        let answer = &doc["paths"][openapi_path(&doc, path)][method.as_str().to_lowercase()]["responses"]
            ["503"];
        answer["$ref"] == "#/components/responses/Unavailable"
            || answer["headers"]["Retry-After"].is_object()
    };
    let mut live_seen = 0;
    for (method, path, _) in routes(&id) {
        let res = a.call(&method, &path, &key).await;
        assert_eq!(
            declared(&method, &path),
            live(&method, &path),
            "the OpenAPI 503 of {method} {path}"
        );
        if live(&method, &path) {
            live_seen += 1;
            let retry = res.headers().get("retry-after").cloned();
            let e = assert_error(res, 503, "unavailable").await;
            assert_eq!(
                retry.unwrap(),
                e["details"]["retryAfterSecs"].to_string(),
                "{method} {path}"
            );
        } else {
            assert_ne!(
                res.status(),
                StatusCode::SERVICE_UNAVAILABLE,
                "{method} {path}"
            );
        }
    }
    // Lifecycle, QR, pairing, contacts, presence, sending, edits,
    // deletions, media, reactions, reads, groups (all but their list).
    assert_eq!(live_seen, 30);
    // Another organization's session is not located for anyone: 404.
    let other = a.key("globex", "read,manage").await;
    assert_error(
        a.post(&format!("/api/v1/sessions/{id}/connect"), &other, None)
            .await,
        404,
        "not_found",
    )
    .await;
}

/// The OpenAPI path a request's path matches (literal segments before
/// `{parameters}`).
fn openapi_path(doc: &serde_json::Value, path: &str) -> String {
    let want: Vec<&str> = path.split('/').collect();
    doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .filter_map(|template| {
            let parts: Vec<&str> = template.split('/').collect();
            (parts.len() == want.len()).then_some(())?;
            let mut literal = 0;
            for (t, w) in parts.iter().zip(&want) {
                if t.starts_with('{') {
                    continue;
                }
                (t == w).then_some(())?;
                literal += 1;
            }
            Some((literal, template.clone()))
        })
        .max()
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("{path} is not in the OpenAPI document"))
}

#[tokio::test]
async fn a_forwarded_call_is_never_forwarded_again() {
    let ((a, at_a), (b, at_b)) = two_nodes(SECRET, SECRET).await;
    let key = a.key("acme", "read,manage").await;
    let id = a.create_session(&key).await;
    // Each thinks the other owns it (ownership moving): one hop, then 503.
    at_a.set(node_at(&b.address));
    at_b.set(node_at(&a.address));
    let res = a
        .post(&format!("/api/v1/sessions/{id}/connect"), &key, None)
        .await;
    assert!(res.headers().get("retry-after").is_some());
    let e = assert_error(res, 503, "unavailable").await;
    assert!(e["message"].as_str().unwrap().contains("moving"), "{e}");
}

#[tokio::test]
async fn a_forwarded_request_without_a_valid_signature_is_401() {
    // B's secret is not A's.
    let ((a, at_a), (b, _)) = two_nodes(SECRET, "another-cluster-secret-0123456789abcdef").await;
    let key = a.key("acme", "read,manage").await;
    let id = a.create_session(&key).await;
    let connect = format!("/api/v1/sessions/{id}/connect");

    // Straight to B, claiming to be forwarded: refused, whatever the token.
    for token in ["", key.as_str()] {
        let res = b
            .req(Method::POST, &connect, token)
            .header("x-wagate-forwarded-by", "node_01HZY0N4Q8ZK3J4M7ZC9W4X2QF")
            .header("x-wagate-forwarded-at", "1")
            .header("x-wagate-principal", "e30")
            .header("x-wagate-content-sha256", "x")
            .header("x-wagate-signature", "AAAA")
            .send()
            .await
            .unwrap();
        assert_error(res, 401, "unauthorized").await;
    }
    // Signed by A with the wrong secret: B refuses it, and A tells its
    // caller the owner cannot be used now (not that their key is bad).
    at_a.set(node_at(&b.address));
    let res = a.post(&connect, &key, None).await;
    assert!(res.headers().get("retry-after").is_some());
    assert_error(res, 503, "unavailable").await;
    // An owner that cannot be reached: 503 too.
    at_a.set(node_at("http://127.0.0.1:9"));
    assert_error(a.post(&connect, &key, None).await, 503, "unavailable").await;
    // Reads are answered here all along.
    assert_eq!(
        a.get(&format!("/api/v1/sessions/{id}"), &key)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn large_bodies_and_media_pass_through_a_forwarding_node() {
    use base64::Engine;
    let ((a, at_a), (b, _)) = two_nodes(SECRET, SECRET).await;
    let key = a.key("acme", "read,send,manage").await;
    let id = b.connected_session(&key).await;
    at_a.set(node_at(&b.address));
    let contact = "14155550199@s.whatsapp.net";

    // A send whose body is over 64 KiB, through A.
    let image: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
    let data = base64::engine::general_purpose::STANDARD.encode(&image);
    let res = a
        .post(
            &format!("/api/v1/sessions/{id}/messages"),
            &key,
            Some(json!({ "to": contact, "type": "image", "media": { "data": data, "mimetype": "image/png" } })),
        )
        .await;
    let status = res.status();
    let body = json(res).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["media"]["size"], 200_000);

    // A received image of 2 MB downloads through A, streamed as the owner
    // streams it.
    let big: Vec<u8> = (0..=250u8).cycle().take(2_000_000).collect();
    let rid = b
        .contact_sends_image(&id, contact, &big, "image/png", "big")
        .await;
    let media = format!("/api/v1/sessions/{id}/messages/{rid}/media");
    crate::support::eventually("the image is received", || async {
        (b.get(&format!("/api/v1/sessions/{id}/messages/{rid}"), &key)
            .await
            .status()
            == StatusCode::OK)
            .then_some(())
    })
    .await;
    let res = a.get(&media, &key).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "image/png");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(res.bytes().await.unwrap().len(), big.len());
    let res = a.get(&media, &key).await;
    assert_eq!(res.bytes().await.unwrap().to_vec(), big);
}
