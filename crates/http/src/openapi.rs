//! The OpenAPI 3.1 document of the whole API, generated from the handlers'
//! annotations (so it cannot drift from the routes).

use utoipa::openapi::content::Content;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{Ref, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, RefOr};
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

/// Every `/api/v1` operation can answer 429: the rate limit is checked
/// right after authentication, for all of them. Added here, in one place,
/// so a new route cannot miss it.
struct RateLimited;

impl Modify for RateLimited {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let retry_after = HeaderBuilder::new()
            .schema(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1)),
            )
            .description(Some(
                "Whole seconds (rounded up, at least 1) until the call may be made again; \
                 the same number as `details.retryAfterSecs`.",
            ))
            .build();
        let response = Response::builder()
            .description(
                "`rate_limited`: this credential (API key, or person: organization and login-JWT \
                 subject) made more requests than `limits.requests_per_second` (bursts up to \
                 `limits.burst`) allow; or, on a route that calls WhatsApp, the session used up \
                 its `limits.whatsapp_calls_per_minute`.",
            )
            .header("Retry-After", retry_after)
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ErrorEnvelope"))),
            )
            .build();
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/api/v1/") {
                continue;
            }
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ]
            .into_iter()
            .flatten()
            {
                operation
                    .responses
                    .responses
                    .insert("429".to_owned(), RefOr::T(response.clone()));
            }
        }
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
        ops::healthz, ops::readyz, ops::openapi, ops::docs, ops::docs_file, ops::metrics,
    ),
    components(schemas(
        dto::SessionBody, dto::LastErrorBody, dto::SessionList, dto::CreateSessionRequest, dto::QrBody,
        dto::PairingCodeRequest, dto::PairingCodeBody, dto::PictureBody, dto::AboutBody, dto::BlocklistBody,
        dto::BlockedBody, dto::CreateApiKeyRequest, dto::ApiKeyBody, dto::CreatedApiKeyBody, dto::ApiKeyList,
        dto::ErrorEnvelope, dto::ErrorBody,
    )),
    modifiers(&BearerAuth, &RateLimited),
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
            ("/docs/", "get"),
            ("/metrics", "get"),
        ] {
            assert!(
                paths.get(path).and_then(|p| p.get(method)).is_some(),
                "{method} {path} missing"
            );
        }
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }

    #[test]
    fn every_api_route_takes_a_bearer_token_and_may_be_rate_limited() {
        let doc: serde_json::Value = serde_json::from_str(&super::json()).unwrap();
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if !path.starts_with("/api/v1/") {
                    assert!(
                        op["responses"].get("429").is_none(),
                        "{method} {path} is not limited"
                    );
                    continue;
                }
                operations += 1;
                // "Try it out" in Swagger UI sends the token only where the
                // operation asks for the scheme.
                assert_eq!(
                    op["security"],
                    serde_json::json!([{ "bearer": [] }]),
                    "{method} {path}"
                );
                let too_many = &op["responses"]["429"];
                assert_eq!(
                    too_many["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorEnvelope",
                    "{method} {path}"
                );
                assert_eq!(
                    too_many["headers"]["Retry-After"]["schema"]["type"],
                    "integer"
                );
            }
        }
        assert_eq!(operations, 17);
    }
}
