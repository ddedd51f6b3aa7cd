//! Shared helpers of the contract tests: start the real application on a
//! free port with a fresh SQLite database, on the fake WhatsApp adapter or
//! on the live one against an in-process wa-sim, mint API keys, and make
//! requests.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use tempfile::TempDir;
use wagate::{Application, Config};
use wagate_app::{Gateway, NewApiKeyRequest};
use wagate_domain::{ApiKeyName, CapabilitySet, OrgId};
use wagate_domain::{Jid, MessageType, SessionId};
use wagate_whatsapp_port::{
    BUILTIN_WORLD, FakeAction, FakeWhatsApp, OutgoingContent, OutgoingMedia,
};
use wagate_whatsapp_sim::{Simulator, SimulatorHandle, World};

/// The tests of an `on_both_adapters!` block as module `$module`, each
/// with an app started by `TestApp::$spawn` and the block's tuning.
macro_rules! adapter_tests {
    ($module:ident, $spawn:ident, $( async fn $name:ident($app:ident $(, $tune:expr)?) $body:block )*) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let $app = crate::support::TestApp::$spawn(|_config| {
                        $( let tune: fn(&mut wagate::Config) = $tune; tune(_config); )?
                    })
                    .await;
                    $body
                }
            )*
        }
    };
}

/// The built-in world's phone: every QR-linked session becomes this account.
pub const FAKE_PHONE_JID: &str = "15550001111@s.whatsapp.net";
/// Its number.
pub const FAKE_PHONE: &str = "15550001111";

/// The fake-only contact of the built-in world that reads (and, on the
/// fake, answers) everything it is sent.
pub const READER: &str = "14155550142@s.whatsapp.net";

/// The built-in world as the simulator plays it in these tests: with
/// [`READER`], who reads what it gets at once (the simulator's contacts
/// never answer by themselves). `readsAfterMs` is a simulator-only field
/// the fake's fixtures format refuses, hence not in `BUILTIN_WORLD` nor
/// `examples/world.json`.
pub fn sim_world() -> World {
    let mut world: Value = serde_json::from_str(BUILTIN_WORLD).expect("built-in world");
    world["contacts"][READER] = serde_json::json!({ "readsAfterMs": 0 });
    World::from_json(&world.to_string()).expect("world")
}

/// A config for a live test app in `dir`, talking to `sim` (version pinned:
/// no internet; a request deadline short enough for the contact that never
/// answers, long enough for a loaded 2-core machine).
pub fn live_config(dir: &TempDir, sim: &SimulatorHandle) -> Config {
    let mut config = test_config(dir);
    config.whatsapp.adapter = wagate::config::AdapterKind::Live;
    config.whatsapp.live.url = Some(sim.url());
    config.whatsapp.live.version = Some("2.3000.1042742319".into());
    config.whatsapp.request_timeout_secs = 5;
    config
}

/// A running gateway.
#[derive(Debug)]
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    /// A client without default headers.
    pub client: reqwest::Client,
    /// The use cases, to mint API keys without the CLI.
    pub gateway: Arc<Gateway>,
    /// Keeps the database alive as long as the app.
    pub dir: Arc<TempDir>,
    /// The simulator the live adapter talks to (`None` on the fake).
    pub sim: Option<Arc<SimulatorHandle>>,
    /// The fake adapter (`None` on the live one).
    pub fake: Option<Arc<FakeWhatsApp>>,
    stop: wagate::StopHandle,
    /// The thread the gateway runs on, with a runtime of its own: it
    /// outlives the test's runtime, so it can still shut down (server
    /// workers, background tasks, database pools) once the test is over.
    running: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stopped from a thread of its own: the test's runtime may be
        // ending (its tasks never run again) or blocked here. The folder
        // (the SQLite file) stays until the gateway has closed it.
        let Some(running) = self.running.take() else {
            return;
        };
        let (stop, dir) = (self.stop.clone(), self.dir.clone());
        let stopping = std::thread::Builder::new()
            .name("test-app-stop".into())
            .spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() {
                    rt.block_on(stop.stop(false));
                }
                if let Ok(Err(e)) = running.join() {
                    eprintln!("test gateway stopped with an error: {e:#}");
                }
                drop(dir);
            });
        if let Err(e) = stopping {
            eprintln!("cannot stop the test gateway: {e}");
        }
    }
}

