//! `GET /api/v1/sessions/{sessionId}/messages/{messageId}/receipts`: who
//! of a message's recipients has it, from the gateway's store.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use wagate_domain::{DomainError, Jid, MessageId, Receipt};

use crate::dto::{ErrorEnvelope, ReceiptList};
use crate::extract::{Caller, session_id};
use crate::{ApiError, AppState};

/// Query of `GET …/receipts`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReceiptListQuery {
    /// 1 to 1000 (default 100).
    #[param(value_type = u32, required = false, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `nextCursor` of the previous page.
    #[param(value_type = String, required = false, example = "14155550142@s.whatsapp.net",
        pattern = r"^[0-9]{5,20}(?:[.:][0-9]{1,5}){0,2}@(?:s\.whatsapp\.net|c\.us|lid)$")]
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/sessions/{sessionId}/messages/{messageId}/receipts", tag = "messages", operation_id = "list_message_receipts",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX"),
        ("messageId" = String, Path, description = "1 to 128 ASCII letters, digits, `-`, `_`", pattern = r"^[A-Za-z0-9_-]{1,128}$"),
        ReceiptListQuery),
    responses(
        (status = 200, description = "The receipts of a message the account sent, by recipient. A group message lists every participant it went to (the group's members when it was accepted, the account left out), `pending` until their receipt comes, and anyone else a receipt came from; the message's own `status` is the furthest every one of those members reached. A one-to-one message lists its one recipient, with the message's status. Answered from the gateway's store, whether or not the session is connected.", body = ReceiptList),
        (status = 400, description = "Bad id, `limit` or `cursor` (`details.field`).", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `read`.", body = ErrorEnvelope),
        (status = 404, description = "No such session or message.", body = ErrorEnvelope),
        (status = 409, description = "A message the account received (`details.reason`: `not_own_message`): receipts are of messages it sent.", body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    query: web::Query<ReceiptListQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path.0)?;
    let message = MessageId::parse(&path.1)?;
    let limit = query
        .limit
        .as_deref()
        .map(|l| {
            l.parse::<u32>()
                .map_err(|_| ApiError::invalid("limit", "must be a whole number"))
        })
        .transpose()?;
    let after = query
        .cursor
        .as_deref()
        .map(|c| {
            Jid::parse(c)
                .ok()
                .filter(|j| j.kind().is_person())
                .ok_or_else(|| DomainError::new("cursor", "not a cursor this gateway gave"))
        })
        .transpose()?;
    let page = state
        .gateway
        .message_receipts(&caller.0, &id, &message, after.as_ref(), limit)
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "data": page.items.iter().map(Receipt::to_json).collect::<Vec<_>>(),
        "nextCursor": page.next.map(|j| j.to_string()),
    })))
}

#[cfg(test)]
mod tests {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::Schema;
    use wagate_domain::{MessageStatus, Recipient, StatusTimes};

    use super::*;

    /// The documented receipt object names exactly the fields
    /// `Receipt::to_json` writes.
    #[test]
    fn the_documented_receipt_matches_the_renderer() {
        let doc = crate::openapi::document();
        let schemas = doc.components.expect("components").schemas;
        let fields = |name: &str, v: &serde_json::Value| {
            let Some(RefOr::T(Schema::Object(o))) = schemas.get(name) else {
                panic!("{name} schema");
            };
            let mut documented: Vec<String> = o.properties.keys().cloned().collect();
            documented.sort();
            let mut rendered: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            rendered.sort();
            assert_eq!(documented, rendered, "{name}");
        };
        let r = Receipt {
            recipient: Recipient::of(&Jid::parse("14155550123@s.whatsapp.net").unwrap()),
            status: MessageStatus::Pending,
            status_at: StatusTimes::default(),
        };
        let v = r.to_json();
        fields("ReceiptBody", &v);
        fields("ReceiptTimesBody", &v["statusAt"]);
    }
}
