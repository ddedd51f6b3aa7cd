//! The writes both databases make the same way, written once: on a
//! [`Conn`] (a SQLite or a PostgreSQL connection, usually inside the
//! caller's transaction), with `$n` parameters both understand. Each store
//! begins and commits its transactions its own way (SQLite's one writer,
//! PostgreSQL's row locks) and calls these for what happens inside.

use async_trait::async_trait;
use time::OffsetDateTime;
use wagate_domain::{
    ApiKey, ApiKeyId, Delivery, Event, EventCursor, EventData, EventFilter, EventType, Group,
    GroupJid, GroupNotice, GroupParticipant, GroupRole, GroupSettings, Jid, JidKind, MediaInfo,
    Message, MessageId, MessageSource, MessageStatus, MessageType, NewApiKey, OrgId, Page,
    PageRequest, ParticipantAction, Receipt, Recipient, Session, SessionId, SessionStatus,
    StatusTimes, Webhook, WebhookId, WebhookSecret,
};

use crate::groups::GroupPage;
use crate::messages::{
    Accepted, IdempotencyClaim, InboundBody, InboundRecord, MediaSource, MessagePage,
    ParticipantReceipt, ReceiptPage, StatusChange,
};
use crate::rows::{
    Columns, DELIVERY_FINISH, EVENT_INSERT, KEY_INSERT, MESSAGE_CONTENT_UPDATE, MESSAGE_INSERT,
    MESSAGE_STATUS_UPDATE, SESSION_COUNTS, SESSION_INSERT, SESSION_UPDATE, Value, WEBHOOK_INSERT,
    WEBHOOK_UPDATE, attempt_values, bind_values, db_err, delivery_from_row, due_deliveries,
    event_from_row, event_id, event_values, failing_too_long, hook_filter, hook_target,
    key_columns, key_from_row, key_values, media_info, media_source, message_columns,
    message_content_values, message_from_row, message_status_values, message_values, ms, seq_i64,
    seq_u64, session_columns, session_from_row, session_values, status_counts, ts, webhook_columns,
    webhook_from_row, webhook_update_values, webhook_values,
};
use crate::{DueDelivery, EventPage, FinishedAttempt, SessionPatch, StoreError, WebhookPatch};

/// A connection the shared writes run on.
#[async_trait]
pub(crate) trait Conn: Send {
    /// Its rows.
    type Row: Columns + Send + Sync;
    /// Appended to a `SELECT` that reads a row the transaction will write:
    /// ` FOR NO KEY UPDATE` on PostgreSQL (the row lock an `UPDATE` of
    /// non-key columns takes; inserts referencing the row still proceed),
    /// nothing on SQLite (whose write transactions hold the one writer
    /// lock from their start).
    const FOR_UPDATE: &'static str;
    /// Appended to a sub-select of rows to claim: `… SKIP LOCKED` on
    /// PostgreSQL, so concurrent claimers take different rows.
    const SKIP_LOCKED: &'static str;
    /// The larger of two values: SQLite's two-argument `MAX`, PostgreSQL's
    /// `GREATEST`.
    const GREATEST: &'static str;

    /// Runs `sql` with `values`; how many rows it changed.
    async fn run(&mut self, sql: &str, values: Vec<Value>) -> Result<u64, StoreError>;
    /// The rows `sql` returns.
    async fn all(&mut self, sql: &str, values: Vec<Value>) -> Result<Vec<Self::Row>, StoreError>;
    /// The first row `sql` returns, if any.
    async fn one(&mut self, sql: &str, values: Vec<Value>)
    -> Result<Option<Self::Row>, StoreError>;
}

macro_rules! conn_for {
    ($conn:ty, $row:ty, $for_update:expr, $skip_locked:expr, $greatest:expr) => {
        #[async_trait]
        impl Conn for $conn {
            type Row = $row;
            const FOR_UPDATE: &'static str = $for_update;
            const SKIP_LOCKED: &'static str = $skip_locked;
            const GREATEST: &'static str = $greatest;

            async fn run(&mut self, sql: &str, values: Vec<Value>) -> Result<u64, StoreError> {
                let q = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
                let done = bind_values(q, values)
                    .execute(&mut *self)
                    .await
                    .map_err(db_err)?;
                Ok(done.rows_affected())
            }

            async fn all(
                &mut self,
                sql: &str,
                values: Vec<Value>,
            ) -> Result<Vec<Self::Row>, StoreError> {
                let q = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
                bind_values(q, values)
                    .fetch_all(&mut *self)
                    .await
                    .map_err(db_err)
            }

            async fn one(
                &mut self,
                sql: &str,
                values: Vec<Value>,
            ) -> Result<Option<Self::Row>, StoreError> {
                let q = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
                bind_values(q, values)
                    .fetch_optional(&mut *self)
                    .await
                    .map_err(db_err)
            }
        }
    };
}

#[cfg(feature = "sqlite")]
conn_for!(
    sqlx::SqliteConnection,
    sqlx::sqlite::SqliteRow,
    "",
    "",
    "MAX"
);
#[cfg(feature = "postgres")]
conn_for!(
    sqlx::PgConnection,
    sqlx::postgres::PgRow,
    " FOR NO KEY UPDATE",
    " FOR NO KEY UPDATE SKIP LOCKED",
    "GREATEST"
);

fn text(s: impl Into<String>) -> Value {
    Value::Text(Some(s.into()))
}

fn int(i: i64) -> Value {
    Value::Int(Some(i))
}

/// Session `id` (of `org`, when given); `lock`: to be written by this
/// transaction.
pub(crate) async fn fetch_session<C: Conn>(
    conn: &mut C,
    org: Option<&OrgId>,
    id: &SessionId,
    lock: bool,
) -> Result<Option<Session>, StoreError> {
    let sql = format!(
        "{}{}",
        concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE id = $1"
        ),
        if lock { C::FOR_UPDATE } else { "" }
    );
    let row = conn.one(&sql, vec![text(id.to_string())]).await?;
    let session = row.as_ref().map(session_from_row).transpose()?;
    Ok(session.filter(|s| org.is_none_or(|org| s.org == *org)))
}

/// A patch written: the session before, after (`None`: unchanged), and the
/// events to record with it.
pub(crate) type Patched = (Session, Option<Session>, Vec<EventData>);

/// Reads session `id` (locked), applies `patch` ([`SessionPatch::apply`])
/// and writes the result; `None` when there is no such session. The
/// caller records the events and commits.
pub(crate) async fn patch_session<C: Conn>(
    conn: &mut C,
    org: Option<&OrgId>,
    id: &SessionId,
    patch: &SessionPatch,
    now: OffsetDateTime,
) -> Result<Option<Patched>, StoreError> {
    let Some(current) = fetch_session(conn, org, id, true).await? else {
        return Ok(None);
    };
    let next = patch.apply(&current, now)?;
    if let Some(next) = &next {
        conn.run(SESSION_UPDATE, session_values(next)?).await?;
    }
    let events = patch.events(&current, next.as_ref());
    Ok(Some((current, next, events)))
}

/// Appends `events` to `org`'s log in the caller's transaction, and queues
/// a delivery of each to every enabled webhook of `org` that wants it.
/// Whether deliveries were queued.
pub(crate) async fn append<C: Conn>(
    conn: &mut C,
    org: &OrgId,
    session: Option<&SessionId>,
    events: &[EventData],
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    if events.is_empty() {
        return Ok(false);
    }
    let n = i64::try_from(events.len()).unwrap_or(i64::MAX);
    // The organization's counter: taken here, and held (SQLite's writer
    // lock, PostgreSQL's row lock) until the transaction ends, so no reader
    // sees seq N+1 before N is committed.
    let counter = conn
        .one(
            "INSERT INTO event_logs (org_id, last_seq) VALUES ($1, $2) \
             ON CONFLICT (org_id) DO UPDATE SET last_seq = event_logs.last_seq + excluded.last_seq \
             RETURNING last_seq",
            vec![text(org.as_str()), int(n)],
        )
        .await?
        .ok_or_else(|| StoreError::Unavailable("the event counter returned no row".into()))?;
    let last = counter.need_int("last_seq")?;
    let hooks = enabled_webhooks(conn, org).await?;
    let mut queued = false;
    for (i, data) in events.iter().enumerate() {
        let seq = last - n + 1 + i64::try_from(i).unwrap_or(0);
        let event = Event {
            id: event_id(now),
            cursor: EventCursor::from_seq(seq_u64(seq)),
            org: org.clone(),
            session: session.copied(),
            occurred_at: now,
            data: data.clone(),
        };
        conn.run(EVENT_INSERT, event_values(&event, seq)).await?;
        let body = event.to_json().to_string();
        for (hook, filter) in &hooks {
            if filter.matches(data.event_type(), session) {
                queue(conn, hook, org, &event, &body, now).await?;
                queued = true;
            }
        }
    }
    Ok(queued)
}

/// `next_ms` of a first attempt: due from its commit. Not the writer's
/// clock: that is read before the write lock is taken, so two writers'
/// times can disagree with the order their events commit in, and claims
/// (`ORDER BY next_ms, seq`) would then send first attempts out of cursor
/// order. At 0 they all sort before any retry, by `seq`: commit order.
const FIRST_ATTEMPT_DUE_MS: i64 = 0;

