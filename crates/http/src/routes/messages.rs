//! `/api/v1/sessions/{sessionId}/messages…` and read receipts.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use serde::Deserialize;
use utoipa::IntoParams;
use wagate_app::{AppError, MediaInput, SendContent, SendRequest};
use wagate_domain::{
    DomainError, IdempotencyKey, Jid, Message, MessageId, MessageType, SessionId, WebhookUrl,
};

use crate::dto::{
    ErrorEnvelope, MessageBody, MessageList, ReactionRequest, ReadRequest, SendMessageRequest,
};
use crate::extract::{Caller, json_body, require_json, session_id};
use crate::large_bodies::{self, Full};
use crate::{ApiError, AppState};

/// The request header that makes a send idempotent.
pub(crate) const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// Set on an answer that repeats the first answer of an `Idempotency-Key`.
pub(crate) const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";

/// Query of `GET …/messages`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only this chat's messages (a user or LID JID; any JID parses).
    #[param(value_type = String, required = false, example = "14155550123@s.whatsapp.net",
        pattern = r"^(?:[0-9]{5,20}(?:[.:][0-9]{1,5}){0,2}@(?:s\.whatsapp\.net|c\.us|lid)|(?:[0-9]{5,30}|[0-9]{5,20}-[0-9]{1,20})@g\.us|[0-9]{5,30}@newsletter)$")]
    chat: Option<String>,
    /// 1 to 100 (default 50).
    #[param(value_type = u32, required = false, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `nextCursor` of the previous page.
    #[param(value_type = String, required = false, pattern = r"^[1-9][0-9]{0,18}$", example = "42")]
    cursor: Option<String>,
}

fn message_id(raw: &str) -> Result<MessageId, ApiError> {
    MessageId::parse(raw).map_err(ApiError::from)
}

fn accepted(message: &Message, replayed: bool) -> HttpResponse {
    let mut answer = HttpResponse::Accepted();
    answer.insert_header((
        header::LOCATION,
        format!(
            "/api/v1/sessions/{}/messages/{}",
            message.session, message.id
        ),
    ));
    if replayed {
        answer.insert_header((IDEMPOTENT_REPLAYED, "true"));
    }
    answer.json(message.to_json())
}

/// The send request the body describes.
fn send_request(
    mut body: SendMessageRequest,
    key: Option<IdempotencyKey>,
) -> Result<SendRequest, ApiError> {
    let to = Jid::parse(
        body.to
            .as_deref()
            .ok_or_else(|| ApiError::invalid("to", "is required"))?,
    )
    .map_err(|e| DomainError::new("to", e.message))?;
    let kind = MessageType::parse(
        body.kind
            .as_deref()
            .ok_or_else(|| ApiError::invalid("type", "is required"))?,
    )?;
    let reply_to = body
        .reply_to
        .as_deref()
        .map(MessageId::parse)
        .transpose()
        .map_err(|e| DomainError::new("replyTo", e.message))?;
    if kind == MessageType::Revoked {
        return Err(ApiError::invalid(
            "type",
            "a message is revoked by DELETE …/messages/{messageId}, not sent",
        ));
    }
    let mentions = body
        .mentions
        .take()
        .unwrap_or_default()
        .iter()
        .map(|j| Jid::parse(j).map_err(|e| DomainError::new("mentions", e.message)))
        .collect::<Result<Vec<_>, _>>()?;
    let rich = super::conversation::rich_content(kind, &mut body)?;
    for (field, given) in [
        ("location", body.location.is_some()),
        ("contacts", body.contacts.is_some()),
        ("poll", body.poll.is_some()),
    ] {
        if given {
            return Err(ApiError::invalid(
                field,
                "only a message of that type carries it",
            ));
        }
    }
    let content = if let Some(rich) = rich {
        SendContent::Rich(rich)
    } else if kind == MessageType::Text {
        if body.media.is_some() || body.caption.is_some() {
            return Err(ApiError::invalid(
                "media",
                "a text message has no media or caption",
            ));
        }
        SendContent::Text(
            body.text
                .ok_or_else(|| ApiError::invalid("text", "is required"))?,
        )
    } else {
        if body.text.is_some() {
            return Err(ApiError::invalid(
                "text",
                "only text messages have text; use caption",
            ));
        }
        let media = body
            .media
            .ok_or_else(|| ApiError::invalid("media", "is required"))?;
        let source = match (media.data, media.url) {
            (Some(data), None) => MediaInput::Data(
                base64::engine::general_purpose::STANDARD
                    .decode(data.trim_end_matches('='))
                    .or_else(|_| {
                        base64::engine::general_purpose::STANDARD_NO_PAD
                            .decode(data.trim_end_matches('='))
                    })
                    .map_err(|_| ApiError::invalid("media.data", "is not base64"))?,
            ),
            (None, Some(url)) => MediaInput::Url(
                WebhookUrl::parse(&url).map_err(|e| DomainError::new("media.url", e.message))?,
            ),
            _ => {
                return Err(ApiError::invalid(
                    "media",
                    "give either media.data (base64) or media.url",
                ));
            }
        };
        SendContent::Media {
            kind,
            mimetype: media.mimetype,
            filename: media.filename,
            caption: body.caption,
            voice_note: body.voice_note.unwrap_or(false),
            source,
        }
    };
    Ok(SendRequest {
        to,
        content,
        reply_to,
        mentions,
        idempotency_key: key,
    })
}

