//! What the WhatsApp adapter observes, written to the session registry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use wagate_domain::{
    Clock, EventData, MessageError, MessageErrorCode, MessageStatus, RateLimit, SessionId,
    SessionStatus, TokenBucket, since_unix_epoch,
};
use wagate_store::{
    GroupStore, InboundBody, InboundRecord, MessageStore, ParticipantReceipt, SessionPatch,
    SessionRegistry, StatusChange, StoreError,
};
use wagate_whatsapp_port::{
    InboundContent, InboundMessage, NotRecorded, SessionEvent, SessionEventKind, SessionEventSink,
    StatusUpdate,
};

use crate::{GroupRefresh, Outbox};

/// The [`SessionEventSink`] the adapter is built with: each session event
/// becomes one atomic patch of the session's record; received messages and
/// status updates are written to the message store with their events,
/// group notices to the group store with theirs.
#[derive(Debug)]
pub struct SessionEventRecorder {
    sessions: Arc<dyn SessionRegistry>,
    messages: Arc<dyn MessageStore>,
    groups: Arc<dyn GroupStore>,
    clock: Arc<dyn Clock>,
    attempts: u32,
    first_retry: Duration,
    /// Told when a session is connected (its pending messages go out).
    outbox: OnceLock<Arc<Outbox>>,
    /// Each session's allowance of ephemeral events
    /// ([`EPHEMERAL_EVENTS`]).
    ephemeral: Mutex<HashMap<SessionId, TokenBucket>>,
    /// Reads a session's groups when it connects.
    group_refresh: OnceLock<Arc<GroupRefresh>>,
    /// Stops a client whose session this node lost (a fenced write).
    gateway: OnceLock<std::sync::Weak<crate::Gateway>>,
}

/// How many `presence.update` and `chat.state` events one session may write:
/// 5 a second on average, 20 at once. A chatty contact (or many) cannot
/// flood the log and its webhooks; what is over is dropped (they are
/// ephemeral: the next one says the same again).
pub const EPHEMERAL_EVENTS: RateLimit = match RateLimit::per_second(5, 20) {
    Some(limit) => limit,
    None => panic!("a positive rate"),
};

/// Sessions tracked before full buckets are forgotten.
const EPHEMERAL_SWEEP_AT: usize = 1_024;

