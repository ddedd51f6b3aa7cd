//! What both databases share: how a row becomes a domain value
//! ([`Columns`] and the `*_from_row` functions), how a domain value becomes
//! the values of its row ([`Value`] lists, bound by [`bind_values`]), and
//! the column encodings (RFC 3339 text for times, Unix milliseconds where
//! SQL compares times, comma-separated pattern lists). The SQLite and the
//! PostgreSQL schema store every column the same way, so one mapping serves
//! both (and a database moves from one to the other row by row).

use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, Row, Type};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use wagate_domain::{
    ApiKey, ApiKeyId, ApiKeyName, CapabilitySet, Delivery, DeliveryState, DomainError, Event,
    EventCursor, EventData, EventFilter, EventId, EventPattern, EventType, Jid, LastError,
    MediaInfo, Message, MessageError, MessageErrorCode, MessageId, MessageStatus, MessageType,
    NewApiKey, OrgId, PendingLifecycle, RichContent, Session, SessionErrorCode, SessionId,
    SessionName, SessionStatus, StatusTimes, Webhook, WebhookDescription, WebhookId, WebhookSecret,
    WebhookUrl,
};

use crate::StoreError;
use crate::messages::MediaSource;

/// Column lists as macros, so queries are `&'static str` built at compile
/// time (`concat!`), the same in both schemas.
macro_rules! session_columns {
    () => {
        "id, org_id, name, status, jid, push_name, keep_connected, created_at, updated_at, last_connected_at, last_error_code, last_error_message, pending_op, revision"
    };
}
macro_rules! key_columns {
    () => {
        "id, org_id, name, capabilities, prefix, created_at, expires_at, last_used_at"
    };
}
macro_rules! message_columns {
    () => {
        "seq, session_id, chat, sender, id, from_me, sender_pn, sender_lid, recipient, type, text, \
         caption, media_mimetype, media_filename, media_size, media_sha256, voice_note, reply_to, \
         status, sent_at, delivered_at, read_at, played_at, error_code, error_message, error_nack, \
         timestamp, created_at, rich, edited_at, mentions"
    };
}
macro_rules! webhook_columns {
    () => {
        "id, org_id, url, events, session_ids, description, enabled, disabled_reason, created_at, updated_at"
    };
}
pub(crate) use {key_columns, message_columns, session_columns, webhook_columns};

/// Inserts a session: [`session_values`] in order.
pub(crate) const SESSION_INSERT: &str = concat!(
    "INSERT INTO sessions (",
    session_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
);

/// Writes a patched session: [`session_values`] in order (`id` and
/// `org_id` name the row).
pub(crate) const SESSION_UPDATE: &str = "UPDATE sessions SET name = $3, status = $4, jid = $5, \
     push_name = $6, keep_connected = $7, created_at = $8, updated_at = $9, \
     last_connected_at = $10, last_error_code = $11, last_error_message = $12, pending_op = $13, \
     revision = $14 WHERE id = $1 AND org_id = $2";

/// How many sessions are in each status (columns `status, n`).
pub(crate) const SESSION_COUNTS: &str =
    "SELECT status, COUNT(*) AS n FROM sessions GROUP BY status";

/// The rows of [`SESSION_COUNTS`]; statuses this version does not know are
/// left out.
pub(crate) fn status_counts(
    rows: &[impl Columns],
) -> Result<Vec<(SessionStatus, u64)>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(status) = SessionStatus::from_name(&row.need("status")?) {
            out.push((status, seq_u64(row.need_int("n")?)));
        }
    }
    Ok(out)
}

/// Inserts an API key: [`key_values`] in order.
pub(crate) const KEY_INSERT: &str = "INSERT INTO api_keys (id, org_id, name, capabilities, \
     prefix, secret_hash, created_at, expires_at, last_used_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// Inserts a webhook: [`webhook_values`] in order.
pub(crate) const WEBHOOK_INSERT: &str = "INSERT INTO webhooks (id, org_id, url, events, \
     session_ids, description, enabled, disabled_reason, secret, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// Inserts a message unless one with its (session, chat, sender, id)
