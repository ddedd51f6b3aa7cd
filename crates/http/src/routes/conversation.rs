//! The rest of a conversation: editing (`PATCH …/messages/{messageId}`)
//! and deleting for everyone (`DELETE …/messages/{messageId}`), and the
//! send bodies of locations and contact cards (and, through `polls.rs`,
//! polls).

use actix_web::{HttpRequest, HttpResponse, web};
use wagate_app::MessageEdit;
use wagate_domain::{
    ContactCard, Location, MAX_CONTACT_CARDS, MessageId, MessageType, RichContent,
};

use crate::dto::{EditMessageRequest, ErrorEnvelope, MessageBody, SendMessageRequest};
use crate::extract::{Caller, session_id, session_item_body};
use crate::{ApiError, AppState};

/// The location or contact cards a send of `kind` carries (taken out of
/// `body`), `None` for the other types.
pub(crate) fn rich_content(
    kind: MessageType,
    body: &mut SendMessageRequest,
) -> Result<Option<RichContent>, ApiError> {
    let rich = match kind {
        MessageType::Location => {
            let l = body
                .location
                .take()
                .ok_or_else(|| ApiError::invalid("location", "is required"))?;
            RichContent::Location(Location::new(l.latitude, l.longitude, l.name, l.address)?)
        }
        MessageType::Contacts => {
            let cards = body
                .contacts
                .take()
                .filter(|c| !c.is_empty() && c.len() <= MAX_CONTACT_CARDS)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "contacts",
                        format!("must hold 1 to {MAX_CONTACT_CARDS} contact cards"),
                    )
                })?;
            RichContent::Contacts(
                cards
                    .into_iter()
                    .map(|c| ContactCard::new(c.display_name, c.vcard))
                    .collect::<Result<_, _>>()?,
            )
        }
        MessageType::Poll => super::polls::poll_content(
            body.poll
                .take()
                .ok_or_else(|| ApiError::invalid("poll", "is required"))?,
        )?,
        _ => return Ok(None),
    };
    for (field, given) in [
        ("text", body.text.is_some()),
        ("caption", body.caption.is_some()),
        ("media", body.media.is_some()),
        ("voiceNote", body.voice_note.is_some()),
    ] {
        if given {
            return Err(ApiError::invalid(
                field,
                format!("a {kind} message has no {field}"),
            ));
        }
    }
    Ok(Some(rich))
}

#[utoipa::path(patch, path = "/api/v1/sessions/{sessionId}/messages/{messageId}", tag = "messages",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX"),
        ("messageId" = String, Path, description = "1 to 128 ASCII letters, digits, `-`, `_`", pattern = r"^[A-Za-z0-9_-]{1,128}$")),
    request_body = EditMessageRequest,
    responses(
        (status = 200, description = "WhatsApp has the edit: the message as edited (`editedAt`); a `message.edited` event records it.", body = MessageBody),
        (status = 400, description = "Bad id, or `text`/`caption` missing, empty, too long, or not what the message has (`details.field`).", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Needs `send`.", body = ErrorEnvelope),
        (status = 404, description = "No such session or message.", body = ErrorEnvelope),
        (status = 409, description = "The message cannot be edited (`details.reason`): `not_own_message` (a contact's), `edit_window_passed` (sent more than 15 minutes ago), `not_sent` (pending or failed), `revoked`, `not_editable` (audio, location, contact cards).", body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope),
        (status = 501, description = "The session is not connected (`details.status`).", body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn edit_message(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (id, message, body): (_, _, EditMessageRequest) =
        session_item_body(&req, (&path.0, &path.1), message_id, &body)?;
    let edit = match (body.text, body.caption) {
        (Some(text), None) => MessageEdit::Text(text),
        (None, Some(caption)) => MessageEdit::Caption(caption),
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "caption",
                "give text or caption, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "text",
                "is required (or caption, for media)",
            ));
        }
    };
    let m = state
        .gateway
        .edit_message(&caller.0, &id, &message, &edit)
        .await?;
    Ok(HttpResponse::Ok().json(m.to_json()))
}

#[utoipa::path(delete, path = "/api/v1/sessions/{sessionId}/messages/{messageId}", tag = "messages",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX"),
        ("messageId" = String, Path, description = "1 to 128 ASCII letters, digits, `-`, `_`", pattern = r"^[A-Za-z0-9_-]{1,128}$")),
    responses(
        (status = 200, description = "Deleted for everyone: WhatsApp has the deletion; the message keeps its id, people, status and times and loses its content (`type: \"revoked\"`); a `message.revoked` event records it.", body = MessageBody),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Needs `send`.", body = ErrorEnvelope),
        (status = 404, description = "No such session or message.", body = ErrorEnvelope),
        (status = 409, description = "The message cannot be deleted for everyone (`details.reason`): `not_own_message`, `revoke_window_passed` (sent more than 60 hours ago), `not_sent` (pending or failed), `revoked` (already).", body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope),
        (status = 501, description = "The session is not connected (`details.status`).", body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn revoke_message(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, message) = (session_id(&path.0)?, message_id(&path.1)?);
    let m = state
        .gateway
        .revoke_message(&caller.0, &id, &message)
        .await?;
    Ok(HttpResponse::Ok().json(m.to_json()))
}

fn message_id(raw: &str) -> Result<MessageId, ApiError> {
    MessageId::parse(raw).map_err(ApiError::from)
}
