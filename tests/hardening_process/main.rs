//! Issue 18's findings proven against the real gateway process: `wagate
//! serve` (this very executable, re-run with
//! `WAGATE_HARDENING_ROLE=gateway`, serving exactly as the binary's `main`
//! does) on the fake WhatsApp adapter, driven over HTTP, with webhook
//! receivers on loopback in this process. One gateway serves every case,
//! one after the other; each waits on what the gateway tells (events on
//! its stream, deliveries, its log), never on a fixed sleep.
//!
//! - `a_chat_that_does_not_answer_holds_no_other_chat`: the new user's
//!   reproduction — a message to the contact whose calls time out, then
//!   one to the contact that reads everything: the second is sent and
//!   read while the first stays pending.
//! - `a_refusal_for_good_fails_the_message_at_once`: `failed`, with the
//!   `error.code` naming why, without a retry.
//! - `an_idempotent_retry_while_disconnected_answers_as_the_first_time`.
//! - `one_more_webhook_than_the_cap_is_409_limit_reached`, and a disabled
//!   webhook's `test` and `replay` are 409 `conflict`.
//! - `media_urls_do_not_inherit_the_webhooks_private_address_switch`.
//! - `who_may_send_is_checked_before_the_body_is_read`, and
//!   `one_organization_cannot_take_every_place_for_large_bodies`.
//! - `one_stream_over_the_credentials_cap_is_429`.
//! - `hanging_receivers_of_five_organizations_do_not_starve_a_sixth`: 100
//!   webhooks whose receiver never answers, in five organizations, and a
//!   healthy receiver of a sixth gets its 15 deliveries while they hang.
//! - `a_revoked_keys_stream_ends_within_one_keep_alive`: a stream that is
//!   always behind (a backlog, a client that does not read) ends within
//!   one keep-alive period of the revocation, and the key reads no further.
//! - `ipv6_forms_of_private_addresses_are_refused_as_webhook_targets`, on a
//!   second gateway with `webhooks.allow_private_targets` off (its
//!   default).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report

#[allow(dead_code)] // not every helper is used here
#[path = "../contract/receiver.rs"]
mod receiver;

#[path = "../contract/raw_http.rs"]
mod raw_http;

#[path = "../process/mod.rs"]
mod process;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};

use raw_http::{answered, raw_request};

const ROLE: &str = "WAGATE_HARDENING_ROLE";
const CONFIG: &str = "WAGATE_HARDENING_CONFIG";
/// Generous bound on anything settling on a loaded 2-core machine; every
/// wait returns as soon as its condition holds.
const PATIENCE: Duration = Duration::from_secs(30);
/// `events.stream_keep_alive_secs` of the gateway under test.
const KEEP_ALIVE: Duration = Duration::from_millis(500);
/// The fake world's contacts.
const TIMES_OUT: &str = "14155550100@s.whatsapp.net";
const READS_ALL: &str = "14155550142@s.whatsapp.net";
const REFUSES: &str = "14155550143@s.whatsapp.net";
/// The organizations whose receivers hang, and their webhooks each.
const ATTACKERS: usize = 5;
const HANGING_PER_ORG: usize = 20;