/// exists: [`message_values`] in order.
pub(crate) const MESSAGE_INSERT: &str = "INSERT INTO messages (org_id, session_id, chat, sender, \
     id, from_me, sender_pn, sender_lid, recipient, type, text, caption, media_mimetype, \
     media_filename, media_size, media_sha256, voice_note, media_ref, media_data, reply_to, \
     status, sent_at, delivered_at, read_at, played_at, error_code, error_message, error_nack, \
     timestamp, created_at, created_ms, rich, edited_at, mentions) VALUES ($1, $2, $3, $4, $5, \
     $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, \
     $25, $26, $27, $28, $29, $30, $31, $32, $33, $34) ON CONFLICT (session_id, chat, sender, id) DO NOTHING";

/// A column's value as both schemas store it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// TEXT.
    Text(Option<String>),
    /// INTEGER / BIGINT.
    Int(Option<i64>),
    /// INTEGER 0/1 on SQLite, BOOLEAN on PostgreSQL.
    Flag(bool),
    /// BLOB / BYTEA.
    Bytes(Option<Vec<u8>>),
}

impl Value {
    fn text(s: impl Into<String>) -> Self {
        Value::Text(Some(s.into()))
    }

    fn opt_text<T: ToString + ?Sized>(s: Option<&T>) -> Self {
        Value::Text(s.map(ToString::to_string))
    }
}

/// Binds `values` in order.
pub(crate) fn bind_values<'q, DB>(
    mut q: Query<'q, DB, DB::Arguments>,
    values: Vec<Value>,
) -> Query<'q, DB, DB::Arguments>
where
    DB: Database,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'t> Option<Vec<u8>>: Encode<'t, DB> + Type<DB>,
{
    for v in values {
        q = match v {
            Value::Text(t) => q.bind(t),
            Value::Int(i) => q.bind(i),
            Value::Flag(b) => q.bind(b),
            Value::Bytes(b) => q.bind(b),
        };
    }
    q
}

/// Reading a row's columns by name, the same on both databases.
pub(crate) trait Columns {
    /// A TEXT column.
    fn text(&self, c: &'static str) -> Result<Option<String>, StoreError>;
    /// An INTEGER column.
    fn int(&self, c: &'static str) -> Result<Option<i64>, StoreError>;
    /// A flag column (INTEGER 0/1 or BOOLEAN).
    fn flag(&self, c: &'static str) -> Result<bool, StoreError>;
    /// A BLOB column.
    fn bytes(&self, c: &'static str) -> Result<Option<Vec<u8>>, StoreError>;

    /// A TEXT column that must not be null.
    fn need(&self, c: &'static str) -> Result<String, StoreError> {
        self.text(c)?
            .ok_or_else(|| StoreError::Corrupt(format!("{c} is null")))
    }

    /// An INTEGER column that must not be null.
    fn need_int(&self, c: &'static str) -> Result<i64, StoreError> {
        self.int(c)?
            .ok_or_else(|| StoreError::Corrupt(format!("{c} is null")))
    }

    /// A TEXT column parsed with `parse`.
    fn parsed<T>(
        &self,
        c: &'static str,
        parse: impl FnOnce(&str) -> Result<T, DomainError>,
    ) -> Result<T, StoreError> {
        parse(&self.need(c)?).map_err(domain)
    }

    /// A nullable TEXT column parsed with `parse`.
    fn opt_parsed<T>(
        &self,
        c: &'static str,
        parse: impl FnOnce(&str) -> Result<T, DomainError>,
    ) -> Result<Option<T>, StoreError> {
        self.text(c)?.map(|s| parse(&s)).transpose().map_err(domain)
    }

    /// An RFC 3339 time.
    fn time(&self, c: &'static str) -> Result<OffsetDateTime, StoreError> {
        parse_ts(c, &self.need(c)?)
    }

    /// A nullable RFC 3339 time.
    fn opt_time(&self, c: &'static str) -> Result<Option<OffsetDateTime>, StoreError> {
        self.text(c)?.map(|s| parse_ts(c, &s)).transpose()
    }
}

impl<R> Columns for R
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, c: &'static str) -> Result<Option<String>, StoreError> {
        self.try_get(c).map_err(corrupt(c))
    }

    fn int(&self, c: &'static str) -> Result<Option<i64>, StoreError> {
        self.try_get(c).map_err(corrupt(c))
    }

    fn flag(&self, c: &'static str) -> Result<bool, StoreError> {
        self.try_get(c).map_err(corrupt(c))
    }

    fn bytes(&self, c: &'static str) -> Result<Option<Vec<u8>>, StoreError> {
        self.try_get(c).map_err(corrupt(c))
    }
}

/// A database error as the port's: a unique violation is a conflict,
/// anything else "unavailable" (retrying may work).
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Conflict(d.message().to_owned())
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

pub(crate) fn corrupt(field: &str) -> impl Fn(sqlx::Error) -> StoreError + '_ {
    move |e| StoreError::Corrupt(format!("{field}: {e}"))
}

pub(crate) fn domain(e: DomainError) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A time as stored: RFC 3339 in UTC, to the nanosecond.
pub(crate) fn ts(t: OffsetDateTime) -> String {
    // RFC 3339 formatting of a UTC OffsetDateTime cannot fail for years 0..=9999.
    t.format(&Rfc3339).unwrap_or_default()
}

pub(crate) fn parse_ts(field: &str, s: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| StoreError::Corrupt(format!("{field} '{s}': {e}")))
}

