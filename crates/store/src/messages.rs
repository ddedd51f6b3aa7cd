//! The message store: what a session sent and received, the send queue,
//! and `Idempotency-Key` answers.

use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;
use wagate_domain::{
    EventData, IdempotencyKey, Jid, MediaInfo, Message, MessageError, MessageId, MessageStatus,
    MessageType, OrgId, PollVote, Receipt, Recipient, RichContent, SessionId,
};

use crate::StoreError;

/// An `Idempotency-Key` to remember with an accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    /// The key.
    pub key: IdempotencyKey,
    /// SHA-256 of the request (what makes "the same request").
    pub request_hash: [u8; 32],
    /// Keys stored before this are forgotten (24 h ago).
    pub not_before: OffsetDateTime,
}

/// What [`MessageStore::accept_outgoing`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Stored, `pending`.
    New(Message),
    /// The key was used for the same request: its message, nothing stored.
    Replayed(Message),
    /// The key was used for a different request: nothing stored.
    KeyConflict,
    /// The session already has `max_queue` pending messages: nothing stored.
    QueueFull,
}

/// What an inbound message carries, as the store keeps it.
#[derive(Clone, PartialEq, Eq)]
pub enum InboundBody {
    /// Text.
    Text(String),
    /// Media, with the adapter's handle to download it.
    Media {
        /// Image, video, audio or document.
        kind: MessageType,
        /// What is known of it.
        info: MediaInfo,
        /// The caption.
        caption: Option<String>,
        /// A voice note.
        voice_note: bool,
        /// The adapter's opaque download handle.
        media_ref: Vec<u8>,
    },
    /// A reaction to `target` (`emoji` empty: taken back).
    Reaction {
        /// The message reacted to.
        target: MessageId,
        /// The emoji.
        emoji: String,
    },
    /// A location or contact cards.
    Rich(RichContent),
    /// The writer's edit of its message `target` (same chat): the new
    /// text, or caption for media.
    Edit {
        /// The message edited.
        target: MessageId,
        /// Its new text.
        text: String,
    },
    /// The writer deleted its message `target` (same chat) for everyone.
    Revoke {
        /// The message deleted.
        target: MessageId,
    },
    /// The writer's vote on the poll `target` (of the same chat, anyone's):
    /// SHA-256 of each option picked (empty: taken back).
    PollVote {
        /// The poll.
        target: MessageId,
        /// The options picked, by hash.
        selected: Vec<[u8; 32]>,
    },
}

impl fmt::Debug for InboundBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InboundBody::Text(_) => f.write_str("Text(..)"),
            InboundBody::Media { kind, .. } => write!(f, "Media({kind})"),
            InboundBody::Reaction { target, .. } => write!(f, "Reaction({target})"),
            InboundBody::Rich(r) => write!(f, "Rich({})", r.kind()),
            InboundBody::Edit { target, .. } => write!(f, "Edit({target})"),
            InboundBody::Revoke { target } => write!(f, "Revoke({target})"),
            InboundBody::PollVote { target, .. } => write!(f, "PollVote({target})"),
        }
    }
}

/// A message that arrived for a session (from a contact, or written by the
/// account on another device: `from_me`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRecord {
    /// WhatsApp's id.
    pub id: MessageId,
    /// The chat.
    pub chat: Jid,
    /// Who wrote it.
    pub sender: Jid,
    /// The writer's phone-number JID.
    pub sender_pn: Option<Jid>,
    /// The writer's LID.
    pub sender_lid: Option<Jid>,
    /// Written by the account itself.
    pub from_me: bool,
    /// When it was written.
    pub timestamp: OffsetDateTime,
    /// What it carries.
    pub body: InboundBody,
    /// The message it answers.
    pub reply_to: Option<MessageId>,
    /// The people it @mentions.
    pub mentions: Vec<Jid>,
}

/// A status change of outgoing messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// The new status.
    pub status: MessageStatus,
    /// When it happened.
    pub at: OffsetDateTime,
    /// Why (`failed`).
    pub error: Option<MessageError>,
}

/// One group participant's receipt of outgoing messages, as
/// [`MessageStore::record_receipts`] takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantReceipt {
    /// The messages it names.
    pub ids: Vec<MessageId>,
    /// Whose receipt.
    pub participant: Recipient,
    /// Delivered, read or played, and when.
    pub change: StatusChange,
}

/// Where a message's media is.
#[derive(Clone, PartialEq, Eq)]
pub enum MediaSource {
    /// The bytes are here (an outgoing message not sent yet).
    Bytes(Vec<u8>),
    /// The adapter can download it with this handle (an inbound message).
    Remote(Vec<u8>),
    /// Nothing is kept any more (an outgoing message once sent).
    Gone,
}

