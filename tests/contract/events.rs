//! The event log over HTTP (../shared/spec/events.md): pull by cursor,
//! the SSE stream, filters, tenancy, retention.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestApp, assert_error, json, test_config};

/// Generous bound for anything the gateway does in the background.
const PATIENCE: Duration = Duration::from_secs(30);

/// One message of an event stream.
#[derive(Debug, Clone, PartialEq)]
enum Frame {
    /// `id`, `event` and the parsed `data`.
    Event {
        id: String,
        event: String,
        data: Value,
    },
    /// A comment line's text (`keep-alive`).
    Comment(String),
}

/// An open event stream, read message by message.
struct Sse {
    res: reqwest::Response,
    buf: Vec<u8>,
}

impl Sse {
    /// Opens `/api/v1/events/stream{query}`; `last_event_id` as the header.
    async fn open(app: &TestApp, query: &str, token: &str, last_event_id: Option<&str>) -> Sse {
        let res = Self::request(app, query, token, last_event_id).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        assert_eq!(res.headers()["cache-control"], "no-cache");
        Sse {
            res,
            buf: Vec::new(),
        }
    }

    async fn request(
        app: &TestApp,
        query: &str,
        token: &str,
        last_event_id: Option<&str>,
    ) -> reqwest::Response {
        let mut r = app.req(Method::GET, &format!("/api/v1/events/stream{query}"), token);
        if let Some(id) = last_event_id {
            r = r.header("Last-Event-ID", id);
        }
        r.send().await.expect("request")
    }

    /// The next message, or `None` when the server ended the stream.
    async fn next(&mut self) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                return Some(parse(std::str::from_utf8(&block).expect("UTF-8")));
            }
            let chunk = tokio::time::timeout_at(deadline, self.res.chunk())
                .await
                .expect("the stream said nothing for 30 s");
            match chunk {
                Ok(Some(bytes)) => self.buf.extend_from_slice(&bytes),
                Ok(None) | Err(_) => {
                    assert!(self.buf.is_empty(), "half a message: {:?}", self.buf);
                    return None;
                }
            }
        }
    }

    /// The next event (comments skipped).
    async fn event(&mut self) -> (String, String, Value) {
        loop {
            match self.next().await.expect("the stream ended") {
                Frame::Event { id, event, data } => return (id, event, data),
                Frame::Comment(_) => {}
            }
        }
    }

    /// Events until (and with) the first for which `done` holds.
    async fn events_until(&mut self, done: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let (_, _, data) = self.event().await;
            let stop = done(&data);
            seen.push(data);
            if stop {
                return seen;
            }
        }
    }
}

/// One SSE message block: `id`, `event`, one `data` line, or a comment.
fn parse(block: &str) -> Frame {
    let lines: Vec<&str> = block.trim_end_matches('\n').split('\n').collect();
    if let [comment] = lines.as_slice()
        && let Some(text) = comment.strip_prefix(": ")
    {
        return Frame::Comment(text.to_owned());
    }
    let [id, event, data] = lines.as_slice() else {
        panic!("not an event message: {block:?}");
    };
    let data: Value = serde_json::from_str(data.strip_prefix("data: ").expect("data line"))
        .expect("data is the event object on one line");
    let frame = Frame::Event {
        id: id.strip_prefix("id: ").expect("id line").to_owned(),
        event: event
            .strip_prefix("event: ")
            .expect("event line")
            .to_owned(),
        data,
    };
    if let Frame::Event { id, event, data } = &frame {
        // The SSE fields say what the event object says.
        assert_eq!(data["cursor"], id.as_str());
        assert_eq!(data["type"], event.as_str());
    }
    frame
}

/// Every event of the caller's organization, by pulling page after page.
async fn pull_all(app: &TestApp, query: &str, token: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let sep = if query.is_empty() { "?" } else { "&" };
        let path = match &after {
            Some(a) => format!("/api/v1/events{query}{sep}after={a}&limit=2"),
            None => format!("/api/v1/events{query}{sep}limit=2"),
        };
        let res = app.get(&path, token).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let page = json(res).await;
        let data = page["data"].as_array().expect("data").clone();
        if data.is_empty() {
            if let Some(after) = &after {
                assert_eq!(page["nextCursor"], after.as_str());
            }
            return all;
        }
        assert_eq!(page["nextCursor"], data.last().unwrap()["cursor"]);
        after = page["nextCursor"].as_str().map(str::to_owned);
        all.extend(data);
    }
}

