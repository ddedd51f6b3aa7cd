//! Operations routes: health, readiness, OpenAPI, docs, metrics (no auth).

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, web};

use crate::docs::DOCS_PATH;
use crate::{ApiError, AppState};

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process runs.", body = Object,
        example = json!({ "status": "ok" }))))]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "The database answers and the JWKS (if configured) has loaded.",
            body = Object, example = json!({ "status": "ready" })),
        (status = 503, description = "Not ready.", body = crate::dto::ErrorEnvelope),
    ))]
pub(crate) async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let database = state.gateway.is_ready().await;
    let auth = state.authenticator.is_ready();
    if database && auth {
        Ok(HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })))
    } else {
        Err(
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "not ready")
                .detail("database", if database { "ok" } else { "unavailable" })
                .detail("auth", if auth { "ok" } else { "key set not loaded" }),
        )
    }
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document (OpenAPI 3.1).", body = Object)))]
pub(crate) async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(state.openapi_json.clone())
}

#[utoipa::path(get, path = "/docs", tag = "operations",
    responses((status = 308, description = "To `/docs/`, Swagger UI (its files are addressed relative to that folder).",
        headers(("Location" = String, description = "`/docs/`")))))]
pub(crate) async fn docs() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, DOCS_PATH))
        .finish()
}

#[utoipa::path(get, path = "/docs/", tag = "operations",
    responses(
        (status = 200, description = "Swagger UI over `/openapi.json`, served from the binary (no internet needed); \
            \"Authorize\" takes a bearer token for \"Try it out\". The files it loads are served below `/docs/`.", content_type = "text/html"),
        (status = 404, description = "No such file of Swagger UI.", body = crate::dto::ErrorEnvelope),
    ))]
pub(crate) async fn docs_file(
    state: web::Data<AppState>,
    file: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let file = state.swagger_ui.file(&file).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such file of the docs page",
        )
    })?;
    Ok(HttpResponse::Ok()
        .content_type(file.content_type)
        .body(file.bytes))
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format.", content_type = "text/plain")))]
pub(crate) async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if let Ok(counts) = state.gateway.sessions_by_status().await {
        state.metrics.set_sessions(&counts);
    }
    if let Ok(Some(figures)) = state.gateway.cluster_figures().await {
        state.metrics.set_cluster(&figures);
    }
    let text = state.metrics.render().map_err(|e| ApiError::internal(&e))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text))
}