impl fmt::Debug for MediaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaSource::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            MediaSource::Remote(_) => f.write_str("Remote(..)"),
            MediaSource::Gone => f.write_str("Gone"),
        }
    }
}

/// One page of a session's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagePage {
    /// Newest first.
    pub items: Vec<Message>,
    /// Pass as `before` for the next page; `None` on the last.
    pub next: Option<u64>,
}

/// One page of an outgoing group message's receipts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptPage {
    /// By recipient (its [`Recipient::key`]).
    pub items: Vec<Receipt>,
    /// Pass as `after` for the next page; `None` on the last.
    pub next: Option<Jid>,
}

/// Messages, sent and received, and the send queue. Reads a request reaches
/// take the caller's organization; another organization's messages do not
/// exist. Every write that an event reports writes the event in the same
/// transaction (`message.received`, `message.sent`, `message.status`,
/// `message.reaction`), with its webhook deliveries.
#[async_trait]
pub trait MessageStore: Send + Sync + std::fmt::Debug {
    /// Stores `message` (status `pending`, with `media_data` for media) in
    /// `org`'s session (to a group the gateway's store has: with a
    /// `pending` receipt for each of its participants but the account,
    /// the recipients [`MessageStore::record_receipt`] expects), unless `idempotency` names a key already used since
    /// its `not_before` (then the first answer, or a conflict) or the
    /// session already has `max_queue` pending messages; all decided and
    /// written atomically. The key is remembered with the message.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when a message with the same id exists;
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn accept_outgoing(
        &self,
        org: &OrgId,
        message: &Message,
        media_data: Option<&[u8]>,
        idempotency: Option<&IdempotencyClaim>,
        max_queue: u32,
    ) -> Result<Accepted, StoreError>;

