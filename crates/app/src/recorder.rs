//! What the WhatsApp adapter observes, written to the session registry.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use wagate_domain::{
    Clock, EventData, MessageError, MessageErrorCode, MessageStatus, SessionId, SessionStatus,
};
use wagate_store::{
    InboundBody, InboundRecord, MessageStore, SessionPatch, SessionRegistry, StatusChange,
    StoreError,
};
use wagate_whatsapp_port::{
    InboundContent, InboundMessage, NotRecorded, SessionEvent, SessionEventKind, SessionEventSink,
    StatusUpdate,
};

use crate::Outbox;

/// The [`SessionEventSink`] the adapter is built with: each session event
/// becomes one atomic patch of the session's record; received messages and
/// status updates are written to the message store with their events.
#[derive(Debug)]
pub struct SessionEventRecorder {
    sessions: Arc<dyn SessionRegistry>,
    messages: Arc<dyn MessageStore>,
    clock: Arc<dyn Clock>,
    attempts: u32,
    first_retry: Duration,
    /// Told when a session is connected (its pending messages go out).
    outbox: OnceLock<Arc<Outbox>>,
}

impl SessionEventRecorder {
    /// A recorder writing to `sessions` and `messages`.
    pub fn new(
        sessions: Arc<dyn SessionRegistry>,
        messages: Arc<dyn MessageStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            sessions,
            messages,
            clock,
            attempts: WRITE_ATTEMPTS,
            first_retry: FIRST_RETRY,
            outbox: OnceLock::new(),
        }
    }

    /// Sets the outbox told when a session connects (once; the gateway is
    /// built after the adapter this recorder serves, so this comes later).
    pub fn set_outbox(&self, outbox: Arc<Outbox>) {
        let _ = self.outbox.set(outbox);
    }

    /// Runs a store write, retried with backoff as events are.
    async fn retried<T, F, Fut>(
        &self,
        what: &str,
        session: &SessionId,
        attempts: u32,
        write: F,
    ) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut pause = self.first_retry;
        let mut attempt = 1;
        loop {
            match write().await {
                Ok(v) => return Ok(v),
                Err(e) if attempt < attempts => {
                    tracing::warn!(session = %session, error = %e, attempt, "could not record {what}; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_CAP);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes a status update of outgoing messages (only forward).
    async fn record_status(&self, session: &SessionId, update: &StatusUpdate) {
        let change = StatusChange {
            status: update.status,
            at: update.at,
            error: (update.status == MessageStatus::Failed)
                .then(|| MessageError::new(MessageErrorCode::Rejected, update.error_code)),
        };
        let written = self
            .retried("message status", session, self.attempts, || {
                self.messages
                    .update_status(session, &update.ids, &change, self.clock.now())
            })
            .await;
        if let Err(e) = written {
            tracing::error!(session = %session, error = %e, "could not record a message status; giving it up");
        }
    }

    /// Tries a failed write up to `attempts` times in all, pausing
    /// `first_retry` after the first failure and twice as long after each
    /// next one (at most 2 s). The default is 10 attempts from 50 ms.
    #[must_use]
    pub fn with_retries(mut self, attempts: u32, first_retry: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.first_retry = first_retry;
        self
    }

    /// The change an event makes to the session's record (`None`: it is
    /// not about the session, but about its messages).
    pub fn patch_for(kind: &SessionEventKind, now: time::OffsetDateTime) -> Option<SessionPatch> {
        Some(match kind {
            SessionEventKind::Pairing => SessionPatch::status(SessionStatus::Pairing),
            SessionEventKind::QrShown(qr) => SessionPatch {
                event: Some(EventData::SessionQr {
                    code: qr.code.clone(),
                    expires_at: qr.expires_at,
                }),
                ..SessionPatch::status(SessionStatus::Pairing)
            },
            SessionEventKind::Connecting => SessionPatch::status(SessionStatus::Connecting),
            SessionEventKind::Connected { jid, push_name } => SessionPatch {
                jid: Some(Some(jid.clone())),
                push_name: Some(push_name.clone()),
                last_connected_at: Some(now),
                last_error: Some(None),
                ..SessionPatch::status(SessionStatus::Connected)
            },
            // `disconnected` means linked and offline; a session lost while
            // still pairing is still trying: `connecting`, with the error.
            SessionEventKind::Disconnected { error } => SessionPatch {
                last_error: error.clone().map(Some),
                status_if_unlinked: Some(SessionStatus::Connecting),
                ..SessionPatch::status(SessionStatus::Disconnected)
            },
            SessionEventKind::LoggedOut { error } => SessionPatch {
                jid: Some(None),
                push_name: Some(None),
                keep_connected: Some(false),
                last_error: error.clone().map(Some),
                ..SessionPatch::status(SessionStatus::LoggedOut)
            },
            SessionEventKind::MessageStatus(_) => return None,
        })
    }
}

/// The store's form of a message the adapter received.
pub(crate) fn inbound_record(m: &InboundMessage) -> InboundRecord {
    InboundRecord {
        id: m.id.clone(),
        chat: m.chat.clone(),
        sender: m.sender.clone(),
        sender_pn: m.sender_pn.clone(),
        sender_lid: m.sender_lid.clone(),
        from_me: m.from_me,
        timestamp: m.timestamp,
        body: match &m.content {
            InboundContent::Text(t) => InboundBody::Text(t.clone()),
            InboundContent::Media {
                kind,
                info,
                caption,
                voice_note,
                media,
            } => InboundBody::Media {
                kind: *kind,
                info: info.clone(),
                caption: caption.clone(),
                voice_note: *voice_note,
                media_ref: media.0.clone(),
            },
            InboundContent::Reaction { target, emoji } => InboundBody::Reaction {
                target: target.clone(),
                emoji: emoji.clone(),
            },
        },
        reply_to: m.reply_to.clone(),
    }
}

/// Attempts at recording received messages before the adapter is told
/// they were not (it then does not acknowledge them: WhatsApp redelivers).
const RECORD_ATTEMPTS: u32 = 3;

/// How often a failed event write is tried again, and the first pause (it
/// doubles each time, capped at [`RETRY_CAP`]): about 10 s of database
/// trouble is ridden out before the event is given up.
const WRITE_ATTEMPTS: u32 = 10;
const FIRST_RETRY: Duration = Duration::from_millis(50);
const RETRY_CAP: Duration = Duration::from_secs(2);

#[async_trait]
impl SessionEventSink for SessionEventRecorder {
    /// Writes the event; a failed write is retried with backoff (bounded),
    /// because a lost `Connected` would leave the session `connecting` with
    /// its client online. The adapter awaits this, so what it does next
    /// waits for the write.
    async fn publish(&self, event: SessionEvent) {
        if let SessionEventKind::MessageStatus(update) = &event.kind {
            self.record_status(&event.session, update).await;
            return;
        }
        let mut pause = self.first_retry;
        for attempt in 1..=self.attempts {
            let now = self.clock.now();
            let Some(patch) = Self::patch_for(&event.kind, now) else {
                return;
            };
            match self
                .sessions
                .record_observed(&event.session, &patch, now)
                .await
            {
                Ok(Some(s)) => {
                    tracing::info!(session = %s.id, status = %s.status, "session status changed");
                    if s.status == SessionStatus::Connected
                        && let Some(outbox) = self.outbox.get()
                    {
                        outbox.connected(&s.id).await;
                    }
                    return;
                }
                // Deleted meanwhile: nothing to record.
                Ok(None) => {
                    tracing::debug!(session = %event.session, "event for a session that no longer exists");
                    return;
                }
                Err(e) if attempt < self.attempts => {
                    tracing::warn!(session = %event.session, error = %e, attempt, "could not record session event; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_CAP);
                }
                Err(e) => {
                    tracing::error!(session = %event.session, error = %e, "could not record session event; giving it up (connect again to republish the session's state)");
                }
            }
        }
    }

    async fn record_messages(
        &self,
        session: &SessionId,
        messages: &[InboundMessage],
    ) -> Result<(), NotRecorded> {
        let records: Vec<InboundRecord> = messages.iter().map(inbound_record).collect();
        let recorded = self
            .retried("received messages", session, RECORD_ATTEMPTS, || {
                self.messages
                    .record_inbound(session, &records, self.clock.now())
            })
            .await;
        match recorded {
            Ok(n) => {
                tracing::debug!(session = %session, new = n, of = messages.len(), "received messages recorded");
                Ok(())
            }
            Err(e) => {
                tracing::error!(session = %session, error = %e, "could not record received messages; WhatsApp will deliver them again");
                Err(NotRecorded(e.to_string()))
            }
        }
    }
}
