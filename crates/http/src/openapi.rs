//! The OpenAPI 3.1 document of the whole API, generated from the handlers'
//! annotations (so it cannot drift from the routes).

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::dto;
use crate::routes::{api_keys, contacts, ops, sessions};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description =
            Some("A login JWT minted by the frontend, or an API key `wgk_…`.".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wagate",
        description = "Multi-tenant WhatsApp gateway. Every `/api/v1` route needs `Authorization: Bearer <token>` (login JWT or `wgk_` API key). Every non-2xx answer has the body `{\"error\": {\"code\", \"message\", \"details\"}}`; every answer carries `X-Request-Id`. Bodies are limited to 64 KiB.",
        license(name = "Apache-2.0")
    ),
    paths(
        sessions::create, sessions::list, sessions::get, sessions::delete,
        sessions::connect, sessions::disconnect, sessions::logout, sessions::qr_code, sessions::pairing_code,
        contacts::picture, contacts::about, contacts::block, contacts::unblock, contacts::blocklist,
        api_keys::create, api_keys::list, api_keys::revoke,
        ops::healthz, ops::readyz, ops::openapi, ops::docs, ops::metrics,
    ),
    components(schemas(
        dto::SessionBody, dto::LastErrorBody, dto::SessionList, dto::CreateSessionRequest, dto::QrBody,
        dto::PairingCodeRequest, dto::PairingCodeBody, dto::PictureBody, dto::AboutBody, dto::BlocklistBody,
        dto::BlockedBody, dto::CreateApiKeyRequest, dto::ApiKeyBody, dto::CreatedApiKeyBody, dto::ApiKeyList,
        dto::ErrorEnvelope, dto::ErrorBody,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "sessions", description = "Linked WhatsApp devices and their lifecycle."),
        (name = "contacts", description = "Live lookups and actions; the session must be connected (else 501)."),
        (name = "api-keys", description = "API keys of the caller's organization."),
        (name = "operations", description = "Health, readiness, documents and metrics; no authentication."),
    )
)]
struct ApiDoc;

/// The OpenAPI document as a value.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The OpenAPI document as pretty JSON.
pub fn json() -> String {
    document()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn document_lists_every_route_of_the_contract() {
        let doc: serde_json::Value = serde_json::from_str(&super::json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let paths = doc["paths"].as_object().unwrap();
        for (path, method) in [
            ("/api/v1/sessions", "post"),
            ("/api/v1/sessions", "get"),
            ("/api/v1/sessions/{sessionId}", "get"),
            ("/api/v1/sessions/{sessionId}", "delete"),
            ("/api/v1/sessions/{sessionId}/connect", "post"),
            ("/api/v1/sessions/{sessionId}/disconnect", "post"),
            ("/api/v1/sessions/{sessionId}/logout", "post"),
            ("/api/v1/sessions/{sessionId}/qr", "get"),
            ("/api/v1/sessions/{sessionId}/pairing-code", "post"),
            ("/api/v1/sessions/{sessionId}/contacts/{jid}/picture", "get"),
            ("/api/v1/sessions/{sessionId}/contacts/{jid}/about", "get"),
            ("/api/v1/sessions/{sessionId}/contacts/{jid}/block", "post"),
            (
                "/api/v1/sessions/{sessionId}/contacts/{jid}/unblock",
                "post",
            ),
            ("/api/v1/sessions/{sessionId}/blocklist", "get"),
            ("/api/v1/api-keys", "post"),
            ("/api/v1/api-keys", "get"),
            ("/api/v1/api-keys/{id}", "delete"),
            ("/healthz", "get"),
            ("/readyz", "get"),
            ("/openapi.json", "get"),
            ("/docs", "get"),
            ("/metrics", "get"),
        ] {
            assert!(
                paths.get(path).and_then(|p| p.get(method)).is_some(),
                "{method} {path} missing"
            );
        }
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }
}