/// What linking a new session on the fake writes: (type, status, previous).
const LINKING: [(&str, &str, &str); 4] = [
    ("session.status", "connecting", "new"),
    ("session.status", "pairing", "connecting"),
    ("session.qr", "", ""),
    ("session.status", "connected", "pairing"),
];

/// An event as (type, status, previous).
fn kind(e: &Value) -> (String, String, String) {
    (
        e["type"].as_str().unwrap().to_owned(),
        e["data"]["status"].as_str().unwrap_or("").to_owned(),
        e["data"]["previous"].as_str().unwrap_or("").to_owned(),
    )
}

fn linking() -> Vec<(String, String, String)> {
    LINKING
        .iter()
        .map(|(t, s, p)| ((*t).to_owned(), (*s).to_owned(), (*p).to_owned()))
        .collect()
}

fn cursor(e: &Value) -> u64 {
    e["cursor"]
        .as_str()
        .expect("cursor")
        .parse()
        .expect("a number today")
}

/// A session of `token`'s organization, connected and linked: its events
/// are `new → connecting`, `connecting → pairing`, `session.qr`,
/// `pairing → connected` (see [`LINKING`]).
async fn linked(app: &TestApp, token: &str) -> String {
    app.connected_session(token).await
}

/// The shape of every event object.
fn assert_event_shape(e: &Value, org: &str) {
    let id = e["id"].as_str().expect("id");
    assert!(id.starts_with("evt_") && id.len() == 30, "{e}");
    assert_eq!(e["orgId"], org, "{e}");
    assert!(e["occurredAt"].as_str().expect("occurredAt").ends_with('Z'));
    assert!(e["data"].is_object());
    match e["type"].as_str().expect("type") {
        "session.status" => {
            assert!(e["data"]["status"].is_string() && e["data"]["previous"].is_string());
            assert!(e["data"].get("lastError").is_some());
        }
        "session.qr" => {
            assert!(e["data"]["code"].as_str().unwrap().starts_with("2@"));
            assert!(e["data"]["expiresAt"].is_string());
        }
        "session.deleted" => assert_eq!(e["data"], json!({})),
        other => panic!("unexpected type {other}"),
    }
}

#[tokio::test]
async fn pull_returns_the_organizations_events_in_cursor_order() {
    let app = TestApp::spawn().await;
    let acme = app.key("acme", "read,manage").await;
    let globex = app.key("globex", "read,manage").await;
    let theirs = linked(&app, &globex).await;
    let s = linked(&app, &acme).await;

    let res = app.get("/api/v1/events", &acme).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = json(res).await;
    let events = page["data"].as_array().unwrap().clone();
    let kinds: Vec<_> = events
        .iter()
        .map(|e| {
            assert_event_shape(e, "acme");
            assert_eq!(e["sessionId"], s.as_str());
            kind(e)
        })
        .collect();
    assert_eq!(kinds, linking());
    let cursors: Vec<u64> = events.iter().map(cursor).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
    assert_eq!(page["nextCursor"], events[3]["cursor"]);

    // Polling with nextCursor: nothing new, the same cursor back.
    let next = page["nextCursor"].as_str().unwrap();
    let page = json(
        app.get(&format!("/api/v1/events?after={next}"), &acme)
            .await,
    )
    .await;
    assert_eq!(page["data"], json!([]));
    assert_eq!(page["nextCursor"], next);

    // Page by page (limit=2) gives the same events.
    assert_eq!(pull_all(&app, "", &acme).await, events);

    // The other organization sees only its own.
    let mine = pull_all(&app, "", &globex).await;
    assert_eq!(mine.len(), 4);
    for e in &mine {
        assert_event_shape(e, "globex");
        assert_eq!(e["sessionId"], theirs.as_str());
    }
    // Its cursors are no way into acme's log.
    let page = json(app.get("/api/v1/events?after=0", &globex).await).await;
    assert!(
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["orgId"] == "globex")
    );

    // New events come after the cursor.
    let res = app
        .post(&format!("/api/v1/sessions/{s}/disconnect"), &acme, None)
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let page = json(
        app.get(&format!("/api/v1/events?after={next}"), &acme)
            .await,
    )
    .await;
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["data"]["status"], "disconnected");
    assert!(cursor(&data[0]) > next.parse().unwrap());
}

