//! Fault injection, as processes: the gateway (live adapter) and wa-sim run
//! as child processes of this test, and are killed with SIGKILL in the
//! middle of lifecycle calls and of a session's life. After each restart,
//! every session's status must be the truthful one for the user's last
//! request, no linked session may have lost its keys, and wa-sim must never
//! have seen two simultaneous connections of one device. Then messages
//! both ways across a kill (`messages.rs`), and a burst of group messages
//! across one (`groups.rs`): none lost, none duplicated.
//!
//! The children are this very executable, started again with
//! `WAGATE_FAULT_ROLE=gateway` (it then runs `wagate serve`, exactly as the
//! binary's `main` does) or `WAGATE_FAULT_ROLE=sim` (it runs wa-sim on a
//! state file), so the test needs no other binary on disk. A custom harness
//! (`harness = false`) makes that dispatch possible.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report

mod groups;
mod messages;
#[path = "../process/mod.rs"]
mod process;

use process::Proc;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const PHONE: &str = "15550001111";
const ROLE: &str = "WAGATE_FAULT_ROLE";
/// Generous bound on anything settling on a loaded 2-core machine; every
/// wait returns as soon as its condition holds.
const PATIENCE: Duration = Duration::from_secs(60);

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("gateway") => process::run_gateway("WAGATE_FAULT_CONFIG"),
        Ok("sim") => run_sim(),
        _ => {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(kill_nine_at_every_step());
            println!("faults: ok");
        }
    }
}

/// wa-sim on `WAGATE_FAULT_LISTEN` with `WAGATE_FAULT_STATE`, until killed.
fn run_sim() {
    let listen = std::env::var("WAGATE_FAULT_LISTEN")
        .unwrap()
        .parse()
        .unwrap();
    let state = std::env::var("WAGATE_FAULT_STATE").unwrap();
    let world = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/world.json");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let world = wagate_whatsapp_sim::World::from_file(&world).unwrap();
        let _sim = wagate_whatsapp_sim::Simulator::builder(world)
            .listen(listen)
            .state_file(state)
            .start()
            .await
            .unwrap();
        println!("sim ready");
        std::future::pending::<()>().await;
    });
}

struct Rig {
    dir: tempfile::TempDir,
    sim_port: u16,
    gw_port: u16,
    http: reqwest::Client,
    key: String,
}

impl Rig {
    fn config_path(&self) -> PathBuf {
        self.dir.path().join("wagate.toml")
    }

    fn write_config(&self) {
        let toml = format!(
            "[server]\nbind = \"127.0.0.1:{gw}\"\nworkers = 1\n\
             [database]\nurl = \"sqlite://{dir}/wagate.db\"\n\
             [whatsapp]\nadapter = \"live\"\nrequest_timeout_secs = 5\n\
             [whatsapp.live]\nurl = \"ws://127.0.0.1:{sim}/ws/chat\"\nversion = \"2.3000.1042742319\"\n\
             [messages]\nsend_rate = 300\n\
             [log]\nlevel = \"info\"\nformat = \"json\"\n",
            gw = self.gw_port,
            sim = self.sim_port,
            dir = self.dir.path().display(),
        );
        std::fs::write(self.config_path(), toml).unwrap();
    }

    fn start_sim(&self) -> Proc {
        let sim = Proc::spawn(
            ROLE,
            "sim",
            &[
                (
                    "WAGATE_FAULT_LISTEN",
                    format!("127.0.0.1:{}", self.sim_port),
                ),
                (
                    "WAGATE_FAULT_STATE",
                    self.dir.path().join("sim-state.json").display().to_string(),
                ),
            ],
        );
        sim.wait_line(&["sim ready"], PATIENCE);
        sim
    }

    async fn start_gateway(&self) -> Proc {
        let gw = Proc::spawn(
            ROLE,
            "gateway",
            &[(
                "WAGATE_FAULT_CONFIG",
                self.config_path().display().to_string(),
            )],
        );
        gw.wait_line(&["wagate is listening"], PATIENCE);
        gw
    }

    fn api(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/api/v1{path}", self.gw_port)
    }

    fn admin(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/admin{path}", self.sim_port)
    }

    async fn post(&self, path: &str) -> reqwest::Response {
        self.http
            .post(self.api(path))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
    }