/// The database the test apps of a test binary run on (its `BACKEND`;
/// each binary names one).
#[allow(dead_code)]
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    /// A SQLite file in the app's folder.
    Sqlite,
    /// A database of its own on the binary's throwaway PostgreSQL server.
    Postgres,
}

/// The database of the app whose folder is `dir`: the same for the same
/// folder (a test restarting its gateway finds its data again).
pub fn database_url(dir: &TempDir) -> String {
    match crate::BACKEND {
        Backend::Sqlite => format!("sqlite://{}/wagate.db", dir.path().display()),
        Backend::Postgres => {
            static NAMES: std::sync::Mutex<Vec<std::path::PathBuf>> =
                std::sync::Mutex::new(Vec::new());
            let Some(server) = wagate_test_postgres::shared() else {
                // Every test of this binary needs PostgreSQL: all are skipped
                // (`shared` said why; with WAGATE_REQUIRE_POSTGRES=1 it failed).
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    b"SKIPPED: the contract tests on PostgreSQL\n",
                );
                std::process::exit(0);
            };
            let mut names = NAMES
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = match names.iter().position(|p| p == dir.path()) {
                Some(n) => n,
                None => {
                    names.push(dir.path().to_owned());
                    names.len() - 1
                }
            };
            server.database(&format!("contract_{}_{n}", std::process::id()))
        }
    }
}

/// A config for a test app in `dir`.
pub fn test_config(dir: &TempDir) -> Config {
    let mut config = Config::default();
    config.server.bind = "127.0.0.1:0".into();
    config.server.workers = Some(1);
    config.database.url = wagate::config::Secret::new(database_url(dir));
    if let Backend::Postgres = crate::BACKEND {
        config.cluster.secret = Some(wagate::config::Secret::new(
            "contract-tests-cluster-secret-0123456789".into(),
        ));
    }
    config.whatsapp.adapter = wagate::config::AdapterKind::Fake;
    // Webhooks and media URLs of the tests point at 127.0.0.1.
    config.webhooks.allow_private_targets = true;
    config.messages.allow_private_media_urls = true;
    config
}