/// Queues (or queues again) `event` for webhook `hook`: a first attempt,
/// due at once.
pub(crate) async fn queue<C: Conn>(
    conn: &mut C,
    hook: &WebhookId,
    org: &OrgId,
    event: &Event,
    body: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let in_log = event.data.event_type() != EventType::WebhookTest;
    conn.run(
        "INSERT INTO deliveries (webhook_id, org_id, event_id, event_seq, body, state, attempt, next_ms, at) \
         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7) \
         ON CONFLICT (webhook_id, event_id) DO UPDATE SET state = 'pending', attempt = 0, \
         next_ms = excluded.next_ms, claimed_until = NULL, response_status = NULL, error = NULL, \
         at = excluded.at, duration_ms = NULL",
        vec![
            text(hook.to_string()),
            text(org.as_str()),
            text(event.id.to_string()),
            Value::Int(in_log.then(|| seq_i64(event.cursor.seq()))),
            text(body),
            int(FIRST_ATTEMPT_DUE_MS),
            text(ts(now)),
        ],
    )
    .await?;
    Ok(())
}

async fn enabled_webhooks<C: Conn>(
    conn: &mut C,
    org: &OrgId,
) -> Result<Vec<(WebhookId, EventFilter)>, StoreError> {
    let rows = conn
        .all(
            "SELECT id, events, session_ids FROM webhooks WHERE org_id = $1 AND enabled = TRUE",
            vec![text(org.as_str())],
        )
        .await?;
    rows.iter().map(hook_filter).collect()
}

/// Claims up to `limit` due deliveries of webhook `id` (see
/// [`WebhookStore::claim_due`](crate::WebhookStore::claim_due)) in the
/// caller's transaction. The webhook's row is read for update, so two
/// claimers of one webhook take turns, and the second sees the first's
/// claim.
pub(crate) async fn claim_due<C: Conn>(
    conn: &mut C,
    id: &WebhookId,
    now: OffsetDateTime,
    hold_until: OffsetDateTime,
    limit: u32,
) -> Result<Vec<DueDelivery>, StoreError> {
    let sql = format!(
        "SELECT org_id, url, secret, previous_secret, previous_secret_until, enabled \
         FROM webhooks WHERE id = $1{}",
        C::FOR_UPDATE
    );
    let Some(hook) = conn.one(&sql, vec![text(id.to_string())]).await? else {
        return Ok(Vec::new());
    };
    if !hook.flag("enabled")? {
        return Ok(Vec::new());
    }
    let target = hook_target(&hook, now)?;
    let sql = format!(
        "UPDATE deliveries SET claimed_until = $1 WHERE seq IN (SELECT seq FROM deliveries \
         WHERE webhook_id = $2 AND state = 'pending' AND next_ms <= $3 \
         AND (claimed_until IS NULL OR claimed_until <= $3) ORDER BY next_ms, seq LIMIT $4{}) \
         AND NOT EXISTS (SELECT 1 FROM deliveries h WHERE h.webhook_id = $2 \
           AND h.state = 'pending' AND h.claimed_until > $3) \
         RETURNING seq, next_ms, event_id, body, attempt",
        C::SKIP_LOCKED
    );
    let rows = conn
        .all(
            &sql,
            vec![
                int(ms(hold_until)),
                text(id.to_string()),
                int(ms(now)),
                int(i64::from(limit)),
            ],
        )
        .await?;
    due_deliveries(&rows, id, &target)
}

/// Records one attempt inside the caller's transaction.
pub(crate) async fn finish_one<C: Conn>(
    conn: &mut C,
    attempt: &FinishedAttempt,
    now: OffsetDateTime,
    disable_after: time::Duration,
) -> Result<(), StoreError> {
    if attempt.outcome == crate::AttemptOutcome::Released {
        conn.run(
            "UPDATE deliveries SET claimed_until = NULL WHERE seq = $1 AND state = 'pending'",
            vec![int(seq_i64(attempt.seq))],
        )
        .await?;
        return Ok(());
    }
    let row = conn
        .one(DELIVERY_FINISH, attempt_values(attempt, now))
        .await?;
    let Some(hook) = row.map(|r| r.need("webhook_id")).transpose()? else {
        return Ok(()); // the webhook was deleted meanwhile
    };
    let disable = match &attempt.outcome {
        crate::AttemptOutcome::Delivered { .. } => {
            conn.run(
                "UPDATE webhooks SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL",
                vec![text(hook.as_str())],
            )
            .await?;
            None
        }
        crate::AttemptOutcome::Gone => Some("the receiver answered 410 Gone".to_owned()),
        crate::AttemptOutcome::Released => None,
        crate::AttemptOutcome::Retry { .. } | crate::AttemptOutcome::Failed { .. } => {
            let since = conn
                .one(
                    "UPDATE webhooks SET failing_since = COALESCE(failing_since, $1) WHERE id = $2 \
                     RETURNING failing_since",
                    vec![int(ms(now)), text(hook.as_str())],
                )
                .await?
                .map(|r| r.need_int("failing_since"))
                .transpose()?
                .unwrap_or(ms(now));
            failing_too_long(since, now, disable_after)
        }
    };
    if let Some(reason) = disable {
        conn.run(
            "UPDATE webhooks SET enabled = FALSE, disabled_reason = $1, updated_at = $2 WHERE id = $3",
            vec![text(reason.as_str()), text(ts(now)), text(hook.as_str())],
        )
        .await?;
        conn.run(
            "UPDATE deliveries SET state = 'failed', error = $1, next_ms = NULL, claimed_until = NULL \
             WHERE webhook_id = $2 AND state = 'pending'",
            vec![text(format!("not sent: {reason}")), text(hook.as_str())],
        )
        .await?;
    }
    Ok(())
}

/// Inserts `m` unless a message with its (session, chat, sender, id)
/// exists; whether it was inserted.
pub(crate) async fn insert_message<C: Conn>(
    conn: &mut C,
    org: &OrgId,
    m: &Message,
    media_ref: Option<&[u8]>,
    media_data: Option<&[u8]>,
) -> Result<bool, StoreError> {
    let n = conn
        .run(
            MESSAGE_INSERT,
            message_values(org, m, media_ref, media_data),
        )
        .await?;
    Ok(n == 1)
}

/// The organization and own JID of session `id`; `lock`: the session's
/// row is held until the transaction ends (writes of one session's
/// messages take turns).
pub(crate) async fn session_owner<C: Conn>(
    conn: &mut C,
    id: &SessionId,
    lock: bool,
) -> Result<Option<(OrgId, Option<Jid>)>, StoreError> {
    let sql = format!(
        "SELECT org_id, jid FROM sessions WHERE id = $1{}",
        if lock { C::FOR_UPDATE } else { "" }
    );
    let Some(row) = conn.one(&sql, vec![text(id.to_string())]).await? else {
        return Ok(None);
    };
    Ok(Some((
        row.parsed("org_id", OrgId::parse)?,
        row.opt_parsed("jid", Jid::parse)?,
    )))
}

/// The outgoing messages `id` of `session`, newest first, with their `seq`.
pub(crate) async fn outgoing<C: Conn>(
    conn: &mut C,
    session: &SessionId,
    id: &str,
) -> Result<Vec<(u64, Message)>, StoreError> {
    let sql = concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE session_id = $1 AND id = $2 AND from_me = TRUE ORDER BY seq DESC"
    );
    let rows = conn
        .all(sql, vec![text(session.to_string()), text(id)])
        .await?;
    rows.iter().map(message_from_row).collect()
}

/// What `claim` answers in `org`'s session (see
/// [`MessageStore::idempotent_answer`](crate::MessageStore::idempotent_answer)).
pub(crate) async fn idempotent_answer<C: Conn>(
    conn: &mut C,
    org: &OrgId,
    session: &SessionId,
    claim: &IdempotencyClaim,
) -> Result<Option<Accepted>, StoreError> {
    let row = conn
        .one(
            "SELECT request_hash, message_id, created_ms FROM idempotency_keys \
             WHERE org_id = $1 AND session_id = $2 AND key = $3",
            vec![
                text(org.as_str()),
                text(session.to_string()),
                text(claim.key.as_str()),
            ],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    if row.need_int("created_ms")? < ms(claim.not_before) {
        return Ok(None);
    }
    if row.bytes("request_hash")?.unwrap_or_default() != claim.request_hash {
        return Ok(Some(Accepted::KeyConflict));
    }
    let id = row.need("message_id")?;
    Ok(outgoing(conn, session, &id)
        .await?
        .into_iter()
        .next()
        .map(|(_, first)| Accepted::Replayed(first)))
}

/// Decides and writes [`MessageStore::accept_outgoing`](crate::MessageStore::accept_outgoing)
/// in the caller's transaction (the caller commits on [`Accepted::New`]).
pub(crate) async fn accept_outgoing<C: Conn>(
    conn: &mut C,
    org: &OrgId,
    message: &Message,
    media_data: Option<&[u8]>,
    idempotency: Option<&IdempotencyClaim>,
    max_queue: u32,
) -> Result<Accepted, StoreError> {
    // One accept of a session at a time: the key check and the queue
    // bound are decided on what the previous one wrote.
    let own = session_owner(conn, &message.session, true)
        .await?
        .and_then(|(_, own)| own);
    let session = message.session.to_string();
    if let Some(claim) = idempotency {
        if let Some(answer) = idempotent_answer(conn, org, &message.session, claim).await? {
            return Ok(answer);
        }
        // Unused, expired, or its message is gone: the key is free.
        conn.run(
            "DELETE FROM idempotency_keys WHERE org_id = $1 AND session_id = $2 AND key = $3",
            vec![
                text(org.as_str()),
                text(session.as_str()),
                text(claim.key.as_str()),
            ],
        )
        .await?;
    }
    let queued = conn
        .one(
            "SELECT COUNT(*) AS n FROM messages WHERE session_id = $1 AND status = 'pending'",
            vec![text(session.as_str())],
        )
        .await?
        .map(|r| r.need_int("n"))
        .transpose()?
        .unwrap_or(0);
    if queued >= i64::from(max_queue) {
        return Ok(Accepted::QueueFull);
    }
    if !insert_message(conn, org, message, None, media_data).await? {
        return Err(StoreError::Conflict(format!(
            "message {} exists",
            message.id
        )));
    }
    expect_receipts(conn, own.as_ref(), message).await?;
    if let Some(claim) = idempotency {
        conn.run(
            "INSERT INTO idempotency_keys (org_id, session_id, key, request_hash, message_id, \
             created_at, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vec![
                text(org.as_str()),
                text(session.as_str()),
                text(claim.key.as_str()),
                Value::Bytes(Some(claim.request_hash.to_vec())),
                text(message.id.as_str()),
                text(ts(message.created_at)),
                int(ms(message.created_at)),
            ],
        )
        .await?;
    }
    Ok(Accepted::New(message.clone()))
}

