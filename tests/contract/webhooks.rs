//! Webhook management over HTTP (../shared/spec/events.md): create, list,
//! change, delete, rotate, test, deliveries, replay; validation, the SSRF
//! rule and tenancy. Deliveries themselves are tested with the dispatcher.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{GHOST_WEBHOOK, TestApp, assert_error, json, test_config};

/// A loopback URL nobody listens on: deliveries to it stay pending.
fn target() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    format!("http://127.0.0.1:{port}/hooks/wagate")
}

async fn patch(app: &TestApp, path: &str, token: &str, body: Value) -> reqwest::Response {
    app.req(Method::PATCH, path, token)
        .json(&body)
        .send()
        .await
        .expect("request")
}

/// Creates a webhook; its body (with `secret`).
async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    let res = app.post("/api/v1/webhooks", token, Some(body)).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    json(res).await
}

/// Issue 18: `webhooks.max_per_org` (default 25) bounds each
/// organization's webhooks (each one costs the store's writer a delivery
/// row per event it wants).
#[tokio::test]
async fn an_organization_has_at_most_max_per_org_webhooks() {
    let app = TestApp::spawn().await;
    let acme = app.key("acme", "admin").await;
    let globex = app.key("globex", "admin").await;
    let new = || json!({ "url": target(), "events": ["*"] });
    let mut first = None;
    for _ in 0..25 {
        let created = create(&app, &acme, new()).await;
        first.get_or_insert(created["id"].as_str().expect("id").to_owned());
    }
    let res = app.post("/api/v1/webhooks", &acme, Some(new())).await;
    let error = assert_error(res, 409, "limit_reached").await;
    assert_eq!(error["details"]["limit"], 25, "{error}");
    let list = json(app.get("/api/v1/webhooks", &acme).await).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(25));
    // Per organization; a deletion makes room.
    create(&app, &globex, new()).await;
    let first = first.expect("created");
    let res = app
        .delete(&format!("/api/v1/webhooks/{first}"), &acme)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    create(&app, &acme, new()).await;
}

const WEBHOOK_FIELDS: [&str; 9] = [
    "id",
    "url",
    "events",
    "sessionIds",
    "description",
    "enabled",
    "disabledReason",
    "createdAt",
    "updatedAt",
];

fn assert_webhook_shape(w: &Value) {
    let mut keys: Vec<_> = w.as_object().expect("object").keys().cloned().collect();
    keys.sort();
    let mut expected: Vec<_> = WEBHOOK_FIELDS.iter().map(|k| (*k).to_owned()).collect();
    expected.sort();
    assert_eq!(keys, expected, "{w}");
    let id = w["id"].as_str().unwrap();
    assert!(id.starts_with("wh_") && id.len() == 29, "{id}");
}