impl TestApp {
    /// A gateway on the built-in fake world.
    pub async fn spawn() -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let config = test_config(&dir);
        Self::spawn_with(config, dir).await
    }

    /// A gateway on `config`, whose database lives in `dir`.
    pub async fn spawn_with(config: Config, dir: Arc<TempDir>) -> Self {
        Self::spawn_placed(config, dir, None).await
    }

    /// A gateway on `config` whose sessions' live calls run where
    /// `ownership` says (the database's own answer when `None`).
    pub async fn spawn_placed(
        config: Config,
        dir: Arc<TempDir>,
        ownership: Option<Arc<dyn wagate_store::SessionOwnership>>,
    ) -> Self {
        let (ready, built) = tokio::sync::oneshot::channel();
        let running = std::thread::Builder::new()
            .name("test-app".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                let result = rt.block_on(async move {
                    let built = match ownership {
                        Some(ownership) => {
                            Application::build_with_ownership(config, ownership).await
                        }
                        None => Application::build(config).await,
                    };
                    let app = match built {
                        Ok(app) => app,
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return Ok(());
                        }
                    };
                    let handles = (
                        app.port(),
                        app.gateway(),
                        app.fake_whatsapp(),
                        app.stop_handle(),
                    );
                    let _ = ready.send(Ok(handles));
                    app.run_until_stopped().await
                });
                // Blocking work still under way is not waited for long.
                rt.shutdown_timeout(Duration::from_secs(5));
                result
            })
            .expect("gateway thread");
        let (port, gateway, fake, stop) = built
            .await
            .expect("gateway thread")
            .expect("application builds");
        let running = Some(running);
        let address = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            address,
            client,
            gateway,
            dir,
            sim: None,
            fake,
            stop,
            running,
        }
    }

    /// A new API key of `org` with `caps` (comma-separated).
    pub async fn key(&self, org: &str, caps: &str) -> String {
        let created = self
            .gateway
            .issue_api_key(
                &OrgId::parse(org).expect("org"),
                NewApiKeyRequest {
                    name: ApiKeyName::parse("test").expect("name"),
                    capabilities: CapabilitySet::parse_list(caps).expect("caps"),
                    expires_at: None,
                },
            )
            .await
            .expect("key");
        created.secret.expose().to_owned()
    }

    /// A request to `path` with `token` as bearer (none when empty).
    pub fn req(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        let r = self
            .client
            .request(method, format!("{}{path}", self.address));
        if token.is_empty() {
            r
        } else {
            r.bearer_auth(token)
        }
    }

    /// GET with a bearer token.
    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.req(Method::GET, path, token)
            .send()
            .await
            .expect("request")
    }

    /// POST with an optional JSON body.
    pub async fn post(&self, path: &str, token: &str, body: Option<Value>) -> Response {
        let r = self.req(Method::POST, path, token);
        let r = match body {
            Some(b) => r.json(&b),
            None => r,
        };
        r.send().await.expect("request")
    }

    /// DELETE.
    pub async fn delete(&self, path: &str, token: &str) -> Response {
        self.req(Method::DELETE, path, token)
            .send()
            .await
            .expect("request")
    }

    /// Creates a session and returns its id.
    pub async fn create_session(&self, token: &str) -> String {
        let res = self
            .post(
                "/api/v1/sessions",
                token,
                Some(serde_json::json!({ "name": "test" })),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        json(res).await["id"].as_str().expect("id").to_owned()
    }

    /// Stops the gateway as SIGTERM would and waits until it has closed
    /// everything (its WhatsApp clients included), like a process that
    /// exited: a restart in a test must not overlap the old instance.
    pub async fn shut_down(mut self) {
        self.stop.stop(true).await;
        if let Some(running) = self.running.take() {
            tokio::task::spawn_blocking(move || running.join())
                .await
                .expect("join")
                .expect("gateway thread")
                .expect("gateway stopped cleanly");
        }
    }

    /// A gateway on the live adapter, talking to a new simulator of
    /// [`sim_world`].
    pub async fn spawn_live() -> Self {
        Self::spawn_live_tuned(|_| {}).await
    }

    /// A gateway on the built-in fake world, with `tune` applied to its
    /// config.
    pub async fn spawn_tuned(tune: impl FnOnce(&mut Config)) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let mut config = test_config(&dir);
        tune(&mut config);
        Self::spawn_with(config, dir).await
    }

    /// A gateway on the live adapter, talking to a new simulator of
    /// [`sim_world`], with `tune` applied to its config.
    pub async fn spawn_live_tuned(tune: impl FnOnce(&mut Config)) -> Self {
        let sim = Arc::new(Simulator::start(sim_world()).await.expect("simulator"));
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let mut config = live_config(&dir, &sim);
        tune(&mut config);
        Self::spawn_live_with(config, dir, sim).await
    }

    /// A gateway on `config` (see [`live_config`]) talking to `sim`.
    pub async fn spawn_live_with(
        config: Config,
        dir: Arc<TempDir>,
        sim: Arc<SimulatorHandle>,
    ) -> Self {
        let mut app = Self::spawn_with(config, dir).await;
        app.sim = Some(sim);
        app
    }

    /// Shows the pairing session's QR code and has the phone scan it: on
    /// the fake, showing it is enough; on the simulator, its admin API plays
    /// the phone. Returns the session once it is connected.
    pub async fn link(&self, id: &str, token: &str) -> Value {
        // A slow machine may see the code rotate between showing and scanning.
        for attempt in 1..=3 {
            let res = self.get(&format!("/api/v1/sessions/{id}/qr"), token).await;
            assert_eq!(res.status(), StatusCode::OK);
            let qr = json(res).await;
            let Some(sim) = &self.sim else { break };
            let code = qr["code"].as_str().expect("code");
            match sim.admin().scan_qr(code, FAKE_PHONE).await {
                Ok(_) => break,
                Err(e) if attempt < 3 => eprintln!("scan attempt {attempt} failed: {e}"),
                Err(e) => panic!("scan failed: {e}"),
            }
        }
        self.wait_for_status(id, token, "connected").await
    }

    /// Creates a session, connects it and links it: a connected session's id.
    pub async fn connected_session(&self, token: &str) -> String {
        let id = self.create_session(token).await;
        let res = self
            .post(&format!("/api/v1/sessions/{id}/connect"), token, None)
            .await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        self.wait_for_status(&id, token, "pairing").await;
        let s = self.link(&id, token).await;
        assert_eq!(s["jid"], FAKE_PHONE_JID);
        id
    }

    /// Polls the session until `status` (the adapter's work happens in the
    /// background).
    pub async fn wait_for_status(&self, id: &str, token: &str, status: &str) -> Value {
        self.wait_for(id, token, |s| s["status"] == status).await
    }

    /// Polls the session until `done` holds for it, failing after 30 s (a
    /// generous bound for a loaded machine; it returns as soon as it holds).
    pub async fn wait_for(&self, id: &str, token: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let s = json(self.get(&format!("/api/v1/sessions/{id}"), token).await).await;
            if done(&s) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "session never got there: {s}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The body as JSON.
pub async fn json(res: Response) -> Value {
    res.json().await.expect("JSON body")
}

/// Asserts an error envelope with `status` and `code`; returns the `error` object.
pub async fn assert_error(res: Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "unexpected status");
    assert!(
        res.headers().get("x-request-id").is_some(),
        "every answer has X-Request-Id"
    );
    let body = json(res).await;
    let error = body["error"].clone();
    assert_eq!(error["code"], code, "body: {body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "body: {body}"
    );
    assert!(
        error["details"].is_object(),
        "details is always an object: {body}"
    );
    error
}