    /// What `org`'s session answers to `claim` without writing anything:
    /// [`Accepted::Replayed`] with the first message when the key was used
    /// since `claim.not_before` for the same request, [`Accepted::KeyConflict`]
    /// when for another request, `None` when the key is free (unused, older,
    /// or its message is gone). A retried request is answered from this
    /// before anything that may have changed since the first answer (the
    /// session's connection, a media URL's content) is looked at;
    /// [`MessageStore::accept_outgoing`] decides again, atomically.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn idempotent_answer(
        &self,
        org: &OrgId,
        session: &SessionId,
        claim: &IdempotencyClaim,
    ) -> Result<Option<Accepted>, StoreError>;

    /// Up to `limit` pending messages of `session` not handed to WhatsApp
    /// yet ([`MessageStore::mark_handed`]), oldest first, leaving out the
    /// messages of the chats in `skip` (chats the sender is waiting on; the
    /// first 500 of them: the caller passes over the others itself).
    /// Without their media bytes: [`MessageStore::pending_media`] reads
    /// one message's just before it is sent.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn pending(
        &self,
        session: &SessionId,
        skip: &[Jid],
        limit: u32,
    ) -> Result<Vec<Message>, StoreError>;

    /// The media bytes of `session`'s outgoing message `id` while it is
    /// pending; `None` when it has none or left `pending` (the bytes are
    /// dropped then).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn pending_media(
        &self,
        session: &SessionId,
        id: &MessageId,
    ) -> Result<Option<Vec<u8>>, StoreError>;

    /// Records that pending message `id` of `session` was handed to
    /// WhatsApp at `at` (its ack has not come yet): [`MessageStore::pending`]
    /// skips it until [`MessageStore::requeue_handed`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn mark_handed(
        &self,
        session: &SessionId,
        id: &MessageId,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Makes the pending messages handed to WhatsApp without an ack due
    /// again (of `session`, or of every session): after a reconnect or a
    /// restart they are sent again, under the same id. How many.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn requeue_handed(&self, session: Option<&SessionId>) -> Result<u64, StoreError>;

    /// Every session with a pending message (after a restart).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn sessions_with_pending(&self) -> Result<Vec<SessionId>, StoreError>;

    /// Records messages that arrived for `session`, all or none, in one
    /// transaction with their events: `message.received` (from a contact),
    /// `message.sent` with source `device` (`from_me`), `message.reaction`
    /// (a reaction), `message.edited` and `message.revoked` (an edit or a
    /// deletion, applied to the stored message it names — the writer's
    /// own, of the same chat — in the same transaction; one that names no
    /// stored message, or a revoked one, changes nothing and makes no
    /// event), `message.poll_vote` (a vote: the voter's current vote on
    /// the poll it names, replaced unless a later one is stored). A
    /// message already recorded (same session, chat, sender and id; edits,
    /// deletions and votes by their own id) is skipped: no second row, no
    /// second change, no second event. How many were new; 0 when the
    /// session does not exist (deleted).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]: nothing was recorded.
    async fn record_inbound(
        &self,
        session: &SessionId,
        messages: &[InboundRecord],
        now: OffsetDateTime,
    ) -> Result<u32, StoreError>;

    /// Appends `data`, an ephemeral event about `session` tied to no row
    /// (`presence.update`, `chat.state`), to its organization's log with
    /// its webhook deliveries; `false` when the session does not exist.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]: nothing was written.
    async fn record_ephemeral(
        &self,
        session: &SessionId,
        data: &EventData,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Moves the outgoing messages `ids` of `session` to `change.status`
    /// where that is forward ([`MessageStatus::advances_to`]), each with a
    /// `message.status` event, and a `message.sent` (source `api`) event
    /// for each that leaves `pending` for anything but `failed`; media bytes
    /// are dropped once a message left `pending`. Outgoing messages are
    /// matched by session and id (a receipt may name the chat by LID or by
    /// phone number). The messages changed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn update_status(
        &self,
        session: &SessionId,
        ids: &[MessageId],
        change: &StatusChange,
        now: OffsetDateTime,
    ) -> Result<Vec<Message>, StoreError>;

    /// Records `participant`'s receipt (`change.status`: delivered, read
    /// or played) of `session`'s outgoing group messages `ids`, each
    /// recipient's status only forward, in one transaction with what it
    /// makes of the messages: a message moves (as by
    /// [`MessageStore::update_status`], with its events) to the furthest
    /// status every expected recipient reached — the participants of the
    /// group when it was accepted, the account left out; anyone a receipt
    /// comes from when nobody was. A receipt that changes no recipient (a
    /// redelivery) changes nothing and makes no event. A receipt of a
    /// one-to-one message moves it directly. The messages changed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn record_receipt(
        &self,
        session: &SessionId,
        ids: &[MessageId],
        participant: &Recipient,
        change: &StatusChange,
        now: OffsetDateTime,
    ) -> Result<Vec<Message>, StoreError>;

    /// Records `receipts` in order, each as [`MessageStore::record_receipt`]
    /// does, all in one transaction with their events (a burst of a large
    /// group's receipts is one write). The messages changed, in order.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn record_receipts(
        &self,
        session: &SessionId,
        receipts: &[ParticipantReceipt],
        now: OffsetDateTime,
    ) -> Result<Vec<Message>, StoreError>;

    /// Up to `limit` receipts of the account's group message `id` in
    /// `org`'s session (the one [`MessageStore::get_message`] picks), by
    /// recipient after `after`; `None` when `org`'s session has no such
    /// outgoing message.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn receipts(
        &self,
        org: &OrgId,
        session: &SessionId,
        id: &MessageId,
        after: Option<&Jid>,
        limit: u32,
    ) -> Result<Option<ReceiptPage>, StoreError>;

    /// Marks `org`'s received messages `ids` of `chat` `read` (a read
    /// receipt was sent); how many changed. No event (events report what
    /// WhatsApp did, and the caller knows what it asked).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn mark_received_read(
        &self,
        org: &OrgId,
        session: &SessionId,
        chat: &Jid,
        ids: &[MessageId],
        at: OffsetDateTime,
    ) -> Result<u64, StoreError>;

    /// Message `id` of `org`'s session, or `None`. Ids are chosen by the
    /// writer's device, so a contact may reuse one: the account's own
    /// message (`from_me`) wins, then the first recorded; a later message
    /// never displaces an earlier one under its id.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn get_message(
        &self,
        org: &OrgId,
        session: &SessionId,
        id: &MessageId,
    ) -> Result<Option<Message>, StoreError>;

    /// Up to `limit` messages of `org`'s session (of `chat`, when given)
    /// before `before` (a page's `next`), newest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn list_messages(
        &self,
        org: &OrgId,
        session: &SessionId,
        chat: Option<&Jid>,
        before: Option<u64>,
        limit: u32,
    ) -> Result<MessagePage, StoreError>;

    /// The media of message `id` (the one [`MessageStore::get_message`]
    /// picks) and where to get it; `None` when there is no such message or
    /// it has no media.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn media(
        &self,
        org: &OrgId,
        session: &SessionId,
        id: &MessageId,
    ) -> Result<Option<(MediaInfo, MediaSource)>, StoreError>;

    /// Message `id` of `org`'s session (the one
    /// [`MessageStore::get_message`] picks) and, when it is a poll, each
    /// voter's current vote (oldest first); `None` when there is no such
    /// message.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn poll_votes(
        &self,
        org: &OrgId,
        session: &SessionId,
        id: &MessageId,
    ) -> Result<Option<(Message, Vec<PollVote>)>, StoreError>;

    /// Forgets `Idempotency-Key`s stored before `before`; how many.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn prune_idempotency_keys(&self, before: OffsetDateTime) -> Result<u64, StoreError>;
}
