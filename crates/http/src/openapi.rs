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
use crate::routes::{
    api_keys, contacts, conversation, events, groups, messages, ops, polls, presence, receipts,
    sessions, webhooks,
};

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
                // A route's own 429 (a cap of its own) keeps its words,
                // followed by the limit every route has.
                let own = match operation.responses.responses.get("429") {
                    Some(RefOr::T(own)) => Some(own.description.clone()),
                    _ => None,
                };
                let mut response = response.clone();
                if let Some(own) = own {
                    response.description = format!("{own} Also: {}", response.description);
                }
                operation
                    .responses
                    .responses
                    .insert("429".to_owned(), RefOr::T(response));
            }
        }
    }
}

/// Every operation that runs on the session's owner can answer 503
/// `unavailable` with `Retry-After` (several gateways: nobody holds the
/// session right now). One response in `components.responses`, referred to
/// by each of them; an operation with a 503 of its own keeps its words,
/// followed by these.
struct OwnerUnavailable;

/// The name of the shared response.
const UNAVAILABLE: &str = "Unavailable";

impl OwnerUnavailable {
    const WORDS: &str = "`unavailable`: with several gateways on one database, no gateway \
        holds the session right now (it is moving between them, or its gateway stopped and \
        another has not taken it over yet), or the one holding it could not be reached. \
        `Retry-After` (and `details.retryAfterSecs`) says in whole seconds when to try again.";

    fn response() -> Response {
        let retry_after = HeaderBuilder::new()
            .schema(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1)),
            )
            .description(Some(
                "Whole seconds until the call is worth trying again; the same number as \
                 `details.retryAfterSecs`.",
            ))
            .build();
        Response::builder()
            .description(Self::WORDS)
            .header("Retry-After", retry_after)
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ErrorEnvelope"))),
            )
            .build()
    }
}