/// A well-formed session id that no test creates.
pub const GHOST: &str = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX";
/// A well-formed webhook id that no test creates.
pub const GHOST_WEBHOOK: &str = "wh_01JBZ5T0Q4M6Y8V2K3N7R9S1WX";

/// The built-in world's team group (the account is an admin of it).
pub const GROUP: &str = "120363025246125486@g.us";

/// A well-formed message id that no test sends.
pub const GHOST_MESSAGE: &str = "3EB0C0FFEE0123456789AB";

/// Every `/api/v1` route (on `session`) and the capability it needs, as
/// api.md and messaging.md list them.
pub fn routes(session: &str) -> Vec<(Method, String, &'static str)> {
    let s = format!("/api/v1/sessions/{session}");
    let c = format!("{s}/contacts/14155550123@s.whatsapp.net");
    let w = format!("/api/v1/webhooks/{GHOST_WEBHOOK}");
    let m = format!("{s}/messages/{GHOST_MESSAGE}");
    let g = format!("{s}/groups/{GROUP}");
    vec![
        (Method::POST, "/api/v1/sessions".into(), "manage"),
        (Method::GET, "/api/v1/sessions".into(), "read"),
        (Method::GET, s.clone(), "read"),
        (Method::DELETE, s.clone(), "manage"),
        (Method::POST, format!("{s}/connect"), "manage"),
        (Method::POST, format!("{s}/disconnect"), "manage"),
        (Method::POST, format!("{s}/logout"), "manage"),
        (Method::GET, format!("{s}/qr"), "manage"),
        (Method::POST, format!("{s}/pairing-code"), "manage"),
        (Method::GET, format!("{c}/picture"), "read"),
        (Method::GET, format!("{c}/about"), "read"),
        (Method::POST, format!("{c}/block"), "send"),
        (Method::POST, format!("{c}/unblock"), "send"),
        (Method::GET, format!("{s}/blocklist"), "read"),
        (Method::POST, format!("{c}/presence/subscribe"), "read"),
        (
            Method::POST,
            format!("{s}/chats/14155550123@s.whatsapp.net/presence"),
            "send",
        ),
        (Method::PUT, format!("{s}/presence"), "send"),
        (Method::POST, format!("{s}/messages"), "send"),
        (Method::GET, format!("{s}/messages"), "read"),
        (Method::GET, m.clone(), "read"),
        (Method::PATCH, m.clone(), "send"),
        (Method::DELETE, m.clone(), "send"),
        (Method::GET, format!("{m}/media"), "read"),
        (Method::GET, format!("{m}/receipts"), "read"),
        (Method::POST, format!("{m}/reaction"), "send"),
        (Method::GET, format!("{s}/groups"), "read"),
        (Method::POST, format!("{s}/groups"), "send"),
        (Method::POST, format!("{s}/groups/join"), "send"),
        (Method::GET, g.clone(), "read"),
        (Method::PATCH, g.clone(), "send"),
        (Method::POST, format!("{g}/participants"), "send"),
        (Method::GET, format!("{g}/invite"), "send"),
        (Method::POST, format!("{g}/invite/revoke"), "send"),
        (Method::POST, format!("{g}/leave"), "send"),
        (Method::GET, format!("{g}/requests"), "send"),
        (Method::POST, format!("{g}/requests"), "send"),
        (
            Method::POST,
            format!("{s}/chats/14155550123@s.whatsapp.net/read"),
            "send",
        ),
        (Method::POST, "/api/v1/api-keys".into(), "admin"),
        (Method::GET, "/api/v1/api-keys".into(), "admin"),
        (
            Method::DELETE,
            "/api/v1/api-keys/key_01JBZ5T0Q4M6Y8V2K3N7R9S1WX".into(),
            "admin",
        ),
        (Method::GET, "/api/v1/events".into(), "read"),
        (Method::GET, "/api/v1/events/stream".into(), "read"),
        (Method::POST, "/api/v1/webhooks".into(), "admin"),
        (Method::GET, "/api/v1/webhooks".into(), "admin"),
        (Method::GET, w.clone(), "admin"),
        (Method::PATCH, w.clone(), "admin"),
        (Method::DELETE, w.clone(), "admin"),
        (Method::POST, format!("{w}/rotate-secret"), "admin"),
        (Method::POST, format!("{w}/test"), "admin"),
        (Method::GET, format!("{w}/deliveries"), "admin"),
        (Method::POST, format!("{w}/replay"), "admin"),
    ]
}

