//! Messages, the send queue and idempotency keys on SQLite.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use time::OffsetDateTime;
use wagate_domain::{
    EventData, Jid, MediaInfo, Message, MessageError, MessageErrorCode, MessageId, MessageSource,
    MessageStatus, MessageType, OrgId, SessionId, StatusTimes,
};

use super::{SqliteStore, corrupt, db_err, parse_opt_ts, parse_ts, ts};
use crate::StoreError;
use crate::messages::{
    Accepted, IdempotencyClaim, InboundBody, InboundRecord, MediaSource, MessagePage, MessageStore,
    PendingMessage, StatusChange,
};

macro_rules! message_columns {
    () => {
        "seq, session_id, chat, sender, id, from_me, sender_pn, sender_lid, recipient, type, text, \
         caption, media_mimetype, media_filename, media_size, media_sha256, voice_note, reply_to, \
         status, sent_at, delivered_at, read_at, played_at, error_code, error_message, error_nack, \
         timestamp, created_at"
    };
}

fn ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn domain(e: wagate_domain::DomainError) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A message row and its `seq`.
fn message_from_row(row: &SqliteRow) -> Result<(u64, Message), StoreError> {
    let get = |c: &'static str| row.try_get::<Option<String>, _>(c).map_err(corrupt(c));
    let need = |c: &'static str| get(c)?.ok_or_else(|| StoreError::Corrupt(format!("{c} is null")));
    let jid = |c: &'static str| get(c)?.map(|j| Jid::parse(&j)).transpose().map_err(domain);
    let int = |c: &'static str| row.try_get::<Option<i64>, _>(c).map_err(corrupt(c));
    let media = match get("media_mimetype")? {
        Some(mimetype) => Some(MediaInfo {
            mimetype,
            filename: get("media_filename")?,
            size: u64::try_from(int("media_size")?.unwrap_or(0)).unwrap_or(0),
            sha256: get("media_sha256")?.unwrap_or_default(),
        }),
        None => None,
    };
    let error = match get("error_code")? {
        Some(code) => Some(MessageError {
            code: MessageErrorCode::from_name(&code).unwrap_or(MessageErrorCode::Internal),
            message: get("error_message")?.unwrap_or_default(),
            nack_code: int("error_nack")?.and_then(|n| u32::try_from(n).ok()),
        }),
        None => None,
    };
    let seq = u64::try_from(int("seq")?.unwrap_or(0)).unwrap_or(0);
    let message = Message {
        id: MessageId::parse(&need("id")?).map_err(domain)?,
        session: SessionId::parse(&need("session_id")?).map_err(domain)?,
        chat: Jid::parse(&need("chat")?).map_err(domain)?,
        from_me: int("from_me")?.unwrap_or(0) != 0,
        from: Jid::parse(&need("sender")?).map_err(domain)?,
        from_pn: jid("sender_pn")?,
        from_lid: jid("sender_lid")?,
        to: Jid::parse(&need("recipient")?).map_err(domain)?,
        kind: MessageType::parse(&need("type")?).map_err(domain)?,
        text: get("text")?,
        caption: get("caption")?,
        media,
        voice_note: int("voice_note")?.unwrap_or(0) != 0,
        reply_to: get("reply_to")?
            .map(|r| MessageId::parse(&r))
            .transpose()
            .map_err(domain)?,
        status: MessageStatus::parse(&need("status")?).map_err(domain)?,
        status_at: StatusTimes {
            sent: parse_opt_ts("sent_at", get("sent_at")?)?,
            delivered: parse_opt_ts("delivered_at", get("delivered_at")?)?,
            read: parse_opt_ts("read_at", get("read_at")?)?,
            played: parse_opt_ts("played_at", get("played_at")?)?,
        },
        error,
        timestamp: parse_ts("timestamp", &need("timestamp")?)?,
        created_at: parse_ts("created_at", &need("created_at")?)?,
    };
    Ok((seq, message))
}

