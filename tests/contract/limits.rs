//! Request limits per credential (`limits.*`): over its limit a credential
//! gets `429 rate_limited` with `Retry-After`, and no other credential
//! notices.

use std::sync::Arc;
use std::time::Duration;

use crate::support::{AUDIENCE, Frontend, ISSUER, TestApp, assert_error, json, test_config};
use reqwest::{Response, StatusCode};
use serde_json::json;

/// One token every 10 s, bursts of 3: a fourth request at once is refused
/// for (about) 10 s, long enough that no test machine refills in between.
const RATE: f64 = 0.1;
const BURST: u32 = 3;

async fn limited_app(frontend: Option<&Frontend>) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let mut config = test_config(&dir);
    config.limits.requests_per_second = RATE;
    config.limits.burst = BURST;
    if let Some(frontend) = frontend {
        config.auth.jwt.jwks_url = Some(frontend.jwks_url.clone());
        config.auth.jwt.issuer = Some(ISSUER.into());
        config.auth.jwt.audience = Some(AUDIENCE.into());
    }
    let app = TestApp::spawn_with(config, dir).await;
    // /readyz is not limited: wait for the key set when there is one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.get("/readyz", "").await.status() != StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app
}

/// Asserts a 429 whose `Retry-After` and `details.retryAfterSecs` agree
/// (whole seconds, 1 to 10 at this rate).
async fn assert_rate_limited(res: Response) {
    let retry_after: u64 = res
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("whole seconds");
    assert!(
        (1..=10).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    let error = assert_error(res, 429, "rate_limited").await;
    assert_eq!(error["details"]["retryAfterSecs"], retry_after, "{error}");
}

#[tokio::test]
async fn an_api_key_over_its_limit_gets_429_and_other_keys_do_not() {
    let app = limited_app(None).await;
    let key = app.key("acme", "read").await;
    let other = app.key("acme", "read").await;

    for n in 0..BURST {
        let res = app.get("/api/v1/sessions", &key).await;
        assert_eq!(res.status(), StatusCode::OK, "request {n} of the burst");
    }
    assert_rate_limited(app.get("/api/v1/sessions", &key).await).await;
    // Any route of the scope, whatever it would have answered.
    assert_rate_limited(app.get("/api/v1/sessions/sess_bad", &key).await).await;

    // Another key of the same organization has its own bucket.
    assert_eq!(
        app.get("/api/v1/sessions", &other).await.status(),
        StatusCode::OK
    );
    // A bad token is still 401 (authentication comes first, and takes nothing).
    assert_error(
        app.get("/api/v1/sessions", "wgk_nope").await,
        401,
        "unauthorized",
    )
    .await;
    // Operations routes are not limited.
    for _ in 0..BURST + 2 {
        assert_eq!(app.get("/healthz", "").await.status(), StatusCode::OK);
    }

    let metrics = app.get("/metrics", "").await.text().await.expect("text");
    assert!(
        metrics.contains(r#"wagate_http_rate_limited_total{kind="api_key"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"route="/api/v1/sessions",status="429"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn people_are_limited_by_organization_and_subject() {
    let frontend = Frontend::start().await;
    let app = limited_app(Some(&frontend)).await;
    let token = |org: &str, sub: &str| {
        frontend.token(
            "ec-1",
            json!({ "org_id": org, "role": "viewer", "sub": sub }),
        )
    };
    let alice = token("acme", "alice");

    for _ in 0..BURST {
        let res = app.get("/api/v1/sessions", &alice).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_rate_limited(app.get("/api/v1/sessions", &alice).await).await;
    // A fresh token of the same person shares the bucket …
    assert_rate_limited(app.get("/api/v1/sessions", &token("acme", "alice")).await).await;
    // … another person, or the same subject in another organization, does not.
    for other in [token("acme", "bob"), token("globex", "alice")] {
        let res = app.get("/api/v1/sessions", &other).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(json(res).await["data"], json!([]));
    }
}
