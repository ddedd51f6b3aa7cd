//! Exactly one owner per session, as processes: three gateways (the live
//! adapter), one wa-sim and a throwaway PostgreSQL. Linked sessions spread
//! over the nodes by rendezvous hashing; then
//!
//! - `kill -9` of a node: its sessions are connected again through the
//!   others within 20 s, with no duplicate connection;
//! - the killed node comes back (a new node joins): sessions move to it
//!   slowly, again with no duplicate connection;
//! - `SIGSTOP` of a node for 15 s: its sessions move (at most one replaced
//!   connection per moved session); after `SIGCONT` it fences itself, its
//!   writes for the sessions it lost are refused (counted) and it connects
//!   none of them again: no duplicate or replaced connection after;
//! - `SIGTERM` drains a node: no duplicate connection, no device offline
//!   more than 5 s.
//!
//! Duplicate connections and downtime are computed from wa-sim's
//! `GET /admin/logins` (each device's logins: opened, closed, why), as
//! cluster.md says: two logins of one device whose intervals overlap are a
//! duplicate.
//!
//! The children are this executable again (`WAGATE_CLUSTER_ROLE=gateway`
//! runs `wagate serve`, `=sim` runs wa-sim); `harness = false` makes that
//! dispatch possible. Skipped, saying so, without PostgreSQL's binaries
//! (a failure with `WAGATE_REQUIRE_POSTGRES=1`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report

#[path = "../process/mod.rs"]
mod process;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wagate_domain::{NodeId, SessionId};

const PHONE: &str = "15550002222";
const ROLE: &str = "WAGATE_CLUSTER_ROLE";
/// Linked sessions.
const SESSIONS: usize = 6;
/// Generous bound on anything settling on a loaded 2-core machine; every
/// wait returns as soon as its condition holds.
const PATIENCE: Duration = Duration::from_secs(90);

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("gateway") => process::run_gateway("WAGATE_CLUSTER_CONFIG"),
        Ok("sim") => run_sim(),
        _ => {
            let Some(pg) = wagate_test_postgres::shared() else {
                println!("cluster: skipped (no PostgreSQL)");
                return;
            };
            let url = pg.fresh_database();
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(exactly_one_owner(url));
            println!("cluster: ok");
        }
    }
}

/// wa-sim on `WAGATE_CLUSTER_LISTEN`, until killed.
fn run_sim() {
    let listen = std::env::var("WAGATE_CLUSTER_LISTEN")
        .unwrap()
        .parse()
        .unwrap();
    let world = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/world.json");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let world = wagate_whatsapp_sim::World::from_file(&world).unwrap();
        let _sim = wagate_whatsapp_sim::Simulator::builder(world)
            .listen(listen)
            .start()
            .await
            .unwrap();
        std::future::pending::<()>().await;
    });
}

/// A child process (this executable in a role), its output in a file.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(role: &str, log: PathBuf, envs: &[(&str, String)]) -> Self {
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(ROLE, role)
            .env_remove("RUST_LOG")
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Self {
            child: cmd.spawn().unwrap(),
            log,
        }
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill {signal}");
    }

    /// The last lines of its output (for a failure report).
    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Rig {
    dir: tempfile::TempDir,
    url: String,
    /// The shared database, read directly (a node's API may answer from
    /// its own session cache).
    store: std::sync::Arc<dyn wagate_store::Store>,
    sim_port: u16,
    http: reqwest::Client,
    key: String,
}

impl Rig {
    fn config(&self, port: u16) -> PathBuf {
        let path = self.dir.path().join(format!("node-{port}.toml"));
        let toml = format!(
            "[server]\nbind = \"127.0.0.1:{port}\"\nworkers = 1\n\
             [database]\nurl = \"{url}\"\n\
             [cluster]\nsecret = \"cluster-test-secret-0123456789abcdef\"\n\
             heartbeat_secs = 1\nself_fence_secs = 2\nlease_secs = 3\n\
             [whatsapp]\nadapter = \"live\"\nrequest_timeout_secs = 5\n\
             [whatsapp.live]\nurl = \"ws://127.0.0.1:{sim}/ws/chat\"\n\
             version = \"2.3000.1042742319\"\nresume_rate = 50\n\
             [log]\nlevel = \"info\"\nformat = \"json\"\n",
            url = self.url,
            sim = self.sim_port,
        );
        std::fs::write(&path, toml).unwrap();
        path
    }