fn main() {
    if std::env::var(ROLE).as_deref() == Ok("gateway") {
        process::run_gateway(CONFIG);
        return;
    }
    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let passed = runtime.block_on(run_all());
    println!(
        "hardening_process: {passed} passed, 0 failed ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

/// One organization's credential on the gateway.
#[derive(Clone)]
struct Api {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Api {
    fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.key)
    }

    fn with_key(&self, key: &str) -> Self {
        Self {
            key: key.to_owned(),
            ..self.clone()
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut req = self.req(method, path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    /// A call that must answer `status`; its JSON body (`null` if none).
    async fn expect(&self, method: Method, path: &str, body: Option<Value>, status: u16) -> Value {
        let res = self.call(method, path, body).await;
        let got = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert_eq!(got.as_u16(), status, "{path}: {body}");
        body
    }

    async fn send_text(&self, session: &str, to: &str, text: &str) -> String {
        let sent = self
            .expect(
                Method::POST,
                &format!("/sessions/{session}/messages"),
                Some(json!({ "to": to, "type": "text", "text": text })),
                202,
            )
            .await;
        sent["id"].as_str().unwrap().to_owned()
    }

    async fn message(&self, session: &str, id: &str) -> Value {
        self.expect(
            Method::GET,
            &format!("/sessions/{session}/messages/{id}"),
            None,
            200,
        )
        .await
    }

    /// A new API key of this organization with `caps`: (id, key).
    async fn new_key(&self, caps: &[&str]) -> (String, String) {
        let created = self
            .expect(
                Method::POST,
                "/api-keys",
                Some(json!({ "name": "made-here", "capabilities": caps })),
                201,
            )
            .await;
        (
            created["id"].as_str().unwrap().to_owned(),
            created["key"].as_str().unwrap().to_owned(),
        )
    }
}

/// An organization's event stream, read as fast as it comes; its events
/// (the JSON of each `data:` line) arrive on a channel.
struct Follower {
    events: mpsc::UnboundedReceiver<Value>,
}

impl Follower {
    async fn open(api: &Api) -> Self {
        let mut res = api.req(Method::GET, "/events/stream").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut text = String::new();
            while let Ok(Some(chunk)) = res.chunk().await {
                text.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = text.find("\n\n") {
                    let message: String = text.drain(..end + 2).collect();
                    for data in message.lines().filter_map(|l| l.strip_prefix("data: ")) {
                        if tx.send(serde_json::from_str(data).unwrap()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Self { events }
    }

    /// The next event that satisfies `wanted` (others are skipped).
    async fn until(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) if wanted(&event) => return event,
                Ok(Some(_)) => {}
                Ok(None) => panic!("the event stream ended while waiting for {what}"),
                Err(_) => panic!("no event: {what}"),
            }
        }
    }

    async fn status_of_session(&mut self, session: &str, status: &str) {
        self.until(&format!("{session} {status}"), |e| {
            e["type"] == "session.status"
                && e["sessionId"] == session
                && e["data"]["status"] == status
        })
        .await;
    }

    async fn status_of_message(&mut self, id: &str, status: &str) -> Value {
        self.until(&format!("message {id} {status}"), |e| {
            e["type"] == "message.status" && e["data"]["id"] == id && e["data"]["status"] == status
        })
        .await
    }
}

/// Creates a session and links it (on the fake, showing the QR code is
/// the scan); waits until it is connected.
async fn linked_session(api: &Api, follower: &mut Follower) -> String {
    let created = api
        .expect(Method::POST, "/sessions", Some(json!({})), 201)
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    api.expect(Method::POST, &format!("/sessions/{id}/connect"), None, 202)
        .await;
    follower.status_of_session(&id, "pairing").await;
    api.expect(Method::GET, &format!("/sessions/{id}/qr"), None, 200)
        .await;
    follower.status_of_session(&id, "connected").await;
    id
}

/// A receiver that is down in the worst way: it accepts connections and
/// never answers. How many it holds is on the watch channel.
async fn black_hole() -> (SocketAddr, watch::Receiver<usize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (count, held) = watch::channel(0);
    tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            sockets.push(socket);
            count.send_replace(sockets.len());
        }
    });
    (addr, held)
}

struct Rig {
    _dir: tempfile::TempDir,
    gateway: process::Proc,
    acme: Api,
    follower: Follower,
    /// acme's connected session.
    session: String,
    attackers: Vec<Api>,
    healthy: Api,
    capped: Api,
    stranger: Api,
}

/// The gateway's configuration in `dir`; `extra` is appended (TOML).
fn write_config(dir: &Path, port: u16, extra: &str) -> std::path::PathBuf {
    let config = dir.join("wagate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nbind = \"127.0.0.1:{port}\"\nworkers = 2\n\
             [database]\nurl = \"sqlite://{dir}/wagate.db\"\n\
             [whatsapp]\nadapter = \"fake\"\n\
             [limits]\nrequests_per_second = 0\n\
             [messages]\nsend_rate = 0\n\
             [events]\nstream_keep_alive_secs = {keep_alive}\n\
             [log]\nlevel = \"info,wagate_http::stream=debug\"\nformat = \"json\"\n{extra}",
            dir = dir.display(),
            keep_alive = KEEP_ALIVE.as_secs_f64(),
        ),
    )
    .unwrap();
    config
}

/// A gateway process on `config`, listening.
fn start_gateway(config: &Path) -> process::Proc {
    let gateway = process::Proc::spawn(ROLE, "gateway", &[(CONFIG, config.display().to_string())]);
    gateway.wait_line(&["wagate is listening"], PATIENCE);
    gateway
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let port = process::free_port();
    let config = write_config(
        dir.path(),
        port,
        "[webhooks]\nallow_private_targets = true\ntimeout = \"120s\"\n",
    );
    let attacker_orgs: Vec<String> = (1..=ATTACKERS).map(|n| format!("attacker-{n}")).collect();
    let mut wanted = vec![
        ("acme", "owner", "read,send,manage,admin"),
        ("umbrella", "healthy", "read,admin"),
        ("capped", "capped", "read,admin"),
        ("stranger", "stranger", "read,send"),
    ];
    wanted.extend(
        attacker_orgs
            .iter()
            .map(|org| (org.as_str(), "attacker", "read,manage,admin")),
    );
    let mut keys = process::api_keys(&config, &wanted).await.into_iter();
    let gateway = start_gateway(&config);
    let api = |key: String| Api {
        base: format!("http://127.0.0.1:{port}"),
        key,
        http: reqwest::Client::new(),
    };
    let acme = api(keys.next().unwrap());
    let (healthy, capped, stranger) = (
        api(keys.next().unwrap()),
        api(keys.next().unwrap()),
        api(keys.next().unwrap()),
    );
    let attackers = keys.map(api).collect();
    let mut follower = Follower::open(&acme).await;
    let session = linked_session(&acme, &mut follower).await;
    Rig {
        _dir: dir,
        gateway,
        acme,
        follower,
        session,
        attackers,
        healthy,
        capped,
        stranger,
    }
}

async fn run_all() -> usize {
    // Like libtest: names given on the command line pick the cases.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut rig = rig().await;
    let mut passed = 0;
    macro_rules! case {
        ($name:ident) => {
            let name = stringify!($name);
            if filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())) {
                let started = Instant::now();
                $name(&mut rig).await;
                println!(
                    "test {name} ... ok ({:.1} s)",
                    started.elapsed().as_secs_f64()
                );
                passed += 1;
            }
        };
    }
    case!(a_chat_that_does_not_answer_holds_no_other_chat);
    case!(a_refusal_for_good_fails_the_message_at_once);
    case!(an_idempotent_retry_while_disconnected_answers_as_the_first_time);
    case!(one_more_webhook_than_the_cap_is_409_limit_reached);
    case!(media_urls_do_not_inherit_the_webhooks_private_address_switch);
    case!(who_may_send_is_checked_before_the_body_is_read);
    case!(one_organization_cannot_take_every_place_for_large_bodies);
    case!(one_stream_over_the_credentials_cap_is_429);
    case!(hanging_receivers_of_five_organizations_do_not_starve_a_sixth);
    case!(a_revoked_keys_stream_ends_within_one_keep_alive);
    case!(ipv6_forms_of_private_addresses_are_refused_as_webhook_targets);
    passed
}

