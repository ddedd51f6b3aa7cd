//! Poll votes (table `poll_votes`): each voter's current vote on a poll
//! message, written with its `message.poll_vote` event, and read back for
//! the tally. Both backends run these statements (see `conn.rs`).

use sha2::{Digest, Sha256};
use wagate_domain::{EventData, Jid, MessageId, OrgId, PollVote, RichContent, SessionId};

use crate::StoreError;
use crate::conn::Conn;
use crate::messages::InboundRecord;
use crate::rows::{Columns, Value, message_columns, message_from_row, seq_i64, ts};

fn text(s: impl Into<String>) -> Value {
    Value::Text(Some(s.into()))
}

/// Applies the vote `r` (options picked by their hashes) to the poll
/// `target` of its chat; the event that reports it, or `None` when there
/// is no such poll or a later vote of the same voter is already there.
pub(crate) async fn apply_vote<C: Conn>(
    conn: &mut C,
    session: &SessionId,
    r: &InboundRecord,
    target: &MessageId,
    chosen: &[[u8; 32]],
) -> Result<Option<EventData>, StoreError> {
    // The account's own polls by session and id (a chat may be named by
    // LID or phone number), a contact's in its chat.
    let sql = format!(
        "SELECT {} FROM messages WHERE session_id = $1 AND id = $2 AND type = 'poll' \
         AND (from_me OR chat = $3) ORDER BY from_me DESC, seq LIMIT 1{}",
        message_columns!(),
        C::FOR_UPDATE
    );
    let row = conn
        .one(
            &sql,
            vec![
                text(session.to_string()),
                text(target.as_str()),
                text(r.chat.to_string()),
            ],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (seq, message) = message_from_row(&row)?;
    let Some(RichContent::Poll(poll)) = &message.rich else {
        return Ok(None);
    };
    let selected = poll.picked(chosen, |o| <[u8; 32]>::from(Sha256::digest(o.as_bytes())));
    let voter = r.sender_pn.clone().unwrap_or_else(|| r.sender.clone());
    let seq = seq_i64(seq);
    let newer = conn
        .one(
            "SELECT at FROM poll_votes WHERE poll_seq = $1 AND voter = $2",
            vec![Value::Int(Some(seq)), text(voter.to_string())],
        )
        .await?;
    if let Some(row) = newer
        && row.time("at")? > r.timestamp
    {
        return Ok(None);
    }
    let json = serde_json::to_string(&selected)
        .map_err(|e| StoreError::Corrupt(format!("poll_votes.selected: {e}")))?;
    conn.run(
        "INSERT INTO poll_votes (poll_seq, voter, selected, at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (poll_seq, voter) DO UPDATE SET selected = excluded.selected, at = excluded.at",
        vec![
            Value::Int(Some(seq)),
            text(voter.to_string()),
            text(json),
            text(ts(r.timestamp)),
        ],
    )
    .await?;
    Ok(Some(EventData::MessagePollVote {
        message: Box::new(message),
        voter,
        selected,
    }))
}

/// Message `id` of `org`'s session (the one `get_message` picks) and, when
/// it is a poll, every voter's current vote (oldest first).
pub(crate) async fn poll_votes<C: Conn>(
    conn: &mut C,
    org: &OrgId,
    session: &SessionId,
    id: &MessageId,
) -> Result<Option<(wagate_domain::Message, Vec<PollVote>)>, StoreError> {
    let sql = format!(
        "SELECT {} FROM messages WHERE org_id = $1 AND session_id = $2 AND id = $3 \
         ORDER BY from_me DESC, seq LIMIT 1",
        message_columns!()
    );
    let row = conn
        .one(
            &sql,
            vec![
                text(org.as_str()),
                text(session.to_string()),
                text(id.as_str()),
            ],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (seq, message) = message_from_row(&row)?;
    if message.kind != wagate_domain::MessageType::Poll {
        return Ok(Some((message, Vec::new())));
    }
    let rows = conn
        .all(
            "SELECT voter, selected, at FROM poll_votes WHERE poll_seq = $1 ORDER BY at, voter",
            vec![Value::Int(Some(seq_i64(seq)))],
        )
        .await?;
    let votes = rows
        .iter()
        .map(|row| {
            Ok(PollVote {
                voter: row.parsed("voter", Jid::parse)?,
                selected: serde_json::from_str(&row.need("selected")?)
                    .map_err(|_| StoreError::Corrupt("poll_votes.selected".into()))?,
                at: row.time("at")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Some((message, votes)))
}