#[utoipa::path(post, path = "/api/v1/sessions/{sessionId}/messages", tag = "messages",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX"),
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 printable ASCII characters. The same key, organization and session within 24 h returns the first answer (same message, header `Idempotent-Replayed: true`) and sends nothing; with a different body it is 409. Looked up first: a retry answers as the first time even while the session is disconnected.")),
    request_body = SendMessageRequest,
    responses(
        (status = 202, description = "Accepted and stored (`status: pending`); sent at the session's pace, in order within its chat (a chat that does not answer holds no other), through disconnections, until `messages.max_pending_age`; a refusal for good fails it at once (`error.code`: `not_on_whatsapp`, `rejected`, `media_rejected`). `Location` names it.",
            body = MessageBody,
            headers(("Location" = String, description = "`/api/v1/sessions/{sessionId}/messages/{messageId}`"))),
        (status = 400, description = "Bad body (`details.field`: `to` for a channel, `type`, `text`, `caption`, `media.*`, `location.*`, `contacts.*`, `poll.*` (`poll.options`: 2 to 12 different ones; `poll.selectableCount`: 1 to their number), `replyTo`, `Idempotency-Key`).", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `send`.", body = ErrorEnvelope),
        (status = 404, description = "No such session.", body = ErrorEnvelope),
        (status = 409, description = "The `Idempotency-Key` was used for a different request, or a logout or delete of the session is being finished (`details.status`).", body = ErrorEnvelope),
        (status = 413, description = "Media over `messages.max_media_bytes` (`details.limit`).", body = ErrorEnvelope),
        (status = 415, body = ErrorEnvelope),
        (status = 429, description = "The session's queue is full (`messages.max_queue`); or the body is over 64 KiB and the organization (a quarter of the places) or the gateway (about 256 MiB of such bodies) has as many of them in flight as it may; `Retry-After`.", body = ErrorEnvelope),
        (status = 501, description = "The session is not connected (`details.status`).", body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn send(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    let key = match req.headers().get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => Some(IdempotencyKey::parse(v.to_str().map_err(|_| {
            ApiError::invalid("Idempotency-Key", "must be printable ASCII")
        })?)?),
    };
    // Everything that needs no body comes before a byte of it is read
    // (up to ~21 MiB): its type, who may send, to which session, its size.
    require_json(&req)?;
    state.gateway.check_sender(&caller.0, &id).await?;
    let max_media = state.gateway.outbox().settings().max_media_bytes;
    let too_large = || ApiError::from(AppError::PayloadTooLarge { limit: max_media });
    let limit = crate::send_body_limit(&state.gateway);
    let expected = large_bodies::content_length(&req);
    if expected.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    // A large body takes one of the bounded places until it is stored.
    let _place = if large_bodies::is_large(expected) {
        Some(state.large_bodies.take(&caller.0.org).map_err(|full| {
            let what = match full {
                Full::Org => {
                    "this organization already has as many large message bodies in flight as it may"
                }
                Full::All => "the gateway is reading as many large message bodies as it may",
            };
            ApiError::too_many(what, 1)
        })?)
    } else {
        None
    };
    let request = {
        let body = large_bodies::read(payload, limit, expected, too_large).await?;
        let parsed: SendMessageRequest = json_body(&req, &body, false)?;
        // The raw body goes before the base64 is decoded: at most two
        // copies of the media are held at once, not three.
        drop(body);
        send_request(parsed, key)?
    };
    let outcome = state.gateway.send_message(&caller.0, &id, request).await?;
    Ok(accepted(&outcome.message, outcome.replayed))
}

#[utoipa::path(get, path = "/api/v1/sessions/{sessionId}/messages", tag = "messages",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX"), ListQuery),
    responses(
        (status = 200, description = "Newest first.", body = MessageList),
        (status = 400, description = "Bad chat, limit or cursor (`details.field`).", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `read`.", body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    let chat = query
        .chat
        .as_deref()
        .map(Jid::parse)
        .transpose()
        .map_err(|e| DomainError::new("chat", e.message))?;
    let limit = match query.limit.as_deref() {
        None => 50,
        Some(l) => l
            .parse::<u32>()
            .map_err(|_| ApiError::invalid("limit", "must be 1 to 100"))?,
    };
    let before = query
        .cursor
        .as_deref()
        .map(|c| {
            // Exactly the document's pattern, `^[1-9][0-9]{0,18}$`.
            let digits = c.len() <= 19 && c.bytes().all(|b| b.is_ascii_digit());
            c.parse::<u64>()
                .ok()
                .filter(|n| digits && *n > 0 && !c.starts_with('0'))
                .ok_or_else(|| ApiError::invalid("cursor", "not a cursor this gateway gave"))
        })
        .transpose()?;
    let page = state
        .gateway
        .list_messages(&caller.0, &id, chat.as_ref(), limit, before)
        .await?;
    let data: Vec<serde_json::Value> = page.items.iter().map(Message::to_json).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "data": data,
        "nextCursor": page.next.map(|n| n.to_string()),
    })))
}