async fn a_chat_that_does_not_answer_holds_no_other_chat(rig: &mut Rig) {
    let stuck = rig
        .acme
        .send_text(&rig.session, TIMES_OUT, "are you there?")
        .await;
    let echo = rig.acme.send_text(&rig.session, READS_ALL, "hello").await;
    // The second chat goes on: sent, and read by the contact …
    rig.follower.status_of_message(&echo, "read").await;
    // … while the first is still pending (retried with its own backoff).
    let first = rig.acme.message(&rig.session, &stuck).await;
    assert_eq!(first["status"], "pending", "{first}");
    assert_eq!(first["error"], Value::Null, "{first}");
}

async fn a_refusal_for_good_fails_the_message_at_once(rig: &mut Rig) {
    let refused = rig.acme.send_text(&rig.session, REFUSES, "hi").await;
    let event = rig.follower.status_of_message(&refused, "failed").await;
    assert_eq!(event["data"]["error"]["code"], "rejected", "{event}");
    let message = rig.acme.message(&rig.session, &refused).await;
    assert_eq!(message["status"], "failed", "{message}");
    assert_eq!(message["error"]["code"], "rejected", "{message}");
}

async fn an_idempotent_retry_while_disconnected_answers_as_the_first_time(rig: &mut Rig) {
    let path = format!("/sessions/{}/messages", rig.session);
    let body = json!({ "to": READS_ALL, "type": "text", "text": "once" });
    let send = || {
        rig.acme
            .req(Method::POST, &path)
            .header("Idempotency-Key", "retry-while-offline")
            .json(&body)
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    // The session drops (the client does not know) …
    rig.acme
        .expect(
            Method::POST,
            &format!("/sessions/{}/disconnect", rig.session),
            None,
            202,
        )
        .await;
    rig.follower
        .status_of_session(&rig.session, "disconnected")
        .await;
    // … and the retry answers as the first time, sending nothing new.
    let again = send().await.unwrap();
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    // Connected again for the cases after this one.
    rig.acme
        .expect(
            Method::POST,
            &format!("/sessions/{}/connect", rig.session),
            None,
            202,
        )
        .await;
    rig.follower
        .status_of_session(&rig.session, "connected")
        .await;
}

async fn one_more_webhook_than_the_cap_is_409_limit_reached(rig: &mut Rig) {
    // The default cap (webhooks.max_per_org = 25).
    let hook = json!({ "url": "http://127.0.0.1:9/hook", "events": ["*"] });
    let mut ids = Vec::new();
    for _ in 0..25 {
        let created = rig
            .capped
            .expect(Method::POST, "/webhooks", Some(hook.clone()), 201)
            .await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let refused = rig
        .capped
        .expect(Method::POST, "/webhooks", Some(hook.clone()), 409)
        .await;
    assert_eq!(refused["error"]["code"], "limit_reached", "{refused}");
    assert_eq!(refused["error"]["details"]["limit"], 25, "{refused}");
    // A disabled webhook is neither tested nor replayed (nothing would
    // ever deliver it): 409 conflict.
    let disabled = &ids[0];
    rig.capped
        .expect(
            Method::PATCH,
            &format!("/webhooks/{disabled}"),
            Some(json!({ "enabled": false })),
            200,
        )
        .await;
    for (op, body) in [("test", None), ("replay", Some(json!({ "after": "0" })))] {
        let e = rig
            .capped
            .expect(
                Method::POST,
                &format!("/webhooks/{disabled}/{op}"),
                body,
                409,
            )
            .await;
        assert_eq!(e["error"]["code"], "conflict", "{op}: {e}");
    }
    // The cap is the organization's: one being full holds no other back
    // (the sixth organization below creates its own).
    for id in ids {
        rig.capped
            .expect(Method::DELETE, &format!("/webhooks/{id}"), None, 204)
            .await;
    }
}

async fn media_urls_do_not_inherit_the_webhooks_private_address_switch(rig: &mut Rig) {
    // Webhooks may target loopback here (the receivers of these tests);
    // media URLs may not: messages.allow_private_media_urls is off.
    let e = rig
        .acme
        .expect(
            Method::POST,
            &format!("/sessions/{}/messages", rig.session),
            Some(json!({
                "to": READS_ALL, "type": "image",
                "media": { "url": "http://127.0.0.1:9/a.png", "mimetype": "image/png" }
            })),
            400,
        )
        .await;
    assert_eq!(e["error"]["details"]["field"], "media.url", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages.allow_private_media_urls"),
        "{e}"
    );
}

async fn who_may_send_is_checked_before_the_body_is_read(rig: &mut Rig) {
    let (_, reader) = rig.acme.new_key(&["read"]).await;
    // 20 MB announced, a few bytes sent, and no more: the answer comes
    // without the rest.
    for (key, status) in [(&rig.stranger.key, "404"), (&reader, "403")] {
        let head = format!(
            "POST /api/v1/sessions/{}/messages HTTP/1.1\r\nHost: gateway\r\n\
             Authorization: Bearer {key}\r\nContent-Type: application/json\r\n\
             Content-Length: 20000000\r\n\r\n{{\"to\": \"{READS_ALL}\", ",
            rig.session
        );
        let mut conn = raw_request(&rig.acme.base, &head).await;
        let mut answer = [0u8; 12];
        tokio::time::timeout(PATIENCE, conn.read_exact(&mut answer))
            .await
            .expect("no answer without the body")
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&answer),
            format!("HTTP/1.1 {status}")
        );
    }
}