    async fn start_gateway(&self, port: u16) -> Proc {
        let gw = Proc::spawn(
            "gateway",
            self.dir.path().join(format!("node-{port}.log")),
            &[(
                "WAGATE_CLUSTER_CONFIG",
                self.config(port).display().to_string(),
            )],
        );
        let deadline = Instant::now() + PATIENCE;
        loop {
            let up = self
                .http
                .get(format!("http://127.0.0.1:{port}/healthz"))
                .send()
                .await;
            if up.is_ok_and(|r| r.status() == 200) {
                return gw;
            }
            assert!(
                Instant::now() < deadline,
                "node {port} never served:\n{}",
                gw.tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of every node's output (for a failure report).
    fn logs(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                out.push_str(&format!("--- {}\n", path.display()));
                out.push_str(&lines[lines.len().saturating_sub(40)..].join("\n"));
                out.push('\n');
            }
        }
        out
    }

    fn api(port: u16, path: &str) -> String {
        format!("http://127.0.0.1:{port}/api/v1{path}")
    }

    fn admin(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/admin{path}", self.sim_port)
    }

    async fn get(&self, url: String) -> Value {
        let res = self
            .http
            .get(url)
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.status());
        res.json().await.unwrap()
    }

    /// Creates a session through node `port` and links it by QR there.
    async fn create_linked(&self, port: u16) -> String {
        let res = self
            .http
            .post(Self::api(port, "/sessions"))
            .bearer_auth(&self.key)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let id = res.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let connect = self
            .http
            .post(Self::api(port, &format!("/sessions/{id}/connect")))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        assert_eq!(connect.status(), 202);
        self.wait_status(port, &id, "pairing").await;
        for attempt in 1..=5 {
            let qr = self
                .get(Self::api(port, &format!("/sessions/{id}/qr")))
                .await;
            let scanned = self
                .http
                .post(self.admin("/scan-qr"))
                .json(&json!({"qr": qr["code"], "phone": PHONE}))
                .send()
                .await
                .unwrap();
            if scanned.status() == 200 {
                break;
            }
            assert!(attempt < 5, "scan failed: {}", scanned.status());
        }
        self.wait_status(port, &id, "connected").await;
        id
    }