/// A valid body for the routes of [`routes`] that need one.
pub fn body_for(method: &Method, path: &str) -> Option<Value> {
    if path.ends_with("pairing-code") {
        Some(serde_json::json!({ "phoneNumber": "+1 415 555 0123" }))
    } else if path == "/api/v1/api-keys" {
        Some(serde_json::json!({ "name": "k", "capabilities": ["admin"] }))
    } else if path == "/api/v1/webhooks" && method == Method::POST {
        Some(serde_json::json!({ "url": "http://127.0.0.1:9/hook", "events": ["*"] }))
    } else if path.starts_with("/api/v1/webhooks/") && method == Method::PATCH {
        Some(serde_json::json!({ "description": "changed" }))
    } else if path.ends_with("/messages") && method == Method::POST {
        Some(
            serde_json::json!({ "to": "14155550123@s.whatsapp.net", "type": "text", "text": "hi" }),
        )
    } else if path.contains("/messages/") && method == Method::PATCH {
        Some(serde_json::json!({ "text": "corrected" }))
    } else if path.ends_with("/chats/14155550123@s.whatsapp.net/presence") {
        Some(serde_json::json!({ "state": "typing" }))
    } else if path.ends_with("/presence") && method == Method::PUT {
        Some(serde_json::json!({ "available": true }))
    } else if path.ends_with("/groups") && method == Method::POST {
        Some(
            serde_json::json!({ "subject": "Team", "participants": ["14155550123@s.whatsapp.net"] }),
        )
    } else if path.ends_with("/groups/join") {
        Some(serde_json::json!({ "code": "WagateOpenInvite1" }))
    } else if path.contains("/groups/") && method == Method::PATCH {
        Some(serde_json::json!({ "subject": "Renamed" }))
    } else if path.ends_with("/participants") {
        Some(serde_json::json!({ "action": "add", "participants": ["14155550123@s.whatsapp.net"] }))
    } else if path.ends_with("/requests") && method == Method::POST {
        Some(
            serde_json::json!({ "action": "approve", "participants": ["14155550177@s.whatsapp.net"] }),
        )
    } else if path.ends_with("/reaction") {
        Some(serde_json::json!({ "emoji": "👍" }))
    } else if path.ends_with("/read") {
        Some(serde_json::json!({ "messageIds": [GHOST_MESSAGE] }))
    } else if path.ends_with("/replay") {
        Some(serde_json::json!({ "after": "0" }))
    } else {
        None
    }
}

impl TestApp {
    /// Calls one route of [`routes`] with its body.
    pub async fn call(&self, method: &Method, path: &str, token: &str) -> Response {
        let mut r = self.req(method.clone(), path, token);
        if let Some(b) = body_for(method, path) {
            r = r.json(&b);
        }
        r.send().await.expect("request")
    }
}

