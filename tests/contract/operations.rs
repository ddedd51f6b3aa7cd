use crate::support::{TestApp, json};
use reqwest::StatusCode;

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz", "").await.status(), StatusCode::OK);
    let res = app.get("/readyz", "").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(json(res).await["status"], "ready");
}

#[tokio::test]
async fn openapi_document_and_docs_page() {
    let app = TestApp::spawn().await;
    let res = app.get("/openapi.json", "").await;
    assert_eq!(res.status(), StatusCode::OK);
    let doc = json(res).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/api/v1/sessions/{sessionId}/contacts/{jid}/picture"]["get"].is_object());
    // Swagger UI lives in /docs/ (its files are relative to that folder).
    let res = app.get("/docs", "").await;
    assert_eq!(res.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(res.headers()["location"], "/docs/");
    let res = app.get("/docs/", "").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = res.text().await.unwrap();
    assert!(page.contains("swagger-ui"), "{page}");
    // Everything it loads is served from here, and it reads our document.
    for file in [
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
    ] {
        assert!(page.contains(file), "{file} not on the page");
        let res = app.get(&format!("/docs/{file}"), "").await;
        assert_eq!(res.status(), StatusCode::OK, "{file}");
    }
    let init = app.get("/docs/swagger-initializer.js", "").await;
    assert!(init.text().await.unwrap().contains("/openapi.json"));
    crate::support::assert_error(app.get("/docs/nope.js", "").await, 404, "not_found").await;
}

#[tokio::test]
async fn the_dashboard_is_served_from_the_binary_under_a_strict_policy() {
    let app = TestApp::spawn().await;
    let res = app.get("/", "").await;
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(res.headers()["location"], "/ui");
    let res = app
        .req(reqwest::Method::GET, "/ui", "")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(res.headers()["content-encoding"], "gzip");
    let page = app.get("/ui/", "").await.text().await.unwrap();
    // Everything the page loads comes from here.
    for file in ["app.js", "app.css", "icon.svg"] {
        assert!(page.contains(&format!("/ui/{file}")), "{file}");
        let res = app.get(&format!("/ui/{file}"), "").await;
        assert_eq!(res.status(), StatusCode::OK, "{file}");
        assert!(res.headers().get("etag").is_some());
    }
    // The dashboard calls the API: it has no route of its own.
    crate::support::assert_error(app.get("/ui/api/v1/sessions", "").await, 404, "not_found").await;
    let res = app
        .req(reqwest::Method::POST, "/ui", "")
        .send()
        .await
        .unwrap();
    crate::support::assert_error(res, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn metrics_count_requests_and_sessions() {
    let app = TestApp::spawn().await;
    let key = app.key("acme", "read,manage").await;
    app.connected_session(&key).await;
    app.create_session(&key).await;
    app.get("/api/v1/sessions/sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX", &key)
        .await;
    let res = app.get("/metrics", "").await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert!(
        text.contains(
            r#"wagate_http_requests_total{method="POST",route="/api/v1/sessions",status="201"} 2"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"route="/api/v1/sessions/{sessionId}",status="404"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"wagate_sessions{status="connected"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"wagate_sessions{status="new"} 1"#),
        "{text}"
    );
    assert!(text.contains("wagate_http_request_duration_seconds_bucket"));
}