async fn one_organization_cannot_take_every_place_for_large_bodies(rig: &mut Rig) {
    // With the default limits (16 MiB of media) 11 large bodies are read
    // at once, 2 per organization. Two uploads of acme that never finish …
    let head = |key: &str, session: &str| {
        format!(
            "POST /api/v1/sessions/{session}/messages HTTP/1.1\r\nHost: gateway\r\n\
             Authorization: Bearer {key}\r\nContent-Type: application/json\r\n\
             Content-Length: 1000000\r\n\r\n{{\"to\": \"{READS_ALL}\", "
        )
    };
    let mut held = [
        raw_request(&rig.acme.base, &head(&rig.acme.key, &rig.session)).await,
        raw_request(&rig.acme.base, &head(&rig.acme.key, &rig.session)).await,
    ];
    // … leave no place for a third (not valid JSON: 400 once read). The
    // held ones take their places as the gateway reads their heads; one
    // read while a large body below held a place was refused (429) and
    // holds nothing: it is sent again.
    let large = format!("{{{}", " ".repeat(100 * 1024));
    let post_large = |api: &Api, session: &str| {
        api.req(Method::POST, &format!("/sessions/{session}/messages"))
            .header("content-type", "application/json")
            .body(large.clone())
            .send()
    };
    let deadline = Instant::now() + PATIENCE;
    loop {
        let res = post_large(&rig.acme, &rig.session).await.unwrap();
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(res.headers().contains_key("retry-after"));
            break;
        }
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert!(
            Instant::now() < deadline,
            "a third large body of one organization was read while two were held"
        );
        for stream in &mut held {
            if answered(stream) {
                *stream = raw_request(&rig.acme.base, &head(&rig.acme.key, &rig.session)).await;
            }
        }
    }
    // Another organization still sends large bodies (its own session,
    // which it does not have: 404 after the check, not 429 before it).
    let res = post_large(&rig.stranger, &rig.session).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Uploads that go away give their places back.
    drop(held);
    let deadline = Instant::now() + PATIENCE;
    while post_large(&rig.acme, &rig.session).await.unwrap().status() != StatusCode::BAD_REQUEST {
        assert!(
            Instant::now() < deadline,
            "the abandoned uploads never gave their places back"
        );
    }
}

