//! Webhook deliveries survive `kill -9` of the gateway (events.md, "At
//! least once, across crashes"), as processes: the gateway runs as a child
//! process (this very executable, re-run with
//! `WAGATE_DELIVERY_FAULT_ROLE=gateway`, serving exactly as the binary's
//! `main` does, on the fake WhatsApp adapter).
//!
//! 1. The receiver is down — a listener that accepts and never answers, so
//!    attempts hang until `webhooks.timeout` and are in flight (claimed)
//!    when the kill comes.
//! 2. Sessions are connected: `session.status` events, each with a
//!    delivery queued in its transaction; attempts fail and are retried.
//! 3. The gateway is killed with SIGKILL.
//! 4. The real receiver comes up; the gateway restarts.
//! 5. Every event of the log reaches the receiver at least once, with its
//!    original id, signed so the reference library verifies it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report

#[allow(dead_code)] // not every helper is used here
#[path = "../contract/receiver.rs"]
mod receiver;

#[path = "../process/mod.rs"]
mod process;

use process::Proc;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ROLE: &str = "WAGATE_DELIVERY_FAULT_ROLE";
/// Generous bound on anything settling on a loaded 2-core machine; every
/// wait returns as soon as its condition holds.
const PATIENCE: Duration = Duration::from_secs(90);

fn main() {
    if std::env::var(ROLE).as_deref() == Ok("gateway") {
        process::run_gateway("WAGATE_DELIVERY_FAULT_CONFIG");
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(pending_deliveries_survive_kill_nine());
    println!("delivery_faults: 1 passed, 0 failed");
}

/// The gateway process, listening.
fn start_gateway(config: &Path) -> Proc {
    let gw = Proc::spawn(
        ROLE,
        "gateway",
        &[("WAGATE_DELIVERY_FAULT_CONFIG", config.display().to_string())],
    );
    gw.wait_line(&["wagate is listening"], PATIENCE);
    gw
}

/// A receiver that is down in the worst way: it accepts connections and
/// never answers.
async fn black_hole(addr: SocketAddr) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    })
}

struct Api {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res.json().await.unwrap_or(Value::Null)
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Option<Value>) -> Value {
        self.call(reqwest::Method::POST, path, body).await
    }
}

async fn pending_deliveries_survive_kill_nine() {
    let dir = tempfile::tempdir().unwrap();
    let gw_port = process::free_port();
    let receiver_addr: SocketAddr = format!("127.0.0.1:{}", process::free_port())
        .parse()
        .unwrap();
    let config = dir.path().join("wagate.toml");
    // Attempts time out after 1 s; retries every 300 ms for a minute
    // (the schedule must outlast the outage).
    let schedule = std::iter::once("\"0s\"".to_owned())
        .chain(std::iter::repeat_n("\"300ms\"".to_owned(), 200))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        &config,
        format!(
            "[server]\nbind = \"127.0.0.1:{gw_port}\"\nworkers = 1\n\
             [database]\nurl = \"sqlite://{dir}/wagate.db\"\n\
             [whatsapp]\nadapter = \"fake\"\n\
             [webhooks]\nallow_private_targets = true\ntimeout = \"1s\"\nretry_schedule = [{schedule}]\n\
             [log]\nlevel = \"info\"\nformat = \"json\"\n",
            dir = dir.path().display(),
        ),
    )
    .unwrap();
    let key = process::api_key(&config, "delivery-faults", "read,manage,admin").await;
    let api = Api {
        base: format!("http://127.0.0.1:{gw_port}/api/v1"),
        key,
        http: reqwest::Client::new(),
    };

    // 1. The receiver hangs; the gateway runs; a webhook wants every event.
    let hole = black_hole(receiver_addr).await;
    let gw = start_gateway(&config);
    let created = api
        .post(
            "/webhooks",
            Some(json!({ "url": format!("http://{receiver_addr}/hook"), "events": ["*"] })),
        )
        .await;
    let hook = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();

    // 2. Events: sessions connected (new → … → pairing) and disconnected.
    for _ in 0..4 {
        let session = api.post("/sessions", Some(json!({}))).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        api.post(&format!("/sessions/{session}/connect"), None)
            .await;
        api.post(&format!("/sessions/{session}/disconnect"), None)
            .await;
    }
    let events = all_events(&api).await;
    assert!(events.len() >= 8, "{events:?}");
    // Attempts are being made (and failing) when the kill comes.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let log = api
            .get(&format!("/webhooks/{hook}/deliveries?limit=100"))
            .await;
        let tried = log["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["attempt"].as_u64() > Some(0))
            .count();
        if tried >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no attempt was made: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 3. kill -9.
    gw.kill_nine();
    hole.abort();
    let _ = hole.await;

    // 4. The receiver comes up; the gateway restarts.
    let mut receiver = receiver::Receiver::start_on(receiver_addr).await;
    let gw = start_gateway(&config);

    // 5. Every event arrives, with its id, verifiably signed.
    let mut wanted: HashSet<String> = events.iter().cloned().collect();
    let mut received = 0;
    let deadline = Instant::now() + PATIENCE;
    while !wanted.is_empty() {
        assert!(
            Instant::now() < deadline,
            "never delivered: {wanted:?} ({received} deliveries received)"
        );
        let hit = receiver.next().await;
        received += 1;
        assert_eq!(hit.path, "/hook");
        assert!(hit.verifies_with(&secret), "signature: {:?}", hit.headers);
        assert_eq!(hit.event()["id"], hit.id(), "the event's own id");
        wanted.remove(hit.id());
    }
    eprintln!(
        "delivery_faults: {} events delivered after kill -9 ({received} deliveries received)",
        events.len()
    );
    // The log agrees: every delivery succeeded.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let log = api
            .get(&format!("/webhooks/{hook}/deliveries?limit=100"))
            .await;
        let states: Vec<&str> = log["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["state"].as_str().unwrap())
            .collect();
        if states.len() == events.len() && states.iter().all(|s| *s == "succeeded") {
            break;
        }
        assert!(Instant::now() < deadline, "deliveries: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.kill_nine();
}

/// The ids of every event in the log, oldest first.
async fn all_events(api: &Api) -> Vec<String> {
    let page = api.get("/events?limit=1000").await;
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}