#[tokio::test]
async fn a_webhook_is_created_listed_changed_and_deleted() {
    let app = TestApp::spawn().await;
    let admin = app.key("acme", "admin,manage").await;
    let session = app.create_session(&admin).await;
    let url = target();

    let res = app
        .post(
            "/api/v1/webhooks",
            &admin,
            Some(json!({ "url": url, "events": ["session.*"], "sessionIds": null, "description": "CRM" })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let created = json(res).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/v1/webhooks/{id}"));
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(
        secret.starts_with("whsec_") && secret.len() > 40,
        "{secret}"
    );
    let mut webhook = created.clone();
    webhook.as_object_mut().unwrap().remove("secret");
    assert_webhook_shape(&webhook);
    assert_eq!(webhook["url"], url.as_str());
    assert_eq!(webhook["events"], json!(["session.*"]));
    assert_eq!(webhook["sessionIds"], Value::Null);
    assert_eq!(webhook["description"], "CRM");
    assert_eq!(webhook["enabled"], true);
    assert_eq!(webhook["disabledReason"], Value::Null);

    // Never the secret again.
    let list = json(app.get("/api/v1/webhooks", &admin).await).await;
    assert_eq!(list, json!({ "data": [webhook] }));
    let one = json(app.get(&location, &admin).await).await;
    assert_eq!(one, webhook);
    assert!(!one.to_string().contains(&secret));

    // Change every field.
    let other = target();
    let res = patch(
        &app,
        &location,
        &admin,
        json!({ "url": other, "events": ["session.qr", "session.status"], "sessionIds": [session],
                "description": "", "enabled": false }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let changed = json(res).await;
    assert_webhook_shape(&changed);
    assert_eq!(changed["url"], other.as_str());
    assert_eq!(changed["events"], json!(["session.qr", "session.status"]));
    assert_eq!(changed["sessionIds"], json!([session]));
    assert_eq!(changed["description"], "");
    assert_eq!(changed["enabled"], false);
    assert_eq!(changed["createdAt"], webhook["createdAt"]);
    assert_eq!(json(app.get(&location, &admin).await).await, changed);

    // Absent fields stay; null session ids mean all sessions again.
    let res = patch(
        &app,
        &location,
        &admin,
        json!({ "sessionIds": null, "enabled": true }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let again = json(res).await;
    assert_eq!(again["sessionIds"], Value::Null);
    assert_eq!(again["enabled"], true);
    assert_eq!(again["url"], other.as_str());
    assert_eq!(again["events"], changed["events"]);
    let res = patch(&app, &location, &admin, json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);

    // A second one; the list is oldest first.
    let second = create(&app, &admin, json!({ "url": url, "events": ["*"] })).await;
    assert_eq!(second["description"], "");
    assert_eq!(second["sessionIds"], Value::Null);
    let ids: Vec<_> = json(app.get("/api/v1/webhooks", &admin).await).await["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, [id.clone(), second["id"].as_str().unwrap().to_owned()]);

    let res = app.delete(&location, &admin).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_error(app.get(&location, &admin).await, 404, "not_found").await;
    assert_error(app.delete(&location, &admin).await, 404, "not_found").await;
    let list = json(app.get("/api/v1/webhooks", &admin).await).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn rotating_gives_a_new_secret_shown_once() {
    let app = TestApp::spawn().await;
    let admin = app.key("acme", "admin").await;
    let created = create(&app, &admin, json!({ "url": target(), "events": ["*"] })).await;
    let id = created["id"].as_str().unwrap();
    let res = app
        .post(
            &format!("/api/v1/webhooks/{id}/rotate-secret"),
            &admin,
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body = json(res).await;
    let secret = body["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    assert_ne!(secret, created["secret"]);
    assert_eq!(body.as_object().unwrap().len(), 1);
    let shown = json(app.get(&format!("/api/v1/webhooks/{id}"), &admin).await).await;
    assert!(!shown.to_string().contains(secret));
}

#[tokio::test]
async fn test_and_replay_are_accepted_and_their_deliveries_listed() {
    let app = TestApp::spawn().await;
    let key = app.key("acme", "admin,manage,read").await;
    // Events before the webhook exists: only a replay delivers them.
    let session = app.connected_session(&key).await;
    let events = json(app.get("/api/v1/events", &key).await).await["data"]
        .as_array()
        .unwrap()
        .clone();
    // connecting, pairing, the QR code, connected.
    assert_eq!(events.len(), 4);
    let created = create(
        &app,
        &key,
        json!({ "url": target(), "events": ["session.status"] }),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let deliveries = format!("/api/v1/webhooks/{id}/deliveries");
    let page = json(app.get(&deliveries, &key).await).await;
    assert_eq!(page, json!({ "data": [], "nextCursor": null }));

    // Test: 202, one pending delivery of a `webhook.test` event.
    let res = app
        .post(&format!("/api/v1/webhooks/{id}/test"), &key, None)
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let test_event = json(res).await["eventId"].as_str().unwrap().to_owned();
    assert!(test_event.starts_with("evt_"));
    // A test event is not in the log.
    let log = json(app.get("/api/v1/events", &key).await).await;
    assert_eq!(log["data"].as_array().unwrap().len(), 4);
    let page = json(app.get(&deliveries, &key).await).await;
    let rows = page["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["eventId"], test_event.as_str());
    assert_delivery_shape(&rows[0]);

    // Replay from the start: the three status events (the webhook's
    // filter), with their own ids.
    let res = app
        .post(
            &format!("/api/v1/webhooks/{id}/replay"),
            &key,
            Some(json!({ "after": "0" })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(json(res).await, json!({ "queued": 3 }));
    let page = json(app.get(&deliveries, &key).await).await;
    let rows = page["data"].as_array().unwrap();
    let ids: Vec<_> = rows.iter().map(|r| r["eventId"].clone()).collect();
    // Newest first.
    assert_eq!(
        ids,
        [
            events[3]["id"].clone(),
            events[1]["id"].clone(),
            events[0]["id"].clone(),
            json!(test_event)
        ]
    );
    for row in rows {
        assert_delivery_shape(row);
    }
    assert_eq!(page["nextCursor"], Value::Null);

    // Replay after the first event: the other two, queued again.
    let after = events[0]["cursor"].clone();
    let res = app
        .post(
            &format!("/api/v1/webhooks/{id}/replay"),
            &key,
            Some(json!({ "after": after })),
        )
        .await;
    assert_eq!(json(res).await, json!({ "queued": 2 }));

    // New events are queued for it as they happen.
    let res = app
        .post(
            &format!("/api/v1/sessions/{session}/disconnect"),
            &key,
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);

    // Page by page, newest first, every row once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{deliveries}?limit=2&cursor={c}"),
            None => format!("{deliveries}?limit=2"),
        };
        let page = json(app.get(&path, &key).await).await;
        let rows = page["data"].as_array().unwrap();
        assert!(rows.len() <= 2);
        seen.extend(rows.iter().map(|r| r["eventId"].clone()));
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    // One delivery per event and webhook (a replay queues it again):
    // disconnected, events 3, 1, 0, the test.
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(
        seen[1..],
        [
            events[3]["id"].clone(),
            events[1]["id"].clone(),
            events[0]["id"].clone(),
            json!(test_event)
        ]
    );
    let all = json(app.get(&format!("{deliveries}?limit=100"), &key).await).await;
    let all: Vec<_> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["eventId"].clone())
        .collect();
    assert_eq!(all, seen);
}

fn assert_delivery_shape(row: &Value) {
    let mut keys: Vec<_> = row.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "at",
            "attempt",
            "durationMs",
            "error",
            "eventId",
            "responseStatus",
            "state"
        ],
        "{row}"
    );
    // Nobody listens at the target: it stays pending (retried later).
    assert_eq!(row["state"], "pending", "{row}");
    assert!(row["attempt"].is_u64());
    assert!(row["at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn bodies_and_parameters_are_checked_naming_the_field() {
    let app = TestApp::spawn().await;
    let admin = app.key("acme", "admin").await;
    let ok = |extra: Value| {
        let mut body = json!({ "url": "http://127.0.0.1:9/hook", "events": ["*"] });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let long = "x".repeat(501);
    for (body, field) in [
        (json!({ "events": ["*"] }), "url"),
        (ok(json!({ "url": null })), "url"),
        (ok(json!({ "url": 5 })), "url"),
        (ok(json!({ "url": "ftp://example.com/" })), "url"),
        (ok(json!({ "url": "https://user:pw@example.com/" })), "url"),
        (ok(json!({ "url": "example.com/hook" })), "url"),
        (json!({ "url": "http://127.0.0.1:9/hook" }), "events"),
        (ok(json!({ "events": [] })), "events"),
        (ok(json!({ "events": "session.*" })), "events"),
        (ok(json!({ "events": ["session"] })), "events"),
        (ok(json!({ "events": ["messages.*"] })), "events"),
        (ok(json!({ "events": [1] })), "events"),
        (ok(json!({ "sessionIds": [] })), "sessionIds"),
        (ok(json!({ "sessionIds": ["sess_nope"] })), "sessionIds"),
        (
            ok(json!({ "sessionIds": "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX" })),
            "sessionIds",
        ),
        (ok(json!({ "description": long })), "description"),
        (ok(json!({ "description": "a\u{0}b" })), "description"),
        (ok(json!({ "description": 3 })), "description"),
        // Documented as a string: null is refused (a PATCH's null clears).
        (ok(json!({ "description": null })), "description"),
        (json!([]), "body"),
    ] {
        let e = assert_error(
            app.post("/api/v1/webhooks", &admin, Some(body.clone()))
                .await,
            400,
            "invalid_argument",
        )
        .await;
        assert_eq!(e["details"]["field"], field, "{body}");
    }
    let res = app
        .req(Method::POST, "/api/v1/webhooks", &admin)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    let e = assert_error(res, 400, "invalid_argument").await;
    assert_eq!(e["details"]["field"], "body");
    let res = app
        .req(Method::POST, "/api/v1/webhooks", &admin)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_error(res, 415, "unsupported_media_type").await;
    assert_eq!(
        json(app.get("/api/v1/webhooks", &admin).await).await,
        json!({ "data": [] })
    );

    let w = create(&app, &admin, ok(json!({}))).await;
    let path = format!("/api/v1/webhooks/{}", w["id"].as_str().unwrap());
    for (body, field) in [
        (json!({ "url": null }), "url"),
        (json!({ "url": "nope" }), "url"),
        (json!({ "events": null }), "events"),
        (json!({ "events": [] }), "events"),
        (json!({ "sessionIds": [] }), "sessionIds"),
        (json!({ "description": long }), "description"),
        (json!({ "enabled": null }), "enabled"),
        (json!({ "enabled": "yes" }), "enabled"),
    ] {
        let e = assert_error(
            patch(&app, &path, &admin, body.clone()).await,
            400,
            "invalid_argument",
        )
        .await;
        assert_eq!(e["details"]["field"], field, "{body}");
    }
    // Refused changes changed nothing.
    let mut unchanged = w.clone();
    unchanged.as_object_mut().unwrap().remove("secret");
    assert_eq!(json(app.get(&path, &admin).await).await, unchanged);

    // Malformed ids, every route.
    for bad in [
        "wh_nope",
        "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX",
        "WH_01JBZ5T0Q4M6Y8V2K3N7R9S1WX",
    ] {
        let base = format!("/api/v1/webhooks/{bad}");
        for (method, path) in [
            (Method::GET, base.clone()),
            (Method::PATCH, base.clone()),
            (Method::DELETE, base.clone()),
            (Method::POST, format!("{base}/rotate-secret")),
            (Method::POST, format!("{base}/test")),
            (Method::GET, format!("{base}/deliveries")),
            (Method::POST, format!("{base}/replay")),
        ] {
            let res = app
                .req(method.clone(), &path, &admin)
                .json(&json!({ "after": "0" }))
                .send()
                .await
                .unwrap();
            let e = assert_error(res, 400, "invalid_argument").await;
            assert_eq!(e["details"]["field"], "id", "{method} {path}");
        }
    }

    let deliveries = format!("{path}/deliveries");
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=x", "limit"),
        ("cursor=x", "cursor"),
        ("cursor=-3", "cursor"),
        ("cursor=", "cursor"),
        ("cursor=18446744073709551615", "cursor"),
    ] {
        let e = assert_error(
            app.get(&format!("{deliveries}?{query}"), &admin).await,
            400,
            "invalid_argument",
        )
        .await;
        assert_eq!(e["details"]["field"], field, "{query}");
    }
    let replay = format!("{path}/replay");
    for body in [
        json!({}),
        json!({ "after": null }),
        json!({ "after": "x" }),
        json!({ "after": 3 }),
        json!({ "after": "" }),
        json!({ "after": "18446744073709551615" }),
    ] {
        let e = assert_error(
            app.post(&replay, &admin, Some(body.clone())).await,
            400,
            "invalid_argument",
        )
        .await;
        assert_eq!(e["details"]["field"], "after", "{body}");
    }
}

#[tokio::test]
async fn a_null_description_is_refused_on_creation_and_clears_in_a_patch() {
    let app = TestApp::spawn().await;
    let admin = app.key("acme", "admin").await;
    let body = json!({ "url": target(), "events": ["*"], "description": null });
    let e = assert_error(
        app.post("/api/v1/webhooks", &admin, Some(body)).await,
        400,
        "invalid_argument",
    )
    .await;
    assert_eq!(e["details"]["field"], "description");
    assert_eq!(
        json(app.get("/api/v1/webhooks", &admin).await).await,
        json!({ "data": [] })
    );
    // Left out: empty.
    let w = create(&app, &admin, json!({ "url": target(), "events": ["*"] })).await;
    assert_eq!(w["description"], "");
    let w = create(
        &app,
        &admin,
        json!({ "url": target(), "events": ["*"], "description": "CRM" }),
    )
    .await;
    let path = format!("/api/v1/webhooks/{}", w["id"].as_str().unwrap());
    let res = patch(&app, &path, &admin, json!({ "description": null })).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(json(res).await["description"], "");
    assert_eq!(json(app.get(&path, &admin).await).await["description"], "");
}

/// The documented `url` pattern, the gateway's parser and the HTTP
/// client's (reqwest's WHATWG) parser agree: a URL is taken exactly when
/// deliveries can be made to it, and refused as `url` otherwise, never
/// later (as "invalid international domain name" or "invalid IPv4
/// address").
#[tokio::test]
async fn a_url_is_taken_exactly_when_the_http_client_can_use_it() {
    let app = TestApp::spawn().await;
    let admin = app.key("acme", "admin").await;
    for url in [
        "http://xn--bcher-kva.example:9/hook",
        "http://EXAMPLE.com./hook",
        "http://a..b:9/",
        "http://1.a:9/",
        "http://127.1:9/",
        "http://0x7f.0.0.1:9/",
        "http://2130706433:9/",
        "http://[::ffff:127.0.0.1]:9/",
        "http://localhost:0009/hook?x=é",
    ] {
        assert!(reqwest::Url::parse(url).is_ok(), "{url}");
        let w = create(&app, &admin, json!({ "url": url, "events": ["*"] })).await;
        assert_eq!(w["url"], url);
    }
    for url in [
        // Not ASCII: an internationalized name is given in punycode.
        "http://bücher.example/hook",
        "http://exa_mple.com/",
        "http://a%41.com/",
        // Ends in a number, yet is no IPv4 address.
        "http://example.1/",
        "http://1.2.3.4.5/",
        "http://1.2.3.256/",
        "http://4294967296/",
        "http://[::1/",
        "http://[::1%25lo]/",
        "http://host:65536/",
        "http://host:1:2/",
    ] {
        let e = assert_error(
            app.post(
                "/api/v1/webhooks",
                &admin,
                Some(json!({ "url": url, "events": ["*"] })),
            )
            .await,
            400,
            "invalid_argument",
        )
        .await;
        assert_eq!(e["details"]["field"], "url", "{url}");
    }
    let long = format!("http://127.0.0.1:9/{}", "é".repeat(2029));
    assert_eq!(long.chars().count(), 2048);
    create(&app, &admin, json!({ "url": long, "events": ["*"] })).await;
    let e = assert_error(
        app.post(
            "/api/v1/webhooks",
            &admin,
            Some(json!({ "url": format!("{long}é"), "events": ["*"] })),
        )
        .await,
        400,
        "invalid_argument",
    )
    .await;
    assert_eq!(e["details"]["field"], "url");
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed() {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let mut config = test_config(&dir);
    config.webhooks.allow_private_targets = false;
    let app = TestApp::spawn_with(config, dir).await;
    let admin = app.key("acme", "admin").await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://0.0.0.0/hook",
    ] {
        let e = assert_error(
            app.post(
                "/api/v1/webhooks",
                &admin,
                Some(json!({ "url": url, "events": ["*"] })),
            )
            .await,
            400,
            "invalid_argument",
        )
        .await;
        assert_eq!(e["details"]["field"], "url", "{url}");
    }
    assert_eq!(
        json(app.get("/api/v1/webhooks", &admin).await).await,
        json!({ "data": [] })
    );
}

#[tokio::test]
async fn another_organizations_webhook_does_not_exist_for_you() {
    let app = TestApp::spawn().await;
    let acme = app.key("acme", "admin").await;
    let globex = app.key("globex", "admin").await;
    let theirs = create(&app, &globex, json!({ "url": target(), "events": ["*"] })).await;
    let id = theirs["id"].as_str().unwrap();
    let base = format!("/api/v1/webhooks/{id}");

    // Each route: 404 for acme, then it works for its owner (delete last).
    for (method, path, body) in [
        (Method::GET, base.clone(), None),
        (
            Method::PATCH,
            base.clone(),
            // (Not a disable: test and replay of a disabled webhook are 409.)
            Some(json!({ "description": "theirs" })),
        ),
        (Method::POST, format!("{base}/rotate-secret"), None),
        (Method::POST, format!("{base}/test"), None),
        (Method::GET, format!("{base}/deliveries"), None),
        (
            Method::POST,
            format!("{base}/replay"),
            Some(json!({ "after": "0" })),
        ),
        (Method::DELETE, base.clone(), None),
    ] {
        for (token, status) in [(&acme, 404), (&globex, 0)] {
            let mut r = app.req(method.clone(), &path, token);
            if let Some(b) = &body {
                r = r.json(b);
            }
            let res = r.send().await.unwrap();
            if status == 404 {
                let e = assert_error(res, 404, "not_found").await;
                assert_eq!(e["message"], "webhook not found", "{method} {path}");
            } else {
                assert!(
                    res.status().is_success(),
                    "{method} {path}: {}",
                    res.status()
                );
            }
        }
    }
    assert_eq!(
        json(app.get("/api/v1/webhooks", &acme).await).await,
        json!({ "data": [] })
    );
    // And a ghost is as absent as someone else's.
    let e = assert_error(
        app.get(&format!("/api/v1/webhooks/{GHOST_WEBHOOK}"), &acme)
            .await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(e["message"], "webhook not found");
}