/// Inserts `m` unless a message with its (session, chat, sender, id)
/// exists; whether it was inserted.
async fn insert_message(
    tx: &mut SqliteConnection,
    org: &OrgId,
    m: &Message,
    media_ref: Option<&[u8]>,
    media_data: Option<&[u8]>,
) -> Result<bool, StoreError> {
    let media = m.media.as_ref();
    let done = sqlx::query(
        "INSERT INTO messages (org_id, session_id, chat, sender, id, from_me, sender_pn, sender_lid, \
         recipient, type, text, caption, media_mimetype, media_filename, media_size, media_sha256, \
         voice_note, media_ref, media_data, reply_to, status, sent_at, delivered_at, read_at, \
         played_at, error_code, error_message, error_nack, timestamp, created_at, created_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (session_id, chat, sender, id) DO NOTHING",
    )
    .bind(org.as_str())
    .bind(m.session.to_string())
    .bind(m.chat.to_string())
    .bind(m.from.to_string())
    .bind(m.id.as_str())
    .bind(i64::from(m.from_me))
    .bind(m.from_pn.as_ref().map(ToString::to_string))
    .bind(m.from_lid.as_ref().map(ToString::to_string))
    .bind(m.to.to_string())
    .bind(m.kind.as_str())
    .bind(m.text.as_deref())
    .bind(m.caption.as_deref())
    .bind(media.map(|i| i.mimetype.as_str()))
    .bind(media.and_then(|i| i.filename.as_deref()))
    .bind(media.map(|i| i64::try_from(i.size).unwrap_or(i64::MAX)))
    .bind(media.map(|i| i.sha256.as_str()))
    .bind(i64::from(m.voice_note))
    .bind(media_ref)
    .bind(media_data)
    .bind(m.reply_to.as_ref().map(MessageId::as_str))
    .bind(m.status.as_str())
    .bind(m.status_at.sent.map(ts))
    .bind(m.status_at.delivered.map(ts))
    .bind(m.status_at.read.map(ts))
    .bind(m.status_at.played.map(ts))
    .bind(m.error.as_ref().map(|e| e.code.as_str()))
    .bind(m.error.as_ref().map(|e| e.message.as_str()))
    .bind(m.error.as_ref().and_then(|e| e.nack_code).map(i64::from))
    .bind(ts(m.timestamp))
    .bind(ts(m.created_at))
    .bind(ms(m.created_at))
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    Ok(done.rows_affected() == 1)
}

/// The organization and own JID of session `id`, read on `conn`.
async fn session_owner(
    conn: &mut SqliteConnection,
    id: &SessionId,
) -> Result<Option<(OrgId, Option<Jid>)>, StoreError> {
    let row = sqlx::query("SELECT org_id, jid FROM sessions WHERE id = ?")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let org: String = row.try_get("org_id").map_err(corrupt("org_id"))?;
    let jid: Option<String> = row.try_get("jid").map_err(corrupt("jid"))?;
    Ok(Some((
        OrgId::parse(&org).map_err(domain)?,
        jid.map(|j| Jid::parse(&j)).transpose().map_err(domain)?,
    )))
}

/// The outgoing message `id` of `session` (the newest, should ids repeat).
async fn outgoing_in(
    conn: &mut SqliteConnection,
    session: &SessionId,
    id: &str,
) -> Result<Vec<(u64, Message)>, StoreError> {
    let sql = concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE session_id = ? AND id = ? AND from_me = 1 ORDER BY seq DESC"
    );
    let rows = sqlx::query(sql)
        .bind(session.to_string())
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    rows.iter().map(message_from_row).collect()
}

/// The message an inbound record becomes (`own`: the account's JID).
fn inbound_message(
    session: &SessionId,
    own: Option<&Jid>,
    r: &InboundRecord,
    now: OffsetDateTime,
) -> Message {
    let (kind, text, caption, media, voice_note) = match &r.body {
        InboundBody::Text(t) => (MessageType::Text, Some(t.clone()), None, None, false),
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
        // Reactions are not messages; never called with one.
        InboundBody::Reaction { .. } => (MessageType::Text, None, None, None, false),
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
        voice_note,
        reply_to: r.reply_to.clone(),
        status: if r.from_me {
            MessageStatus::Sent
        } else {
            MessageStatus::Received
        },
        status_at,
        error: None,
        timestamp: r.timestamp,
        created_at: now,
    }
}

