//! Several gateways on one PostgreSQL, as processes (issue 19): three
//! `wagate serve` children on one throwaway database (wagate-test-postgres)
//! and one wa-sim (in this process), with short cluster timings.
//!
//! - any node answers the reads of any session, and a session's new status
//!   written by one node is read by the others at once (the session caches
//!   are cleared over `LISTEN`/`NOTIFY`);
//! - a live call answers on the node that connected the session;
//! - a key revoked on one node is refused by the other two within 1 s;
//! - wa-sim never saw the device logged in twice at once.
//!
//! The children are this very executable, started again with
//! `WAGATE_ANY_NODE_ROLE=gateway` (it then runs `wagate serve` as the
//! binary's `main` does). Without PostgreSQL installed the test says it
//! skipped; with `WAGATE_REQUIRE_POSTGRES=1` (CI) that is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report

#[path = "../process/mod.rs"]
mod process;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use process::Proc;
use serde_json::{Value, json};

const ROLE: &str = "WAGATE_ANY_NODE_ROLE";
const CONFIG: &str = "WAGATE_ANY_NODE_CONFIG";
const PHONE: &str = "15550001111";
const SECRET: &str = "cluster-process-test-secret-0123456789abcdef";
/// Generous bound on anything settling on a loaded 2-core machine; every
/// wait returns as soon as its condition holds.
const PATIENCE: Duration = Duration::from_secs(60);

fn main() {
    if std::env::var(ROLE).as_deref() == Ok("gateway") {
        process::run_gateway(CONFIG);
        return;
    }
    let Some(pg) = wagate_test_postgres::shared() else {
        println!("any_node: SKIPPED (no PostgreSQL)");
        return;
    };
    let url = pg.fresh_database();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(any_node_answers(url));
    println!("any_node: ok");
}

/// One gateway process of the cluster.
struct Node {
    port: u16,
    _proc: Proc,
}

impl Node {
    fn api(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/api/v1{path}", self.port)
    }
}

fn write_config(dir: &std::path::Path, n: usize, port: u16, db: &str, sim: &str) -> PathBuf {
    let toml = format!(
        "[server]\nbind = \"127.0.0.1:{port}\"\nworkers = 1\n\
         [database]\nurl = \"{db}\"\n\
         [cluster]\nsecret = \"{SECRET}\"\nadvertise_url = \"http://127.0.0.1:{port}\"\n\
         heartbeat_secs = 1\nself_fence_secs = 2\nlease_secs = 3\n\
         [whatsapp]\nadapter = \"live\"\nrequest_timeout_secs = 5\n\
         [whatsapp.live]\nurl = \"{sim}\"\nversion = \"2.3000.1042742319\"\n\
         [log]\nlevel = \"info\"\nformat = \"json\"\n"
    );
    let path = dir.join(format!("node{n}.toml"));
    std::fs::write(&path, toml).unwrap();
    path
}

