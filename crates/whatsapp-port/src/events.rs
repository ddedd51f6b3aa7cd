use std::sync::Mutex;

use async_trait::async_trait;
use time::OffsetDateTime;
use wagate_domain::{ChatState, GroupNotice, Jid, LastError, QrCode, SessionId};

use crate::{InboundMessage, NotRecorded, StatusUpdate};

/// Something that happened to a session on the WhatsApp side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEvent {
    /// The session it happened to.
    pub session: SessionId,
    /// What happened.
    pub kind: SessionEventKind,
}

/// The kinds of [`SessionEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEventKind {
    /// Not linked: waiting for a QR scan or a pairing code.
    Pairing,
    /// A new QR code is shown (while pairing; published after `Pairing`,
    /// again at every rotation), for the `session.qr` event.
    QrShown(QrCode),
    /// Linked; logging in.
    Connecting,
    /// Online as `jid`.
    Connected {
        /// The account's own JID.
        jid: Jid,
        /// The account's display name, if known.
        push_name: Option<String>,
    },
    /// The connection ended; the link is kept. `error` says why, if it was
    /// not asked for.
    Disconnected {
        /// Why, when it was not asked for.
        error: Option<LastError>,
    },
    /// The link is gone (the phone unlinked us, or WhatsApp did); the device
    /// keys have been erased.
    LoggedOut {
        /// Why, when it was not asked for.
        error: Option<LastError>,
    },
    /// Outgoing messages' status changed (server ack, receipt, nack).
    MessageStatus(StatusUpdate),
    /// Group participants' receipts that arrived one after another, in
    /// order (each with its `participant`): recorded together, so a
    /// burst of a large group's receipts costs one write, not one each.
    GroupReceipts(Vec<StatusUpdate>),
    /// A contact the session subscribed to
    /// ([`crate::WhatsAppPort::subscribe_presence`]) came online or went
    /// offline. Ephemeral: published once, never kept for a reconnect.
    Presence {
        /// Whose presence.
        jid: Jid,
        /// Online now.
        available: bool,
        /// When last online, when WhatsApp tells.
        last_seen: Option<OffsetDateTime>,
    },
    /// Someone is typing, recording or stopped in a chat. Ephemeral.
    ChatState {
        /// The chat.
        chat: Jid,
        /// Who.
        jid: Jid,
        /// What they do.
        state: ChatState,
    },
    /// Something happened to a group the account is in (a `Joined` notice
    /// carries the group's members).
    Group(GroupNotice),
}

/// Receives [`SessionEvent`]s from an adapter.
///
/// Adapters call [`SessionEventSink::publish`] in the order things happened
/// for one session and wait for it to return, so that by the time an adapter
/// call that caused an event returns, the event has been recorded.
#[async_trait]
pub trait SessionEventSink: Send + Sync + std::fmt::Debug {
    /// Records one event. Must not fail: a sink logs its own problems.
    async fn publish(&self, event: SessionEvent);

    /// Durably records messages that arrived for `session`, all or none, in
    /// order, before the adapter acknowledges them to WhatsApp. Idempotent:
    /// a message already recorded (same session, chat, sender and id, as
    /// after a crash between the commit and the ack) is skipped.
    ///
    /// # Errors
    ///
    /// [`NotRecorded`] when they could not be committed: the adapter must
    /// not acknowledge them, so that WhatsApp delivers them again.
    async fn record_messages(
        &self,
        session: &SessionId,
        messages: &[InboundMessage],
    ) -> Result<(), NotRecorded>;
}

/// A sink that keeps every event in memory, for tests and examples.
#[derive(Debug, Default)]
pub struct RecordingSink {
    events: Mutex<Vec<SessionEvent>>,
    messages: Mutex<Vec<(SessionId, InboundMessage)>>,
}

impl RecordingSink {
    /// Every event published so far, oldest first.
    pub fn events(&self) -> Vec<SessionEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Every message recorded so far, oldest first.
    pub fn messages(&self) -> Vec<(SessionId, InboundMessage)> {
        self.messages.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl SessionEventSink for RecordingSink {
    async fn publish(&self, event: SessionEvent) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }

    async fn record_messages(
        &self,
        session: &SessionId,
        messages: &[InboundMessage],
    ) -> Result<(), NotRecorded> {
        let mut recorded = self
            .messages
            .lock()
            .map_err(|_| NotRecorded("poisoned".into()))?;
        for message in messages {
            let seen = recorded.iter().any(|(s, m)| {
                s == session
                    && m.id == message.id
                    && m.chat == message.chat
                    && m.sender == message.sender
            });
            if !seen {
                recorded.push((*session, message.clone()));
            }
        }
        Ok(())
    }
}