/// Inbound messages recorded: the session's organization, how many were
/// new, and their events.
pub(crate) type Recorded = (OrgId, u32, Vec<EventData>);

/// Writes [`MessageStore::record_inbound`](crate::MessageStore::record_inbound)
/// in the caller's transaction; `None` when the session does not exist.
pub(crate) async fn record_inbound<C: Conn>(
    conn: &mut C,
    session: &SessionId,
    messages: &[InboundRecord],
    now: OffsetDateTime,
) -> Result<Option<Recorded>, StoreError> {
    let Some((org, own)) = session_owner(conn, session, true).await? else {
        return Ok(None);
    };
    let mut recorded = 0;
    let mut events = Vec::new();
    for r in messages {
        if let InboundBody::Edit { target, .. }
        | InboundBody::Revoke { target }
        | InboundBody::PollVote { target, .. } = &r.body
        {
            let n = conn
                .run(
                    "INSERT INTO message_changes (session_id, chat, sender, id, target, at) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (session_id, chat, sender, id) DO NOTHING",
                    vec![
                        text(session.to_string()),
                        text(r.chat.to_string()),
                        text(r.sender.to_string()),
                        text(r.id.as_str()),
                        text(target.as_str()),
                        text(ts(r.timestamp)),
                    ],
                )
                .await?;
            let applied = match &r.body {
                _ if n != 1 => None,
                InboundBody::PollVote { selected, .. } => {
                    crate::polls::apply_vote(conn, session, r, target, selected).await?
                }
                _ => apply_change(conn, session, r, target).await?,
            };
            if let Some(event) = applied {
                recorded += 1;
                events.push(event);
            }
            continue;
        }
        if let InboundBody::Reaction { target, emoji } = &r.body {
            let n = conn
                .run(
                    "INSERT INTO message_reactions (session_id, chat, sender, id, target, emoji, at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (session_id, chat, sender, id) DO NOTHING",
                    vec![
                        text(session.to_string()),
                        text(r.chat.to_string()),
                        text(r.sender.to_string()),
                        text(r.id.as_str()),
                        text(target.as_str()),
                        text(emoji.as_str()),
                        text(ts(r.timestamp)),
                    ],
                )
                .await?;
            if n == 1 {
                recorded += 1;
                events.push(EventData::MessageReaction {
                    id: target.clone(),
                    chat: r.chat.clone(),
                    from: r.sender.clone(),
                    emoji: emoji.clone(),
                });
            }
            continue;
        }
        let message = inbound_message(session, own.as_ref(), r, now);
        let media_ref = match &r.body {
            InboundBody::Media { media_ref, .. } => Some(media_ref.as_slice()),
            _ => None,
        };
        if insert_message(conn, &org, &message, media_ref, None).await? {
            recorded += 1;
            events.push(inbound_event(r, message));
        }
    }
    Ok(Some((org, recorded, events)))
}

/// Applies the edit or deletion `r` to the message `target` its writer
/// wrote in its chat; the event that reports it, or `None` when there is
/// no such message or the change does nothing to it.
async fn apply_change<C: Conn>(
    conn: &mut C,
    session: &SessionId,
    r: &InboundRecord,
    target: &MessageId,
) -> Result<Option<EventData>, StoreError> {
    // The account's own messages by session and id (a chat may be named
    // by LID or phone number), a contact's in its chat.
    let sql = concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE session_id = $1 AND id = $2 AND from_me = $3 \
          AND (from_me OR chat = $4) ORDER BY seq LIMIT 1"
    );
    let row = conn
        .one(
            sql,
            vec![
                text(session.to_string()),
                text(target.as_str()),
                Value::Flag(r.from_me),
                text(r.chat.to_string()),
            ],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (seq, mut message) = message_from_row(&row)?;
    let event = match &r.body {
        InboundBody::Edit { text, .. } => match message.edit(text, r.timestamp) {
            Some(previous_text) => EventData::MessageEdited {
                message: Box::new(message.clone()),
                previous_text,
            },
            None => return Ok(None),
        },
        InboundBody::Revoke { .. } if message.revoke() => EventData::MessageRevoked {
            message: Box::new(message.clone()),
        },
        _ => return Ok(None),
    };
    conn.run(
        MESSAGE_CONTENT_UPDATE,
        message_content_values(&message, seq_i64(seq)),
    )
    .await?;
    Ok(Some(event))
}

/// Status changes written: the session's organization, the messages
/// changed, and their events.
pub(crate) type StatusesMoved = (OrgId, Vec<Message>, Vec<EventData>);

/// Writes [`MessageStore::update_status`](crate::MessageStore::update_status)
/// in the caller's transaction; `None` when the session does not exist.
pub(crate) async fn update_status<C: Conn>(
    conn: &mut C,
    session: &SessionId,
    ids: &[MessageId],
    change: &StatusChange,
) -> Result<Option<StatusesMoved>, StoreError> {
    let Some((org, _)) = session_owner(conn, session, true).await? else {
        return Ok(None);
    };
    let mut changed = Vec::new();
    let mut events = Vec::new();
    for id in ids {
        for (seq, current) in outgoing(conn, session, id.as_str()).await? {
            move_message(conn, seq, &current, change, &mut changed, &mut events).await?;
        }
    }
    Ok(Some((org, changed, events)))
}

/// Moves message `current` (row `seq`) to `change.status` if that is
/// forward, adding it to `changed` and its events to `events`.
async fn move_message<C: Conn>(
    conn: &mut C,
    seq: u64,
    current: &Message,
    change: &StatusChange,
    changed: &mut Vec<Message>,
    events: &mut Vec<EventData>,
) -> Result<(), StoreError> {
    let Some((next, moved)) = advance(current, change) else {
        return Ok(());
    };
    let mut values = message_status_values(&next);
    values.push(int(seq_i64(seq)));
    conn.run(MESSAGE_STATUS_UPDATE, values).await?;
    events.extend(moved);
    changed.push(next);
    Ok(())
}

// ---- Receipts (`message_receipts`: one row per outgoing group message
// and recipient, under its `Recipient::key`).

macro_rules! receipt_columns {
    () => {
        "participant, jid, pn, lid, expected, status, delivered_at, read_at, played_at"
    };
}

/// Rows one multi-row insert of receipts writes at most (10 parameters
/// each).
const RECEIPTS_PER_INSERT: usize = 90;

fn receipt_values(seq: u64, r: &Receipt, expected: bool) -> [Value; 10] {
    [
        int(seq_i64(seq)),
        text(r.recipient.key().to_string()),
        text(r.recipient.jid.to_string()),
        Value::Text(r.recipient.pn.as_ref().map(ToString::to_string)),
        Value::Text(r.recipient.lid.as_ref().map(ToString::to_string)),
        Value::Flag(expected),
        text(r.status.as_str()),
        Value::Text(r.status_at.delivered.map(ts)),
        Value::Text(r.status_at.read.map(ts)),
        Value::Text(r.status_at.played.map(ts)),
    ]
}

/// A receipt row, and whether its recipient was expected.
fn receipt_from_row(r: &impl Columns) -> Result<(Receipt, bool), StoreError> {
    let receipt = Receipt {
        recipient: Recipient {
            jid: r.parsed("jid", Jid::parse)?,
            pn: r.opt_parsed("pn", Jid::parse)?,
            lid: r.opt_parsed("lid", Jid::parse)?,
        },
        status: r.parsed("status", MessageStatus::parse)?,
        status_at: StatusTimes {
            sent: None,
            delivered: r.opt_time("delivered_at")?,
            read: r.opt_time("read_at")?,
            played: r.opt_time("played_at")?,
        },
    };
    Ok((receipt, r.flag("expected")?))
}