/// A frontend's JWKS endpoint on a free local port, signing tokens with the
/// real test keys of `crates/auth/tests/keys` (RSA 2048, P-256, Ed25519).
pub struct Frontend {
    /// The JWKS URL.
    pub jwks_url: String,
    handle: actix_web::dev::ServerHandle,
}

impl std::fmt::Debug for Frontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frontend")
            .field("jwks_url", &self.jwks_url)
            .finish()
    }
}

impl Drop for Frontend {
    fn drop(&mut self) {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let handle = self.handle.clone();
            rt.spawn(async move { handle.stop(false).await });
        }
    }
}

fn key_file(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../crates/auth/tests/keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("test key")
}

/// The issuer and audience the test frontend puts in its tokens.
pub const ISSUER: &str = "https://frontend.test";
/// See [`ISSUER`].
pub const AUDIENCE: &str = "wagate";

impl Frontend {
    /// Serves the JWKS of keys `rsa-1`, `ec-1` and `ed-1`.
    pub async fn start() -> Self {
        let keys: Vec<Value> = ["rsa-1", "ec-1", "ed-1"]
            .iter()
            .map(|k| serde_json::from_slice(&key_file(&format!("{k}.jwk.json"))).expect("jwk"))
            .collect();
        let body = serde_json::json!({ "keys": keys }).to_string();
        let server = actix_web::HttpServer::new(move || {
            let body = body.clone();
            actix_web::App::new().route(
                "/.well-known/jwks.json",
                actix_web::web::get().to(move || {
                    let body = body.clone();
                    async move {
                        actix_web::HttpResponse::Ok()
                            .content_type("application/json")
                            .body(body)
                    }
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .expect("bind");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            jwks_url: format!("http://127.0.0.1:{port}/.well-known/jwks.json"),
            handle,
        }
    }

    /// A login JWT signed with `kid` (`rsa-1`, `ec-1` or `ed-1`) carrying
    /// `claims` on top of valid `iss`, `aud`, `exp` and `sub`.
    pub fn token(&self, kid: &str, claims: Value) -> String {
        use jsonwebtoken::{Algorithm, EncodingKey, Header};
        let pem = key_file(&format!("{kid}.key.pem"));
        let (alg, key) = match kid {
            "rsa-1" => (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem)),
            "ec-1" => (Algorithm::ES256, EncodingKey::from_ec_pem(&pem)),
            _ => (Algorithm::EdDSA, EncodingKey::from_ed_pem(&pem)),
        };
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs();
        let mut body = serde_json::json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 600 });
        if let (Some(b), Some(extra)) = (body.as_object_mut(), claims.as_object()) {
            for (k, v) in extra {
                b.insert(k.clone(), v.clone());
            }
        }
        jsonwebtoken::encode(&header, &body, &key.expect("key")).expect("sign")
    }
}

impl TestApp {
    /// A gateway that accepts login JWTs from `frontend`, ready (key set
    /// loaded) when this returns.
    pub async fn spawn_with_frontend(frontend: &Frontend) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let mut config = test_config(&dir);
        config.auth.jwt.jwks_url = Some(frontend.jwks_url.clone());
        config.auth.jwt.issuer = Some(ISSUER.into());
        config.auth.jwt.audience = Some(AUDIENCE.into());
        let app = Self::spawn_with(config, dir).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while app.get("/readyz", "").await.status() != StatusCode::OK {
            assert!(tokio::time::Instant::now() < deadline, "JWKS never loaded");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        app
    }
}

/// What a contact got from the account: a message (its id) or a reaction
/// (its emoji, empty when removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    /// A message, by id.
    Message(String),
    /// A reaction.
    Reaction(String),
}

/// The phone number of a phone-number JID (`14155550123@s.whatsapp.net`).
fn phone_of(jid: &str) -> &str {
    jid.split('@').next().expect("a JID")
}

