//! Webhook deliveries end to end (../shared/spec/events.md, "Delivery"):
//! the real application on the fake adapter, a real HTTP receiver on
//! loopback, and every delivery verified with the reference
//! `standardwebhooks` library.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wagate::config::{ConfigDuration, DurationList};

use crate::receiver::{PATIENCE, Receiver, Reply};
use crate::support::{TestApp, assert_error, json, test_config};

/// A gateway that may deliver to loopback, with a short timeout and a
/// quick retry schedule: at once, 200 ms, 200 ms, then an hour (so a test
/// sees at most three attempts).
async fn app() -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let mut config = test_config(&dir);
    config.webhooks.allow_private_targets = true;
    config.webhooks.timeout = ConfigDuration(Duration::from_secs(3));
    config.webhooks.retry_schedule = DurationList(
        [0, 200, 200, 3_600_000]
            .map(|ms| ConfigDuration(Duration::from_millis(ms)))
            .to_vec(),
    );
    TestApp::spawn_with(config, dir).await
}

/// Creates a webhook of the key's organization to `url` for `events`;
/// its id and secret.
async fn webhook(app: &TestApp, key: &str, url: &str, events: Value) -> (String, String) {
    let res = app
        .post(
            "/api/v1/webhooks",
            key,
            Some(json!({ "url": url, "events": events })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body = json(res).await;
    let secret = body["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"));
    (body["id"].as_str().expect("id").to_owned(), secret)
}

/// Creates a session and connects it (the fake shows a QR: `pairing`):
/// `session.status` events; the session's id.
async fn pairing_session(app: &TestApp, key: &str) -> String {
    let id = app.create_session(key).await;
    let res = app
        .post(&format!("/api/v1/sessions/{id}/connect"), key, None)
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    id
}

/// Polls the webhook's delivery of `event` until `done` holds for it.
async fn delivery(
    app: &TestApp,
    key: &str,
    hook: &str,
    event: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let res = app
            .get(&format!("/api/v1/webhooks/{hook}/deliveries"), key)
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let list = json(res).await;
        if let Some(d) = list["data"]
            .as_array()
            .and_then(|ds| ds.iter().find(|d| d["eventId"] == event))
            && done(d)
        {
            return d.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivery never got there: {list}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the webhook until `done` holds for it.
async fn webhook_until(app: &TestApp, key: &str, hook: &str, done: impl Fn(&Value) -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let w = json(app.get(&format!("/api/v1/webhooks/{hook}"), key).await).await;
        if done(&w) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "webhook: {w}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_status_of(session: &str, status: &str) -> impl Fn(&Value) -> bool {
    let (session, status) = (session.to_owned(), status.to_owned());
    move |e: &Value| {
        e["type"] == "session.status" && e["sessionId"] == session && e["data"]["status"] == status
    }
}

#[tokio::test]
async fn a_connect_produces_signed_session_status_deliveries() {
    let app = app().await;
    let key = app.key("acme", "read,manage,admin").await;
    let mut receiver = Receiver::start().await;
    let (_hook, secret) = webhook(&app, &key, &receiver.url("/hook"), json!(["session.*"])).await;
    let session = pairing_session(&app, &key).await;
    let hit = receiver
        .next_where("/hook", is_status_of(&session, "pairing"))
        .await;
    assert!(hit.verifies_with(&secret), "signature: {:?}", hit.headers);
    assert_eq!(hit.header("content-type"), "application/json");
    let event = hit.event();
    assert_eq!(event["id"], hit.id(), "webhook-id is the event id");
    assert!(hit.id().starts_with("evt_"));
    assert_eq!(event["orgId"], "acme");
    assert!(event["data"]["previous"].is_string());
    let sent_at: i64 = hit.header("webhook-timestamp").parse().expect("seconds");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((now - sent_at).abs() < 60);
    // The same event, by the same id, is in the log.
    let log = json(app.get("/api/v1/events?types=session.status", &key).await).await;
    assert!(
        log["data"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["id"] == hit.id()),
        "{log}"
    );
    // The fake phone scans the QR: connected, delivered and verified too.
    app.link(&session, &key).await;
    let hit = receiver
        .next_where("/hook", is_status_of(&session, "connected"))
        .await;
    assert!(hit.verifies_with(&secret));
}

#[tokio::test]
async fn a_receiver_answering_500_then_200_gets_the_retry() {
    let app = app().await;
    let key = app.key("acme", "read,manage,admin").await;
    let mut receiver = Receiver::start().await;
    receiver.script("/flaky", &[Reply::Status(500)]);
    let (hook, secret) = webhook(
        &app,
        &key,
        &receiver.url("/flaky"),
        json!(["session.status"]),
    )
    .await;
    pairing_session(&app, &key).await;
    // The first request is answered 500: its event comes again, same id.
    let first = receiver.next().await;
    let id = first.id().to_owned();
    let second = receiver.next_where("/flaky", |e| e["id"] == id).await;
    assert!(first.verifies_with(&secret) && second.verifies_with(&secret));
    let d = delivery(&app, &key, &hook, first.id(), |d| d["state"] == "succeeded").await;
    assert_eq!(d["attempt"], 2);
    assert_eq!(d["responseStatus"], 200);
}

#[tokio::test]
async fn a_failed_answer_is_recorded_and_retried_on_the_schedule() {
    let app = app().await;
    let key = app.key("acme", "read,manage,admin").await;
    let mut receiver = Receiver::start().await;
    receiver.always("/down", Reply::Status(503));
    let (hook, _) = webhook(
        &app,
        &key,
        &receiver.url("/down"),
        json!(["session.status"]),
    )
    .await;
    pairing_session(&app, &key).await;
    // At once, after 200 ms, after 200 ms more; the next in an hour.
    let id = receiver.next().await.id().to_owned();
    for _ in 0..2 {
        receiver.next_where("/down", |e| e["id"] == id).await;
    }
    let d = delivery(&app, &key, &hook, &id, |d| d["attempt"] == 3).await;
    assert_eq!(d["state"], "pending");
    assert_eq!(d["responseStatus"], 503);
    assert_eq!(d["error"], "HTTP 503: answer");
    assert!(d["durationMs"].is_u64());
}

#[tokio::test]
async fn a_410_disables_the_webhook() {
    let app = app().await;
    let key = app.key("acme", "read,manage,admin").await;
    let mut receiver = Receiver::start().await;
    receiver.always("/gone", Reply::Status(410));
    let (gone, _) = webhook(
        &app,
        &key,
        &receiver.url("/gone"),
        json!(["session.status"]),
    )
    .await;
    webhook(&app, &key, &receiver.url("/ok"), json!(["session.status"])).await;
    let mut to_gone = 0;
    pairing_session(&app, &key).await;
    webhook_until(&app, &key, &gone, |w| {
        w["enabled"] == false && w["disabledReason"].is_string()
    })
    .await;
    // Nothing more goes to it; the other webhook goes on.
    let later = pairing_session(&app, &key).await;
    loop {
        let hit = receiver.next().await;
        if hit.path == "/gone" {
            to_gone += 1;
        } else if is_status_of(&later, "pairing")(&hit.event()) {
            break;
        }
    }
    while let Some(hit) = receiver.try_next() {
        to_gone += usize::from(hit.path == "/gone");
    }
    assert_eq!(to_gone, 1, "one 410, and nothing after it");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let app = app().await;
    let key = app.key("acme", "read,manage,admin").await;
    let mut receiver = Receiver::start().await;
    receiver.always("/moved", Reply::Redirect("/elsewhere"));
    let (hook, _) = webhook(
        &app,
        &key,
        &receiver.url("/moved"),
        json!(["session.status"]),
    )
    .await;
    pairing_session(&app, &key).await;
    let hit = receiver.next().await;
    assert_eq!(hit.path, "/moved");
    // Recorded as a failed answer (a following client would have asked
    // /elsewhere before the attempt was recorded).
    let d = delivery(&app, &key, &hook, hit.id(), |d| {
        d["attempt"].as_u64() >= Some(1)
    })
    .await;
    assert_eq!(d["responseStatus"], 302);
    assert_eq!(d["state"], "pending");
    while let Some(h) = receiver.try_next() {
        assert_eq!(h.path, "/moved", "the redirect was followed");
    }
}

#[tokio::test]
async fn both_secrets_sign_during_a_rotation() {
    let app = app().await;
    let key = app.key("acme", "read,manage,admin").await;
    let mut receiver = Receiver::start().await;
    let (hook, old) = webhook(&app, &key, &receiver.url("/hook"), json!(["*"])).await;
    let res = app
        .post(
            &format!("/api/v1/webhooks/{hook}/rotate-secret"),
            &key,
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let new = json(res).await["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert_ne!(new, old);
    pairing_session(&app, &key).await;
    let hit = receiver.next().await;
    assert_eq!(hit.header("webhook-signature").split(' ').count(), 2);
    assert!(hit.verifies_with(&new), "the new secret verifies");
    assert!(hit.verifies_with(&old), "the old secret still verifies");
    assert!(!hit.verifies_with("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
}

#[tokio::test]
async fn a_test_event_goes_to_its_webhook_alone_and_other_organizations_see_nothing() {
    let app = app().await;
    let acme = app.key("acme", "read,manage,admin").await;
    let globex = app.key("globex", "read,manage,admin").await;
    let mut receiver = Receiver::start().await;
    let (hook, secret) = webhook(&app, &acme, &receiver.url("/acme"), json!(["*"])).await;
    webhook(&app, &acme, &receiver.url("/acme-2"), json!(["*"])).await;
    let (_, globex_secret) = webhook(&app, &globex, &receiver.url("/globex"), json!(["*"])).await;
    let res = app
        .post(&format!("/api/v1/webhooks/{hook}/test"), &acme, None)
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let hit = receiver.next().await;
    assert_eq!(hit.path, "/acme");
    assert_eq!(hit.event()["type"], "webhook.test");
    assert_eq!(hit.event()["data"]["webhookId"], hook.as_str());
    assert!(hit.verifies_with(&secret));
    // Another organization's session events go to its webhook only.
    let session = pairing_session(&app, &globex).await;
    loop {
        let hit = receiver.next().await;
        assert_eq!(hit.path, "/globex");
        assert_eq!(hit.event()["orgId"], "globex");
        assert!(hit.verifies_with(&globex_secret));
        assert!(!hit.verifies_with(&secret));
        if is_status_of(&session, "pairing")(&hit.event()) {
            break;
        }
    }
    while let Some(hit) = receiver.try_next() {
        assert_eq!(hit.path, "/globex");
    }
}

/// Issue 18, finding 9: a test or a replay of a disabled webhook is
/// refused (`409 conflict`) instead of queuing deliveries nothing would
/// ever send.
#[tokio::test]
async fn a_disabled_webhook_cannot_be_tested_or_replayed() {
    let app = app().await;
    let acme = app.key("acme", "read,manage,admin").await;
    let receiver = Receiver::start().await;
    let (hook, _) = webhook(&app, &acme, &receiver.url("/off"), json!(["*"])).await;
    let res = app
        .req(Method::PATCH, &format!("/api/v1/webhooks/{hook}"), &acme)
        .json(&json!({ "enabled": false }))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .post(&format!("/api/v1/webhooks/{hook}/test"), &acme, None)
        .await;
    assert_error(res, 409, "conflict").await;
    let res = app
        .post(
            &format!("/api/v1/webhooks/{hook}/replay"),
            &acme,
            Some(json!({ "after": "0" })),
        )
        .await;
    assert_error(res, 409, "conflict").await;
    let list = json(
        app.get(&format!("/api/v1/webhooks/{hook}/deliveries"), &acme)
            .await,
    )
    .await;
    assert_eq!(list["data"], json!([]), "nothing queued");
}

/// Issue 18, finding 4: organizations whose receivers hang hold only their
/// own share of the delivery slots (an eighth of `webhooks.max_in_flight`
/// each); another organization's deliveries go out at once, not after
/// their timeouts.
#[tokio::test]
async fn hanging_receivers_of_other_organizations_do_not_delay_an_organization() {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let mut config = test_config(&dir);
    config.webhooks.allow_private_targets = true;
    config.webhooks.timeout = ConfigDuration(Duration::from_secs(120));
    config.webhooks.max_in_flight = 16;
    let app = TestApp::spawn_with(config, dir).await;
    let mut hanging = Receiver::start().await;
    hanging.always("/hang", Reply::Hang);
    for org in ["evil1", "evil2", "evil3"] {
        let key = app.key(org, "admin").await;
        // 24 hanging webhooks in all: more than the 16 slots.
        for _ in 0..8 {
            let (hook, _) = webhook(&app, &key, &hanging.url("/hang"), json!(["*"])).await;
            let res = app
                .post(&format!("/api/v1/webhooks/{hook}/test"), &key, None)
                .await;
            assert_eq!(res.status(), StatusCode::ACCEPTED);
        }
    }
    // Each of them has its two slots' sends hanging.
    for _ in 0..6 {
        hanging.next().await;
    }
    let victim = app.key("victim", "admin").await;
    let mut healthy = Receiver::start().await;
    let (hook, _) = webhook(&app, &victim, &healthy.url("/ok"), json!(["*"])).await;
    for _ in 0..5 {
        let res = app
            .post(&format!("/api/v1/webhooks/{hook}/test"), &victim, None)
            .await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let sent = json(res).await;
        // Within PATIENCE (30 s), far less than the hanging sends' 120 s.
        let hit = healthy.next().await;
        assert_eq!(hit.id(), sent["eventId"].as_str().expect("eventId"));
    }
}

#[tokio::test]
async fn private_targets_are_refused_at_creation_unless_allowed() {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let mut config = test_config(&dir);
    config.webhooks.allow_private_targets = false;
    let app = TestApp::spawn_with(config, dir).await;
    let key = app.key("acme", "admin").await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://2130706433/hook",
    ] {
        let res = app
            .req(Method::POST, "/api/v1/webhooks", &key)
            .json(&json!({ "url": url, "events": ["*"] }))
            .send()
            .await
            .expect("request");
        let error = assert_error(res, 400, "invalid_argument").await;
        assert_eq!(error["details"]["field"], "url", "{url}: {error}");
    }
    let list = json(app.get("/api/v1/webhooks", &key).await).await;
    assert_eq!(list["data"], json!([]));
    // Allowed, the same loopback URL is accepted.
    let allowed = self::app().await;
    let key = allowed.key("acme", "admin").await;
    webhook(&allowed, &key, "http://127.0.0.1:9/hook", json!(["*"])).await;
}
