//! What one tenant (or one of its credentials) can cost another: caps on
//! event streams, credentials re-checked on open streams whatever they are
//! doing, the SSRF rule's IPv6 forms and media URLs' own switch.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::AsyncReadExt;
use wagate_domain::{Jid, SessionId};
use wagate_whatsapp_port::OutgoingContent;

use crate::raw_http::{answered, raw_request};
use crate::support::{Frontend, TestApp, assert_error, json, test_config};

/// Opens `/api/v1/events/stream` with `token`.
async fn open_stream(app: &TestApp, token: &str) -> reqwest::Response {
    app.req(Method::GET, "/api/v1/events/stream", token)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn one_stream_over_the_credentials_or_the_organizations_cap_is_429() {
    let app = TestApp::spawn_tuned(|c| {
        c.events.max_streams_per_credential = 2;
        c.events.max_streams_per_org = 3;
        // A closed stream is noticed when a write to it fails: keep-alives
        // every 0.2 s, not 15 s, so its slot comes back at once, even on a
        // busy machine.
        c.events.stream_keep_alive_secs = 0.2;
    })
    .await;
    let (first, second) = (app.key("acme", "read").await, app.key("acme", "read").await);
    let mut open = Vec::new();
    for _ in 0..2 {
        let res = open_stream(&app, &first).await;
        assert_eq!(res.status(), StatusCode::OK);
        open.push(res);
    }
    let res = open_stream(&app, &first).await;
    assert!(res.headers().contains_key("retry-after"));
    let e = assert_error(res, 429, "rate_limited").await;
    assert_eq!(e["details"]["limit"], 2);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("events.max_streams_per_credential")
    );
    // Another key of the organization: the organization's cap (3) is next.
    let res = open_stream(&app, &second).await;
    assert_eq!(res.status(), StatusCode::OK);
    let e = assert_error(open_stream(&app, &second).await, 429, "rate_limited").await;
    assert_eq!(e["details"]["limit"], 3);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("events.max_streams_per_org")
    );
    // Another organization is not held back by this one's streams.
    let other = app.key("umbrella", "read").await;
    let theirs = open_stream(&app, &other).await;
    assert_eq!(theirs.status(), StatusCode::OK);
    // A stream the client closes gives its slot back.
    drop(res);
    open.pop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let res = open_stream(&app, &first).await;
        if res.status() == StatusCode::OK {
            break;
        }
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed stream's slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The raw HTTP/1.1 answer of a stream request on a socket with a small
/// receive buffer, so that a client that stops reading soon leaves the
/// server's stream waiting for room.
struct RawStream(tokio::net::TcpStream);

/// The head of a message send with a body of `length` bytes, and the first
/// bytes of that body.
fn send_head(session: &str, token: &str, length: usize) -> String {
    format!(
        "POST /api/v1/sessions/{session}/messages HTTP/1.1\r\nHost: gateway\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n{{\"to\": \"14155550142@s.whatsapp.net\", "
    )
}

impl RawStream {
    async fn open(app: &TestApp, token: &str) -> Self {
        Self(
            raw_request(
                &app.address,
                &format!(
                    "GET /api/v1/events/stream HTTP/1.1\r\nHost: gateway\r\n\
                     Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
                ),
            )
            .await,
        )
    }

    /// Everything the server sends until it closes the connection.
    async fn read_to_end(&mut self) -> String {
        let mut all = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), self.0.read_to_end(&mut all))
            .await
            .expect("the stream never ended")
            .expect("read");
        String::from_utf8_lossy(&all).into_owned()
    }
}

#[tokio::test]
async fn a_revoked_key_ends_a_stream_that_is_always_behind() {
    let app = TestApp::spawn_tuned(|c| c.events.stream_keep_alive_secs = 0.2).await;
    let admin = app.key("acme", "read,send,manage,admin").await;
    let session = app.connected_session(&admin).await;
    // A backlog far larger than what the server's buffers for one client
    // hold (256 messages, and the socket's): 600 messages of 10 KB.
    const BACKLOG: usize = 600;
    let fake = app.fake.as_ref().expect("the fake adapter");
    let (id, from) = (
        SessionId::parse(&session).unwrap(),
        Jid::parse(crate::support::READER).unwrap(),
    );
    let text = "x".repeat(10 * 1024);
    for _ in 0..BACKLOG {
        fake.deliver_from(&id, &from, OutgoingContent::Text(text.clone()))
            .await
            .expect("delivered");
    }
    let created = json(
        app.post(
            "/api/v1/api-keys",
            &admin,
            Some(json!({ "name": "reader", "capabilities": ["read"] })),
        )
        .await,
    )
    .await;
    let (key_id, reader) = (
        created["id"].as_str().unwrap(),
        created["key"].as_str().unwrap(),
    );
    let mut stream = RawStream::open(&app, reader).await;
    let res = app
        .delete(&format!("/api/v1/api-keys/{key_id}"), &admin)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // The client reads nothing for a while (what is under test: the
    // stream is stuck waiting for room, always behind) …
    tokio::time::sleep(Duration::from_secs(1)).await;
    // … then reads on: the stream ended at the first keep-alive after the
    // revocation, so it holds only what was queued for the client then.
    let text = stream.read_to_end().await;
    let received = text.matches("event: message.received").count();
    // Whether the end reaches the client as the last chunk or as a closed
    // connection depends on what the server's socket still held when the
    // stream ended (seen both ways on a loaded machine); either way the
    // client reconnects, and the revoked key reads no further.
    assert!(
        received < BACKLOG,
        "the revoked key read the whole backlog ({received} events)"
    );
}