async fn one_stream_over_the_credentials_cap_is_429(rig: &mut Rig) {
    // The default cap: events.max_streams_per_credential = 5.
    let (_, key) = rig.acme.new_key(&["read"]).await;
    let reader = rig.acme.with_key(&key);
    let mut open = Vec::new();
    for _ in 0..5 {
        let res = reader
            .req(Method::GET, "/events/stream")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        open.push(res);
    }
    let res = reader
        .req(Method::GET, "/events/stream")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    let e: Value = res.json().await.unwrap();
    assert_eq!(e["error"]["code"], "rate_limited", "{e}");
    assert_eq!(e["error"]["details"]["limit"], 5, "{e}");
}

async fn hanging_receivers_of_five_organizations_do_not_starve_a_sixth(rig: &mut Rig) {
    // 100 webhooks in five organizations, their receiver never answering
    // (an attempt hangs until webhooks.timeout, 120 s here) …
    let (hole, mut held) = black_hole().await;
    for attacker in &rig.attackers {
        for n in 0..HANGING_PER_ORG {
            attacker
                .expect(
                    Method::POST,
                    "/webhooks",
                    Some(json!({ "url": format!("http://{hole}/hang/{n}"), "events": ["*"] })),
                    201,
                )
                .await;
        }
        // … and events for each of them to deliver.
        let created = attacker
            .expect(Method::POST, "/sessions", Some(json!({})), 201)
            .await;
        let id = created["id"].as_str().unwrap();
        attacker
            .expect(Method::POST, &format!("/sessions/{id}/connect"), None, 202)
            .await;
    }
    // The attack at full strength: every organization's share of the
    // delivery slots (an eighth of webhooks.max_in_flight, 64) hanging.
    let full = ATTACKERS * 8;
    tokio::time::timeout(PATIENCE, held.wait_for(|n| *n >= full))
        .await
        .expect("the hanging receivers were never all being tried")
        .unwrap();
    // A sixth organization's healthy receiver gets all its deliveries
    // while those hang.
    let mut receiver = receiver::Receiver::start().await;
    let created = rig
        .healthy
        .expect(
            Method::POST,
            "/webhooks",
            Some(json!({ "url": receiver.url("/healthy"), "events": ["*"] })),
            201,
        )
        .await;
    let hook = created["id"].as_str().unwrap();
    let secret = created["secret"].as_str().unwrap();
    let mut wanted = std::collections::HashSet::new();
    for _ in 0..15 {
        let queued = rig
            .healthy
            .expect(Method::POST, &format!("/webhooks/{hook}/test"), None, 202)
            .await;
        wanted.insert(queued["eventId"].as_str().unwrap().to_owned());
    }
    let started = Instant::now();
    while !wanted.is_empty() {
        // Receiver::next fails after its patience (30 s), far less than
        // the hanging attempts' 120 s: a starved receiver fails here.
        let hit = receiver.next().await;
        assert_eq!(hit.path, "/healthy");
        assert!(hit.verifies_with(secret));
        wanted.remove(hit.id());
    }
    assert!(
        *held.borrow() >= full,
        "the hanging attempts ended before the healthy deliveries arrived"
    );
    println!(
        "  15 deliveries to the healthy receiver in {:.2} s, {} attempts hanging",
        started.elapsed().as_secs_f64(),
        *held.borrow()
    );
}