#[tokio::test]
async fn pull_filters_by_type_and_session() {
    let app = TestApp::spawn().await;
    let acme = app.key("acme", "read,manage").await;
    let a = linked(&app, &acme).await;
    let b = linked(&app, &acme).await;
    let res = app.delete(&format!("/api/v1/sessions/{b}"), &acme).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    let all = pull_all(&app, "", &acme).await;
    assert_eq!(all.len(), 9);
    assert_eq!(all[8]["type"], "session.deleted");
    assert_eq!(all[8]["sessionId"], b.as_str());

    let types = |q: &str| {
        let app = &app;
        let acme = acme.clone();
        let q = q.to_owned();
        async move {
            pull_all(app, &q, &acme)
                .await
                .iter()
                .map(|e| e["type"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        types("?types=session.qr").await,
        ["session.qr", "session.qr"]
    );
    assert_eq!(
        types("?types=session.deleted,session.qr").await,
        ["session.qr", "session.qr", "session.deleted"]
    );
    assert_eq!(types("?types=session.*").await.len(), 9);
    assert_eq!(types("?types=*").await.len(), 9);
    assert_eq!(types("?types=webhook.test").await.len(), 0);

    let of_a = pull_all(&app, &format!("?sessionId={a}"), &acme).await;
    assert_eq!(of_a.len(), 4);
    assert!(of_a.iter().all(|e| e["sessionId"] == a.as_str()));
    let both = pull_all(&app, &format!("?sessionId={b}&types=session.status"), &acme).await;
    assert_eq!(both.len(), 3);
    assert!(
        both.iter()
            .all(|e| e["sessionId"] == b.as_str() && e["type"] == "session.status")
    );
    // A session of nobody (or deleted): no events, not an error.
    let none = json(
        app.get(
            "/api/v1/events?sessionId=sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX",
            &acme,
        )
        .await,
    )
    .await;
    assert_eq!(none["data"], json!([]));
}

#[tokio::test]
async fn pull_refuses_bad_parameters_naming_them() {
    let app = TestApp::spawn().await;
    let key = app.key("acme", "read").await;
    for (query, field) in [
        ("after=abc", "after"),
        ("after=-1", "after"),
        ("after=", "after"),
        ("after=99999999999999999999999", "after"),
        // 20 digits: beyond the documented ^[0-9]{1,19}$, though a u64.
        ("after=18446744073709551615", "after"),
        ("after=%20", "after"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("types=", "types"),
        ("types=session", "types"),
        ("types=messages.*", "types"),
        ("types=session.qr,,session.status", "types"),
        ("sessionId=sess_nope", "sessionId"),
    ] {
        let e = assert_error(
            app.get(&format!("/api/v1/events?{query}"), &key).await,
            400,
            "invalid_argument",
        )
        .await;
        assert_eq!(e["details"]["field"], field, "{query}");
    }
    for query in [
        "limit=1",
        "limit=1000",
        "types=%20session.qr%20,session.status",
    ] {
        let res = app.get(&format!("/api/v1/events?{query}"), &key).await;
        assert_eq!(res.status(), StatusCode::OK, "{query}");
    }
    // The stream takes the same filters, and its cursor header.
    for (query, field) in [
        ("?after=x", "after"),
        ("?types=nope", "types"),
        ("?sessionId=x", "sessionId"),
    ] {
        let e = assert_error(
            Sse::request(&app, query, &key, None).await,
            400,
            "invalid_argument",
        )
        .await;
        assert_eq!(e["details"]["field"], field, "{query}");
    }
    let e = assert_error(
        Sse::request(&app, "", &key, Some("not-a-cursor")).await,
        400,
        "invalid_argument",
    )
    .await;
    assert_eq!(e["details"]["field"], "Last-Event-ID");
}

/// `after` and `Last-Event-ID` are each a cursor (`^[0-9]{1,19}$`) when
/// sent: empty is none, on the pull route and on the stream, and a
/// malformed `after` is refused even beside a good `Last-Event-ID` (which
/// wins when both are good).
#[tokio::test]
async fn an_empty_or_malformed_cursor_is_refused_wherever_it_is_sent() {
    let app = TestApp::spawn().await;
    let key = app.key("acme", "read").await;
    let e = assert_error(
        app.get("/api/v1/events?after=", &key).await,
        400,
        "invalid_argument",
    )
    .await;
    assert_eq!(e["details"]["field"], "after");
    for (query, last_event_id, field) in [
        ("?after=", None, "after"),
        ("?after=", Some("42"), "after"),
        ("?after=x", Some("42"), "after"),
        ("?after=18446744073709551615", None, "after"),
        ("?after=1", Some(""), "Last-Event-ID"),
        ("", Some(""), "Last-Event-ID"),
        ("", Some(" "), "Last-Event-ID"),
        ("", Some("18446744073709551615"), "Last-Event-ID"),
    ] {
        let e = assert_error(
            Sse::request(&app, query, &key, last_event_id).await,
            400,
            "invalid_argument",
        )
        .await;
        assert_eq!(
            e["details"]["field"], field,
            "{query} with Last-Event-ID {last_event_id:?}"
        );
    }
    // The longest documented cursor is one, on both routes.
    let max = "9999999999999999999";
    let page = json(app.get(&format!("/api/v1/events?after={max}"), &key).await).await;
    assert_eq!(page, json!({ "data": [], "nextCursor": max }));
    drop(Sse::open(&app, &format!("?after={max}"), &key, None).await);
    drop(Sse::open(&app, "?after=0", &key, Some(max)).await);
}

#[tokio::test]
async fn a_pruned_cursor_is_gone_for_pull_stream_and_replay() {
    let app = TestApp::spawn().await;
    let acme = app.key("acme", "read,manage,admin").await;
    linked(&app, &acme).await;
    let before = pull_all(&app, "", &acme).await;
    assert_eq!(before.len(), 4);
    let first = before[0]["cursor"].as_str().unwrap().to_owned();

    // Everything that happened before now goes (retention zero).
    let deadline = Instant::now() + PATIENCE;
    loop {
        app.gateway
            .prune_events(time::Duration::ZERO)
            .await
            .expect("prune");
        if pull_all(&app, "", &acme).await.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "never pruned");
        tokio::task::yield_now().await;
    }

    for path in [
        "/api/v1/events?after=0".to_owned(),
        format!("/api/v1/events?after={first}"),
    ] {
        let e = assert_error(app.get(&path, &acme).await, 410, "gone").await;
        assert!(e["message"].as_str().unwrap().contains("retention"), "{e}");
    }
    assert_error(
        Sse::request(&app, "?after=0", &acme, None).await,
        410,
        "gone",
    )
    .await;
    assert_error(
        Sse::request(&app, "", &acme, Some(&first)).await,
        410,
        "gone",
    )
    .await;

    // Without a cursor: from the oldest kept, which is where a client starts again.
    let page = json(app.get("/api/v1/events", &acme).await).await;
    assert_eq!(page["data"], json!([]));
    let restart = page["nextCursor"].as_str().unwrap().to_owned();
    assert_eq!(restart, before[3]["cursor"].as_str().unwrap());
    let res = app
        .get(&format!("/api/v1/events?after={restart}"), &acme)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut stream = Sse::open(&app, &format!("?after={restart}"), &acme, None).await;

    // So is replaying a webhook from before the window.
    let created = app
        .post(
            "/api/v1/webhooks",
            &acme,
            Some(json!({ "url": "http://127.0.0.1:9/hook", "events": ["*"] })),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = json(created).await["id"].as_str().unwrap().to_owned();
    let res = app
        .post(
            &format!("/api/v1/webhooks/{id}/replay"),
            &acme,
            Some(json!({ "after": first })),
        )
        .await;
    assert_error(res, 410, "gone").await;

    // The stream from the new start sees what happens next.
    let s = app.create_session(&acme).await;
    app.post(&format!("/api/v1/sessions/{s}/connect"), &acme, None)
        .await;
    let (id, event, data) = stream.event().await;
    assert_eq!(event, "session.status");
    assert!(id.parse::<u64>().unwrap() > restart.parse().unwrap());
    assert_eq!(data["sessionId"], s.as_str());
}

#[tokio::test]
async fn the_stream_shows_the_organizations_session_events_as_they_happen() {
    let app = TestApp::spawn().await;
    let acme = app.key("acme", "read,manage").await;
    let globex = app.key("globex", "read,manage").await;
    let mut stream = Sse::open(&app, "", &acme, None).await;

    // Another organization's events are never in it.
    linked(&app, &globex).await;

    let s = app.create_session(&acme).await;
    let res = app
        .post(&format!("/api/v1/sessions/{s}/connect"), &acme, None)
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);

    let (id, event, connecting) = stream.event().await;
    assert_eq!(event, "session.status");
    assert_event_shape(&connecting, "acme");
    assert_eq!(connecting["sessionId"], s.as_str());
    assert_eq!(kind(&connecting), linking()[0]);
    assert_eq!(connecting["data"]["lastError"], Value::Null);
    assert_eq!(id, connecting["cursor"].as_str().unwrap());
    let (_, event, pairing) = stream.event().await;
    assert_eq!(event, "session.status");
    assert_eq!(kind(&pairing), linking()[1]);

    // The QR code shown while pairing, as `session.qr`.
    let (_, event, qr) = stream.event().await;
    assert_eq!(event, "session.qr");
    assert_event_shape(&qr, "acme");
    let shown = json(app.get(&format!("/api/v1/sessions/{s}/qr"), &acme).await).await;
    assert_eq!(qr["data"]["code"], shown["code"]);

    // Scanning it (the fake links on showing it): connected.
    let (_, event, connected) = stream.event().await;
    assert_eq!(event, "session.status");
    assert_eq!(connected["data"]["status"], "connected");
    assert_eq!(connected["data"]["previous"], "pairing");

    // The same events as the pull API, in the same order.
    let pulled = pull_all(&app, "", &acme).await;
    assert_eq!(pulled, vec![connecting, pairing, qr, connected]);

    let res = app.delete(&format!("/api/v1/sessions/{s}"), &acme).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let seen = stream
        .events_until(|e| e["type"] == "session.deleted")
        .await;
    assert!(
        seen.iter()
            .all(|e| e["orgId"] == "acme" && e["sessionId"] == s.as_str())
    );
}

#[tokio::test]
async fn a_stream_resumed_with_last_event_id_has_no_gap_and_no_duplicate() {
    let app = TestApp::spawn().await;
    let acme = app.key("acme", "read,manage").await;
    let s = linked(&app, &acme).await;

    // A client reads two events, then its connection drops.
    let mut stream = Sse::open(&app, "", &acme, None).await;
    let (_, _, e1) = stream.event().await;
    let (last_id, _, _) = stream.event().await;
    drop(stream);

    // Meanwhile more happens.
    for action in ["disconnect", "connect", "disconnect"] {
        let res = app
            .post(&format!("/api/v1/sessions/{s}/{action}"), &acme, None)
            .await;
        assert_eq!(res.status(), StatusCode::ACCEPTED, "{action}");
    }
    let all = pull_all(&app, "", &acme).await;
    assert_eq!(all[0], e1);
    let position = all
        .iter()
        .position(|e| e["cursor"] == last_id.as_str())
        .unwrap();
    let expected = all[position + 1..].to_vec();
    assert!(expected.len() >= 4, "{all:?}");

    // Reconnecting with Last-Event-ID: exactly what came after.
    let mut resumed = Sse::open(&app, "", &acme, Some(&last_id)).await;
    let mut got = Vec::new();
    while got.len() < expected.len() {
        got.push(resumed.event().await.2);
    }
    assert_eq!(got, expected);

    // `?after=` works the same, and the header wins over it.
    let mut by_query = Sse::open(&app, &format!("?after={last_id}"), &acme, None).await;
    assert_eq!(by_query.event().await.2, expected[0]);
    let mut both = Sse::open(&app, "?after=0", &acme, Some(&last_id)).await;
    assert_eq!(both.event().await.2, expected[0]);

    // And nothing more arrives than what happens next.
    let res = app
        .post(&format!("/api/v1/sessions/{s}/connect"), &acme, None)
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let next = resumed
        .events_until(|e| e["data"]["status"] == "connected")
        .await;
    assert!(cursor(&next[0]) > cursor(expected.last().unwrap()));
}

#[tokio::test]
async fn the_stream_applies_the_filters() {
    let app = TestApp::spawn().await;
    let acme = app.key("acme", "read,manage").await;
    let a = app.create_session(&acme).await;
    let b = app.create_session(&acme).await;
    let mut qr_of_b = Sse::open(
        &app,
        &format!("?types=session.qr&sessionId={b}"),
        &acme,
        None,
    )
    .await;
    let mut statuses = Sse::open(&app, "?types=session.status", &acme, None).await;
    for s in [&a, &b] {
        app.post(&format!("/api/v1/sessions/{s}/connect"), &acme, None)
            .await;
        app.link(s, &acme).await;
    }
    let (_, event, qr) = qr_of_b.event().await;
    assert_eq!(
        (event.as_str(), &qr["sessionId"]),
        ("session.qr", &json!(b))
    );
    let mut got = Vec::new();
    while got.len() < 6 {
        let (_, event, e) = statuses.event().await;
        assert_eq!(event, "session.status");
        got.push((
            e["sessionId"].as_str().unwrap().to_owned(),
            e["data"]["status"].as_str().unwrap().to_owned(),
        ));
    }
    assert_eq!(
        got,
        [
            (a.clone(), "connecting".to_owned()),
            (a.clone(), "pairing".to_owned()),
            (a.clone(), "connected".to_owned()),
            (b.clone(), "connecting".to_owned()),
            (b.clone(), "pairing".to_owned()),
            (b.clone(), "connected".to_owned()),
        ]
    );
    // Nothing else for the narrow stream: a later event of b passes again.
    app.post(&format!("/api/v1/sessions/{b}/logout"), &acme, None)
        .await;
    app.post(&format!("/api/v1/sessions/{b}/connect"), &acme, None)
        .await;
    let (_, event, again) = qr_of_b.event().await;
    assert_eq!(event, "session.qr");
    assert!(cursor(&again) > cursor(&qr));
}

/// A gateway whose streams keep alive every 200 ms.
async fn quick_keep_alive() -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let mut config = test_config(&dir);
    config.events.stream_keep_alive_secs = 0.2;
    TestApp::spawn_with(config, dir).await
}

#[tokio::test]
async fn an_idle_stream_gets_keep_alive_comments() {
    let app = quick_keep_alive().await;
    let key = app.key("acme", "read").await;
    let mut stream = Sse::open(&app, "", &key, None).await;
    for _ in 0..3 {
        assert_eq!(
            stream.next().await,
            Some(Frame::Comment("keep-alive".into()))
        );
    }
}

#[tokio::test]
async fn a_revoked_key_ends_its_stream() {
    let app = quick_keep_alive().await;
    let admin = app.key("acme", "read,admin").await;
    let created = json(
        app.post(
            "/api/v1/api-keys",
            &admin,
            Some(json!({ "name": "reader", "capabilities": ["read"] })),
        )
        .await,
    )
    .await;
    let (id, reader) = (
        created["id"].as_str().unwrap(),
        created["key"].as_str().unwrap(),
    );
    let mut stream = Sse::open(&app, "", reader, None).await;
    assert_eq!(
        stream.next().await,
        Some(Frame::Comment("keep-alive".into()))
    );
    let res = app.delete(&format!("/api/v1/api-keys/{id}"), &admin).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    while let Some(frame) = stream.next().await {
        assert_eq!(frame, Frame::Comment("keep-alive".into()));
    }
}

#[tokio::test]
async fn shutting_down_ends_open_streams_without_waiting_for_them() {
    let app = TestApp::spawn().await;
    let key = app.key("acme", "read").await;
    let mut stream = Sse::open(&app, "", &key, None).await;
    let started = Instant::now();
    app.shut_down().await;
    // Without ending the streams, a graceful stop waits 10 s for them.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert_eq!(stream.next().await, None);
}