#[tokio::test]
async fn an_expired_login_ends_the_stream_of_a_busy_organization() {
    let frontend = Frontend::start().await;
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.auth.jwt.jwks_url = Some(frontend.jwks_url.clone());
    config.auth.jwt.audience = Some(crate::support::AUDIENCE.into());
    config.auth.jwt.leeway_secs = 0;
    config.events.stream_keep_alive_secs = 0.2;
    let app = TestApp::spawn_with(config, dir).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.get("/readyz", "").await.status() != StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "JWKS never loaded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let admin = app.key("acme", "read,send,manage,admin").await;
    let session = app.connected_session(&admin).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expires = now + 2;
    let login = frontend.token(
        "rsa-1",
        json!({ "org_id": "acme", "role": "viewer", "sub": "user-1", "exp": expires }),
    );
    let mut stream = open_stream(&app, &login).await;
    assert_eq!(stream.status(), StatusCode::OK);
    // The organization is busy: a contact writes without pause.
    let fake = app.fake.clone().expect("the fake adapter");
    let busy = tokio::spawn(async move {
        let (id, from) = (
            SessionId::parse(&session).unwrap(),
            Jid::parse(crate::support::READER).unwrap(),
        );
        loop {
            let _ = fake
                .deliver_from(&id, &from, OutgoingContent::Text("busy".into()))
                .await;
            tokio::task::yield_now().await;
        }
    });
    // The client reads as fast as it can until the server ends the stream.
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(chunk) = stream.chunk().await.expect("a clean end") {
            drop(chunk);
        }
    })
    .await;
    busy.abort();
    assert!(ended.is_ok(), "the expired login's stream never ended");
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // Within one keep-alive period of the expiry (whole seconds in `exp`,
    // and a loaded 2-core machine: a generous margin).
    assert!(
        after < (expires as f64) + 3.0,
        "ended {:.1} s after the login expired",
        after - expires as f64
    );
}

#[tokio::test]
async fn ipv6_forms_of_private_addresses_are_refused_as_webhook_targets() {
    let app = TestApp::spawn_tuned(|c| c.webhooks.allow_private_targets = false).await;
    let admin = app.key("acme", "admin").await;
    for url in [
        "http://[::127.0.0.1]/hook",
        "http://[::ffff:0:127.0.0.1]/hook",
        "http://[::ffff:0:a9fe:a9fe]/latest",
        "http://[64:ff9b:1::7f00:1]/hook",
        "http://[2002:7f00:1::1]/hook",
    ] {
        let res = app
            .post(
                "/api/v1/webhooks",
                &admin,
                Some(json!({ "url": url, "events": ["*"] })),
            )
            .await;
        let e = assert_error(res, 400, "invalid_argument").await;
        assert_eq!(e["details"]["field"], "url", "{url}");
    }
}

#[tokio::test]
async fn media_urls_do_not_inherit_the_webhooks_private_address_switch() {
    let app = TestApp::spawn_tuned(|c| {
        c.webhooks.allow_private_targets = true;
        c.messages.allow_private_media_urls = false;
    })
    .await;
    let key = app.key("acme", "read,send,manage").await;
    let session = app.connected_session(&key).await;
    for url in ["http://127.0.0.1:9/a.png", "http://[::127.0.0.1]:9/a.png"] {
        let res = app
            .post(
                &format!("/api/v1/sessions/{session}/messages"),
                &key,
                Some(json!({
                    "to": crate::support::READER, "type": "image",
                    "media": { "url": url, "mimetype": "image/png" }
                })),
            )
            .await;
        let e = assert_error(res, 400, "invalid_argument").await;
        assert_eq!(e["details"]["field"], "media.url", "{url}");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("messages.allow_private_media_urls"),
            "{e}"
        );
    }
}