#[async_trait]
impl MessageStore for SqliteStore {
    async fn accept_outgoing(
        &self,
        org: &OrgId,
        message: &Message,
        media_data: Option<&[u8]>,
        idempotency: Option<&IdempotencyClaim>,
        max_queue: u32,
    ) -> Result<Accepted, StoreError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        let session = message.session.to_string();
        if let Some(claim) = idempotency {
            let row = sqlx::query(
                "SELECT request_hash, message_id, created_ms FROM idempotency_keys \
                 WHERE org_id = ? AND session_id = ? AND key = ?",
            )
            .bind(org.as_str())
            .bind(&session)
            .bind(claim.key.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            if let Some(row) = row {
                let hash: Vec<u8> = row
                    .try_get("request_hash")
                    .map_err(corrupt("request_hash"))?;
                let id: String = row.try_get("message_id").map_err(corrupt("message_id"))?;
                let at: i64 = row.try_get("created_ms").map_err(corrupt("created_ms"))?;
                if at >= ms(claim.not_before) {
                    if hash != claim.request_hash {
                        return Ok(Accepted::KeyConflict);
                    }
                    if let Some((_, first)) = outgoing_in(&mut tx, &message.session, &id)
                        .await?
                        .into_iter()
                        .next()
                    {
                        return Ok(Accepted::Replayed(first));
                    }
                }
                // Expired, or its message is gone: the key is free again.
                sqlx::query(
                    "DELETE FROM idempotency_keys WHERE org_id = ? AND session_id = ? AND key = ?",
                )
                .bind(org.as_str())
                .bind(&session)
                .bind(claim.key.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
        }
        let queued: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages WHERE session_id = ? AND status = 'pending'",
        )
        .bind(&session)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        if queued >= i64::from(max_queue) {
            return Ok(Accepted::QueueFull);
        }
        if !insert_message(&mut tx, org, message, None, media_data).await? {
            return Err(StoreError::Conflict(format!(
                "message {} exists",
                message.id
            )));
        }
        if let Some(claim) = idempotency {
            sqlx::query(
                "INSERT INTO idempotency_keys (org_id, session_id, key, request_hash, message_id, \
                 created_at, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(org.as_str())
            .bind(&session)
            .bind(claim.key.as_str())
            .bind(claim.request_hash.to_vec())
            .bind(message.id.as_str())
            .bind(ts(message.created_at))
            .bind(ms(message.created_at))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(Accepted::New(message.clone()))
    }

    async fn pending(
        &self,
        session: &SessionId,
        limit: u32,
    ) -> Result<Vec<PendingMessage>, StoreError> {
        let sql = concat!(
            "SELECT ",
            message_columns!(),
            ", media_data FROM messages WHERE session_id = ? AND status = 'pending' AND handed_at IS NULL \
             ORDER BY seq LIMIT ?"
        );
        let rows = sqlx::query(sql)
            .bind(session.to_string())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                let (_, message) = message_from_row(row)?;
                let media_data: Option<Vec<u8>> =
                    row.try_get("media_data").map_err(corrupt("media_data"))?;
                Ok(PendingMessage {
                    message,
                    media_data,
                })
            })
            .collect()
    }

    async fn mark_handed(
        &self,
        session: &SessionId,
        id: &MessageId,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE messages SET handed_at = ? WHERE session_id = ? AND id = ? AND from_me = 1 \
             AND status = 'pending'",
        )
        .bind(ts(at))
        .bind(session.to_string())
        .bind(id.as_str())
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn requeue_handed(&self, session: Option<&SessionId>) -> Result<u64, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new(
            "UPDATE messages SET handed_at = NULL WHERE status = 'pending' AND handed_at IS NOT NULL",
        );
        if let Some(session) = session {
            q.push(" AND session_id = ").push_bind(session.to_string());
        }
        let done = q.build().execute(&self.writer).await.map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn sessions_with_pending(&self) -> Result<Vec<SessionId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT session_id FROM messages WHERE status = 'pending' ORDER BY session_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        ids.iter()
            .map(|s| SessionId::parse(s).map_err(domain))
            .collect()
    }