/// Fails with `what` after 30 s unless `check` returns something first.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl TestApp {
    /// The world contact `from` (a phone-number JID) writes `text` to the
    /// account of `session`; returns the message id.
    pub async fn contact_writes(&self, session: &str, from: &str, text: &str) -> String {
        self.contact_sends(session, from, serde_json::json!({ "text": text }))
            .await
    }

    /// The world contact `from` sends an image to the account of `session`;
    /// returns the message id.
    pub async fn contact_sends_image(
        &self,
        session: &str,
        from: &str,
        bytes: &[u8],
        mimetype: &str,
        caption: &str,
    ) -> String {
        use base64::Engine;
        let data = base64::engine::general_purpose::STANDARD.encode(bytes);
        self.contact_sends(
            session,
            from,
            serde_json::json!({
                "image": { "data": data, "mimetype": mimetype },
                "caption": caption,
            }),
        )
        .await
    }

    /// `message` (the simulator admin's body without `from`: `{"text"}` or
    /// `{"image": {"data", "mimetype"}, "caption"}`) from the contact
    /// `from` to the account of `session`: on the live adapter the
    /// simulator's contact encrypts and sends it
    /// (`POST /admin/accounts/{phone}/messages`), on the fake
    /// [`FakeWhatsApp::deliver_from`] hands it over. Returns its id.
    async fn contact_sends(&self, session: &str, from: &str, mut message: Value) -> String {
        if let Some(sim) = &self.sim {
            message["from"] = phone_of(from).into();
            return sim
                .admin()
                .send_message(FAKE_PHONE, &message)
                .await
                .expect("the simulator's contact writes");
        }
        let content = match message["text"].as_str() {
            Some(text) => OutgoingContent::Text(text.to_owned()),
            None => {
                use base64::Engine;
                let image = &message["image"];
                OutgoingContent::Media(OutgoingMedia {
                    kind: MessageType::Image,
                    mimetype: image["mimetype"].as_str().expect("mimetype").to_owned(),
                    filename: None,
                    caption: message["caption"].as_str().map(str::to_owned),
                    voice_note: false,
                    data: base64::engine::general_purpose::STANDARD
                        .decode(image["data"].as_str().expect("data"))
                        .expect("base64"),
                })
            }
        };
        self.fake_adapter()
            .deliver_from(
                &SessionId::parse(session).expect("session id"),
                &Jid::parse(from).expect("jid"),
                content,
            )
            .await
            .expect("the fake's contact writes")
            .as_str()
            .to_owned()
    }

    fn fake_adapter(&self) -> &FakeWhatsApp {
        self.fake.as_deref().expect("a fake or a live gateway")
    }

    /// What the contact `to` (a phone-number JID) got from the account of
    /// `session` so far, oldest first: on the live adapter what the
    /// simulator's contact decrypted, on the fake what the fake sent.
    pub async fn contact_got(&self, session: &str, to: &str) -> Vec<Got> {
        if let Some(sim) = &self.sim {
            let chat = sim
                .admin()
                .messages(FAKE_PHONE, phone_of(to))
                .expect("the simulator's chat");
            return chat["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|m| match m["type"].as_str() {
                    Some("reaction") => Got::Reaction(m["text"].as_str().unwrap_or("").into()),
                    _ => Got::Message(m["id"].as_str().expect("id").into()),
                })
                .collect();
        }
        let to = Jid::parse(to).expect("jid");
        self.fake_adapter()
            .actions(&SessionId::parse(session).expect("session id"))
            .into_iter()
            .filter_map(|a| match a {
                FakeAction::Sent { id, to: t } if t == to => Some(Got::Message(id.as_str().into())),
                FakeAction::Reacted { chat, emoji, .. } if chat == to => Some(Got::Reaction(emoji)),
                _ => None,
            })
            .collect()
    }

    /// The ids of the messages of `contact` the account of `session` sent
    /// read receipts for.
    pub async fn read_receipts_to(&self, session: &str, contact: &str) -> Vec<String> {
        if let Some(sim) = &self.sim {
            let chat = sim
                .admin()
                .messages(FAKE_PHONE, phone_of(contact))
                .expect("the simulator's chat");
            return chat["receipts"]
                .as_array()
                .expect("receipts")
                .iter()
                .filter(|r| r["type"] == "read")
                .map(|r| r["id"].as_str().expect("id").to_owned())
                .collect();
        }
        let contact = Jid::parse(contact).expect("jid");
        self.fake_adapter()
            .actions(&SessionId::parse(session).expect("session id"))
            .into_iter()
            .filter_map(|a| match a {
                FakeAction::MarkedRead { chat, ids } if chat == contact => Some(ids),
                _ => None,
            })
            .flatten()
            .map(|id| id.as_str().to_owned())
            .collect()
    }
}