/// Inserts `receipts` of message `seq` (a recipient already there is
/// left as it is).
async fn insert_receipts<C: Conn>(
    conn: &mut C,
    seq: u64,
    receipts: &[Receipt],
    expected: bool,
) -> Result<(), StoreError> {
    for chunk in receipts.chunks(RECEIPTS_PER_INSERT) {
        let mut q = Sql::new(concat!(
            "INSERT INTO message_receipts (message_seq, ",
            receipt_columns!(),
            ") VALUES "
        ));
        for (i, r) in chunk.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.bind_list(receipt_values(seq, r, expected));
        }
        q.push(" ON CONFLICT (message_seq, participant) DO NOTHING");
        q.run(conn).await?;
    }
    Ok(())
}

/// Writes a `pending` receipt of the just inserted outgoing `message` for
/// each participant of its group but the account (`own`), as the store
/// has the group; nothing for a chat, or a group the store does not have.
async fn expect_receipts<C: Conn>(
    conn: &mut C,
    own: Option<&Jid>,
    message: &Message,
) -> Result<(), StoreError> {
    let Ok(group) = GroupJid::from_jid(message.chat.clone()) else {
        return Ok(());
    };
    let Some(g) = fetch_group(conn, &message.session, &group, false).await? else {
        return Ok(());
    };
    let receipts: Vec<Receipt> = g
        .participants
        .iter()
        .filter(|p| !own.is_some_and(|me| p.is(me)))
        .map(|p| Receipt {
            recipient: Recipient::from_participant(p),
            status: MessageStatus::Pending,
            status_at: StatusTimes::default(),
        })
        .collect();
    if receipts.is_empty() {
        return Ok(());
    }
    let row = conn
        .one(
            "SELECT seq FROM messages WHERE session_id = $1 AND chat = $2 AND sender = $3 \
             AND id = $4",
            vec![
                text(message.session.to_string()),
                text(message.chat.to_string()),
                text(message.from.to_string()),
                text(message.id.as_str()),
            ],
        )
        .await?
        .ok_or_else(|| StoreError::Corrupt("the message just inserted is gone".into()))?;
    insert_receipts(conn, seq_u64(row.need_int("seq")?), &receipts, true).await
}

/// Applies `participant`'s receipt `change` to message `seq`'s recipients;
/// the status the counted recipients now make of the message, or `None`
/// when the receipt changed no recipient or they make none yet.
async fn take_receipt<C: Conn>(
    conn: &mut C,
    seq: u64,
    participant: &Recipient,
    change: &StatusChange,
) -> Result<Option<MessageStatus>, StoreError> {
    if !matches!(
        change.status,
        MessageStatus::Delivered | MessageStatus::Read | MessageStatus::Played
    ) {
        return Ok(None);
    }
    // Only this recipient's row, by any name it is known by (a receipt may
    // name by LID a member kept under its number), and then the statuses
    // grouped: a receipt costs the same in a group of 5 or of 1,000.
    let names: Vec<String> = participant.names().iter().map(|j| j.to_string()).collect();
    let mut q = Sql::new(concat!(
        "SELECT ",
        receipt_columns!(),
        " FROM message_receipts WHERE message_seq = "
    ));
    q.bind(int(seq_i64(seq)));
    for (i, column) in ["jid", "pn", "lid"].into_iter().enumerate() {
        q.push(if i == 0 { " AND (" } else { " OR " })
            .push(column)
            .push(" IN (");
        for (j, name) in names.iter().enumerate() {
            if j > 0 {
                q.push(", ");
            }
            q.bind(text(name.clone()));
        }
        q.push(")");
    }
    q.push(")");
    let mine = q
        .all(conn)
        .await?
        .iter()
        .map(receipt_from_row)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .find(|(r, _)| r.recipient.is(participant));
    match mine {
        Some((mut r, _)) => {
            if !r.status.advances_to(change.status) {
                return Ok(None);
            }
            r.status = change.status;
            r.status_at.reach(change.status, change.at);
            let [.., status, delivered, read, played] = receipt_values(seq, &r, false);
            conn.run(
                "UPDATE message_receipts SET status = $1, delivered_at = $2, read_at = $3, \
                 played_at = $4 WHERE message_seq = $5 AND participant = $6",
                vec![
                    status,
                    delivered,
                    read,
                    played,
                    int(seq_i64(seq)),
                    text(r.recipient.key().to_string()),
                ],
            )
            .await?;
        }
        None => {
            let mut r = Receipt {
                recipient: participant.clone(),
                status: change.status,
                status_at: StatusTimes::default(),
            };
            r.status_at.reach(change.status, change.at);
            insert_receipts(conn, seq, std::slice::from_ref(&r), false).await?;
        }
    }
    // The lowest status among the expected recipients (everyone's when
    // nobody was expected), as `aggregate_status` orders them, in one pass
    // without sorting: delivered 1, read 2, played 3, anything else
    // (pending) 0, which moves nothing.
    let row = conn
        .one(
            "SELECT CAST(MAX(CASE WHEN expected THEN 1 ELSE 0 END) AS BIGINT) AS anyone, \
             CAST(MIN(CASE WHEN expected THEN (CASE status WHEN 'delivered' THEN 1 \
             WHEN 'read' THEN 2 WHEN 'played' THEN 3 ELSE 0 END) END) AS BIGINT) AS low_expected, \
             CAST(MIN(CASE status WHEN 'delivered' THEN 1 WHEN 'read' THEN 2 \
             WHEN 'played' THEN 3 ELSE 0 END) AS BIGINT) AS low_all \
             FROM message_receipts WHERE message_seq = $1",
            vec![int(seq_i64(seq))],
        )
        .await?
        .ok_or_else(|| StoreError::Corrupt("no receipt after writing one".into()))?;
    let low = if row.int("anyone")? == Some(1) {
        row.int("low_expected")?
    } else {
        row.int("low_all")?
    };
    Ok(low.and_then(|rank| match rank {
        1 => Some(MessageStatus::Delivered),
        2 => Some(MessageStatus::Read),
        3 => Some(MessageStatus::Played),
        _ => None,
    }))
}

/// Writes [`MessageStore::record_receipt`](crate::MessageStore::record_receipt)
/// in the caller's transaction; `None` when the session does not exist.
pub(crate) async fn record_receipt<C: Conn>(
    conn: &mut C,
    session: &SessionId,
    ids: &[MessageId],
    participant: &Recipient,
    change: &StatusChange,
) -> Result<Option<StatusesMoved>, StoreError> {
    let Some((org, _)) = session_owner(conn, session, true).await? else {
        return Ok(None);
    };
    let mut changed = Vec::new();
    let mut events = Vec::new();
    take_receipts(
        conn,
        session,
        ids,
        participant,
        change,
        &mut changed,
        &mut events,
    )
    .await?;
    Ok(Some((org, changed, events)))
}

/// Writes [`MessageStore::record_receipts`](crate::MessageStore::record_receipts)
/// in the caller's transaction; `None` when the session does not exist.
pub(crate) async fn record_receipts<C: Conn>(
    conn: &mut C,
    session: &SessionId,
    receipts: &[ParticipantReceipt],
) -> Result<Option<StatusesMoved>, StoreError> {
    let Some((org, _)) = session_owner(conn, session, true).await? else {
        return Ok(None);
    };
    let mut changed = Vec::new();
    let mut events = Vec::new();
    for r in receipts {
        take_receipts(
            conn,
            session,
            &r.ids,
            &r.participant,
            &r.change,
            &mut changed,
            &mut events,
        )
        .await?;
    }
    Ok(Some((org, changed, events)))
}

/// One participant's receipt of `ids`: each message moved as its
/// recipients' statuses say, into `changed` and `events`.
async fn take_receipts<C: Conn>(
    conn: &mut C,
    session: &SessionId,
    ids: &[MessageId],
    participant: &Recipient,
    change: &StatusChange,
    changed: &mut Vec<Message>,
    events: &mut Vec<EventData>,
) -> Result<(), StoreError> {
    for id in ids {
        for (seq, current) in outgoing(conn, session, id.as_str()).await? {
            let status = if current.chat.kind() == JidKind::Group {
                match take_receipt(conn, seq, participant, change).await? {
                    Some(status) => status,
                    None => continue,
                }
            } else {
                change.status
            };
            let moved = StatusChange {
                status,
                at: change.at,
                error: None,
            };
            move_message(conn, seq, &current, &moved, changed, events).await?;
        }
    }
    Ok(())
}

/// A page of the receipts of `org`'s session's outgoing message `id`
/// (see [`MessageStore::receipts`](crate::MessageStore::receipts)).
pub(crate) async fn receipts<C: Conn>(
    conn: &mut C,
    org: &OrgId,
    session: &SessionId,
    id: &MessageId,
    after: Option<&Jid>,
    limit: u32,
) -> Result<Option<ReceiptPage>, StoreError> {
    let Some(row) = conn
        .one(
            "SELECT seq FROM messages WHERE org_id = $1 AND session_id = $2 AND id = $3 \
             AND from_me = TRUE ORDER BY seq LIMIT 1",
            vec![
                text(org.as_str()),
                text(session.to_string()),
                text(id.as_str()),
            ],
        )
        .await?
    else {
        return Ok(None);
    };
    let mut q = Sql::new(concat!(
        "SELECT ",
        receipt_columns!(),
        " FROM message_receipts WHERE message_seq = "
    ));
    q.bind(int(row.need_int("seq")?));
    if let Some(after) = after {
        q.push(" AND participant > ").bind(text(after.to_string()));
    }
    // One extra row tells whether another page follows.
    q.push(" ORDER BY participant LIMIT ")
        .bind(int(i64::from(limit) + 1));
    let mut items = q
        .all(conn)
        .await?
        .iter()
        .map(|r| receipt_from_row(r).map(|(receipt, _)| receipt))
        .collect::<Result<Vec<_>, _>>()?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next = if more {
        items.last().map(|r| r.recipient.key().clone())
    } else {
        None
    };
    Ok(Some(ReceiptPage { items, next }))
}