    async fn record_inbound(
        &self,
        session: &SessionId,
        messages: &[InboundRecord],
        now: OffsetDateTime,
    ) -> Result<u32, StoreError> {
        if messages.is_empty() {
            return Ok(0);
        }
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        let Some((org, own)) = session_owner(&mut tx, session).await? else {
            return Ok(0);
        };
        let mut recorded = 0;
        let mut events = Vec::new();
        for r in messages {
            if let InboundBody::Reaction { target, emoji } = &r.body {
                let done = sqlx::query(
                    "INSERT INTO message_reactions (session_id, chat, sender, id, target, emoji, at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (session_id, chat, sender, id) DO NOTHING",
                )
                .bind(session.to_string())
                .bind(r.chat.to_string())
                .bind(r.sender.to_string())
                .bind(r.id.as_str())
                .bind(target.as_str())
                .bind(emoji.as_str())
                .bind(ts(r.timestamp))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                if done.rows_affected() == 1 {
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
            if insert_message(&mut tx, &org, &message, media_ref, None).await? {
                recorded += 1;
                events.push(if r.from_me {
                    EventData::MessageSent {
                        message: Box::new(message),
                        source: MessageSource::Device,
                    }
                } else {
                    EventData::MessageReceived(Box::new(message))
                });
            }
        }
        self.commit_with_events(tx, &org, Some(session), &events, now)
            .await?;
        Ok(recorded)
    }

    async fn update_status(
        &self,
        session: &SessionId,
        ids: &[MessageId],
        change: &StatusChange,
        now: OffsetDateTime,
    ) -> Result<Vec<Message>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        let Some((org, _)) = session_owner(&mut tx, session).await? else {
            return Ok(Vec::new());
        };
        let mut changed = Vec::new();
        let mut events = Vec::new();
        for id in ids {
            for (seq, current) in outgoing_in(&mut tx, session, id.as_str()).await? {
                if !current.status.advances_to(change.status) {
                    continue;
                }
                let mut next = current.clone();
                next.status = change.status;
                // WhatsApp's times are whole seconds: an ack in the second
                // the message was accepted would read as before it.
                let at = change.at.max(current.created_at);
                next.status_at.reach(change.status, at);
                next.error = if change.status == MessageStatus::Failed {
                    change.error.clone()
                } else {
                    None
                };
                sqlx::query(
                    "UPDATE messages SET status = ?, sent_at = ?, delivered_at = ?, read_at = ?, \
                     played_at = ?, error_code = ?, error_message = ?, error_nack = ?, \
                     media_data = NULL WHERE seq = ?",
                )
                .bind(next.status.as_str())
                .bind(next.status_at.sent.map(ts))
                .bind(next.status_at.delivered.map(ts))
                .bind(next.status_at.read.map(ts))
                .bind(next.status_at.played.map(ts))
                .bind(next.error.as_ref().map(|e| e.code.as_str()))
                .bind(next.error.as_ref().map(|e| e.message.as_str()))
                .bind(next.error.as_ref().and_then(|e| e.nack_code).map(i64::from))
                .bind(i64::try_from(seq).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                if current.status == MessageStatus::Pending && next.status != MessageStatus::Failed
                {
                    events.push(EventData::MessageSent {
                        message: Box::new(next.clone()),
                        source: MessageSource::Api,
                    });
                }
                events.push(EventData::MessageStatus {
                    id: next.id.clone(),
                    chat: next.chat.clone(),
                    status: next.status,
                    at,
                    error: next.error.clone(),
                });
                changed.push(next);
            }
        }
        self.commit_with_events(tx, &org, Some(session), &events, now)
            .await?;
        Ok(changed)
    }

    async fn mark_received_read(
        &self,
        org: &OrgId,
        session: &SessionId,
        chat: &Jid,
        ids: &[MessageId],
        at: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut q = QueryBuilder::<Sqlite>::new("UPDATE messages SET status = 'read', read_at = ");
        q.push_bind(ts(at))
            .push(" WHERE org_id = ")
            .push_bind(org.as_str().to_owned())
            .push(" AND session_id = ")
            .push_bind(session.to_string())
            .push(" AND chat = ")
            .push_bind(chat.to_string())
            .push(" AND from_me = 0 AND status = 'received' AND id IN (");
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(id.as_str().to_owned());
        }
        list.push_unseparated(")");
        let done = q.build().execute(&self.writer).await.map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn get_message(
        &self,
        org: &OrgId,
        session: &SessionId,
        id: &MessageId,
    ) -> Result<Option<Message>, StoreError> {
        let sql = concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE org_id = ? AND session_id = ? AND id = ? ORDER BY seq DESC LIMIT 1"
        );
        let row = sqlx::query(sql)
            .bind(org.as_str())
            .bind(session.to_string())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(row
            .as_ref()
            .map(message_from_row)
            .transpose()?
            .map(|(_, m)| m))
    }

    async fn list_messages(
        &self,
        org: &OrgId,
        session: &SessionId,
        chat: Option<&Jid>,
        before: Option<u64>,
        limit: u32,
    ) -> Result<MessagePage, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE org_id = "
        ));
        q.push_bind(org.as_str().to_owned())
            .push(" AND session_id = ")
            .push_bind(session.to_string());
        if let Some(chat) = chat {
            q.push(" AND chat = ").push_bind(chat.to_string());
        }
        if let Some(before) = before {
            q.push(" AND seq < ")
                .push_bind(i64::try_from(before).unwrap_or(i64::MAX));
        }
        q.push(" ORDER BY seq DESC LIMIT ")
            .push_bind(i64::from(limit) + 1);
        let rows = q.build().fetch_all(&self.pool).await.map_err(db_err)?;
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

    async fn media(
        &self,
        org: &OrgId,
        session: &SessionId,
        id: &MessageId,
    ) -> Result<Option<(MediaInfo, MediaSource)>, StoreError> {
        let row = sqlx::query(
            "SELECT media_mimetype, media_filename, media_size, media_sha256, media_ref, media_data \
             FROM messages WHERE org_id = ? AND session_id = ? AND id = ? \
             AND media_mimetype IS NOT NULL ORDER BY seq DESC LIMIT 1",
        )
        .bind(org.as_str())
        .bind(session.to_string())
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let info = MediaInfo {
            mimetype: row
                .try_get("media_mimetype")
                .map_err(corrupt("media_mimetype"))?,
            filename: row
                .try_get("media_filename")
                .map_err(corrupt("media_filename"))?,
            size: u64::try_from(
                row.try_get::<Option<i64>, _>("media_size")
                    .map_err(corrupt("media_size"))?
                    .unwrap_or(0),
            )
            .unwrap_or(0),
            sha256: row
                .try_get::<Option<String>, _>("media_sha256")
                .map_err(corrupt("media_sha256"))?
                .unwrap_or_default(),
        };
        let media_ref: Option<Vec<u8>> = row.try_get("media_ref").map_err(corrupt("media_ref"))?;
        let data: Option<Vec<u8>> = row.try_get("media_data").map_err(corrupt("media_data"))?;
        let source = match (data, media_ref) {
            (Some(bytes), _) => MediaSource::Bytes(bytes),
            (None, Some(r)) => MediaSource::Remote(r),
            (None, None) => MediaSource::Gone,
        };
        Ok(Some((info, source)))
    }

    async fn prune_idempotency_keys(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_ms < ?")
            .bind(ms(before))
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::session;
    use crate::{EventLog, SessionRegistry};
    use wagate_domain::{EventCursor, EventFilter, EventType, IdempotencyKey};

    async fn store() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/wagate.db", dir.path().display());
        let store = SqliteStore::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        (store, dir)
    }

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    async fn types(store: &SqliteStore, org: &OrgId) -> Vec<EventType> {
        store
            .read_events(org, EventCursor::START, &EventFilter::default(), 100)
            .await
            .unwrap()
            .events
            .iter()
            .map(|e| e.data.event_type())
            .collect()
    }

    fn inbound(id: &str, body: InboundBody, from_me: bool) -> InboundRecord {
        let alice = jid("14155550123@s.whatsapp.net");
        InboundRecord {
            id: MessageId::parse(id).unwrap(),
            chat: alice.clone(),
            sender: if from_me {
                jid("15550001111@s.whatsapp.net")
            } else {
                alice.clone()
            },
            sender_pn: Some(alice),
            sender_lid: None,
            from_me,
            timestamp: OffsetDateTime::now_utc(),
            body,
            reply_to: None,
        }
    }

    fn outgoing(s: &SessionId, id: &str, now: OffsetDateTime) -> Message {
        Message {
            id: MessageId::parse(id).unwrap(),
            session: *s,
            chat: jid("14155550123@s.whatsapp.net"),
            from_me: true,
            from: jid("15550001111@s.whatsapp.net"),
            from_pn: None,
            from_lid: None,
            to: jid("14155550123@s.whatsapp.net"),
            kind: MessageType::Image,
            text: None,
            caption: None,
            media: Some(MediaInfo {
                mimetype: "image/png".into(),
                filename: None,
                size: 3,
                sha256: "x".into(),
            }),
            voice_note: false,
            reply_to: None,
            status: MessageStatus::Pending,
            status_at: StatusTimes::default(),
            error: None,
            timestamp: now,
            created_at: now,
        }
    }

    #[tokio::test]
    async fn inbound_messages_are_recorded_once_with_one_event_each() {
        let (store, _dir) = store().await;
        let now = OffsetDateTime::now_utc();
        let s = session("acme", 1, now);
        store.insert(&s).await.unwrap();
        let batch = vec![
            inbound("IN1", InboundBody::Text("hi".into()), false),
            inbound("IN2", InboundBody::Text("from my phone".into()), true),
            inbound(
                "IN3",
                InboundBody::Reaction {
                    target: MessageId::parse("IN2").unwrap(),
                    emoji: "👍".into(),
                },
                false,
            ),
        ];
        assert_eq!(store.record_inbound(&s.id, &batch, now).await.unwrap(), 3);
        // Redelivered (a crash between commit and ack): nothing new.
        assert_eq!(store.record_inbound(&s.id, &batch, now).await.unwrap(), 0);
        assert_eq!(
            types(&store, &s.org).await,
            vec![
                EventType::MessageReceived,
                EventType::MessageSent,
                EventType::MessageReaction
            ]
        );
        let page = store
            .list_messages(&s.org, &s.id, None, None, 10)
            .await
            .unwrap();
        assert_eq!(page.items.len(), 2, "reactions are not messages");
        assert_eq!(page.items[0].status, MessageStatus::Sent);
        assert_eq!(page.items[1].status, MessageStatus::Received);
        assert_eq!(
            page.items[1].to,
            jid("14155550123@s.whatsapp.net"),
            "no own JID yet: the chat"
        );
        // Another organization sees nothing.
        let other = OrgId::parse("other").unwrap();
        assert!(
            store
                .list_messages(&other, &s.id, None, None, 10)
                .await
                .unwrap()
                .items
                .is_empty()
        );
        // A deleted session records nothing and fails nothing.
        store.delete(&s.org, &s.id).await.unwrap();
        assert_eq!(store.record_inbound(&s.id, &batch, now).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_status_is_never_before_the_message() {
        let (store, _dir) = store().await;
        let now = OffsetDateTime::now_utc();
        let s = session("acme", 1, now);
        store.insert(&s).await.unwrap();
        let m = outgoing(&s.id, "OUT2", now);
        store
            .accept_outgoing(&s.org, &m, None, None, 10)
            .await
            .unwrap();
        // WhatsApp's ack names the whole second, before the accept's instant.
        let acked_at = now.replace_nanosecond(0).unwrap() - time::Duration::milliseconds(1);
        let sent = store
            .update_status(
                &s.id,
                std::slice::from_ref(&m.id),
                &StatusChange {
                    status: MessageStatus::Sent,
                    at: acked_at,
                    error: None,
                },
                now,
            )
            .await
            .unwrap();
        assert_eq!(sent[0].status_at.sent, Some(sent[0].created_at));
        assert!(sent[0].status_at.sent >= Some(m.created_at.replace_nanosecond(0).unwrap()));
    }

    #[tokio::test]
    async fn outgoing_statuses_only_move_forward_with_their_events() {
        let (store, _dir) = store().await;
        let now = OffsetDateTime::now_utc();
        let s = session("acme", 1, now);
        store.insert(&s).await.unwrap();
        let m = outgoing(&s.id, "OUT1", now);
        assert_eq!(
            store
                .accept_outgoing(&s.org, &m, Some(b"png"), None, 10)
                .await
                .unwrap(),
            Accepted::New(m.clone())
        );
        let pending = store.pending(&s.id, 10).await.unwrap();
        assert_eq!(pending[0].media_data.as_deref(), Some(&b"png"[..]));
        assert!(
            types(&store, &s.org).await.is_empty(),
            "accepting emits nothing"
        );
        let change = |status| StatusChange {
            status,
            at: now,
            error: None,
        };
        let ids = [m.id.clone()];
        let sent = store
            .update_status(&s.id, &ids, &change(MessageStatus::Sent), now)
            .await
            .unwrap();
        assert_eq!(sent[0].status_at.sent, Some(now));
        store
            .update_status(&s.id, &ids, &change(MessageStatus::Read), now)
            .await
            .unwrap();
        // Late or repeated receipts change nothing.
        for late in [
            MessageStatus::Delivered,
            MessageStatus::Read,
            MessageStatus::Failed,
        ] {
            assert!(
                store
                    .update_status(&s.id, &ids, &change(late), now)
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
        assert_eq!(
            types(&store, &s.org).await,
            vec![
                EventType::MessageSent,
                EventType::MessageStatus,
                EventType::MessageStatus
            ]
        );
        let got = store
            .get_message(&s.org, &s.id, &m.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (got.status, got.status_at.delivered),
            (MessageStatus::Read, Some(now))
        );
        // Its bytes are gone once sent.
        let (_, source) = store.media(&s.org, &s.id, &m.id).await.unwrap().unwrap();
        assert_eq!(source, MediaSource::Gone);
        assert!(store.pending(&s.id, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn idempotency_keys_and_the_queue_bound() {
        let (store, _dir) = store().await;
        let now = OffsetDateTime::now_utc();
        let s = session("acme", 1, now);
        store.insert(&s).await.unwrap();
        let claim = |hash: u8, not_before| IdempotencyClaim {
            key: IdempotencyKey::parse("k1").unwrap(),
            request_hash: [hash; 32],
            not_before,
        };
        let day_ago = now - time::Duration::hours(24);
        let first = outgoing(&s.id, "A1", now);
        assert!(matches!(
            store
                .accept_outgoing(&s.org, &first, None, Some(&claim(1, day_ago)), 2)
                .await
                .unwrap(),
            Accepted::New(_)
        ));
        let retry = outgoing(&s.id, "A2", now);
        assert_eq!(
            store
                .accept_outgoing(&s.org, &retry, None, Some(&claim(1, day_ago)), 2)
                .await
                .unwrap(),
            Accepted::Replayed(first.clone())
        );
        assert_eq!(
            store
                .accept_outgoing(&s.org, &retry, None, Some(&claim(2, day_ago)), 2)
                .await
                .unwrap(),
            Accepted::KeyConflict
        );
        // Past the window the key is free again.
        let later = now + time::Duration::seconds(1);
        assert!(matches!(
            store
                .accept_outgoing(&s.org, &retry, None, Some(&claim(2, later)), 2)
                .await
                .unwrap(),
            Accepted::New(_)
        ));
        // Two pending now: the queue (of 2) is full.
        assert_eq!(
            store
                .accept_outgoing(&s.org, &outgoing(&s.id, "A3", now), None, None, 2)
                .await
                .unwrap(),
            Accepted::QueueFull
        );
        // Handed to WhatsApp: not due until requeued.
        store.mark_handed(&s.id, &first.id, now).await.unwrap();
        assert_eq!(store.pending(&s.id, 10).await.unwrap().len(), 1);
        assert_eq!(store.sessions_with_pending().await.unwrap(), vec![s.id]);
        assert_eq!(store.requeue_handed(Some(&s.id)).await.unwrap(), 1);
        assert_eq!(store.pending(&s.id, 10).await.unwrap().len(), 2);
        assert_eq!(
            store
                .prune_idempotency_keys(later + time::Duration::seconds(1))
                .await
                .unwrap(),
            1
        );
    }
}
