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