    /// The session, or `None` once it is gone (404).
    async fn session(&self, id: &str) -> Option<Value> {
        let res = self
            .http
            .get(self.api(&format!("/sessions/{id}")))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        if res.status() == 404 {
            return None;
        }
        assert_eq!(res.status(), 200, "{id}");
        Some(res.json().await.unwrap())
    }

    async fn wait_for(&self, id: &str, done: impl Fn(&Option<Value>) -> bool) -> Option<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let s = self.session(id).await;
            if done(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "session {id} never settled: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until the session is at rest (not on its way somewhere).
    async fn settled(&self, id: &str) -> Option<Value> {
        self.wait_for(id, |s| {
            s.as_ref()
                .is_none_or(|s| !matches!(s["status"].as_str(), Some("connecting" | "pairing")))
        })
        .await
    }

    async fn create_linked(&self) -> String {
        let res = self
            .http
            .post(self.api("/sessions"))
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
        assert_eq!(
            self.post(&format!("/sessions/{id}/connect")).await.status(),
            202
        );
        self.wait_for(&id, |s| s.as_ref().unwrap()["status"] == "pairing")
            .await;
        for attempt in 1..=5 {
            let qr: Value = self
                .http
                .get(self.api(&format!("/sessions/{id}/qr")))
                .bearer_auth(&self.key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
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
        self.wait_for(&id, |s| s.as_ref().unwrap()["status"] == "connected")
            .await;
        id
    }

    async fn sim_account(&self) -> Value {
        self.http
            .get(self.admin(&format!("/accounts/{PHONE}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn sim_health(&self) -> Value {
        self.http
            .get(self.admin("/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The gateway's sessions and wa-sim's devices tell the same story:
    /// as many linked devices as sessions with a JID, as many connected
    /// devices as `connected` sessions (waiting for both to settle), and
    /// never two connections of one device at once.
    async fn assert_truthful(&self, ids: &[String]) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut linked = 0;
            let mut connected = 0;
            for id in ids {
                if let Some(s) = self.settled(id).await {
                    linked += usize::from(s["jid"].is_string());
                    connected += usize::from(s["status"] == "connected");
                }
            }
            let account = self.sim_account().await;
            let devices = account["devices"].as_array().cloned().unwrap_or_default();
            let sim_connected = devices.iter().filter(|d| d["connected"] == true).count();
            if (linked, connected) == (devices.len(), sim_connected) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "gateway says {linked} linked / {connected} connected, wa-sim has {} / {sim_connected}: {account}",
                devices.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let health = self.sim_health().await;
        assert_eq!(
            health["overlaps"], 0,
            "two connections of one device: {health}"
        );
    }

    /// Every linked session still has its keys: connecting it logs in
    /// again without a QR code.
    async fn assert_keys_kept(&self, ids: &[String]) {
        for id in ids {
            let Some(s) = self.settled(id).await else {
                continue;
            };
            if s["jid"].is_string() && s["status"] != "connected" {
                assert_eq!(
                    self.post(&format!("/sessions/{id}/connect")).await.status(),
                    202
                );
            }
            if s["jid"].is_string() {
                let s = self.settled(id).await.unwrap();
                assert_eq!(s["status"], "connected", "{id} lost its keys: {s}");
            }
        }
    }
}

/// Sends the lifecycle call `op` of session `id` and kills the gateway
/// with SIGKILL the moment its log says `at`: `"lifecycle call started"`
/// (the request is not recorded yet) or `"lifecycle request recorded"`
/// (recorded, WhatsApp being asked, status not written).
async fn kill_during(rig: &Rig, gw: Proc, id: &str, op: &str, at: &str) {
    let path = match op {
        "delete" => format!("/sessions/{id}"),
        _ => format!("/sessions/{id}/{op}"),
    };
    let method = match op {
        "delete" => reqwest::Method::DELETE,
        _ => reqwest::Method::POST,
    };
    let (http, url, key) = (rig.http.clone(), rig.api(&path), rig.key.clone());
    let request = tokio::spawn(async move {
        // The answer never comes: the process is killed under it.
        let _ = http.request(method, url).bearer_auth(key).send().await;
    });
    gw.wait_line(&[at, id, &format!("\"op\":\"{op}\"")], PATIENCE);
    gw.kill_nine();
    let _ = request.await;
}

async fn kill_nine_at_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut rig = Rig {
        dir,
        sim_port: process::free_port(),
        gw_port: process::free_port(),
        http: reqwest::Client::new(),
        key: String::new(),
    };
    rig.write_config();
    rig.key = process::api_key(&rig.config_path(), "faults", "read,send,manage,admin").await;

    let mut sim = rig.start_sim();
    let mut gw = rig.start_gateway().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(rig.create_linked().await);
    }
    let [to_disconnect, to_logout, to_delete, to_connect, bystander] =
        <[String; 5]>::try_from(ids.clone()).unwrap();
    // One session disconnected by the user before the faults: the fault hits its connect.
    assert_eq!(
        rig.post(&format!("/sessions/{to_connect}/disconnect"))
            .await
            .status(),
        202
    );
    rig.assert_truthful(&ids).await;

    // kill -9 of the gateway in the middle of each lifecycle call: once
    // before the request is recorded (nothing may change), then once after
    // (the restart must finish it), each time on the session as the first
    // kill left it.
    for (id, op, done) in [
        (&to_disconnect, "disconnect", Some("disconnected")),
        (&to_connect, "connect", Some("connected")),
        (&to_logout, "logout", Some("logged_out")),
        (&to_delete, "delete", None),
    ] {
        let before = rig.settled(id).await.unwrap()["status"].clone();
        kill_during(&rig, gw, id, op, "lifecycle call started").await;
        gw = rig.start_gateway().await;
        // Killed as the call started: the kill lands before the request is
        // recorded (the caller got no answer, nothing changes) or, on a
        // loaded machine, just after (then the restart finishes it) —
        // never anything in between.
        let status = rig
            .settled(id)
            .await
            .map(|s| s["status"].as_str().unwrap_or_default().to_owned());
        let status = if status.as_deref() == before.as_str() {
            status
        } else {
            rig.wait_for(id, |s| {
                s.as_ref().map(|s| s["status"].as_str().unwrap_or_default()) == done
            })
            .await
            .map(|s| s["status"].as_str().unwrap_or_default().to_owned())
        };
        assert!(
            status.as_deref() == before.as_str() || status.as_deref() == done,
            "{op} of {id} killed as it started left {status:?}"
        );
        rig.assert_truthful(&ids).await;

        kill_during(&rig, gw, id, op, "lifecycle request recorded").await;
        gw = rig.start_gateway().await;
        // Recorded: what the user asked for is done by the restart (the
        // session may show `disconnected` — true: linked, offline — until
        // the resume has finished a pending logout or delete).
        let status = rig
            .wait_for(id, |s| {
                s.as_ref().map(|s| s["status"].as_str().unwrap_or_default()) == done
            })
            .await
            .map(|s| s["status"].as_str().unwrap().to_owned());
        eprintln!(
            "faults: kill -9 during {op}: {}",
            status.as_deref().unwrap_or("deleted")
        );
        rig.assert_truthful(&ids).await;
    }
    rig.assert_keys_kept(&ids).await;
    rig.assert_truthful(&ids).await;

    // kill -9 of wa-sim while sessions are connected: an outage, not a wipe.
    let before: Vec<Option<Value>> = {
        let mut v = Vec::new();
        for id in &ids {
            v.push(rig.settled(id).await);
        }
        v
    };
    sim.kill_nine();
    // The gateway sees the connections drop …
    rig.wait_for(&bystander, |s| s.as_ref().unwrap()["status"] != "connected")
        .await;
    sim = rig.start_sim();
    // … and every session that was connected is connected again, logged in
    // with the keys wa-sim kept.
    for (id, was) in ids.iter().zip(&before) {
        if was.as_ref().is_some_and(|s| s["status"] == "connected") {
            let s = rig
                .wait_for(id, |s| s.as_ref().unwrap()["status"] == "connected")
                .await;
            assert!(s.unwrap()["jid"].is_string());
        }
    }
    rig.assert_truthful(&ids).await;

    // Messages both ways across a kill -9 of the gateway (paced at 5 a
    // second, so accepted ones are still queued when it comes).
    let gw = messages::no_message_lost_or_duplicated(&rig, gw, &bystander).await;
    rig.assert_truthful(&ids).await;
    // A burst of group messages from members across a kill -9.
    let gw = groups::no_group_message_lost_or_duplicated(&rig, gw, &bystander).await;
    rig.assert_truthful(&ids).await;
    gw.kill_nine();
    sim.kill_nine();
}