    async fn wait_status(&self, port: u16, id: &str, status: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let s = self.get(Self::api(port, &format!("/sessions/{id}"))).await;
            if s["status"] == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{id} never {status}: {s}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// wa-sim's devices of the account: connected or not.
    async fn sim_devices(&self) -> Vec<Value> {
        let account = self.get(self.admin(&format!("/accounts/{PHONE}"))).await;
        account["devices"].as_array().cloned().unwrap_or_default()
    }

    /// wa-sim's logins of each device (`GET /admin/logins`).
    async fn logins(&self) -> Vec<Vec<Login>> {
        let all = self.get(self.admin("/logins")).await;
        all["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                d["logins"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| Login {
                        opened: l["openedAtMs"].as_u64().unwrap(),
                        closed: l["closedAtMs"].as_u64(),
                        cause: l["cause"].as_str().map(str::to_owned),
                    })
                    .collect()
            })
            .collect()
    }

    /// What wa-sim saw since `since` (Unix ms).
    async fn seen_since(&self, since: u64) -> Seen {
        Seen::of(&self.logins().await, since)
    }

    /// The live nodes (`wagate cluster status`), by port.
    async fn nodes(&self) -> HashMap<u16, (NodeId, u64)> {
        let nodes = self.store.cluster_nodes().await.unwrap().unwrap();
        nodes
            .into_iter()
            .filter(|n| !n.draining)
            .map(|n| {
                let port = n.advertise_url.rsplit(':').next().unwrap().parse().unwrap();
                (port, (n.id, n.sessions))
            })
            .collect()
    }

    /// A counter of node `port`'s `/metrics`.
    async fn metric(&self, port: u16, name: &str) -> u64 {
        let text = self
            .http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    /// Whether every session is owned by a live node among `ports`, as
    /// rendezvous hashing says, connected, and wa-sim has every device
    /// connected once.
    async fn balanced(&self, ports: &[u16], ids: &[String]) -> bool {
        let nodes = self.nodes().await;
        if ports.iter().any(|p| !nodes.contains_key(p)) || nodes.len() != ports.len() {
            return false;
        }
        let live: Vec<NodeId> = nodes.values().map(|(id, _)| *id).collect();
        let mut want: HashMap<NodeId, u64> = HashMap::new();
        for id in ids {
            let session = SessionId::parse(id).unwrap();
            *want
                .entry(wagate_app::preferred_node(&live, &session).unwrap())
                .or_default() += 1;
        }
        if nodes
            .values()
            .any(|(id, n)| want.get(id).copied().unwrap_or(0) != *n)
        {
            return false;
        }
        self.all_connected(ids).await
    }

    /// Every session `connected` (in the database), and wa-sim has each
    /// device connected.
    async fn all_connected(&self, ids: &[String]) -> bool {
        let devices = self.sim_devices().await;
        if devices.iter().filter(|d| d["connected"] == true).count() != ids.len() {
            return false;
        }
        let org = wagate_domain::OrgId::parse("acme").unwrap();
        for id in ids {
            let s = self
                .store
                .get(&org, &SessionId::parse(id).unwrap())
                .await
                .unwrap()
                .unwrap();
            if s.status != wagate_domain::SessionStatus::Connected {
                return false;
            }
        }
        true
    }

    async fn until(&self, what: &str, check: impl AsyncFn() -> bool) -> Duration {
        let started = Instant::now();
        loop {
            if check().await {
                return started.elapsed();
            }
            if started.elapsed() > PATIENCE {
                panic!(
                    "never {what}:\n{}\nnodes {:?}\ndevices {:?}",
                    self.logs(),
                    self.nodes().await,
                    self.sim_devices().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One connection logged in as a device (Unix ms).
struct Login {
    opened: u64,
    closed: Option<u64>,
    cause: Option<String>,
}

/// Duplicate connections, replaced connections and the longest downtime
/// of any device, counted from wa-sim's logins.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    /// Logins opened since while an earlier login of the same device was
    /// still open (overlapping intervals).
    duplicates: u64,
    /// Logins closed since because the device logged in elsewhere.
    replaced: u64,
    /// The longest gap, closed since, between one login's close and the
    /// next login of its device (ms).
    longest_down_ms: u64,
}

impl Seen {
    fn of(devices: &[Vec<Login>], since: u64) -> Self {
        let mut seen = Self::default();
        for d in devices {
            let mut logins: Vec<&Login> = d.iter().collect();
            logins.sort_by_key(|l| l.opened);
            for (i, l) in logins.iter().enumerate() {
                let open_then = logins[..i]
                    .iter()
                    .any(|e| e.closed.is_none_or(|c| c > l.opened));
                if l.opened >= since && open_then {
                    seen.duplicates += 1;
                }
                if l.cause.as_deref() == Some("replaced") && l.closed.is_some_and(|c| c >= since) {
                    seen.replaced += 1;
                }
                if let (Some(closed), Some(next)) = (l.closed, logins.get(i + 1))
                    && closed >= since
                {
                    seen.longest_down_ms =
                        seen.longest_down_ms.max(next.opened.saturating_sub(closed));
                }
            }
        }
        seen
    }
}

/// Now, in Unix ms (wa-sim runs on this machine's clock).
fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// The node among `ports` owning the most sessions.
async fn busiest(rig: &Rig, ports: &[u16]) -> u16 {
    let nodes = rig.nodes().await;
    let port = *ports
        .iter()
        .max_by_key(|p| nodes.get(p).map_or(0, |n| n.1))
        .unwrap();
    assert!(nodes[&port].1 > 0, "no node owns a session: {nodes:?}");
    port
}

async fn exactly_one_owner(url: String) {
    let store = wagate_store::open(&url).await.unwrap();
    let mut rig = Rig {
        dir: tempfile::tempdir().unwrap(),
        store,
        url,
        sim_port: process::free_port(),
        // No idle connections kept: a node resumed by SIGCONT closes the
        // keep-alive connections that timed out while it was stopped, and a
        // pooled one would fail the next request with IncompleteMessage.
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap(),
        key: String::new(),
    };
    let ports = [
        process::free_port(),
        process::free_port(),
        process::free_port(),
    ];
    rig.key = process::api_key(&rig.config(ports[0]), "cluster", "read,send,manage,admin").await;
    let _sim = Proc::spawn(
        "sim",
        rig.dir.path().join("sim.log"),
        &[(
            "WAGATE_CLUSTER_LISTEN",
            format!("127.0.0.1:{}", rig.sim_port),
        )],
    );
    let mut gateways: HashMap<u16, Proc> = HashMap::new();
    for port in ports {
        gateways.insert(port, rig.start_gateway(port).await);
    }
    let mut ids = Vec::new();
    let started = now_ms();
    for _ in 0..SESSIONS {
        ids.push(rig.create_linked(ports[0]).await);
    }
    // Linked on the first node; spread by hashing, a few moves a round.
    let took = rig
        .until("balanced over three nodes", || rig.balanced(&ports, &ids))
        .await;
    let seen = rig.seen_since(started).await;
    eprintln!("cluster: {SESSIONS} sessions balanced over 3 nodes in {took:?}; {seen:?}");
    assert_eq!(
        seen.duplicates, 0,
        "a device logged in twice while balancing"
    );

    // kill -9: the others connect its sessions within 20 s, none twice.
    let victim = busiest(&rig, &ports).await;
    let owned = rig.nodes().await[&victim].1;
    let killed = now_ms();
    gateways.remove(&victim).unwrap().signal("-KILL");
    let took = rig
        .until("reconnected after kill -9", || async {
            let nodes = rig.nodes().await;
            !nodes.contains_key(&victim)
                && nodes.values().map(|n| n.1).sum::<u64>() == SESSIONS as u64
                && rig.all_connected(&ids).await
        })
        .await;
    let seen = rig.seen_since(killed).await;
    eprintln!(
        "cluster: kill -9 of a node owning {owned}: every session connected again {took:?} after (bound 20 s); {seen:?}"
    );
    assert!(took <= Duration::from_secs(20), "{took:?}");
    assert_eq!(seen.duplicates, 0, "a device logged in twice after kill -9");

    // The node comes back (a new process, a new node): sessions move to it.
    let joined = now_ms();
    gateways.insert(victim, rig.start_gateway(victim).await);
    let took = rig
        .until("balanced after a join", || rig.balanced(&ports, &ids))
        .await;
    let seen = rig.seen_since(joined).await;
    eprintln!("cluster: a node joined; balanced again in {took:?}; {seen:?}");
    assert_eq!(seen.duplicates, 0, "a device logged in twice while moving");

    // SIGSTOP 15 s: its sessions move (WhatsApp replaces the paused
    // node's connections: at most one per moved session). A contact writes
    // to the account while the node is paused, so the paused node's
    // connections hold a message its clients will try to record (device
    // state and the message) when they wake. After SIGCONT it fences
    // itself: those writes are refused and counted, and it connects none
    // of its former sessions again.
    let paused = busiest(&rig, &ports).await;
    let moved = rig.nodes().await[&paused].1;
    let stopped = now_ms();
    gateways[&paused].signal("-STOP");
    let stopped_at = Instant::now();
    let wrote = rig
        .http
        .post(rig.admin(&format!("/accounts/{PHONE}/messages")))
        .json(&json!({"from": "14155550123", "text": "while you were paused"}))
        .send()
        .await
        .unwrap();
    assert!(wrote.status().is_success(), "{}", wrote.status());
    rig.until("moved off the paused node", || async {
        let nodes = rig.nodes().await;
        !nodes.contains_key(&paused)
            && nodes.values().map(|n| n.1).sum::<u64>() == SESSIONS as u64
            && rig.all_connected(&ids).await
    })
    .await;
    let seen = rig.seen_since(stopped).await;
    eprintln!(
        "cluster: SIGSTOP of a node owning {moved}: moved in {:?}; {seen:?}",
        stopped_at.elapsed()
    );
    assert!(
        seen.replaced <= moved && seen.duplicates <= moved,
        "{seen:?} for {moved} moved sessions"
    );
    tokio::time::sleep(Duration::from_secs(15).saturating_sub(stopped_at.elapsed())).await;
    let resumed = now_ms();
    gateways[&paused].signal("-CONT");
    let took = rig
        .until("the paused node fenced itself", || async {
            rig.metric(paused, "wagate_self_fences_total").await >= 1
        })
        .await;
    // How many of its writes were refused depends on where it stopped: a
    // transaction it held open was ended by the database meanwhile (its
    // locks must not keep the others from claiming), and that one fails
    // on its connection rather than on the fence. The device store's tests
    // prove each kind of write refused; here what counts is that it
    // connects nothing again (below).
    let fenced = rig.metric(paused, "wagate_fenced_writes_total").await;
    eprintln!(
        "cluster: after SIGCONT the node fenced itself in {took:?}; {fenced} of its writes refused"
    );
    rig.until("balanced after SIGCONT", || rig.balanced(&ports, &ids))
        .await;
    let seen = rig.seen_since(resumed).await;
    assert_eq!(
        (seen.duplicates, seen.replaced),
        (0, 0),
        "the paused node connected a session again, or a move overlapped: {seen:?}"
    );

    // SIGTERM drains: every device is back within 5 s, none twice.
    let drained = busiest(&rig, &ports).await;
    let owned = rig.nodes().await[&drained].1;
    let mut gw = gateways.remove(&drained).unwrap();
    let term = now_ms();
    gw.signal("-TERM");
    let started = Instant::now();
    let mut exited = false;
    loop {
        exited = exited || gw.child.try_wait().unwrap().is_some();
        if exited && rig.all_connected(&ids).await {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "never drained:\n{}",
            gw.tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = gw.child.wait().unwrap();
    assert!(status.success(), "the drained node exited with {status}");
    let seen = rig.seen_since(term).await;
    eprintln!(
        "cluster: SIGTERM of a node owning {owned}: {seen:?} (longest a device was offline; bound 5 s)"
    );
    assert_eq!(
        seen.duplicates, 0,
        "a device logged in twice during the drain"
    );
    assert!(seen.longest_down_ms <= 5_000, "{seen:?}");
}
