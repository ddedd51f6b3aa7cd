//! `/api/v1/sessions/{sessionId}/groups…`: the list from the gateway's
//! store, everything else live on WhatsApp.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use utoipa::IntoParams;
use wagate_app::{GroupChange, Joined};
use wagate_domain::{
    DomainError, GroupDescription, GroupJid, GroupSettingsPatch, GroupSubject, InviteCode, Jid,
    ParticipantAction, ParticipantOutcome, RequestAction, SessionId,
};

use crate::dto::{
    AnswerRequestsRequest, CreateGroupRequest, CreatedGroupBody, ErrorEnvelope, GroupBody,
    GroupList, InviteBody, JoinGroupRequest, JoinedBody, MembershipRequestList, OutcomeList,
    ParticipantsRequest, UpdateGroupRequest,
};
use crate::extract::{Caller, json_body, session_id, session_item_body};
use crate::{ApiError, AppState};

/// Query of `GET …/groups`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct GroupListQuery {
    /// 1 to 500 (default 100).
    #[param(value_type = u32, required = false, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// `nextCursor` of the previous page.
    #[param(value_type = String, required = false, example = "120363025246125486@g.us",
        pattern = r"^(?:[0-9]{5,30}|[0-9]{5,20}-[0-9]{1,20})@g\.us$")]
    cursor: Option<String>,
}

/// The path of a group's routes, `…/sessions/{sessionId}/groups/{groupJid}…`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct GroupPath {
    /// `sess_` + ULID
    #[serde(rename = "sessionId")]
    #[param(
        rename = "sessionId",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$",
        example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX"
    )]
    session_id: String,
    /// A group JID; `@` raw or `%40`.
    #[serde(rename = "groupJid")]
    #[param(
        rename = "groupJid",
        pattern = r"^(?:[0-9]{5,30}|[0-9]{5,20}-[0-9]{1,20})@g\.us$",
        example = "120363025246125486@g.us"
    )]
    group_jid: String,
}

fn group_jid(raw: &str) -> Result<GroupJid, ApiError> {
    Ok(GroupJid::parse(raw, "groupJid")?)
}

fn ids(path: &GroupPath) -> Result<(SessionId, GroupJid), ApiError> {
    Ok((session_id(&path.session_id)?, group_jid(&path.group_jid)?))
}

/// The session, the group and the JSON body of a route changing a group.
fn group_and_body<B: DeserializeOwned + Default>(
    req: &HttpRequest,
    path: &GroupPath,
    body: &[u8],
) -> Result<(SessionId, GroupJid, B), ApiError> {
    session_item_body(req, (&path.session_id, &path.group_jid), group_jid, body)
}

/// A membership body's `action` (parsed by `parse`) and `participants`,
/// both required.
fn action_and_people<A>(
    action: Option<String>,
    participants: Option<Vec<String>>,
    parse: impl FnOnce(&str) -> Result<A, DomainError>,
) -> Result<(A, Vec<Jid>), ApiError> {
    let action = parse(
        action
            .as_deref()
            .ok_or_else(|| ApiError::invalid("action", "is required"))?,
    )?;
    let people = participants.ok_or_else(|| ApiError::invalid("participants", "is required"))?;
    Ok((action, jids("participants", people)?))
}

/// A list of person JIDs from a body field.
fn jids(field: &'static str, list: Vec<String>) -> Result<Vec<Jid>, ApiError> {
    list.iter()
        .map(|s| Jid::parse(s).map_err(|e| DomainError::new(field, e.message).into()))
        .collect()
}

fn outcomes(list: &[ParticipantOutcome]) -> serde_json::Value {
    list.iter().map(ParticipantOutcome::to_json).collect()
}

#[utoipa::path(get, path = "/api/v1/sessions/{sessionId}/groups", tag = "groups", operation_id = "list_groups",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX"),
        GroupListQuery),
    responses(
        (status = 200, description = "The groups the account is in, by JID, from the gateway's store (read from WhatsApp on every connect, kept current by group notices; answered whether or not the session is connected).", body = GroupList),
        (status = 400, description = "Bad id, `limit` or `cursor` (`details.field`).", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `read`.", body = ErrorEnvelope),
        (status = 404, description = "No such session.", body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<GroupListQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
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
        .map(|c| GroupJid::parse(c, "cursor"))
        .transpose()?;
    let page = state
        .gateway
        .list_groups(&caller.0, &id, after.as_ref(), limit)
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "data": page.items.iter().map(|g| g.to_json(true)).collect::<Vec<_>>(),
        "nextCursor": page.next.map(|j| j.to_string()),
    })))
}

