//! `GET …/messages/{messageId}/poll`: a poll's current tally (polls are
//! sent with `POST …/messages`, `type: "poll"`).

use actix_web::{HttpResponse, web};
use wagate_domain::{MessageId, Poll, RichContent};

use crate::dto::{ErrorEnvelope, PollBody, PollResultsBody};
use crate::extract::{Caller, session_id};
use crate::{ApiError, AppState};

/// The poll of a send request's `poll` (`selectableCount` 1 unless given).
pub(crate) fn poll_content(body: PollBody) -> Result<RichContent, ApiError> {
    Ok(RichContent::Poll(Poll::new(
        body.question,
        body.options,
        body.selectable_count.unwrap_or(1),
    )?))
}

#[utoipa::path(get, path = "/api/v1/sessions/{sessionId}/messages/{messageId}/poll", tag = "messages",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX"),
        ("messageId" = String, Path, description = "1 to 128 ASCII letters, digits, `-`, `_`", pattern = r"^[A-Za-z0-9_-]{1,128}$")),
    responses(
        (status = 200, description = "The poll's tally: each option with the people who pick it now (a person's later vote replaces the earlier; votes are those WhatsApp delivered and the gateway could open with the poll's secret).", body = PollResultsBody),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Needs `read`.", body = ErrorEnvelope),
        (status = 404, description = "No such session or message.", body = ErrorEnvelope),
        (status = 409, description = "The message is not a poll (`details.reason`: `not_a_poll`; a poll deleted for everyone is none).", body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn results(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path.0)?;
    let message = MessageId::parse(&path.1)?;
    let tally = state.gateway.poll_results(&caller.0, &id, &message).await?;
    Ok(HttpResponse::Ok().json(tally.to_json()))
}