#[tokio::test]
async fn who_may_send_is_checked_before_a_byte_of_the_body_is_read() {
    let app = TestApp::spawn().await;
    let owner = app.key("acme", "read,send,manage").await;
    let session = app.connected_session(&owner).await;
    let stranger = app.key("umbrella", "read,send").await;
    let no_send = app.key("acme", "read").await;
    // 20 MB announced, a few bytes sent, and no more: the answer must not
    // wait for the rest.
    for (token, status) in [(&stranger, "404"), (&no_send, "403")] {
        let mut conn = raw_request(&app.address, &send_head(&session, token, 20_000_000)).await;
        let mut answer = vec![0u8; 12];
        tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut answer))
            .await
            .expect("answered without the body")
            .expect("read");
        assert_eq!(
            String::from_utf8_lossy(&answer),
            format!("HTTP/1.1 {status}")
        );
    }
}

#[tokio::test]
async fn one_organization_cannot_take_every_place_for_large_bodies() {
    let app = TestApp::spawn().await;
    let acme = app.key("acme", "read,send,manage").await;
    let session = app.connected_session(&acme).await;
    // With the default limits (16 MiB of media) 11 large bodies are read
    // at once, 2 per organization. Two uploads of acme that never finish …
    let mut held = [
        raw_request(&app.address, &send_head(&session, &acme, 1_000_000)).await,
        raw_request(&app.address, &send_head(&session, &acme, 1_000_000)).await,
    ];
    // … leave no place for a third (not valid JSON: 400 once read). One
    // read while a large body below held a place was refused (429) and
    // holds nothing: it is sent again.
    let large = format!("{{{}", " ".repeat(100 * 1024));
    let post_large = |token: String, session: String| {
        let app = &app;
        let large = large.clone();
        async move {
            app.req(
                Method::POST,
                &format!("/api/v1/sessions/{session}/messages"),
                &token,
            )
            .header("content-type", "application/json")
            .body(large)
            .send()
            .await
            .expect("request")
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let res = post_large(acme.clone(), session.clone()).await;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(res.headers().contains_key("retry-after"));
            break;
        }
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert!(
            tokio::time::Instant::now() < deadline,
            "a third large body of one organization was read while two were held"
        );
        for stream in &mut held {
            if answered(stream) {
                *stream = raw_request(&app.address, &send_head(&session, &acme, 1_000_000)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another organization still sends large bodies.
    let umbrella = app.key("umbrella", "read,send,manage").await;
    let theirs = app.connected_session(&umbrella).await;
    assert_eq!(
        post_large(umbrella.clone(), theirs).await.status(),
        StatusCode::BAD_REQUEST
    );
    // Uploads that go away give their places back.
    drop(held);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while post_large(acme.clone(), session.clone()).await.status() != StatusCode::BAD_REQUEST {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the abandoned uploads never gave their places back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn received_media_over_the_limit_is_refused_and_the_rest_streams() {
    use wagate_domain::MessageType;
    use wagate_whatsapp_port::OutgoingMedia;
    let app = TestApp::spawn_tuned(|c| c.messages.max_media_bytes = 1024).await;
    let key = app.key("acme", "read,send,manage").await;
    let session = app.connected_session(&key).await;
    let fake = app.fake.as_ref().expect("the fake adapter");
    let (id, from) = (
        SessionId::parse(&session).unwrap(),
        Jid::parse(crate::support::READER).unwrap(),
    );
    let image = |size: usize| {
        OutgoingContent::Media(OutgoingMedia {
            kind: MessageType::Image,
            mimetype: "text/html".into(),
            filename: None,
            caption: None,
            voice_note: false,
            data: vec![b'<'; size],
        })
    };
    let big = fake.deliver_from(&id, &from, image(4096)).await.unwrap();
    let small = fake.deliver_from(&id, &from, image(512)).await.unwrap();
    let media = |m: &wagate_domain::MessageId| {
        format!("/api/v1/sessions/{session}/messages/{}/media", m.as_str())
    };
    // Over messages.max_media_bytes: refused before anything is fetched.
    let e = assert_error(app.get(&media(&big), &key).await, 413, "payload_too_large").await;
    assert_eq!(e["details"]["limit"], 1024);
    // Within it: the bytes, never rendered as the sender's type says.
    let res = app.get(&media(&small), &key).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(res.headers()["content-disposition"], "attachment");
    assert_eq!(res.bytes().await.unwrap().len(), 512);
}