#[utoipa::path(post, path = "/api/v1/sessions/{sessionId}/groups", tag = "groups", operation_id = "create_group",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX")),
    request_body = CreateGroupRequest,
    responses(
        (status = 201, description = "Created, the account its superadmin; `outcomes` says how each participant fared (a `group.joined` event follows).", body = CreatedGroupBody),
        (status = 400, description = "Bad subject or participants (`details.field`).", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `send`.", body = ErrorEnvelope),
        (status = 404, description = "No such session.", body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
        (status = 501, description = "The session is not connected (`details.status`).", body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    let body: CreateGroupRequest = json_body(&req, &body, false)?;
    let subject = GroupSubject::parse(
        body.subject
            .as_deref()
            .ok_or_else(|| ApiError::invalid("subject", "is required"))?,
    )?;
    let participants = jids("participants", body.participants.unwrap_or_default())?;
    let (group, added) = state
        .gateway
        .create_group(&caller.0, &id, &subject, participants)
        .await?;
    let mut answer = group.to_json(true);
    if let Some(o) = answer.as_object_mut() {
        o.insert("outcomes".into(), outcomes(&added));
    }
    Ok(HttpResponse::Created()
        .insert_header((
            actix_web::http::header::LOCATION,
            format!("/api/v1/sessions/{id}/groups/{}", group.jid),
        ))
        .json(answer))
}

#[utoipa::path(get, path = "/api/v1/sessions/{sessionId}/groups/{groupJid}", tag = "groups", operation_id = "get_group",
    params(GroupPath),
    responses(
        (status = 200, description = "The group as WhatsApp has it now.", body = GroupBody),
        (status = 400, description = "Bad id or group JID.", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `read`.", body = ErrorEnvelope),
        (status = 404, description = "No such session, or a group the account is not in.", body = ErrorEnvelope),
        (status = 501, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<GroupPath>,
) -> Result<HttpResponse, ApiError> {
    let (id, jid) = ids(&path)?;
    let group = state.gateway.group(&caller.0, &id, &jid).await?;
    Ok(HttpResponse::Ok().json(group.to_json(true)))
}

#[utoipa::path(patch, path = "/api/v1/sessions/{sessionId}/groups/{groupJid}", tag = "groups", operation_id = "update_group",
    params(GroupPath),
    request_body = UpdateGroupRequest,
    responses(
        (status = 200, description = "Changed; the group after (a `group.updated` event follows).", body = GroupBody),
        (status = 400, description = "Bad id, JID, subject or description, or nothing to change.", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `send`.", body = ErrorEnvelope),
        (status = 404, description = "No such session, or a group the account is not in.", body = ErrorEnvelope),
        (status = 409, description = "Only the group's admins may change this, and the account is not one.", body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
        (status = 501, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<GroupPath>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (id, jid, body): (_, _, UpdateGroupRequest) = group_and_body(&req, &path, &body)?;
    let settings = body.settings.unwrap_or_default();
    let change = GroupChange {
        subject: body
            .subject
            .as_deref()
            .map(GroupSubject::parse)
            .transpose()?,
        description: body
            .description
            .as_deref()
            .map(GroupDescription::parse)
            .transpose()?,
        settings: GroupSettingsPatch {
            announce: settings.announce,
            locked: settings.locked,
            approval: settings.approval,
        },
    };
    let group = state
        .gateway
        .update_group(&caller.0, &id, &jid, &change)
        .await?;
    Ok(HttpResponse::Ok().json(group.to_json(true)))
}

#[utoipa::path(post, path = "/api/v1/sessions/{sessionId}/groups/{groupJid}/participants", tag = "groups", operation_id = "change_group_participants",
    params(GroupPath),
    request_body = ParticipantsRequest,
    responses(
        (status = 200, description = "How each participant fared, in the order named (a `group.participants` event follows for those done).", body = OutcomeList),
        (status = 400, description = "Bad action or participants.", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `send`.", body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
        (status = 409, description = "The account is not an admin of the group.", body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
        (status = 501, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn participants(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<GroupPath>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (id, jid, body): (_, _, ParticipantsRequest) = group_and_body(&req, &path, &body)?;
    let (action, who) = action_and_people(
        body.action,
        body.participants,
        ParticipantAction::parse_request,
    )?;
    let done = state
        .gateway
        .change_participants(&caller.0, &id, &jid, action, who)
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "data": outcomes(&done) })))
}

fn invite_body(code: &InviteCode) -> InviteBody {
    InviteBody {
        code: code.as_str().to_owned(),
        url: code.url(),
    }
}

#[utoipa::path(get, path = "/api/v1/sessions/{sessionId}/groups/{groupJid}/invite", tag = "groups", operation_id = "get_group_invite",
    params(GroupPath),
    responses(
        (status = 200, description = "The group's invite link.", body = InviteBody),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Needs `send`.", body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "The account is not an admin of the group.", body = ErrorEnvelope),
        (status = 501, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn invite(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<GroupPath>,
) -> Result<HttpResponse, ApiError> {
    let (id, jid) = ids(&path)?;
    let code = state
        .gateway
        .invite_code(&caller.0, &id, &jid, false)
        .await?;
    Ok(HttpResponse::Ok().json(invite_body(&code)))
}

#[utoipa::path(post, path = "/api/v1/sessions/{sessionId}/groups/{groupJid}/invite/revoke", tag = "groups", operation_id = "revoke_group_invite",
    params(GroupPath),
    responses(
        (status = 200, description = "The old link stops working; the new one.", body = InviteBody),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Needs `send`.", body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "The account is not an admin of the group.", body = ErrorEnvelope),
        (status = 501, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn revoke_invite(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<GroupPath>,
) -> Result<HttpResponse, ApiError> {
    let (id, jid) = ids(&path)?;
    let code = state
        .gateway
        .invite_code(&caller.0, &id, &jid, true)
        .await?;
    Ok(HttpResponse::Ok().json(invite_body(&code)))
}

#[utoipa::path(post, path = "/api/v1/sessions/{sessionId}/groups/join", tag = "groups", operation_id = "join_group",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX")),
    request_body = JoinGroupRequest,
    responses(
        (status = 200, description = "`joined` (a `group.joined` event follows), or `requested` when an admin must approve.", body = JoinedBody),
        (status = 400, description = "Not an invite code.", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `send`.", body = ErrorEnvelope),
        (status = 404, description = "No such session, or an unknown or revoked code.", body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
        (status = 501, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn join(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    let body: JoinGroupRequest = json_body(&req, &body, false)?;
    let code = InviteCode::parse(
        body.code
            .as_deref()
            .ok_or_else(|| ApiError::invalid("code", "is required"))?,
    )?;
    let answer = match state.gateway.join_group(&caller.0, &id, &code).await? {
        Joined::Member(group) => json!({
            "jid": group.jid.to_string(),
            "status": "joined",
            "group": group.to_json(true),
        }),
        Joined::Requested(jid) => json!({
            "jid": jid.to_string(),
            "status": "requested",
            "group": null,
        }),
    };
    Ok(HttpResponse::Ok().json(answer))
}

#[utoipa::path(post, path = "/api/v1/sessions/{sessionId}/groups/{groupJid}/leave", tag = "groups", operation_id = "leave_group",
    params(GroupPath),
    responses(
        (status = 204, description = "Left (a `group.left` event follows)."),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Needs `send`.", body = ErrorEnvelope),
        (status = 404, description = "No such session, or a group the account is not in.", body = ErrorEnvelope),
        (status = 501, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn leave(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<GroupPath>,
) -> Result<HttpResponse, ApiError> {
    let (id, jid) = ids(&path)?;
    state.gateway.leave_group(&caller.0, &id, &jid).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/api/v1/sessions/{sessionId}/groups/{groupJid}/requests", tag = "groups", operation_id = "list_group_requests",
    params(GroupPath),
    responses(
        (status = 200, description = "Who asks to join (groups with `approval` on).", body = MembershipRequestList),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Needs `send`.", body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "The account is not an admin of the group.", body = ErrorEnvelope),
        (status = 501, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn requests(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<GroupPath>,
) -> Result<HttpResponse, ApiError> {
    let (id, jid) = ids(&path)?;
    let list = state
        .gateway
        .membership_requests(&caller.0, &id, &jid)
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "data": list.iter().map(wagate_domain::MembershipRequest::to_json).collect::<Vec<_>>(),
    })))
}

#[utoipa::path(post, path = "/api/v1/sessions/{sessionId}/groups/{groupJid}/requests", tag = "groups", operation_id = "answer_group_requests",
    params(GroupPath),
    request_body = AnswerRequestsRequest,
    responses(
        (status = 200, description = "How each request fared (`not_member`: no such request); approved people are members (a `group.participants` event follows).", body = OutcomeList),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Needs `send`.", body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "The account is not an admin of the group.", body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
        (status = 501, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn answer_requests(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<GroupPath>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (id, jid, body): (_, _, AnswerRequestsRequest) = group_and_body(&req, &path, &body)?;
    let (action, who) = action_and_people(body.action, body.participants, RequestAction::parse)?;
    let done = state
        .gateway
        .answer_requests(&caller.0, &id, &jid, action, who)
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "data": outcomes(&done) })))
}