/// A statement built piece by piece, its parameters numbered as they are
/// bound.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    text: String,
    values: Vec<Value>,
}

impl Sql {
    pub(crate) fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            values: Vec::new(),
        }
    }

    /// Appends SQL text.
    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends the next parameter, bound to `value`.
    pub(crate) fn bind(&mut self, value: Value) -> &mut Self {
        self.values.push(value);
        self.text.push_str(&format!("${}", self.values.len()));
        self
    }

    /// Appends `(p1, p2, …)` bound to `values` (at least one).
    pub(crate) fn bind_list(&mut self, values: impl IntoIterator<Item = Value>) -> &mut Self {
        self.text.push('(');
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(v);
        }
        self.text.push(')');
        self
    }

    pub(crate) async fn run<C: Conn>(self, conn: &mut C) -> Result<u64, StoreError> {
        conn.run(&self.text, self.values).await
    }

    pub(crate) async fn all<C: Conn>(self, conn: &mut C) -> Result<Vec<C::Row>, StoreError> {
        conn.all(&self.text, self.values).await
    }

    pub(crate) async fn one<C: Conn>(self, conn: &mut C) -> Result<Option<C::Row>, StoreError> {
        conn.one(&self.text, self.values).await
    }
}

// ---- Sessions and API keys.

pub(crate) async fn insert_session<C: Conn>(conn: &mut C, s: &Session) -> Result<(), StoreError> {
    conn.run(SESSION_INSERT, session_values(s)?).await?;
    Ok(())
}