/// A time as Unix milliseconds (the columns SQL compares).
pub(crate) fn ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Unix milliseconds as a time.
pub(crate) fn from_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

pub(crate) fn seq_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

pub(crate) fn seq_u64(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

pub(crate) fn revision(r: u64) -> Result<i64, StoreError> {
    i64::try_from(r).map_err(|_| StoreError::Corrupt(format!("revision {r} out of range")))
}

/// A new event id at `now` (a ULID: ids sort by time).
pub(crate) fn event_id(now: OffsetDateTime) -> EventId {
    let at = std::time::SystemTime::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(ms(now)).unwrap_or(0));
    EventId::from_ulid(ulid::Ulid::from_datetime(at))
}

pub(crate) fn patterns(text: &str) -> Result<Vec<EventPattern>, StoreError> {
    text.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| EventPattern::parse(p, "events").map_err(domain))
        .collect()
}

pub(crate) fn sessions(text: Option<String>) -> Result<Option<Vec<SessionId>>, StoreError> {
    text.map(|t| {
        t.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| SessionId::parse(s).map_err(domain))
            .collect()
    })
    .transpose()
}

pub(crate) fn join_patterns(p: &[EventPattern]) -> String {
    p.iter()
        .map(EventPattern::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn join_sessions(s: Option<&Vec<SessionId>>) -> Option<String> {
    s.map(|ids| {
        ids.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// The row values of `s`, in `session_columns!()` ([`SESSION_INSERT`]) order.
pub(crate) fn session_values(s: &Session) -> Result<Vec<Value>, StoreError> {
    Ok(vec![
        Value::text(s.id.to_string()),
        Value::text(s.org.as_str()),
        Value::opt_text(s.name.as_ref().map(SessionName::as_str)),
        Value::text(s.status.as_str()),
        Value::opt_text(s.jid.as_ref()),
        Value::opt_text(s.push_name.as_deref()),
        Value::Flag(s.keep_connected),
        Value::text(ts(s.created_at)),
        Value::text(ts(s.updated_at)),
        Value::Text(s.last_connected_at.map(ts)),
        Value::opt_text(s.last_error.as_ref().map(|e| e.code.as_str())),
        Value::opt_text(s.last_error.as_ref().map(|e| e.message.as_str())),
        Value::opt_text(s.pending.map(PendingLifecycle::as_str)),
        Value::Int(Some(revision(s.revision)?)),
    ])
}

pub(crate) fn session_from_row(row: &impl Columns) -> Result<Session, StoreError> {
    let status_text = row.need("status")?;
    let last_error = match (
        row.text("last_error_code")?,
        row.text("last_error_message")?,
    ) {
        (Some(code), message) => Some(LastError {
            code: SessionErrorCode::from_name(&code).unwrap_or(SessionErrorCode::Internal),
            message: message.unwrap_or_default(),
        }),
        (None, _) => None,
    };
    Ok(Session {
        id: row.parsed("id", SessionId::parse)?,
        org: row.parsed("org_id", OrgId::parse)?,
        name: row.opt_parsed("name", SessionName::parse)?,
        status: SessionStatus::from_name(&status_text)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown status '{status_text}'")))?,
        jid: row.opt_parsed("jid", Jid::parse)?,
        push_name: row.text("push_name")?,
        keep_connected: row.flag("keep_connected")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        last_connected_at: row.opt_time("last_connected_at")?,
        last_error,
        pending: row
            .text("pending_op")?
            .map(|p| {
                PendingLifecycle::from_name(&p)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown pending_op '{p}'")))
            })
            .transpose()?,
        revision: u64::try_from(row.need_int("revision")?)
            .map_err(|_| StoreError::Corrupt("negative revision".into()))?,
    })
}

/// The row values of `new`, in [`KEY_INSERT`]'s order.
pub(crate) fn key_values(new: &NewApiKey) -> Vec<Value> {
    let k = &new.key;
    vec![
        Value::text(k.id.to_string()),
        Value::text(k.org.as_str()),
        Value::text(k.name.as_str()),
        Value::text(k.capabilities.to_string()),
        Value::text(k.prefix.as_str()),
        Value::Bytes(Some(new.secret_hash.to_vec())),
        Value::text(ts(k.created_at)),
        Value::Text(k.expires_at.map(ts)),
        Value::Text(k.last_used_at.map(ts)),
    ]
}

pub(crate) fn key_from_row(row: &impl Columns) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        id: row.parsed("id", ApiKeyId::parse)?,
        org: row.parsed("org_id", OrgId::parse)?,
        name: row.parsed("name", ApiKeyName::parse)?,
        capabilities: row.parsed("capabilities", CapabilitySet::parse_list)?,
        prefix: row.need("prefix")?,
        created_at: row.time("created_at")?,
        expires_at: row.opt_time("expires_at")?,
        last_used_at: row.opt_time("last_used_at")?,
    })
}

/// An event of `org`'s log (columns `seq, id, type, session_id,
/// occurred_at, data`).
pub(crate) fn event_from_row(org: &OrgId, r: &impl Columns) -> Result<Event, StoreError> {
    let t = r.need("type")?;
    let t =
        EventType::from_name(&t).ok_or_else(|| StoreError::Corrupt(format!("event type {t}")))?;
    let data: serde_json::Value = serde_json::from_str(&r.need("data")?)
        .map_err(|e| StoreError::Corrupt(format!("event data: {e}")))?;
    Ok(Event {
        id: r.parsed("id", EventId::parse)?,
        cursor: EventCursor::from_seq(seq_u64(r.need_int("seq")?)),
        org: org.clone(),
        session: r.opt_parsed("session_id", SessionId::parse)?,
        occurred_at: r.time("occurred_at")?,
        data: EventData::from_json(t, &data).map_err(domain)?,
    })
}

/// The row values of `w` and its `secret`, in [`WEBHOOK_INSERT`]'s order.
pub(crate) fn webhook_values(w: &Webhook, secret: &WebhookSecret) -> Vec<Value> {
    let mut values = webhook_row_values(w);
    values.extend([
        Value::text(secret.expose()),
        Value::text(ts(w.created_at)),
        Value::text(ts(w.updated_at)),
    ]);
    values
}

/// What an insert and an update both write first: the row's name (`id`,
/// `org_id`) and every column a patch can change, in that order.
fn webhook_row_values(w: &Webhook) -> Vec<Value> {
    vec![
        Value::text(w.id.to_string()),
        Value::text(w.org.as_str()),
        Value::text(w.url.as_str()),
        Value::text(join_patterns(&w.events)),
        Value::Text(join_sessions(w.session_ids.as_ref())),
        Value::text(w.description.as_str()),
        Value::Flag(w.enabled),
        Value::Text(w.disabled_reason.clone()),
    ]
}

/// Writes a patched webhook: [`webhook_update_values`] in order (`id` and
/// `org_id` name the row; `$10`: whether its run of failures ends, as it
/// does when it is enabled again).
pub(crate) const WEBHOOK_UPDATE: &str = "UPDATE webhooks SET url = $3, events = $4, \
     session_ids = $5, description = $6, enabled = $7, disabled_reason = $8, updated_at = $9, \
     failing_since = CASE WHEN $10 THEN NULL ELSE failing_since END WHERE id = $1 AND org_id = $2";

/// The values [`WEBHOOK_UPDATE`] writes.
pub(crate) fn webhook_update_values(w: &Webhook, failing_ends: bool) -> Vec<Value> {
    let mut values = webhook_row_values(w);
    values.extend([Value::text(ts(w.updated_at)), Value::Flag(failing_ends)]);
    values
}

pub(crate) fn webhook_from_row(r: &impl Columns) -> Result<Webhook, StoreError> {
    Ok(Webhook {
        id: r.parsed("id", WebhookId::parse)?,
        org: r.parsed("org_id", OrgId::parse)?,
        url: r.parsed("url", WebhookUrl::parse)?,
        events: patterns(&r.need("events")?)?,
        session_ids: sessions(r.text("session_ids")?)?,
        description: r.parsed("description", WebhookDescription::parse)?,
        enabled: r.flag("enabled")?,
        disabled_reason: r.text("disabled_reason")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

/// What signs and addresses a webhook's deliveries at `now` (columns
/// `org_id, url, secret, previous_secret, previous_secret_until`): its
/// organization, URL and secrets (the previous one while its grace lasts).
pub(crate) fn hook_target(
    r: &impl Columns,
    now: OffsetDateTime,
) -> Result<(OrgId, WebhookUrl, Vec<WebhookSecret>), StoreError> {
    let mut secrets = vec![r.parsed("secret", WebhookSecret::from_text)?];
    if let (Some(previous), Some(until)) =
        (r.text("previous_secret")?, r.int("previous_secret_until")?)
        && until > ms(now)
    {
        secrets.push(WebhookSecret::from_text(&previous).map_err(domain)?);
    }
    Ok((
        r.parsed("org_id", OrgId::parse)?,
        r.parsed("url", WebhookUrl::parse)?,
        secrets,
    ))
}

/// A row of a webhook's delivery log (columns `seq, event_id, event_seq,
/// attempt, state, response_status, error, at, duration_ms`).
pub(crate) fn delivery_from_row(r: &impl Columns) -> Result<Delivery, StoreError> {
    let state = r.need("state")?;
    Ok(Delivery {
        seq: seq_u64(r.need_int("seq")?),
        event_id: r.parsed("event_id", EventId::parse)?,
        cursor: r
            .int("event_seq")?
            .map(|s| EventCursor::from_seq(seq_u64(s))),
        attempt: u32::try_from(r.need_int("attempt")?).unwrap_or(u32::MAX),
        state: DeliveryState::from_name(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery state {state}")))?,
        response_status: r
            .int("response_status")?
            .and_then(|s| u16::try_from(s).ok()),
        error: r.text("error")?,
        at: r.time("at")?,
        duration_ms: r.int("duration_ms")?.and_then(|d| u64::try_from(d).ok()),
    })
}

/// The row values of message `m` of `org`, in [`MESSAGE_INSERT`]'s order.
pub(crate) fn message_values(
    org: &OrgId,
    m: &Message,
    media_ref: Option<&[u8]>,
    media_data: Option<&[u8]>,
) -> Vec<Value> {
    let media = m.media.as_ref();
    let error = m.error.as_ref();
    vec![
        Value::text(org.as_str()),
        Value::text(m.session.to_string()),
        Value::text(m.chat.to_string()),
        Value::text(m.from.to_string()),
        Value::text(m.id.as_str()),
        Value::Flag(m.from_me),
        Value::opt_text(m.from_pn.as_ref()),
        Value::opt_text(m.from_lid.as_ref()),
        Value::text(m.to.to_string()),
        Value::text(m.kind.as_str()),
        Value::opt_text(m.text.as_deref()),
        Value::opt_text(m.caption.as_deref()),
        Value::opt_text(media.map(|i| i.mimetype.as_str())),
        Value::opt_text(media.and_then(|i| i.filename.as_deref())),
        Value::Int(media.map(|i| i64::try_from(i.size).unwrap_or(i64::MAX))),
        Value::opt_text(media.map(|i| i.sha256.as_str())),
        Value::Flag(m.voice_note),
        Value::Bytes(media_ref.map(<[u8]>::to_vec)),
        Value::Bytes(media_data.map(<[u8]>::to_vec)),
        Value::opt_text(m.reply_to.as_ref().map(MessageId::as_str)),
        Value::text(m.status.as_str()),
        Value::Text(m.status_at.sent.map(ts)),
        Value::Text(m.status_at.delivered.map(ts)),
        Value::Text(m.status_at.read.map(ts)),
        Value::Text(m.status_at.played.map(ts)),
        Value::opt_text(error.map(|e| e.code.as_str())),
        Value::opt_text(error.map(|e| e.message.as_str())),
        Value::Int(error.and_then(|e| e.nack_code).map(i64::from)),
        Value::text(ts(m.timestamp)),
        Value::text(ts(m.created_at)),
        Value::Int(Some(ms(m.created_at))),
        Value::Text(m.rich.as_ref().map(|r| r.to_json().to_string())),
        Value::Text(m.edited_at.map(ts)),
        Value::Text(mentions_text(&m.mentions)),
    ]
}

/// The `mentions` column: the JIDs space-separated, `None` for none.
fn mentions_text(mentions: &[Jid]) -> Option<String> {
    (!mentions.is_empty()).then(|| {
        mentions
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    })
}

/// Writes what an edit or a deletion changes of a message: its type, text,
/// caption, media, rich content and `edited_at` (then `$10`: the row's
/// `seq`); a revoked message's media handle and bytes go with its content.
pub(crate) const MESSAGE_CONTENT_UPDATE: &str = "UPDATE messages SET type = $1, text = $2, \
     caption = $3, media_mimetype = $4, media_filename = $5, media_size = $6, media_sha256 = $7, \
     voice_note = $8, rich = $9, edited_at = $11, \
     media_ref = CASE WHEN $1 = 'revoked' THEN NULL ELSE media_ref END, \
     media_data = CASE WHEN $1 = 'revoked' THEN NULL ELSE media_data END WHERE seq = $10";

/// The values [`MESSAGE_CONTENT_UPDATE`] writes of `m` (its `seq` is `seq`).
pub(crate) fn message_content_values(m: &Message, seq: i64) -> Vec<Value> {
    let media = m.media.as_ref();
    vec![
        Value::text(m.kind.as_str()),
        Value::opt_text(m.text.as_deref()),
        Value::opt_text(m.caption.as_deref()),
        Value::opt_text(media.map(|i| i.mimetype.as_str())),
        Value::opt_text(media.and_then(|i| i.filename.as_deref())),
        Value::Int(media.map(|i| i64::try_from(i.size).unwrap_or(i64::MAX))),
        Value::opt_text(media.map(|i| i.sha256.as_str())),
        Value::Flag(m.voice_note),
        Value::Text(m.rich.as_ref().map(|r| r.to_json().to_string())),
        Value::Int(Some(seq)),
        Value::Text(m.edited_at.map(ts)),
    ]
}

/// The values a status change writes (`status, sent_at, delivered_at,
/// read_at, played_at, error_code, error_message, error_nack`).
pub(crate) fn message_status_values(m: &Message) -> Vec<Value> {
    let error = m.error.as_ref();
    vec![
        Value::text(m.status.as_str()),
        Value::Text(m.status_at.sent.map(ts)),
        Value::Text(m.status_at.delivered.map(ts)),
        Value::Text(m.status_at.read.map(ts)),
        Value::Text(m.status_at.played.map(ts)),
        Value::opt_text(error.map(|e| e.code.as_str())),
        Value::opt_text(error.map(|e| e.message.as_str())),
        Value::Int(error.and_then(|e| e.nack_code).map(i64::from)),
    ]
}

/// Writes [`message_status_values`] (then `$9`: the row's `seq`); the
/// media bytes go once a message left `pending`.
pub(crate) const MESSAGE_STATUS_UPDATE: &str = "UPDATE messages SET status = $1, sent_at = $2, \
     delivered_at = $3, read_at = $4, played_at = $5, error_code = $6, error_message = $7, \
     error_nack = $8, media_data = NULL WHERE seq = $9";

/// A message row (`message_columns!()`) and its `seq`.
pub(crate) fn message_from_row(row: &impl Columns) -> Result<(u64, Message), StoreError> {
    let error = match row.text("error_code")? {
        Some(code) => Some(MessageError {
            code: MessageErrorCode::from_name(&code).unwrap_or(MessageErrorCode::Internal),
            message: row.text("error_message")?.unwrap_or_default(),
            nack_code: row.int("error_nack")?.and_then(|n| u32::try_from(n).ok()),
        }),
        None => None,
    };
    let seq = u64::try_from(row.int("seq")?.unwrap_or(0)).unwrap_or(0);
    let message = Message {
        id: row.parsed("id", MessageId::parse)?,
        session: row.parsed("session_id", SessionId::parse)?,
        chat: row.parsed("chat", Jid::parse)?,
        from_me: row.flag("from_me")?,
        from: row.parsed("sender", Jid::parse)?,
        from_pn: row.opt_parsed("sender_pn", Jid::parse)?,
        from_lid: row.opt_parsed("sender_lid", Jid::parse)?,
        to: row.parsed("recipient", Jid::parse)?,
        kind: row.parsed("type", MessageType::parse)?,
        text: row.text("text")?,
        caption: row.text("caption")?,
        media: media_info(row)?,
        rich: match row.text("rich")? {
            None => None,
            Some(json) => Some(
                serde_json::from_str(&json)
                    .ok()
                    .and_then(|v| RichContent::from_json(&v).ok())
                    .ok_or_else(|| StoreError::Corrupt("messages.rich".into()))?,
            ),
        },
        voice_note: row.flag("voice_note")?,
        reply_to: row.opt_parsed("reply_to", MessageId::parse)?,
        mentions: row
            .text("mentions")?
            .unwrap_or_default()
            .split_whitespace()
            .map(|j| Jid::parse(j).map_err(|_| StoreError::Corrupt("messages.mentions".into())))
            .collect::<Result<_, _>>()?,
        status: row.parsed("status", MessageStatus::parse)?,
        status_at: StatusTimes {
            sent: row.opt_time("sent_at")?,
            delivered: row.opt_time("delivered_at")?,
            read: row.opt_time("read_at")?,
            played: row.opt_time("played_at")?,
        },
        error,
        edited_at: row.opt_time("edited_at")?,
        timestamp: row.time("timestamp")?,
        created_at: row.time("created_at")?,
    };
    Ok((seq, message))
}

/// A message's media (columns `media_mimetype, media_filename, media_size,
/// media_sha256`), if it has any.
pub(crate) fn media_info(row: &impl Columns) -> Result<Option<MediaInfo>, StoreError> {
    let Some(mimetype) = row.text("media_mimetype")? else {
        return Ok(None);
    };
    Ok(Some(MediaInfo {
        mimetype,
        filename: row.text("media_filename")?,
        size: u64::try_from(row.int("media_size")?.unwrap_or(0)).unwrap_or(0),
        sha256: row.text("media_sha256")?.unwrap_or_default(),
    }))
}

/// Where a message's media is (columns `media_ref, media_data`).
pub(crate) fn media_source(row: &impl Columns) -> Result<MediaSource, StoreError> {
    Ok(match (row.bytes("media_data")?, row.bytes("media_ref")?) {
        (Some(bytes), _) => MediaSource::Bytes(bytes),
        (None, Some(r)) => MediaSource::Remote(r),
        (None, None) => MediaSource::Gone,
    })
}

/// An enabled webhook's id and what it wants (columns `id, events,
/// session_ids`).
pub(crate) fn hook_filter(r: &impl Columns) -> Result<(WebhookId, EventFilter), StoreError> {
    Ok((
        r.parsed("id", WebhookId::parse)?,
        EventFilter {
            types: patterns(&r.need("events")?)?,
            sessions: sessions(r.text("session_ids")?)?,
        },
    ))
}

/// Inserts an event: [`event_values`] in order.
pub(crate) const EVENT_INSERT: &str = "INSERT INTO events (org_id, seq, id, type, session_id, \
     occurred_at, occurred_ms, data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// The row values of `event` (at `seq` of its organization's log).
pub(crate) fn event_values(event: &Event, seq: i64) -> Vec<Value> {
    vec![
        Value::text(event.org.as_str()),
        Value::Int(Some(seq)),
        Value::text(event.id.to_string()),
        Value::text(event.data.event_type().as_str()),
        Value::opt_text(event.session.as_ref()),
        Value::text(ts(event.occurred_at)),
        Value::Int(Some(ms(event.occurred_at))),
        Value::text(event.data.to_json().to_string()),
    ]
}

/// Claimed deliveries (columns `seq, next_ms, event_id, body, attempt`) of
/// webhook `id` with its [`hook_target`], in the order to send them: by due
/// time, then cursor.
pub(crate) fn due_deliveries(
    rows: &[impl Columns],
    id: &WebhookId,
    (org, url, secrets): &(OrgId, WebhookUrl, Vec<WebhookSecret>),
) -> Result<Vec<crate::DueDelivery>, StoreError> {
    let mut due = rows
        .iter()
        .map(|r| {
            Ok((
                r.need_int("next_ms")?,
                crate::DueDelivery {
                    seq: seq_u64(r.need_int("seq")?),
                    webhook: *id,
                    org: org.clone(),
                    url: url.clone(),
                    secrets: secrets.clone(),
                    body: r.need("body")?,
                    event_id: r.parsed("event_id", EventId::parse)?,
                    attempt: u32::try_from(r.need_int("attempt")?).unwrap_or(u32::MAX),
                },
            ))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    due.sort_by_key(|(next, d)| (*next, d.seq));
    Ok(due.into_iter().map(|(_, d)| d).collect())
}

/// Records an attempt: [`attempt_values`], then `$7`: the delivery's `seq`.
/// A delivery that is no longer pending (failed when its webhook was
/// disabled during the attempt) keeps its final state unless the attempt
/// succeeded: made pending again, nothing would ever send it.
pub(crate) const DELIVERY_FINISH: &str = "UPDATE deliveries SET \
     state = CASE WHEN state = 'pending' OR $1 = 'succeeded' THEN $1 ELSE state END, \
     attempt = attempt + 1, response_status = $2, error = $3, at = $4, duration_ms = $5, \
     next_ms = CASE WHEN state = 'pending' THEN $6 END, \
     claimed_until = NULL WHERE seq = $7 RETURNING webhook_id";

/// What an attempt writes to its delivery's row (state, response status,
/// error, at, duration, next due time).
pub(crate) fn attempt_values(attempt: &crate::FinishedAttempt, now: OffsetDateTime) -> Vec<Value> {
    use crate::AttemptOutcome;
    let (state, status, error, next) = match &attempt.outcome {
        AttemptOutcome::Delivered { status } => ("succeeded", Some(*status), None, None),
        AttemptOutcome::Retry {
            status,
            error,
            next_at,
        } => ("pending", *status, Some(error.clone()), Some(ms(*next_at))),
        AttemptOutcome::Failed { status, error } => ("failed", *status, Some(error.clone()), None),
        AttemptOutcome::Gone => (
            "failed",
            Some(410),
            Some("the receiver answered 410 Gone: webhook disabled".to_owned()),
            None,
        ),
        // Not written with these: `finish_one` only releases its claim.
        AttemptOutcome::Released => ("pending", None, None, None),
    };
    vec![
        Value::text(state),
        Value::Int(status.map(i64::from)),
        Value::Text(error),
        Value::text(ts(now)),
        Value::Int(Some(i64::try_from(attempt.duration_ms).unwrap_or(i64::MAX))),
        Value::Int(next),
        Value::Int(Some(seq_i64(attempt.seq))),
    ]
}

/// Why a webhook failing since `since` (Unix ms) is disabled at `now`, if
/// it has failed for `disable_after`.
pub(crate) fn failing_too_long(
    since: i64,
    now: OffsetDateTime,
    disable_after: time::Duration,
) -> Option<String> {
    let limit = i64::try_from(disable_after.whole_milliseconds()).unwrap_or(i64::MAX);
    (ms(now).saturating_sub(since) >= limit).then(|| {
        format!(
            "every delivery failed for {} hours",
            disable_after.whole_hours()
        )
    })
}