#[utoipa::path(get, path = "/api/v1/sessions/{sessionId}/messages/{messageId}", tag = "messages",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX"),
        ("messageId" = String, Path, description = "1 to 128 ASCII letters, digits, `-`, `_`", pattern = r"^[A-Za-z0-9_-]{1,128}$")),
    responses(
        (status = 200, body = MessageBody),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Needs `read`.", body = ErrorEnvelope),
        (status = 404, description = "No such session or message.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, message) = (session_id(&path.0)?, message_id(&path.1)?);
    let m = state.gateway.get_message(&caller.0, &id, &message).await?;
    Ok(HttpResponse::Ok().json(m.to_json()))
}

#[utoipa::path(get, path = "/api/v1/sessions/{sessionId}/messages/{messageId}/media", tag = "messages",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX"),
        ("messageId" = String, Path, description = "1 to 128 ASCII letters, digits, `-`, `_`", pattern = r"^[A-Za-z0-9_-]{1,128}$")),
    responses(
        (status = 200, description = "The decrypted media, streamed as WhatsApp sends it; `Content-Type` is its MIME type (as its sender declared it), with `X-Content-Type-Options: nosniff` and `Content-Disposition: attachment`. A download that fails after its first bytes (it does not verify, or grows past `messages.max_media_bytes`) closes the connection before the end.", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Needs `read`.", body = ErrorEnvelope),
        (status = 404, description = "No such session or message, no media, or WhatsApp no longer has it (a sent message's media is kept only until it is sent).", body = ErrorEnvelope),
        (status = 413, description = "The media is declared larger than `messages.max_media_bytes` (`details.limit`); one that turns out larger while it streams ends the connection before its end.", body = ErrorEnvelope),
        (status = 501, description = "Downloading a received message's media needs the session connected.", body = ErrorEnvelope),
        (status = 503, description = "WhatsApp is unavailable, or too many media downloads run at once; try again.", body = ErrorEnvelope),
        (status = 504, description = "WhatsApp sent no byte of it within `whatsapp.request_timeout_secs`.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn media(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, message) = (session_id(&path.0)?, message_id(&path.1)?);
    let media = state
        .gateway
        .message_media(&caller.0, &id, &message)
        .await?;
    let mimetype = header::HeaderValue::from_str(&media.info.mimetype)
        .unwrap_or(header::HeaderValue::from_static("application/octet-stream"));
    // Streamed as it is downloaded and decrypted: nothing is held whole,
    // and a client that goes away stops the download. A download that
    // fails half-way (it did not verify, or passed the size limit) fails
    // the body: the connection closes before the end, never a short file
    // that looks complete.
    let body = futures_util::stream::unfold(media.bytes, |mut download| async move {
        let chunk = download.next().await?;
        let chunk = chunk.map(web::Bytes::from).map_err(|e| {
            tracing::warn!(error = %e, "media download failed after its first bytes");
            std::io::Error::other("the media download failed")
        });
        Some((chunk, download))
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, mimetype))
        // The type is the sender's word: never let a browser sniff or
        // render it on the gateway's origin.
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CONTENT_DISPOSITION, "attachment"))
        .streaming(body))
}