pub(crate) async fn list_sessions<C: Conn>(
    conn: &mut C,
    org: &OrgId,
    page: PageRequest,
) -> Result<Page<Session>, StoreError> {
    let mut q = Sql::new(concat!(
        "SELECT ",
        session_columns!(),
        " FROM sessions WHERE org_id = "
    ));
    q.bind(text(org.as_str()));
    if let Some(after) = page.after {
        q.push(" AND id < ").bind(text(after.to_string()));
    }
    // One extra row tells whether another page follows.
    q.push(" ORDER BY id DESC LIMIT ")
        .bind(int(i64::from(page.limit()) + 1));
    let rows = q.all(conn).await?;
    let mut items = rows
        .iter()
        .map(session_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let more = items.len() > page.limit() as usize;
    items.truncate(page.limit() as usize);
    let next_cursor = if more {
        items.last().map(|s| s.id)
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

/// Deletes session `id` of `org`; the status it had, or `None` when there
/// was no such session. The caller records `session.deleted` and commits.
pub(crate) async fn delete_session<C: Conn>(
    conn: &mut C,
    org: &OrgId,
    id: &SessionId,
) -> Result<Option<Option<SessionStatus>>, StoreError> {
    let row = conn
        .one(
            "DELETE FROM sessions WHERE id = $1 AND org_id = $2 RETURNING status",
            vec![text(id.to_string()), text(org.as_str())],
        )
        .await?;
    row.map(|r| Ok(SessionStatus::from_name(&r.need("status")?)))
        .transpose()
}

pub(crate) async fn count_sessions<C: Conn>(
    conn: &mut C,
) -> Result<Vec<(SessionStatus, u64)>, StoreError> {
    status_counts(&conn.all(SESSION_COUNTS, Vec::new()).await?)
}

pub(crate) async fn insert_key<C: Conn>(conn: &mut C, new: &NewApiKey) -> Result<(), StoreError> {
    conn.run(KEY_INSERT, key_values(new)).await?;
    Ok(())
}

pub(crate) async fn find_key<C: Conn>(
    conn: &mut C,
    hash: &[u8; 32],
) -> Result<Option<ApiKey>, StoreError> {
    let sql = concat!(
        "SELECT ",
        key_columns!(),
        " FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL"
    );
    let row = conn
        .one(sql, vec![Value::Bytes(Some(hash.to_vec()))])
        .await?;
    row.as_ref().map(key_from_row).transpose()
}

pub(crate) async fn list_keys<C: Conn>(
    conn: &mut C,
    org: &OrgId,
) -> Result<Vec<ApiKey>, StoreError> {
    let sql = concat!(
        "SELECT ",
        key_columns!(),
        " FROM api_keys WHERE org_id = $1 AND revoked_at IS NULL ORDER BY id"
    );
    let rows = conn.all(sql, vec![text(org.as_str())]).await?;
    rows.iter().map(key_from_row).collect()
}

pub(crate) async fn revoke_key<C: Conn>(
    conn: &mut C,
    org: Option<&OrgId>,
    id: &ApiKeyId,
    now: OffsetDateTime,
) -> Result<Option<ApiKey>, StoreError> {
    let mut q = Sql::new("UPDATE api_keys SET revoked_at = ");
    q.bind(text(ts(now)))
        .push(" WHERE revoked_at IS NULL AND id = ")
        .bind(text(id.to_string()));
    if let Some(org) = org {
        q.push(" AND org_id = ").bind(text(org.as_str()));
    }
    q.push(concat!(" RETURNING ", key_columns!()));
    let row = q.one(conn).await?;
    row.as_ref().map(key_from_row).transpose()
}

pub(crate) async fn touch_key<C: Conn>(
    conn: &mut C,
    id: &ApiKeyId,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    conn.run(
        "UPDATE api_keys SET last_used_at = $1 WHERE id = $2",
        vec![text(ts(at)), text(id.to_string())],
    )
    .await?;
    Ok(())
}

// ---- The event log and webhooks.

/// The last seq pruned from `org`'s log (0: none).
pub(crate) async fn pruned_through<C: Conn>(conn: &mut C, org: &OrgId) -> Result<u64, StoreError> {
    let row = conn
        .one(
            "SELECT pruned_through FROM event_logs WHERE org_id = $1",
            vec![text(org.as_str())],
        )
        .await?;
    Ok(seq_u64(
        row.map(|r| r.need_int("pruned_through"))
            .transpose()?
            .unwrap_or(0),
    ))
}

pub(crate) async fn read_events<C: Conn>(
    conn: &mut C,
    org: &OrgId,
    after: EventCursor,
    filter: &EventFilter,
    limit: u32,
) -> Result<EventPage, StoreError> {
    let mut q =
        Sql::new("SELECT seq, id, type, session_id, occurred_at, data FROM events WHERE org_id = ");
    q.bind(text(org.as_str()))
        .push(" AND seq > ")
        .bind(int(seq_i64(after.seq())));
    if !filter.types.is_empty() {
        q.push(" AND type IN ").bind_list(
            EventType::ALL
                .into_iter()
                .filter(|t| filter.types.iter().any(|p| p.matches(*t)))
                .map(|t| text(t.as_str())),
        );
    }
    if let Some(ids) = &filter.sessions {
        q.push(" AND session_id IN ")
            .bind_list(std::iter::once(text("")).chain(ids.iter().map(|id| text(id.to_string()))));
    }
    q.push(" ORDER BY seq LIMIT ").bind(int(i64::from(limit)));
    let rows = q.all(conn).await?;
    // Checked after the read: a pruning that committed before it shows
    // here (pruned_through only grows), so a page never starts after
    // events pruned under it; one that committed after it took nothing
    // the page should have had.
    if after.seq() < pruned_through(conn, org).await? {
        return Err(StoreError::Gone);
    }
    let events = rows
        .iter()
        .map(|r| event_from_row(org, r))
        .collect::<Result<Vec<_>, _>>()?;
    let next = events.last().map_or(after, |e| e.cursor);
    Ok(EventPage { events, next })
}

/// Inserts `w` in the caller's transaction unless its organization has
/// `max_per_org` webhooks already.
pub(crate) async fn insert_webhook<C: Conn>(
    conn: &mut C,
    w: &Webhook,
    secret: &WebhookSecret,
    max_per_org: u32,
) -> Result<(), StoreError> {
    // The organization's event counter row, taken for the transaction:
    // concurrent creations of one organization count one after the other
    // (SQLite's writer lock does so anyway; PostgreSQL's row lock here).
    conn.run(
        "INSERT INTO event_logs (org_id, last_seq) VALUES ($1, 0) \
         ON CONFLICT (org_id) DO UPDATE SET last_seq = event_logs.last_seq",
        vec![text(w.org.as_str())],
    )
    .await?;
    let have = conn
        .one(
            "SELECT count(*) AS n FROM webhooks WHERE org_id = $1",
            vec![text(w.org.as_str())],
        )
        .await?
        .map(|r| r.need_int("n"))
        .transpose()?
        .unwrap_or(0);
    if have >= i64::from(max_per_org) {
        return Err(StoreError::LimitReached { limit: max_per_org });
    }
    conn.run(WEBHOOK_INSERT, webhook_values(w, secret)).await?;
    Ok(())
}

/// Webhook `id` of `org`; `lock`: to be written by this transaction.
pub(crate) async fn get_webhook<C: Conn>(
    conn: &mut C,
    org: &OrgId,
    id: &WebhookId,
    lock: bool,
) -> Result<Option<Webhook>, StoreError> {
    let sql = format!(
        "{}{}",
        concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks WHERE id = $1 AND org_id = $2"
        ),
        if lock { C::FOR_UPDATE } else { "" }
    );
    let row = conn
        .one(&sql, vec![text(id.to_string()), text(org.as_str())])
        .await?;
    row.as_ref().map(webhook_from_row).transpose()
}

pub(crate) async fn list_webhooks<C: Conn>(
    conn: &mut C,
    org: &OrgId,
) -> Result<Vec<Webhook>, StoreError> {
    let sql = concat!(
        "SELECT ",
        webhook_columns!(),
        " FROM webhooks WHERE org_id = $1 ORDER BY id"
    );
    let rows = conn.all(sql, vec![text(org.as_str())]).await?;
    rows.iter().map(webhook_from_row).collect()
}

/// Reads (locked), patches and writes webhook `id` of `org` in the
/// caller's transaction; a disabled webhook's pending deliveries fail.
pub(crate) async fn update_webhook<C: Conn>(
    conn: &mut C,
    org: &OrgId,
    id: &WebhookId,
    patch: &WebhookPatch,
    now: OffsetDateTime,
) -> Result<Option<Webhook>, StoreError> {
    let Some(mut w) = get_webhook(conn, org, id, true).await? else {
        return Ok(None);
    };
    patch.apply(&mut w, now);
    conn.run(
        WEBHOOK_UPDATE,
        webhook_update_values(&w, patch.enabled == Some(true)),
    )
    .await?;
    if !w.enabled {
        // A disabled webhook is sent nothing more.
        conn.run(
            "UPDATE deliveries SET state = 'failed', error = 'the webhook was disabled', \
             next_ms = NULL, claimed_until = NULL WHERE webhook_id = $1 AND state = 'pending'",
            vec![text(id.to_string())],
        )
        .await?;
    }
    Ok(Some(w))
}

pub(crate) async fn delete_webhook<C: Conn>(
    conn: &mut C,
    org: &OrgId,
    id: &WebhookId,
) -> Result<bool, StoreError> {
    // Deliveries go with it (ON DELETE CASCADE).
    let n = conn
        .run(
            "DELETE FROM webhooks WHERE id = $1 AND org_id = $2",
            vec![text(id.to_string()), text(org.as_str())],
        )
        .await?;
    Ok(n > 0)
}

pub(crate) async fn rotate_secret<C: Conn>(
    conn: &mut C,
    org: &OrgId,
    id: &WebhookId,
    secret: &WebhookSecret,
    old_until: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    let n = conn
        .run(
            "UPDATE webhooks SET previous_secret = secret, previous_secret_until = $1, secret = $2, \
             updated_at = $3 WHERE id = $4 AND org_id = $5",
            vec![
                int(ms(old_until)),
                text(secret.expose()),
                text(ts(now)),
                text(id.to_string()),
                text(org.as_str()),
            ],
        )
        .await?;
    Ok(n > 0)
}

/// A disabled webhook is sent nothing: queuing for it is refused.
fn disabled_conflict() -> StoreError {
    StoreError::Conflict("the webhook is disabled".to_owned())
}

/// Queues test `event` for webhook `id` of `org` alone; whether it exists.
pub(crate) async fn queue_test<C: Conn>(
    conn: &mut C,
    org: &OrgId,
    id: &WebhookId,
    event: &Event,
) -> Result<bool, StoreError> {
    match get_webhook(conn, org, id, true).await? {
        None => return Ok(false),
        Some(w) if !w.enabled => return Err(disabled_conflict()),
        Some(_) => {}
    }
    let body = event.to_json().to_string();
    queue(conn, id, org, event, &body, event.occurred_at).await?;
    Ok(true)
}

pub(crate) async fn deliveries<C: Conn>(
    conn: &mut C,
    org: &OrgId,
    id: &WebhookId,
    before: Option<u64>,
    limit: u32,
) -> Result<Vec<Delivery>, StoreError> {
    let rows = conn
        .all(
            "SELECT seq, event_id, event_seq, attempt, state, response_status, error, at, duration_ms \
             FROM deliveries WHERE webhook_id = $1 AND org_id = $2 AND seq < $3 \
             ORDER BY seq DESC LIMIT $4",
            vec![
                text(id.to_string()),
                text(org.as_str()),
                int(before.map_or(i64::MAX, seq_i64)),
                int(i64::from(limit)),
            ],
        )
        .await?;
    rows.iter().map(delivery_from_row).collect()
}

// ---- Messages.

/// Most chats [`pending`] leaves out by name (one parameter each); past
/// this the caller passes over the rest itself.
pub(crate) const MAX_SKIPPED_CHATS: usize = 500;

pub(crate) async fn pending<C: Conn>(
    conn: &mut C,
    session: &SessionId,
    skip: &[Jid],
    limit: u32,
) -> Result<Vec<Message>, StoreError> {
    let mut q = Sql::new(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE session_id = "
    ));
    q.bind(text(session.to_string()))
        .push(" AND status = 'pending' AND handed_at IS NULL");
    if !skip.is_empty() {
        q.push(" AND chat NOT IN ").bind_list(
            skip.iter()
                .take(MAX_SKIPPED_CHATS)
                .map(|chat| text(chat.to_string())),
        );
    }
    q.push(" ORDER BY seq LIMIT ").bind(int(i64::from(limit)));
    let rows = q.all(conn).await?;
    rows.iter()
        .map(|row| message_from_row(row).map(|(_, m)| m))
        .collect()
}

pub(crate) async fn pending_media<C: Conn>(
    conn: &mut C,
    session: &SessionId,
    id: &MessageId,
) -> Result<Option<Vec<u8>>, StoreError> {
    let row = conn
        .one(
            "SELECT media_data FROM messages WHERE session_id = $1 AND id = $2 \
             AND from_me = TRUE AND status = 'pending' ORDER BY seq LIMIT 1",
            vec![text(session.to_string()), text(id.as_str())],
        )
        .await?;
    row.map(|r| r.bytes("media_data"))
        .transpose()
        .map(Option::flatten)
}

pub(crate) async fn mark_handed<C: Conn>(
    conn: &mut C,
    session: &SessionId,
    id: &MessageId,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    conn.run(
        "UPDATE messages SET handed_at = $1 WHERE session_id = $2 AND id = $3 AND from_me = TRUE \
         AND status = 'pending'",
        vec![text(ts(at)), text(session.to_string()), text(id.as_str())],
    )
    .await?;
    Ok(())
}

pub(crate) async fn requeue_handed<C: Conn>(
    conn: &mut C,
    session: Option<&SessionId>,
) -> Result<u64, StoreError> {
    let mut q = Sql::new(
        "UPDATE messages SET handed_at = NULL WHERE status = 'pending' AND handed_at IS NOT NULL",
    );
    if let Some(session) = session {
        q.push(" AND session_id = ").bind(text(session.to_string()));
    }
    q.run(conn).await
}

pub(crate) async fn sessions_with_pending<C: Conn>(
    conn: &mut C,
) -> Result<Vec<SessionId>, StoreError> {
    let rows = conn
        .all(
            "SELECT DISTINCT session_id FROM messages WHERE status = 'pending' ORDER BY session_id",
            Vec::new(),
        )
        .await?;
    rows.iter()
        .map(|r| r.parsed("session_id", SessionId::parse))
        .collect()
}

pub(crate) async fn mark_received_read<C: Conn>(
    conn: &mut C,
    org: &OrgId,
    session: &SessionId,
    chat: &Jid,
    ids: &[MessageId],
    at: OffsetDateTime,
) -> Result<u64, StoreError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let mut q = Sql::new("UPDATE messages SET status = 'read', read_at = ");
    q.bind(text(ts(at)))
        .push(" WHERE org_id = ")
        .bind(text(org.as_str()))
        .push(" AND session_id = ")
        .bind(text(session.to_string()))
        .push(" AND chat = ")
        .bind(text(chat.to_string()))
        .push(" AND from_me = FALSE AND status = 'received' AND id IN ")
        .bind_list(ids.iter().map(|id| text(id.as_str())));
    q.run(conn).await
}

pub(crate) async fn get_message<C: Conn>(
    conn: &mut C,
    org: &OrgId,
    session: &SessionId,
    id: &MessageId,
) -> Result<Option<Message>, StoreError> {
    let sql = concat!(
        "SELECT ",
        message_columns!(),
        // Ids are chosen by the writer's device: the account's own message
        // under an id wins, then the first recorded.
        " FROM messages WHERE org_id = $1 AND session_id = $2 AND id = $3 ",
        "ORDER BY from_me DESC, seq LIMIT 1"
    );
    let row = conn
        .one(
            sql,
            vec![
                text(org.as_str()),
                text(session.to_string()),
                text(id.as_str()),
            ],
        )
        .await?;
    Ok(row
        .as_ref()
        .map(message_from_row)
        .transpose()?
        .map(|(_, m)| m))
}