async fn get(http: &reqwest::Client, url: &str, key: &str) -> (u16, Value) {
    let res = http.get(url).bearer_auth(key).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Waits until `done` holds, for at most `within`; returns how long it took.
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

async fn any_node_answers(db: String) {
    let sim = wagate_whatsapp_sim::Simulator::start(wagate_whatsapp_sim::World::empty())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| process::free_port()).collect();
    let configs: Vec<PathBuf> = ports
        .iter()
        .enumerate()
        .map(|(n, port)| write_config(dir.path(), n, *port, &db, &sim.url()))
        .collect();
    // Keys (and the schema) before any gateway runs.
    let keys = process::api_keys(
        &configs[0],
        &[
            ("acme", "admin", "read,send,manage,admin"),
            ("acme", "doomed", "read"),
        ],
    )
    .await;
    let (key, doomed) = (keys[0].clone(), keys[1].clone());
    let nodes: Vec<Node> = ports
        .iter()
        .zip(&configs)
        .map(|(port, config)| {
            let proc = Proc::spawn(ROLE, "gateway", &[(CONFIG, config.display().to_string())]);
            proc.wait_line(&["wagate is listening"], PATIENCE);
            Node {
                port: *port,
                _proc: proc,
            }
        })
        .collect();
    let http = reqwest::Client::new();

    // A session created and connected through node 0, linked by QR.
    let res = http
        .post(nodes[0].api("/sessions"))
        .bearer_auth(&key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let session = format!("/sessions/{id}");
    let res = http
        .post(nodes[0].api(&format!("{session}/connect")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    // Node 1 reads the status node 0 writes.
    within(PATIENCE, "node 1 reads pairing", || async {
        get(&http, &nodes[1].api(&session), &key).await.1["status"] == "pairing"
    })
    .await;
    let (status, qr) = get(&http, &nodes[0].api(&format!("{session}/qr")), &key).await;
    assert_eq!(status, 200, "{qr}");
    let scanned = http
        .post(format!("{}/scan-qr", sim.admin_url()))
        .json(&json!({"qr": qr["code"], "phone": PHONE}))
        .send()
        .await
        .unwrap();
    assert_eq!(scanned.status(), 200);
    // Node 2 reads it connected within a second of node 0.
    within(PATIENCE, "node 0 reads connected", || async {
        get(&http, &nodes[0].api(&session), &key).await.1["status"] == "connected"
    })
    .await;
    within(Duration::from_secs(1), "node 2 reads connected", || async {
        get(&http, &nodes[2].api(&session), &key).await.1["status"] == "connected"
    })
    .await;

    // Every node answers the reads of the session.
    for node in &nodes {
        let (status, list) = get(&http, &node.api("/sessions"), &key).await;
        assert_eq!(status, 200, "{list}");
        assert!(
            list["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["id"] == id.as_str())
        );
        for path in [
            session.clone(),
            format!("{session}/messages"),
            "/events".to_owned(),
            "/webhooks".to_owned(),
            "/api-keys".to_owned(),
        ] {
            let (status, body) = get(&http, &node.api(&path), &key).await;
            assert_eq!(status, 200, "{path} on {}: {body}", node.port);
        }
        let (_, events) = get(&http, &node.api("/events"), &key).await;
        assert!(
            events["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["type"] == "session.status" && e["data"]["status"] == "connected"),
            "{events}"
        );
    }
    // A live call answers from any node: the leases may be moving the
    // session to the node rendezvous hashing picks (a moment of
    // `disconnected`, answered 501), after which every node's call reaches
    // its owner.
    for node in &nodes {
        within(PATIENCE, "a live call answers", || async {
            get(&http, &node.api(&format!("{session}/blocklist")), &key)
                .await
                .0
                == 200
        })
        .await;
    }

    // A key revoked on node 0 is refused by the others within 1 s.
    for node in &nodes[1..] {
        assert_eq!(get(&http, &node.api("/sessions"), &doomed).await.0, 200);
    }
    let (_, list) = get(&http, &nodes[0].api("/api-keys"), &key).await;
    let doomed_id = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "doomed")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = http
        .delete(nodes[0].api(&format!("/api-keys/{doomed_id}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    for node in &nodes[1..] {
        let took = within(
            Duration::from_secs(1),
            "the revoked key is refused",
            || async { get(&http, &node.api("/sessions"), &doomed).await.0 == 401 },
        )
        .await;
        println!("node on {}: revoked key refused after {took:?}", node.port);
    }

    // wa-sim: the device was never logged in twice at once (a session
    // moving between nodes closes before it opens again), and is now.
    let health = sim.admin().health();
    assert_eq!((health.overlaps, health.replaced), (0, 0), "{health:?}");
    let logins = sim.admin().logins();
    let device = logins
        .devices
        .iter()
        .find(|d| d.phone == PHONE)
        .expect("the device logged in");
    for pair in device.logins.windows(2) {
        let closed = pair[0].closed_at_ms.expect("only the last login is open");
        assert!(closed <= pair[1].opened_at_ms, "{logins:?}");
    }
    assert_eq!(
        device.logins.last().unwrap().closed_at_ms,
        None,
        "{logins:?}"
    );
    drop(nodes);
    sim.shutdown().await;
}