#[utoipa::path(post, path = "/api/v1/sessions/{sessionId}/messages/{messageId}/reaction", tag = "messages",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX"),
        ("messageId" = String, Path, description = "1 to 128 ASCII letters, digits, `-`, `_`", pattern = r"^[A-Za-z0-9_-]{1,128}$")),
    request_body = ReactionRequest,
    responses(
        (status = 202, description = "The reaction was handed to WhatsApp."),
        (status = 400, description = "Bad id or emoji.", body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Needs `send`.", body = ErrorEnvelope),
        (status = 404, description = "No such session or message.", body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope),
        (status = 501, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn react(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (id, message) = (session_id(&path.0)?, message_id(&path.1)?);
    let body: ReactionRequest = json_body(&req, &body, false)?;
    let emoji = body
        .emoji
        .ok_or_else(|| ApiError::invalid("emoji", "is required (\"\" removes the reaction)"))?;
    state
        .gateway
        .react(&caller.0, &id, &message, &emoji)
        .await?;
    Ok(HttpResponse::Accepted().finish())
}

#[utoipa::path(post, path = "/api/v1/sessions/{sessionId}/chats/{jid}/read", tag = "messages",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX"),
        ("jid" = String, Path, description = "User, LID or group JID; `@` raw or `%40`.",
        pattern = r"^(?:[0-9]{5,20}(?:[.:][0-9]{1,5}){0,2}@(?:s\.whatsapp\.net|c\.us|lid)|(?:[0-9]{5,30}|[0-9]{5,20}-[0-9]{1,20})@g\.us)$",
        example = "14155550123@s.whatsapp.net")),
    request_body = ReadRequest,
    responses(
        (status = 204, description = "Read receipts sent (in a group, one to each member who wrote the messages named; ids not received in that group are left out); the received messages are `read`."),
        (status = 400, description = "Bad JID or `messageIds` (1 to 100).", body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Needs `send`.", body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope),
        (status = 501, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn read(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (id, chat): (SessionId, Jid) = (session_id(&path.0)?, Jid::parse(&path.1)?);
    let body: ReadRequest = json_body(&req, &body, false)?;
    let ids = body
        .message_ids
        .ok_or_else(|| ApiError::invalid("messageIds", "is required"))?
        .iter()
        .map(|m| MessageId::parse(m).map_err(|e| DomainError::new("messageIds", e.message)))
        .collect::<Result<Vec<_>, _>>()?;
    state.gateway.mark_read(&caller.0, &id, &chat, &ids).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::Schema;

    /// The documented message object names exactly the fields
    /// `Message::to_json` writes.
    #[test]
    fn the_documented_message_matches_the_renderer() {
        let doc = crate::openapi::document();
        let schemas = doc.components.expect("components").schemas;
        let Some(RefOr::T(Schema::Object(o))) = schemas.get("MessageBody") else {
            panic!("MessageBody schema");
        };
        let mut documented: Vec<String> = o.properties.keys().cloned().collect();
        documented.sort();
        let m = Message {
            id: MessageId::parse("3EB0AA").unwrap(),
            session: SessionId::parse("sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX").unwrap(),
            chat: Jid::parse("14155550123@s.whatsapp.net").unwrap(),
            from_me: true,
            from: Jid::parse("15550001111@s.whatsapp.net").unwrap(),
            from_pn: None,
            from_lid: None,
            to: Jid::parse("14155550123@s.whatsapp.net").unwrap(),
            kind: MessageType::Text,
            text: Some("hi".into()),
            caption: None,
            media: None,
            rich: None,
            voice_note: false,
            reply_to: None,
            mentions: Vec::new(),
            status: wagate_domain::MessageStatus::Pending,
            status_at: wagate_domain::StatusTimes::default(),
            error: None,
            edited_at: None,
            timestamp: time::OffsetDateTime::UNIX_EPOCH,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
        };
        let mut rendered: Vec<String> = m.to_json().as_object().unwrap().keys().cloned().collect();
        rendered.sort();
        assert_eq!(documented, rendered);
    }

    #[test]
    fn bodies_become_requests_or_name_the_bad_field() {
        let parse = |v: serde_json::Value| {
            send_request(serde_json::from_value(v).unwrap(), None).map_err(|e| {
                serde_json::from_slice::<serde_json::Value>(&e.to_json()).unwrap()["error"]
                    ["details"]["field"]
                    .clone()
            })
        };
        assert!(parse(serde_json::json!({"to": "14155550123@s.whatsapp.net", "type": "text", "text": "hi"})).is_ok());
        let img = parse(
            serde_json::json!({"to": "14155550123@s.whatsapp.net", "type": "image",
            "media": {"data": "aGVsbG8", "mimetype": "image/png"}}),
        )
        .unwrap();
        assert!(
            matches!(img.content, SendContent::Media { source: MediaInput::Data(ref d), .. } if d == b"hello")
        );
        for (body, field) in [
            (serde_json::json!({"type": "text", "text": "x"}), "to"),
            (
                serde_json::json!({"to": "nope", "type": "text", "text": "x"}),
                "to",
            ),
            (
                serde_json::json!({"to": "14155550123@s.whatsapp.net", "type": "sticker"}),
                "type",
            ),
            (
                serde_json::json!({"to": "14155550123@s.whatsapp.net", "type": "image"}),
                "media",
            ),
            (
                serde_json::json!({"to": "14155550123@s.whatsapp.net", "type": "image", "media": {"data": "!!", "mimetype": "image/png"}}),
                "media.data",
            ),
            (
                serde_json::json!({"to": "14155550123@s.whatsapp.net", "type": "image", "media": {"url": "ftp://x/a"}}),
                "media.url",
            ),
            (
                serde_json::json!({"to": "14155550123@s.whatsapp.net", "type": "text", "text": "x", "replyTo": "a b"}),
                "replyTo",
            ),
        ] {
            assert_eq!(
                parse(body.clone()).err(),
                Some(serde_json::Value::from(field)),
                "{body}"
            );
        }
    }
}