pub(crate) async fn list_messages<C: Conn>(
    conn: &mut C,
    org: &OrgId,
    session: &SessionId,
    chat: Option<&Jid>,
    before: Option<u64>,
    limit: u32,
) -> Result<MessagePage, StoreError> {
    let mut q = Sql::new(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE org_id = "
    ));
    q.bind(text(org.as_str()))
        .push(" AND session_id = ")
        .bind(text(session.to_string()));
    if let Some(chat) = chat {
        q.push(" AND chat = ").bind(text(chat.to_string()));
    }
    if let Some(before) = before {
        q.push(" AND seq < ").bind(int(seq_i64(before)));
    }
    q.push(" ORDER BY seq DESC LIMIT ")
        .bind(int(i64::from(limit) + 1));
    let rows = q.all(conn).await?;
    let mut items = rows
        .iter()
        .map(message_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next = if more {
        items.last().map(|(seq, _)| *seq)
    } else {
        None
    };
    Ok(MessagePage {
        items: items.into_iter().map(|(_, m)| m).collect(),
        next,
    })
}

pub(crate) async fn media<C: Conn>(
    conn: &mut C,
    org: &OrgId,
    session: &SessionId,
    id: &MessageId,
) -> Result<Option<(MediaInfo, MediaSource)>, StoreError> {
    let row = conn
        .one(
            "SELECT media_mimetype, media_filename, media_size, media_sha256, media_ref, media_data \
             FROM messages WHERE org_id = $1 AND session_id = $2 AND id = $3 \
             ORDER BY from_me DESC, seq LIMIT 1",
            vec![text(org.as_str()), text(session.to_string()), text(id.as_str())],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    // The message `get_message` picks; none when it has no media, whatever
    // other messages under its id carry.
    let Some(info) = media_info(&row)? else {
        return Ok(None);
    };
    Ok(Some((info, media_source(&row)?)))
}

pub(crate) async fn prune_idempotency_keys<C: Conn>(
    conn: &mut C,
    before: OffsetDateTime,
) -> Result<u64, StoreError> {
    conn.run(
        "DELETE FROM idempotency_keys WHERE created_ms < $1",
        vec![int(ms(before))],
    )
    .await
}

/// Queues again, for webhook `id`, the page of `org`'s retained events
/// after `after` that the webhook wants; how many, and the cursor to go on
/// from (0: the replay is done). `None` when the webhook is gone; a
/// conflict when it is disabled (read, locked, in the caller's
/// transaction: a webhook disabled during a replay gets no more queued).
pub(crate) async fn replay_page<C: Conn>(
    conn: &mut C,
    org: &OrgId,
    id: &WebhookId,
    after: EventCursor,
    now: OffsetDateTime,
) -> Result<Option<(u64, EventCursor)>, StoreError> {
    let Some(w) = get_webhook(conn, org, id, true).await? else {
        return Ok(None);
    };
    if !w.enabled {
        return Err(disabled_conflict());
    }
    let page = read_events(conn, org, after, &w.filter(), 500).await?;
    for e in &page.events {
        queue(conn, id, org, e, &e.to_json().to_string(), now).await?;
    }
    Ok(Some((page.events.len() as u64, page.next)))
}

/// Whether claimed delivery `d` is still pending, its webhook enabled and
/// at the URL it was claimed with.
pub(crate) async fn still_current<C: Conn>(
    conn: &mut C,
    d: &DueDelivery,
) -> Result<bool, StoreError> {
    let row = conn
        .one(
            "SELECT d.seq FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id \
             WHERE d.seq = $1 AND d.state = 'pending' AND w.enabled = TRUE AND w.url = $2",
            vec![int(seq_i64(d.seq)), text(d.url.as_str())],
        )
        .await?;
    Ok(row.is_some())
}

/// Checks that the database answers.
pub(crate) async fn ping<C: Conn>(conn: &mut C) -> Result<(), StoreError> {
    conn.run("SELECT 1", Vec::new()).await?;
    Ok(())
}

/// Locks, in one order, the webhooks whose attempts are about to be
/// recorded: every transaction that writes a webhook and its deliveries
/// takes the webhook first, so two of them never wait on each other.
/// Nothing to do where write transactions are serial (SQLite).
pub(crate) async fn lock_webhooks_of<C: Conn>(
    conn: &mut C,
    attempts: &[FinishedAttempt],
) -> Result<(), StoreError> {
    if C::FOR_UPDATE.is_empty() {
        return Ok(());
    }
    let mut q = Sql::new(
        "SELECT id FROM webhooks WHERE id IN (SELECT webhook_id FROM deliveries WHERE seq IN ",
    );
    q.bind_list(attempts.iter().map(|a| int(seq_i64(a.seq))))
        .push(") ORDER BY id")
        .push(C::FOR_UPDATE);
    q.all(conn).await?;
    Ok(())
}

/// Removes the events that occurred before `before` (and the finished
/// deliveries of pruned events) in the caller's transaction; how many
/// events went.
pub(crate) async fn prune_events<C: Conn>(
    conn: &mut C,
    before: OffsetDateTime,
) -> Result<u64, StoreError> {
    let sql = format!(
        "UPDATE event_logs SET pruned_through = {}(pruned_through, \
           COALESCE((SELECT MAX(seq) FROM events e WHERE e.org_id = event_logs.org_id \
             AND e.occurred_ms < $1), 0))",
        C::GREATEST
    );
    conn.run(&sql, vec![int(ms(before))]).await?;
    let gone = conn
        .run(
            "DELETE FROM events WHERE occurred_ms < $1",
            vec![int(ms(before))],
        )
        .await?;
    // Finished deliveries go with their events; pending ones carry their
    // body and are kept until they finish.
    conn.run(
        "DELETE FROM deliveries WHERE state != 'pending' AND (event_seq IS NULL OR event_seq <= \
           (SELECT pruned_through FROM event_logs l WHERE l.org_id = deliveries.org_id))",
        Vec::new(),
    )
    .await?;
    Ok(gone)
}

// ---- What a message write decides, before any statement.

/// The message an inbound record becomes (`own`: the account's JID).
fn inbound_message(
    session: &SessionId,
    own: Option<&Jid>,
    r: &InboundRecord,
    now: OffsetDateTime,
) -> Message {
    let mut rich = None;
    let (kind, text, caption, media, voice_note) = match &r.body {
        InboundBody::Text(t) => (MessageType::Text, Some(t.clone()), None, None, false),
        InboundBody::Rich(content) => {
            rich = Some(content.clone());
            (content.kind(), None, None, None, false)
        }
        InboundBody::Media {
            kind,
            info,
            caption,
            voice_note,
            ..
        } => (
            *kind,
            None,
            caption.clone(),
            Some(info.clone()),
            *voice_note,
        ),
        // Reactions, edits and deletions are not messages; never called
        // with one.
        InboundBody::Reaction { .. }
        | InboundBody::Edit { .. }
        | InboundBody::Revoke { .. }
        | InboundBody::PollVote { .. } => (MessageType::Text, None, None, None, false),
    };
    let mut status_at = StatusTimes::default();
    if r.from_me {
        status_at.reach(MessageStatus::Sent, r.timestamp);
    }
    Message {
        id: r.id.clone(),
        session: *session,
        chat: r.chat.clone(),
        from_me: r.from_me,
        from: r.sender.clone(),
        from_pn: r.sender_pn.clone(),
        from_lid: r.sender_lid.clone(),
        to: if r.from_me {
            r.chat.clone()
        } else {
            own.cloned().unwrap_or_else(|| r.chat.clone())
        },
        kind,
        text,
        caption,
        media,
        rich,
        voice_note,
        reply_to: r.reply_to.clone(),
        mentions: r.mentions.clone(),
        status: if r.from_me {
            MessageStatus::Sent
        } else {
            MessageStatus::Received
        },
        status_at,
        error: None,
        edited_at: None,
        timestamp: r.timestamp,
        created_at: now,
    }
}

/// `current` moved to `change.status`, with the events that report it, or
/// `None` when that is not forward ([`MessageStatus::advances_to`]): a
/// `message.sent` (source `api`) first when it leaves `pending` for
/// anything but `failed`, then one `message.status` for each status it
/// passes through, in order. WhatsApp's receipts can arrive out of order or
/// not at all (a read receipt before the delivery receipt): a read message
/// was delivered, so a reader of the log always sees `sent`, `delivered`,
/// `read` in that order, as `statusAt` shows them.
fn advance(current: &Message, change: &StatusChange) -> Option<(Message, Vec<EventData>)> {
    if !current.status.advances_to(change.status) {
        return None;
    }
    let mut next = current.clone();
    next.status = change.status;
    // WhatsApp's times are whole seconds: an ack in the second the message
    // was accepted would read as before it.
    let at = change.at.max(current.created_at);
    next.status_at.reach(change.status, at);
    next.error = if change.status == MessageStatus::Failed {
        change.error.clone()
    } else {
        None
    };
    let mut events = Vec::with_capacity(2);
    if current.status == MessageStatus::Pending && next.status != MessageStatus::Failed {
        events.push(EventData::MessageSent {
            message: Box::new(next.clone()),
            source: MessageSource::Api,
        });
    }
    // The statuses skipped on the way (none for `failed`), then the new one.
    let passed = [
        MessageStatus::Sent,
        MessageStatus::Delivered,
        MessageStatus::Read,
    ]
    .into_iter()
    .filter(|s| current.status.advances_to(*s) && s.advances_to(change.status));
    for status in passed.chain([change.status]) {
        events.push(EventData::MessageStatus {
            id: next.id.clone(),
            chat: next.chat.clone(),
            status,
            at,
            error: next.error.clone(),
        });
    }
    Some((next, events))
}

/// The event a newly recorded inbound message causes.
fn inbound_event(r: &InboundRecord, message: Message) -> EventData {
    if r.from_me {
        EventData::MessageSent {
            message: Box::new(message),
            source: MessageSource::Device,
        }
    } else {
        EventData::MessageReceived(Box::new(message))
    }
}

// ---- Groups (`session_groups`: one row per session and group, members as
// a JSON array of participant objects).

macro_rules! group_columns {
    () => {
        "jid, subject, description, owner, created_at, announce, locked, approval, participants"
    };
}

/// Writes a group whole (inserted, or replacing the stored one).
const GROUP_UPSERT: &str = "INSERT INTO session_groups (session_id, jid, subject, description, \
     owner, created_at, announce, locked, approval, size, participants, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
     ON CONFLICT (session_id, jid) DO UPDATE SET subject = excluded.subject, \
     description = excluded.description, owner = excluded.owner, \
     created_at = excluded.created_at, announce = excluded.announce, locked = excluded.locked, \
     approval = excluded.approval, size = excluded.size, participants = excluded.participants, \
     updated_at = excluded.updated_at";

fn group_values(session: &SessionId, g: &Group, now: OffsetDateTime) -> Vec<Value> {
    let participants: Vec<serde_json::Value> = g
        .participants
        .iter()
        .map(GroupParticipant::to_json)
        .collect();
    vec![
        text(session.to_string()),
        text(g.jid.to_string()),
        text(g.subject.as_str()),
        Value::Text(g.description.clone()),
        Value::Text(g.owner.as_ref().map(ToString::to_string)),
        Value::Text(g.created_at.map(ts)),
        Value::Flag(g.settings.announce),
        Value::Flag(g.settings.locked),
        Value::Flag(g.settings.approval),
        int(i64::try_from(g.participants.len()).unwrap_or(i64::MAX)),
        text(serde_json::Value::Array(participants).to_string()),
        text(ts(now)),
    ]
}

fn group_from_row(r: &impl Columns) -> Result<Group, StoreError> {
    let participants: serde_json::Value = serde_json::from_str(&r.need("participants")?)
        .map_err(|e| StoreError::Corrupt(format!("participants: {e}")))?;
    let participants = participants
        .as_array()
        .ok_or_else(|| StoreError::Corrupt("participants: not an array".into()))?
        .iter()
        .map(GroupParticipant::from_json)
        .collect::<Result<_, _>>()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Group {
        jid: r.parsed("jid", |s| GroupJid::parse(s, "jid"))?,
        subject: r.need("subject")?,
        description: r.text("description")?,
        owner: r.opt_parsed("owner", Jid::parse)?,
        created_at: r.opt_time("created_at")?,
        participants,
        settings: GroupSettings {
            announce: r.flag("announce")?,
            locked: r.flag("locked")?,
            approval: r.flag("approval")?,
        },
    })
}