impl SessionEventRecorder {
    /// A recorder writing to `sessions`, `messages` and `groups`.
    pub fn new(
        sessions: Arc<dyn SessionRegistry>,
        messages: Arc<dyn MessageStore>,
        groups: Arc<dyn GroupStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            sessions,
            messages,
            groups,
            clock,
            attempts: WRITE_ATTEMPTS,
            first_retry: FIRST_RETRY,
            outbox: OnceLock::new(),
            ephemeral: Mutex::new(HashMap::new()),
            group_refresh: OnceLock::new(),
            gateway: OnceLock::new(),
        }
    }

    /// Sets the gateway that stops a client when a write for its session
    /// is fenced (another node owns the session now).
    pub fn set_gateway(&self, gateway: &Arc<crate::Gateway>) {
        let _ = self.gateway.set(Arc::downgrade(gateway));
    }

    /// This node lost `session` (its write was fenced): nothing is
    /// published, and its client stops at once (on a task of its own: the
    /// adapter awaits this write, and stopping waits for the adapter).
    fn lost(&self, session: SessionId) {
        tracing::warn!(session = %session, "another gateway owns this session now; stopping its client here");
        if let Some(gateway) = self.gateway.get().and_then(std::sync::Weak::upgrade) {
            tokio::spawn(async move { gateway.stop_client(&session).await });
        }
    }

    /// Sets what reads a session's groups when it connects (once, like
    /// [`SessionEventRecorder::set_outbox`]).
    pub fn set_group_refresh(&self, refresh: Arc<GroupRefresh>) {
        let _ = self.group_refresh.set(refresh);
    }

    /// Writes a group notice with its event (retried as events are).
    async fn record_group(&self, session: &SessionId, notice: &wagate_domain::GroupNotice) {
        let written = self
            .retried("group notice", session, self.attempts, || {
                self.groups
                    .record_group_notice(session, notice, self.clock.now())
            })
            .await;
        if let Err(e) = written {
            tracing::error!(session = %session, error = %e, "could not record a group notice; giving it up (the next connect reads the groups again)");
        }
    }

    /// Writes an ephemeral event (presence, chat state) within the
    /// session's allowance, once: a failed write is not retried (what it
    /// said is stale by then).
    async fn record_ephemeral(&self, session: &SessionId, data: EventData) {
        let now = self.clock.now();
        let allowed = {
            let at = since_unix_epoch(now);
            let mut buckets = self
                .ephemeral
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if buckets.len() >= EPHEMERAL_SWEEP_AT {
                buckets.retain(|_, b| !b.is_full(at));
            }
            buckets
                .entry(*session)
                .or_insert_with(|| TokenBucket::full(at))
                .take(&EPHEMERAL_EVENTS, at)
                .is_ok()
        };
        if !allowed {
            tracing::debug!(session = %session, "ephemeral event over the session's allowance; dropped");
            return;
        }
        match self.messages.record_ephemeral(session, &data, now).await {
            Ok(_) => {}
            Err(StoreError::Fenced) => self.lost(*session),
            Err(e) => {
                tracing::warn!(session = %session, error = %e, "could not record an ephemeral event; dropped")
            }
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
                Err(StoreError::Fenced) => {
                    self.lost(*session);
                    return Err(StoreError::Fenced);
                }
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
            .retried("message status", session, self.attempts, || async {
                match &update.participant {
                    // A group participant's receipt: the store keeps it and
                    // moves the message once every participant got there.
                    Some(participant) => {
                        self.messages
                            .record_receipt(
                                session,
                                &update.ids,
                                participant,
                                &change,
                                self.clock.now(),
                            )
                            .await
                    }
                    None => {
                        self.messages
                            .update_status(session, &update.ids, &change, self.clock.now())
                            .await
                    }
                }
            })
            .await;
        if let Err(e) = written {
            tracing::error!(session = %session, error = %e, "could not record a message status; giving it up");
        }
    }

    /// Writes group participants' receipts in one transaction (an update
    /// without a participant, which the adapter does not batch, on its own).
    async fn record_group_receipts(&self, session: &SessionId, updates: &[StatusUpdate]) {
        let mut receipts = Vec::with_capacity(updates.len());
        for update in updates {
            match &update.participant {
                Some(participant) => receipts.push(ParticipantReceipt {
                    ids: update.ids.clone(),
                    participant: participant.clone(),
                    change: StatusChange {
                        status: update.status,
                        at: update.at,
                        error: None,
                    },
                }),
                None => self.record_status(session, update).await,
            }
        }
        let written = self
            .retried("group receipts", session, self.attempts, || async {
                self.messages
                    .record_receipts(session, &receipts, self.clock.now())
                    .await
            })
            .await;
        if let Err(e) = written {
            tracing::error!(session = %session, receipts = receipts.len(), error = %e, "could not record group receipts; giving them up");
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
            SessionEventKind::MessageStatus(_)
            | SessionEventKind::GroupReceipts(_)
            | SessionEventKind::Presence { .. }
            | SessionEventKind::ChatState { .. }
            | SessionEventKind::Group(_) => return None,
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
            InboundContent::Rich(r) => InboundBody::Rich(r.clone()),
            InboundContent::Edit { target, text } => InboundBody::Edit {
                target: target.clone(),
                text: text.clone(),
            },
            InboundContent::Revoke { target } => InboundBody::Revoke {
                target: target.clone(),
            },
            InboundContent::PollVote { target, selected } => InboundBody::PollVote {
                target: target.clone(),
                selected: selected.clone(),
            },
        },
        reply_to: m.reply_to.clone(),
        mentions: m.mentions.clone(),
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
        match &event.kind {
            SessionEventKind::MessageStatus(update) => {
                self.record_status(&event.session, update).await;
                return;
            }
            SessionEventKind::GroupReceipts(updates) => {
                self.record_group_receipts(&event.session, updates).await;
                return;
            }
            SessionEventKind::Presence {
                jid,
                available,
                last_seen,
            } => {
                let data = EventData::PresenceUpdate {
                    jid: jid.clone(),
                    available: *available,
                    last_seen: *last_seen,
                };
                self.record_ephemeral(&event.session, data).await;
                return;
            }
            SessionEventKind::ChatState { chat, jid, state } => {
                let data = EventData::ChatState {
                    chat: chat.clone(),
                    jid: jid.clone(),
                    state: *state,
                };
                self.record_ephemeral(&event.session, data).await;
                return;
            }
            SessionEventKind::Group(notice) => {
                self.record_group(&event.session, notice).await;
                return;
            }
            _ => {}
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
                    if s.status == SessionStatus::Connected {
                        if let Some(outbox) = self.outbox.get() {
                            outbox.connected(&s.id).await;
                        }
                        if let Some(refresh) = self.group_refresh.get() {
                            refresh.start(s.id);
                        }
                    }
                    return;
                }
                Err(StoreError::Fenced) => {
                    self.lost(event.session);
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
