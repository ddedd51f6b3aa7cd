#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

//! Shared helpers of the contract tests: start the real application on a
//! free port with a fresh SQLite database and the fake WhatsApp adapter,
//! mint API keys, and make requests.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use tempfile::TempDir;
use wagate::{Application, Config};
use wagate_app::{Gateway, NewApiKeyRequest};
use wagate_domain::{ApiKeyName, CapabilitySet, OrgId};

/// The fake world's phone: every QR-linked session becomes this account.
pub const FAKE_PHONE_JID: &str = "15550001111@s.whatsapp.net";

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
    stop: wagate::StopHandle,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop the server's worker threads, not just the task awaiting it.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let stop = self.stop.clone();
            rt.spawn(async move { stop.stop(false).await });
        }
    }
}

/// A config for a test app in `dir`.
pub fn test_config(dir: &TempDir) -> Config {
    let mut config = Config::default();
    config.server.bind = "127.0.0.1:0".into();
    config.server.workers = Some(1);
    config.database.url =
        wagate::config::Secret::new(format!("sqlite://{}/wagate.db", dir.path().display()));
    config.whatsapp.adapter = wagate::config::AdapterKind::Fake;
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
        let app = Application::build(config)
            .await
            .expect("application builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let gateway = app.gateway();
        let stop = app.stop_handle();
        tokio::spawn(app.run_until_stopped());
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            address,
            client,
            gateway,
            dir,
            stop,
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

    /// Creates a session, connects it and lets the fake phone scan its QR:
    /// a connected session's id.
    pub async fn connected_session(&self, token: &str) -> String {
        let id = self.create_session(token).await;
        let res = self
            .post(&format!("/api/v1/sessions/{id}/connect"), token, None)
            .await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let res = self.get(&format!("/api/v1/sessions/{id}/qr"), token).await;
        assert_eq!(res.status(), StatusCode::OK);
        let s = json(self.get(&format!("/api/v1/sessions/{id}"), token).await).await;
        assert_eq!(s["status"], "connected");
        id
    }

    /// Polls the session until `status` (the adapter's work after a restart
    /// happens in the background), failing after 10 s.
    pub async fn wait_for_status(&self, id: &str, token: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let s = json(self.get(&format!("/api/v1/sessions/{id}"), token).await).await;
            if s["status"] == status {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "session never reached {status}: {s}"
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