async fn a_revoked_keys_stream_ends_within_one_keep_alive(rig: &mut Rig) {
    // A backlog far larger than what the server's buffers for one client
    // hold (256 messages, and the sockets'): 300 messages of 10 KB to the
    // contact that answers each (its answer repeats the text).
    const BACKLOG: usize = 300;
    let text = "x".repeat(10 * 1024);
    let sends: Vec<_> = (0..BACKLOG)
        .map(|_| {
            let (api, session, text) = (rig.acme.clone(), rig.session.clone(), text.clone());
            tokio::spawn(async move { api.send_text(&session, READS_ALL, &text).await })
        })
        .collect();
    for send in sends {
        send.await.unwrap();
    }
    let mut answered = 0;
    while answered < BACKLOG {
        rig.follower
            .until("the contact's answers", |e| {
                e["type"] == "message.received"
                    && e["data"]["text"]
                        .as_str()
                        .is_some_and(|t| t.len() > 10 * 1024)
            })
            .await;
        answered += 1;
    }
    // A key streams the log from its start and does not read: the stream
    // is stuck a page behind, waiting for room.
    let (key_id, key) = rig.acme.new_key(&["read"]).await;
    let head = format!(
        "GET /api/v1/events/stream?after=0 HTTP/1.1\r\nHost: gateway\r\n\
         Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n"
    );
    let mut stream = raw_request(&rig.acme.base, &head).await;
    // The stream is open (its answer began) before the key is revoked.
    let mut status = [0u8; 12];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut status))
        .await
        .expect("the stream never answered")
        .unwrap();
    assert_eq!(&status, b"HTTP/1.1 200");
    // The key is revoked …
    rig.acme
        .expect(Method::DELETE, &format!("/api-keys/{key_id}"), None, 204)
        .await;
    let revoked = Instant::now();
    // … and the stream ends at its next re-check, whatever it is doing.
    tokio::task::block_in_place(|| {
        rig.gateway
            .wait_line(&["event stream ended", "Revoked"], PATIENCE)
    });
    let took = revoked.elapsed();
    // One keep-alive period, and room for a loaded machine.
    assert!(
        took < KEEP_ALIVE + Duration::from_secs(5),
        "the revoked key's stream ended {took:?} after the revocation"
    );
    // The client reads on: what was queued for it then, and no more.
    let mut all = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut all))
        .await
        .expect("the stream never closed")
        .unwrap();
    let read = String::from_utf8_lossy(&all)
        .matches("event: message.received")
        .count();
    assert!(
        read < BACKLOG,
        "the revoked key read the whole backlog ({read} answers)"
    );
    println!(
        "  stream ended {:.2} s after the revocation; it had read {read} of {BACKLOG}+ answers",
        took.as_secs_f64()
    );
}

async fn ipv6_forms_of_private_addresses_are_refused_as_webhook_targets(_rig: &mut Rig) {
    // A gateway of its own, webhooks.allow_private_targets at its default
    // (off).
    let dir = tempfile::tempdir().unwrap();
    let port = process::free_port();
    let config = write_config(dir.path(), port, "");
    let key = process::api_keys(&config, &[("acme", "admin", "admin")])
        .await
        .remove(0);
    let _gateway = start_gateway(&config);
    let api = Api {
        base: format!("http://127.0.0.1:{port}"),
        key,
        http: reqwest::Client::new(),
    };
    for url in [
        "http://[::127.0.0.1]/hook",
        "http://[::ffff:0:127.0.0.1]/hook",
        "http://[::ffff:0:a9fe:a9fe]/latest",
        "http://[64:ff9b:1::7f00:1]/hook",
        "http://[2002:7f00:1::1]/hook",
        "http://127.0.0.1/hook",
    ] {
        let e = api
            .expect(
                Method::POST,
                "/webhooks",
                Some(json!({ "url": url, "events": ["*"] })),
                400,
            )
            .await;
        assert_eq!(e["error"]["code"], "invalid_argument", "{url}: {e}");
        assert_eq!(e["error"]["details"]["field"], "url", "{url}: {e}");
    }
}