impl Modify for OwnerUnavailable {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let shared = Self::response();
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .responses
            .insert(UNAVAILABLE.to_owned(), RefOr::T(shared.clone()));
        for (method, path) in crate::forward::FORWARDED_OPERATIONS {
            let Some(item) = openapi.paths.paths.get_mut(*path) else {
                continue;
            };
            let operation = match *method {
                "get" => &mut item.get,
                "put" => &mut item.put,
                "post" => &mut item.post,
                "delete" => &mut item.delete,
                "patch" => &mut item.patch,
                _ => &mut None,
            };
            let Some(operation) = operation else {
                continue;
            };
            let answer = match operation.responses.responses.get("503") {
                Some(RefOr::T(own)) if !own.description.is_empty() => {
                    let mut merged = shared.clone();
                    merged.description = format!("{} Also: {}", own.description, Self::WORDS);
                    RefOr::T(merged)
                }
                _ => RefOr::Ref(Ref::new(format!("#/components/responses/{UNAVAILABLE}"))),
            };
            operation
                .responses
                .responses
                .insert("503".to_owned(), answer);
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wagate",
        description = "Multi-tenant WhatsApp gateway. Every `/api/v1` route needs `Authorization: Bearer <token>` (login JWT or `wgk_` API key). Every non-2xx answer has the body `{\"error\": {\"code\", \"message\", \"details\"}}`; every answer carries `X-Request-Id`. Bodies are limited to 64 KiB (a message send: `messages.max_media_bytes` of base64 media more).",
        license(name = "Apache-2.0")
    ),
    paths(
        sessions::create, sessions::list, sessions::get, sessions::delete,
        sessions::connect, sessions::disconnect, sessions::logout, sessions::qr_code, sessions::pairing_code,
        contacts::picture, contacts::about, contacts::block, contacts::unblock, contacts::blocklist,
        groups::list, groups::create, groups::get, groups::update, groups::participants,
        groups::invite, groups::revoke_invite, groups::join, groups::leave, groups::requests,
        groups::answer_requests,
        messages::send, messages::list, messages::get, messages::media, messages::react, messages::read,
        receipts::list,
        conversation::edit_message, conversation::revoke_message, polls::results,
        presence::chat_state, presence::set_presence, presence::subscribe,
        api_keys::create, api_keys::list, api_keys::revoke,
        events::list, events::stream,
        webhooks::create, webhooks::list, webhooks::get, webhooks::update, webhooks::delete,
        webhooks::rotate_secret, webhooks::test, webhooks::deliveries, webhooks::replay,
        ops::healthz, ops::readyz, ops::openapi, ops::docs, ops::docs_file, ops::metrics,
        crate::ui::root, crate::ui::page, crate::ui::file,
    ),
    components(schemas(
        dto::SessionBody, dto::LastErrorBody, dto::SessionList, dto::CreateSessionRequest, dto::QrBody,
        dto::PairingCodeRequest, dto::PairingCodeBody, dto::PictureBody, dto::AboutBody, dto::BlocklistBody,
        dto::BlockedBody, dto::CreateApiKeyRequest, dto::ApiKeyBody, dto::CreatedApiKeyBody, dto::ApiKeyList,
        dto::ErrorEnvelope, dto::ErrorBody,
        dto::EventBody, dto::EventList, dto::SessionStatusData, dto::SessionQrData, dto::WebhookTestData,
        dto::MessageSentData, dto::MessageStatusData, dto::MessageReactionData,
        dto::CreateWebhookRequest, dto::UpdateWebhookRequest, dto::WebhookBody, dto::CreatedWebhookBody,
        dto::WebhookList, dto::WebhookSecretBody, dto::WebhookTestBody, dto::ReplayRequest, dto::ReplayBody,
        dto::DeliveryBody, dto::DeliveryList, events::EventStreamMessage,
        dto::SendMessageRequest, dto::SendMediaRequest, dto::MessageBody, dto::MediaBody, dto::StatusAtBody,
        dto::MessageErrorBody, dto::MessageList, dto::ReactionRequest, dto::ReadRequest,
        dto::LocationBody, dto::ContactCardBody, dto::EditMessageRequest, dto::MessageEditedData,
        dto::MessageRevokedData, dto::ChatStateRequest, dto::PresenceRequest, dto::PresenceUpdateData,
        dto::ChatStateData, dto::PollBody, dto::PollOptionBody, dto::PollResultsBody,
        dto::MessagePollVoteData,
        dto::GroupBody, dto::ParticipantBody, dto::GroupSettingsBody, dto::GroupList, dto::OutcomeBody,
        dto::OutcomeList, dto::CreatedGroupBody, dto::CreateGroupRequest, dto::UpdateGroupRequest,
        dto::ParticipantsRequest, dto::AnswerRequestsRequest, dto::JoinGroupRequest, dto::JoinedBody,
        dto::InviteBody, dto::MembershipRequestBody, dto::MembershipRequestList,
        dto::GroupJoinedData, dto::GroupLeftData, dto::GroupParticipantsData, dto::GroupUpdatedData,
        dto::ReceiptBody, dto::ReceiptTimesBody, dto::ReceiptList,
    )),
    modifiers(&BearerAuth, &RateLimited, &OwnerUnavailable),
    tags(
        (name = "sessions", description = "Linked WhatsApp devices and their lifecycle."),
        (name = "contacts", description = "Live lookups and actions; the session must be connected (else 501)."),
        (name = "groups", description = "The groups the account is in: listed from the gateway's store (fast, whether or not connected); read and changed live on WhatsApp (the session must be connected, else 501). Changes are reported as `group.*` events."),
        (name = "messages", description = "One-to-one messages: sent through a durable, paced per-session queue; received ones arrive as `message.received` events."),
        (name = "presence", description = "Typing and presence: shown to a contact, or followed (`presence.update`, `chat.state` events; ephemeral, at most 5 a second per session with bursts of 20)."),
        (name = "api-keys", description = "API keys of the caller's organization."),
        (name = "events", description = "The organization's event log: pulled by cursor or followed as server-sent events."),
        (name = "webhooks", description = "Where the organization's events are pushed (signed, Standard Webhooks)."),
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
    fn every_forwarded_operation_declares_the_owners_503() {
        let doc: serde_json::Value = serde_json::from_str(&super::json()).unwrap();
        let shared = &doc["components"]["responses"]["Unavailable"];
        assert!(shared["headers"]["Retry-After"].is_object(), "{shared}");
        for (method, path) in crate::forward::FORWARDED_OPERATIONS {
            let op = &doc["paths"][path][method];
            assert!(op.is_object(), "{method} {path} is not in the document");
            let answer = &op["responses"]["503"];
            let by_ref = answer["$ref"] == "#/components/responses/Unavailable";
            let merged = answer["headers"]["Retry-After"].is_object()
                && answer["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("no gateway holds the session"));
            assert!(by_ref || merged, "{method} {path}: {answer}");
        }
        // A read answered where it arrives is not forwarded.
        let read = &doc["paths"]["/api/v1/sessions/{sessionId}"]["get"]["responses"];
        assert!(read["503"]["$ref"].is_null(), "{read}");
    }

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
            ("/api/v1/events", "get"),
            ("/api/v1/events/stream", "get"),
            ("/api/v1/webhooks", "post"),
            ("/api/v1/webhooks", "get"),
            ("/api/v1/webhooks/{id}", "get"),
            ("/api/v1/webhooks/{id}", "patch"),
            ("/api/v1/webhooks/{id}", "delete"),
            ("/api/v1/webhooks/{id}/rotate-secret", "post"),
            ("/api/v1/webhooks/{id}/test", "post"),
            ("/api/v1/webhooks/{id}/deliveries", "get"),
            ("/api/v1/webhooks/{id}/replay", "post"),
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
        assert_eq!(operations, 52);
    }

    /// What scripts/fuzz-api.sh (schemathesis) found wrong in the document:
    /// query parameters listed as required path parameters, operation ids
    /// used twice, an optional body marked required, a 415 left out.
    #[test]
    fn parameters_bodies_and_ids_are_described_as_the_routes_take_them() {
        let doc: serde_json::Value = serde_json::from_str(&super::json()).unwrap();
        let mut ids = std::collections::HashSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap();
                assert!(ids.insert(id.to_owned()), "operationId {id} used twice");
                for param in op["parameters"].as_array().into_iter().flatten() {
                    let name = param["name"].as_str().unwrap();
                    let in_path = path.contains(&format!("{{{name}}}"));
                    assert_eq!(
                        param["in"] == "path",
                        in_path,
                        "{method} {path}: parameter {name} is `in: {}`",
                        param["in"]
                    );
                    assert_eq!(param["required"], in_path, "{method} {path}: {name}");
                }
                if op.get("requestBody").is_some() {
                    for status in ["400", "413", "415"] {
                        assert!(
                            op["responses"].get(status).is_some(),
                            "{method} {path}: a body can be answered {status}"
                        );
                    }
                }
            }
        }
        let paths = &doc["paths"];
        let query = |path: &str, method: &str| -> Vec<String> {
            paths[path][method]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["in"] == "query")
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(query("/api/v1/sessions", "get"), ["limit", "cursor"]);
        assert_eq!(query("/api/v1/sessions/{sessionId}/qr", "get"), ["format"]);
        assert_eq!(
            query("/api/v1/sessions/{sessionId}/contacts/{jid}/picture", "get"),
            ["type"]
        );
        // "May be empty": not required, and never `null`.
        let create = &paths["/api/v1/sessions"]["post"]["requestBody"];
        assert!(create.get("required").is_none_or(|r| r == false));
        assert_eq!(
            create["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/CreateSessionRequest"
        );
        for (path, required) in [
            ("/api/v1/api-keys", vec!["name", "capabilities"]),
            (
                "/api/v1/sessions/{sessionId}/pairing-code",
                vec!["phoneNumber"],
            ),
        ] {
            let body = &paths[path]["post"]["requestBody"];
            assert_eq!(body["required"], true, "{path}");
            let schema = body["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap();
            assert_eq!(
                doc["components"]["schemas"][schema]["required"],
                serde_json::json!(required),
                "{path}"
            );
        }
        // The PNG is bytes, not a JSON array of numbers.
        let png = &paths["/api/v1/sessions/{sessionId}/qr"]["get"]["responses"]["200"]["content"]["image/png"]
            ["schema"];
        assert_eq!(png["contentMediaType"], "image/png");
    }

    /// The patterns and enums in the document are what the parsers accept:
    /// the fuzzer sends what they match as valid requests.
    #[test]
    fn documented_patterns_agree_with_the_parsers() {
        let doc: serde_json::Value = serde_json::from_str(&super::json()).unwrap();
        let schemas = &doc["components"]["schemas"];
        let pattern = |v: &serde_json::Value| matcher(v.as_str().unwrap());
        let label = pattern(&schemas["CreateSessionRequest"]["properties"]["name"]["pattern"]);
        assert_eq!(
            schemas["CreateApiKeyRequest"]["properties"]["name"]["pattern"],
            schemas["CreateSessionRequest"]["properties"]["name"]["pattern"]
        );
        let longest = "é".repeat(100);
        let too_long = "é".repeat(101);
        let padded = format!("\n\t {longest} \u{85}\u{3000}");
        for (name, ok) in [
            ("support line", true),
            ("  padded  ", true),
            ("é", true),
            ("\u{feff}", true),
            // Trimmed away: white space, control characters among it.
            ("\u{85}name\r\n", true),
            (&padded, true),
            (&longest, true),
            (&too_long, false),
            ("   ", false),
            ("\u{85}", false),
            ("", false),
            ("a\u{0}b", false),
            ("tab\there", false),
            ("c1\u{85}in between", false),
            ("\u{1f}x", false),
        ] {
            assert_eq!(label(name), ok, "{name:?}");
            assert_eq!(
                wagate_domain::SessionName::parse(name).is_ok(),
                ok,
                "{name:?}"
            );
        }
        let phone = pattern(&schemas["PairingCodeRequest"]["properties"]["phoneNumber"]["pattern"]);
        for (number, ok) in [
            ("+1 415 555 0123", true),
            ("(415) 555-0123", true),
            ("4155550", true),
            ("\t+14155550123\u{85}", true),
            ("+\t14155550123", false),
            ("1415\u{a0}5550123", false),
            ("+0123456789", false),
            ("123456", false),
            ("1234567890123456", false),
            ("+1 415 555 0123x", false),
        ] {
            assert_eq!(phone(number), ok, "{number}");
            assert_eq!(
                wagate_domain::PhoneNumber::parse(number).is_ok(),
                ok,
                "{number}"
            );
        }
        let param = |path: &str, method: &str, name: &str| {
            let params = doc["paths"][path][method]["parameters"].as_array().unwrap();
            let p = params.iter().find(|p| p["name"] == name).unwrap();
            pattern(&p["schema"]["pattern"])
        };
        let session = param("/api/v1/sessions/{sessionId}", "get", "sessionId");
        let fresh = wagate_domain::SessionId::from_ulid(ulid::Ulid::new()).to_string();
        assert!(session(&fresh), "{fresh}");
        assert!(!session(&fresh.to_lowercase()));
        assert!(!session(&format!("{fresh}0")));
        let key = param("/api/v1/api-keys/{id}", "delete", "id");
        assert!(key(
            &wagate_domain::ApiKeyId::from_ulid(ulid::Ulid::new()).to_string()
        ));
        let any = param(
            "/api/v1/sessions/{sessionId}/contacts/{jid}/picture",
            "get",
            "jid",
        );
        let person = param(
            "/api/v1/sessions/{sessionId}/contacts/{jid}/about",
            "get",
            "jid",
        );
        for (jid, is_person) in [
            ("14155550123@s.whatsapp.net", true),
            ("14155550123:12@s.whatsapp.net", true),
            ("14155550123.0:3@s.whatsapp.net", true),
            ("14155550123@c.us", true),
            ("123456789012345@lid", true),
            ("120363025246125486@g.us", false),
            ("15551234567-1612345678@g.us", false),
            ("120363144038483540@newsletter", false),
        ] {
            assert!(any(jid), "{jid}");
            assert_eq!(person(jid), is_person, "{jid}");
            assert!(wagate_domain::Jid::parse(jid).is_ok(), "{jid}");
        }
        for jid in [
            "1234@lid",
            "abc@s.whatsapp.net",
            "14155550123",
            "14155550123@example.com",
        ] {
            assert!(!any(jid) && !person(jid), "{jid}");
            assert!(wagate_domain::Jid::parse(jid).is_err(), "{jid}");
        }
    }

    /// The events and webhooks routes: their query parameters, and the
    /// patterns and enums of their inputs, are what the parsers accept.
    #[test]
    fn events_and_webhooks_inputs_are_described_as_parsed() {
        use wagate_domain::{EventCursor, EventPattern, WebhookDescription, WebhookId, WebhookUrl};
        let doc: serde_json::Value = serde_json::from_str(&super::json()).unwrap();
        let paths = &doc["paths"];
        let params = |path: &str, method: &str| -> Vec<serde_json::Value> {
            paths[path][method]["parameters"]
                .as_array()
                .unwrap()
                .clone()
        };
        let names = |path: &str, method: &str, place: &str| -> Vec<String> {
            params(path, method)
                .iter()
                .filter(|p| p["in"] == place)
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            names("/api/v1/events", "get", "query"),
            ["after", "limit", "types", "sessionId"]
        );
        assert_eq!(
            names("/api/v1/events/stream", "get", "query"),
            ["after", "types", "sessionId"]
        );
        assert_eq!(
            names("/api/v1/events/stream", "get", "header"),
            ["Last-Event-ID"]
        );
        assert_eq!(
            names("/api/v1/webhooks/{id}/deliveries", "get", "query"),
            ["limit", "cursor"]
        );
        // OpenAPI 3.1: the schema of `text/event-stream` describes one
        // message (id, event, data), as SSE clients (and schemathesis)
        // read the stream; `data` is the event object's JSON.
        let stream = &paths["/api/v1/events/stream"]["get"]["responses"]["200"]["content"];
        assert_eq!(
            stream["text/event-stream"]["schema"]["$ref"],
            "#/components/schemas/EventStreamMessage",
            "{stream}"
        );
        let message = &doc["components"]["schemas"]["EventStreamMessage"];
        assert_eq!(
            message["required"],
            serde_json::json!(["id", "event", "data"])
        );
        assert_eq!(message["properties"]["id"]["pattern"], "^[0-9]{1,19}$");
        let data = &message["properties"]["data"];
        assert_eq!(data["type"], "string");
        assert_eq!(data["contentMediaType"], "application/json");
        assert_eq!(
            data["contentSchema"]["$ref"],
            "#/components/schemas/EventBody"
        );
        // The example is an event as the stream sends it.
        let example: serde_json::Value =
            serde_json::from_str(data["examples"][0].as_str().unwrap()).unwrap();
        let body = &doc["components"]["schemas"]["EventBody"];
        for field in body["required"].as_array().unwrap() {
            assert!(example.get(field.as_str().unwrap()).is_some(), "{field}");
        }
        // Every type's `data` has its schema, and each one is in the document.
        let shapes: Vec<&str> = body["properties"]["data"]["anyOf"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["$ref"].as_str())
            .collect();
        for name in [
            "SessionStatusData",
            "SessionQrData",
            "WebhookTestData",
            "MessageBody",
            "MessageSentData",
            "MessageStatusData",
            "MessageReactionData",
        ] {
            let r = format!("#/components/schemas/{name}");
            assert!(shapes.contains(&r.as_str()), "{name} not in {shapes:?}");
            assert!(doc["components"]["schemas"].get(name).is_some(), "{name}");
        }
        for (path, method, status) in [
            ("/api/v1/events", "get", "410"),
            ("/api/v1/events/stream", "get", "410"),
            ("/api/v1/webhooks", "post", "201"),
            ("/api/v1/webhooks/{id}", "delete", "204"),
            ("/api/v1/webhooks/{id}", "get", "404"),
            ("/api/v1/webhooks/{id}/test", "post", "202"),
            ("/api/v1/webhooks/{id}/replay", "post", "202"),
            ("/api/v1/webhooks/{id}/replay", "post", "410"),
        ] {
            assert!(
                paths[path][method]["responses"].get(status).is_some(),
                "{method} {path} {status}"
            );
        }

        let param = |path: &str, method: &str, name: &str| {
            let p = params(path, method);
            let p = p.iter().find(|p| p["name"] == name).unwrap();
            matcher(p["schema"]["pattern"].as_str().unwrap())
        };
        let types = param("/api/v1/events", "get", "types");
        for (list, ok) in [
            ("*", true),
            ("session.*", true),
            ("session.status,session.qr", true),
            ("webhook.test", true),
            ("session", false),
            ("message.*", true),
            ("messages.*", false),
            ("session.qr,", false),
            ("", false),
        ] {
            assert_eq!(types(list), ok, "{list}");
            if ok {
                for item in list.split(',') {
                    assert!(EventPattern::parse(item, "types").is_ok(), "{item}");
                }
            }
        }
        let after = param("/api/v1/events", "get", "after");
        for c in ["0", "42", "9223372036854775807"] {
            assert!(after(c) && EventCursor::parse(c, "after").is_ok(), "{c}");
        }
        assert!(!after("x") && !after("-1"));
        let id = param("/api/v1/webhooks/{id}", "get", "id");
        let fresh = WebhookId::from_ulid(ulid::Ulid::new()).to_string();
        assert!(id(&fresh) && !id(&fresh.to_lowercase()));

        let schemas = &doc["components"]["schemas"];
        let create = &schemas["CreateWebhookRequest"];
        assert_eq!(create["required"], serde_json::json!(["url", "events"]));
        let url_schema = &create["properties"]["url"];
        let url_pattern = matcher(url_schema["pattern"].as_str().unwrap());
        let max = url_schema["maxLength"].as_u64().unwrap();
        // JSON Schema's maxLength counts characters (code points).
        let url = |u: &str| u.chars().count() as u64 <= max && url_pattern(u);
        assert_eq!(
            create["properties"]["url"],
            schemas["UpdateWebhookRequest"]["properties"]["url"]
        );
        let longest = format!("https://x/{}", "é".repeat(2038));
        let too_long = format!("https://x/{}", "é".repeat(2039));
        // Each is accepted by the URL parser exactly when the pattern
        // matches; what both accept, the HTTP client's (WHATWG) parser
        // takes too (crates/domain/src/webhook.rs checks it case by case).
        for (u, ok) in [
            ("https://example.com/hook?x=1", true),
            ("http://127.0.0.1:8080/", true),
            ("http://[::1]:80/x", true),
            ("http://[2001:db8::8a2e:370:7334]/", true),
            ("http://[::ffff:192.0.2.1]:8080/", true),
            ("http://xn--bcher-kva.example/", true),
            ("http://EXAMPLE.com./", true),
            ("http://-a-.b-/", true),
            ("http://a..b/", true),
            ("http://1.a/", true),
            ("http://0x1g/", true),
            ("http://127.1/", true),
            ("http://0x7f.1/", true),
            ("http://0177.0.0.01/", true),
            ("http://2130706433/", true),
            ("http://4294967295/", true),
            ("http://1.2.65535/", true),
            ("http://0x/", true),
            ("http://host:/", true),
            ("http://host:000065535/", true),
            ("https://example.com/päth?q=\u{feff}", true),
            (&longest, true),
            (&too_long, false),
            ("ftp://example.com/", false),
            ("https://u:p@example.com/", false),
            ("https://example.com/#frag", false),
            ("https:///path", false),
            ("https://exa mple.com/", false),
            ("https://example.com/a\u{85}b", false),
            ("https://example.com/a\u{3000}b", false),
            ("http://bücher.example/", false),
            ("http://exa_mple.com/", false),
            ("http://a%41.com/", false),
            ("http://a\\b/", false),
            ("http://a.1/", false),
            ("http://example.0x/", false),
            ("http://1.2.3.4.5/", false),
            ("http://1.2.3.256/", false),
            ("http://1.16777216/", false),
            ("http://4294967296/", false),
            ("http://08/", false),
            ("http://1..2/", false),
            ("http://[::1/", false),
            ("http://[::1]x/", false),
            ("http://[1:2:3:4:5:6:7:8:9]/", false),
            ("http://[::1%25eth0]/", false),
            ("http://[::ffff:01.2.3.4]/", false),
            ("http://host:65536/", false),
            ("http://host:8o/", false),
            ("http://:80/", false),
        ] {
            assert_eq!(url(u), ok, "{u}");
            assert_eq!(WebhookUrl::parse(u).is_ok(), ok, "{u}");
        }
        let description = matcher(
            create["properties"]["description"]["pattern"]
                .as_str()
                .unwrap(),
        );
        for (d, ok) in [
            ("CRM sync", true),
            ("two\nlines\tand a tab", true),
            ("", true),
            ("bell\u{7}", false),
            ("c1\u{85}", false),
        ] {
            assert_eq!(description(d), ok, "{d:?}");
            assert_eq!(WebhookDescription::parse(d).is_ok(), ok, "{d:?}");
        }
        let events: Vec<String> =
            serde_json::from_value(create["properties"]["events"]["items"]["enum"].clone())
                .unwrap();
        assert!(events.len() >= 6, "{events:?}");
        for e in &events {
            assert!(EventPattern::parse(e, "events").is_ok(), "{e}");
        }
        assert_eq!(
            schemas["UpdateWebhookRequest"].get("required"),
            None,
            "every field of a PATCH is optional"
        );
    }

    /// A regular expression of the document, checked with the `regex`
    /// engine of the build (the patterns use no ECMA-only syntax).
    fn matcher(pattern: &str) -> impl Fn(&str) -> bool + use<> {
        let re = regex::Regex::new(pattern).unwrap();
        move |s| re.is_match(s)
    }
}