/// Writes group `g` of `session` whole.
pub(crate) async fn put_group<C: Conn>(
    conn: &mut C,
    session: &SessionId,
    g: &Group,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    conn.run(GROUP_UPSERT, group_values(session, g, now))
        .await?;
    Ok(())
}

/// Group `jid` of `session`; `lock`: to be written by this transaction.
async fn fetch_group<C: Conn>(
    conn: &mut C,
    session: &SessionId,
    jid: &GroupJid,
    lock: bool,
) -> Result<Option<Group>, StoreError> {
    let sql = format!(
        "{}{}",
        concat!(
            "SELECT ",
            group_columns!(),
            " FROM session_groups WHERE session_id = $1 AND jid = $2"
        ),
        if lock { C::FOR_UPDATE } else { "" }
    );
    let row = conn
        .one(&sql, vec![text(session.to_string()), text(jid.to_string())])
        .await?;
    row.as_ref().map(group_from_row).transpose()
}

/// Applies `notice` to the stored groups of `session` in the caller's
/// transaction; the session's organization, or `None` when there is no
/// such session. The caller records the event and commits.
pub(crate) async fn apply_group_notice<C: Conn>(
    conn: &mut C,
    session: &SessionId,
    notice: &GroupNotice,
    now: OffsetDateTime,
) -> Result<Option<OrgId>, StoreError> {
    // The session's row is held: one session's group writes take turns.
    let Some((org, _)) = session_owner(conn, session, true).await? else {
        return Ok(None);
    };
    match notice {
        GroupNotice::Joined { group, .. } => put_group(conn, session, group, now).await?,
        GroupNotice::Left { group, .. } => {
            conn.run(
                "DELETE FROM session_groups WHERE session_id = $1 AND jid = $2",
                vec![text(session.to_string()), text(group.to_string())],
            )
            .await?;
        }
        GroupNotice::Participants {
            group,
            action,
            participants,
            ..
        } => {
            if let Some(mut g) = fetch_group(conn, session, group, true).await? {
                for p in participants {
                    let at = g.participants.iter().position(|m| {
                        m.is(&p.jid)
                            || p.pn.as_ref().is_some_and(|j| m.is(j))
                            || p.lid.as_ref().is_some_and(|j| m.is(j))
                    });
                    match (action, at) {
                        (ParticipantAction::Add | ParticipantAction::Join, None) => {
                            g.participants.push(p.clone());
                        }
                        (ParticipantAction::Remove | ParticipantAction::Leave, Some(i)) => {
                            g.participants.remove(i);
                        }
                        (ParticipantAction::Promote, Some(i)) => {
                            g.participants[i].role = GroupRole::Admin;
                        }
                        (ParticipantAction::Demote, Some(i)) => {
                            g.participants[i].role = GroupRole::Member;
                        }
                        _ => {}
                    }
                }
                put_group(conn, session, &g, now).await?;
            }
        }
        GroupNotice::Updated {
            group,
            subject,
            description,
            settings,
            ..
        } => {
            if let Some(mut g) = fetch_group(conn, session, group, true).await? {
                if let Some(s) = subject {
                    g.subject.clone_from(s);
                }
                if let Some(d) = description {
                    g.description.clone_from(d);
                }
                if let Some(s) = settings {
                    g.settings = *s;
                }
                put_group(conn, session, &g, now).await?;
            }
        }
    }
    Ok(Some(org))
}

/// Replaces the groups of `session` by `groups` in the caller's
/// transaction; whether the session exists.
pub(crate) async fn replace_groups<C: Conn>(
    conn: &mut C,
    session: &SessionId,
    groups: &[Group],
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    if session_owner(conn, session, true).await?.is_none() {
        return Ok(false);
    }
    let mut q = Sql::new("DELETE FROM session_groups WHERE session_id = ");
    q.bind(text(session.to_string()));
    if !groups.is_empty() {
        q.push(" AND jid NOT IN ")
            .bind_list(groups.iter().map(|g| text(g.jid.to_string())));
    }
    q.run(conn).await?;
    for g in groups {
        put_group(conn, session, g, now).await?;
    }
    Ok(true)
}

/// Whether `session`'s stored groups are `groups` already (in any order):
/// then a refresh has nothing to write (the common reconnect).
pub(crate) async fn same_groups<C: Conn>(
    conn: &mut C,
    session: &SessionId,
    groups: &[Group],
) -> Result<bool, StoreError> {
    let stored = conn
        .all(
            concat!(
                "SELECT ",
                group_columns!(),
                " FROM session_groups WHERE session_id = $1"
            ),
            vec![text(session.to_string())],
        )
        .await?;
    if stored.len() != groups.len() {
        return Ok(false);
    }
    let mut stored = stored
        .iter()
        .map(group_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let mut wanted: Vec<&Group> = groups.iter().collect();
    stored.sort_by_cached_key(|g| g.jid.to_string());
    wanted.sort_by_cached_key(|g| g.jid.to_string());
    Ok(stored.iter().eq(wanted))
}

/// A page of `org`'s session's groups by JID; `None` when the session is
/// not `org`'s.
pub(crate) async fn list_groups<C: Conn>(
    conn: &mut C,
    org: &OrgId,
    session: &SessionId,
    after: Option<&GroupJid>,
    limit: u32,
) -> Result<Option<GroupPage>, StoreError> {
    if session_owner(conn, session, false)
        .await?
        .is_none_or(|(o, _)| o != *org)
    {
        return Ok(None);
    }
    let mut q = Sql::new(concat!(
        "SELECT ",
        group_columns!(),
        " FROM session_groups WHERE session_id = "
    ));
    q.bind(text(session.to_string()));
    if let Some(after) = after {
        q.push(" AND jid > ").bind(text(after.to_string()));
    }
    // One extra row tells whether another page follows.
    q.push(" ORDER BY jid LIMIT ")
        .bind(int(i64::from(limit) + 1));
    let mut items = q
        .all(conn)
        .await?
        .iter()
        .map(group_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next = if more {
        items.last().map(|g| g.jid.clone())
    } else {
        None
    };
    Ok(Some(GroupPage { items, next }))
}

/// Group `jid` of `org`'s session as stored.
pub(crate) async fn get_group<C: Conn>(
    conn: &mut C,
    org: &OrgId,
    session: &SessionId,
    jid: &GroupJid,
) -> Result<Option<Group>, StoreError> {
    if session_owner(conn, session, false)
        .await?
        .is_none_or(|(o, _)| o != *org)
    {
        return Ok(None);
    }
    fetch_group(conn, session, jid, false).await
}
