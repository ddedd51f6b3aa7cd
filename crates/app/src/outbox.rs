//! The sender: one task per session with pending messages, sending them
//! oldest first at the session's pace, waiting while it is offline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use wagate_domain::{Clock, MessageError, MessageErrorCode, MessageStatus, MessageType, SessionId};
use wagate_store::{Entropy, MessageStore, PendingMessage, StatusChange};
use wagate_whatsapp_port::{
    OutgoingContent, OutgoingMedia, OutgoingMessage, WhatsAppError, WhatsAppPort,
};

use crate::AppError;

/// The settings of messaging (`messages.*` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagingSettings {
    /// An accepted message not sent within this is `failed` (`expired`).
    pub max_pending_age: Duration,
    /// Largest media accepted (base64-decoded, or downloaded).
    pub max_media_bytes: u64,
    /// Messages a session sends per minute at most (0: unpaced); each pause
    /// gets a random extra of up to half of itself.
    pub send_rate: u32,
    /// Pending messages a session may have; more is 429.
    pub max_queue: u32,
    /// First pause after a transient send failure (doubles each time).
    pub retry_first: Duration,
    /// Longest pause after a transient send failure.
    pub retry_cap: Duration,
    /// How often an offline session's queue looks again (expiry) when no
    /// reconnect wakes it.
    pub offline_recheck: Duration,
    /// Deadline of one send to the adapter.
    pub send_timeout: Duration,
}

impl Default for MessagingSettings {
    fn default() -> Self {
        Self {
            max_pending_age: Duration::from_secs(24 * 3600),
            max_media_bytes: 16 * 1024 * 1024,
            send_rate: 30,
            max_queue: 1000,
            retry_first: Duration::from_secs(1),
            retry_cap: Duration::from_secs(60),
            offline_recheck: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
        }
    }
}

impl MessagingSettings {
    /// The pause between two sends of a session, before jitter.
    pub fn send_interval(&self) -> Duration {
        match self.send_rate {
            0 => Duration::ZERO,
            n => Duration::from_secs(60) / n,
        }
    }
}

/// Messages taken from the store at a time by a session's worker.
const BATCH: u32 = 32;

#[derive(Debug)]
struct Worker {
    notify: Arc<Notify>,
    /// Woken since the worker last looked at the store.
    dirty: bool,
}

/// Sends accepted messages: one task per session that has pending ones
/// (none for the others), each sending its session's messages oldest first,
/// one at a time, paced by [`MessagingSettings::send_rate`] with jitter.
/// A session that is offline keeps its task waiting until a reconnect
/// ([`Outbox::connected`]) or [`MessagingSettings::offline_recheck`];
/// transient failures are retried with backoff; a message older than
/// [`MessagingSettings::max_pending_age`] fails `expired`. Memory is one
/// small entry per session with pending messages plus one batch each.
#[derive(Debug)]
pub struct Outbox {
    store: Arc<dyn MessageStore>,
    whatsapp: Arc<dyn WhatsAppPort>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    settings: MessagingSettings,
    workers: Mutex<HashMap<SessionId, Worker>>,
    /// When a session whose task ended may send next (its pace outlives
    /// the task); entries in the past are swept out.
    paced_until: Mutex<HashMap<SessionId, Instant>>,
}

impl Outbox {
    /// An outbox sending through `whatsapp` what `store` holds.
    pub fn new(
        store: Arc<dyn MessageStore>,
        whatsapp: Arc<dyn WhatsAppPort>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
        settings: MessagingSettings,
    ) -> Self {
        Self {
            store,
            whatsapp,
            clock,
            entropy,
            settings,
            workers: Mutex::new(HashMap::new()),
            paced_until: Mutex::new(HashMap::new()),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &MessagingSettings {
        &self.settings
    }

    /// Makes sure `session`'s pending messages are being sent: wakes its
    /// task, or starts one. Must be called inside a tokio runtime.
    pub fn wake(self: &Arc<Self>, session: &SessionId) {
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = workers.get_mut(session) {
            w.dirty = true;
            w.notify.notify_one();
            return;
        }
        let notify = Arc::new(Notify::new());
        workers.insert(
            *session,
            Worker {
                notify: notify.clone(),
                dirty: false,
            },
        );
        drop(workers);
        let this = self.clone();
        let session = *session;
        tokio::spawn(async move { this.run(session, notify).await });
    }

    /// `session` is connected: what was handed to WhatsApp without an ack
    /// is sent again (same ids), and its queue moves on.
    pub async fn connected(self: &Arc<Self>, session: &SessionId) {
        if let Err(e) = self.store.requeue_handed(Some(session)).await {
            tracing::warn!(session = %session, error = %e, "could not requeue unacknowledged messages");
        }
        self.wake(session);
    }

    /// After a restart: every pending message is due again (sent again
    /// under its id) and every session with one gets its task. How many
    /// sessions.
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer.
    pub async fn resume(self: &Arc<Self>) -> Result<usize, AppError> {
        self.store.requeue_handed(None).await?;
        let sessions = self.store.sessions_with_pending().await?;
        for s in &sessions {
            self.wake(s);
        }
        Ok(sessions.len())
    }

    /// Whether `session` has a task now (for tests and metrics).
    pub fn is_running(&self, session: &SessionId) -> bool {
        self.workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(session)
    }

    /// Leaves the map unless woken since the last look; whether to stop.
    /// A stopping task leaves its pace behind (`next_send`), so the next
    /// task of the session keeps it.
    fn retire(&self, session: &SessionId, next_send: Instant) -> bool {
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        match workers.get_mut(session) {
            Some(w) if w.dirty => {
                w.dirty = false;
                false
            }
            _ => {
                workers.remove(session);
                let now = Instant::now();
                if next_send > now {
                    let mut paced = self
                        .paced_until
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    paced.retain(|_, until| *until > now);
                    paced.insert(*session, next_send);
                }
                true
            }
        }
    }

    /// When a new task of `session` may send first.
    fn first_send(&self, session: &SessionId) -> Instant {
        self.paced_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(session)
            .map_or_else(Instant::now, |at| at.max(Instant::now()))
    }

    /// A random extra of up to half of `interval`.
    fn jitter(&self, interval: Duration) -> Duration {
        let mut bytes = [0u8; 4];
        self.entropy.fill(&mut bytes);
        let r = f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX);
        interval.mul_f64(0.5 * r)
    }

    async fn fail(&self, session: &SessionId, m: &PendingMessage, code: MessageErrorCode) {
        let change = StatusChange {
            status: MessageStatus::Failed,
            at: self.clock.now(),
            error: Some(MessageError::new(code, None)),
        };
        if let Err(e) = self
            .store
            .update_status(
                session,
                std::slice::from_ref(&m.message.id),
                &change,
                self.clock.now(),
            )
            .await
        {
            tracing::warn!(session = %session, id = %m.message.id, error = %e, "could not mark a message failed");
        }
    }

    /// The session's task: until its queue is empty.
    async fn run(self: Arc<Self>, session: SessionId, notify: Arc<Notify>) {
        let mut next_send = self.first_send(&session);
        let mut backoff = self.settings.retry_first;
        loop {
            let batch = match self.store.pending(&session, BATCH).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(session = %session, error = %e, "could not read the send queue");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.settings.retry_cap);
                    continue;
                }
            };
            if batch.is_empty() {
                if self.retire(&session, next_send) {
                    return;
                }
                continue;
            }
            for pending in batch {
                let age = self.clock.now() - pending.message.created_at;
                if age > self.settings.max_pending_age {
                    self.fail(&session, &pending, MessageErrorCode::Expired)
                        .await;
                    continue;
                }
                let Some(outgoing) = outgoing(&pending) else {
                    self.fail(&session, &pending, MessageErrorCode::Internal)
                        .await;
                    continue;
                };
                tokio::time::sleep_until(next_send).await;
                let sent = tokio::time::timeout(
                    self.settings.send_timeout,
                    self.whatsapp.send_message(&session, &outgoing),
                )
                .await
                .unwrap_or(Err(WhatsAppError::Timeout));
                match sent {
                    Ok(()) => {
                        backoff = self.settings.retry_first;
                        let interval = self.settings.send_interval();
                        next_send = Instant::now() + interval + self.jitter(interval);
                        if let Err(e) = self
                            .store
                            .mark_handed(&session, &outgoing.id, self.clock.now())
                            .await
                        {
                            // It stays due: sent again under the same id.
                            tracing::warn!(session = %session, error = %e, "could not record a message as handed over");
                        }
                    }
                    Err(WhatsAppError::NotOnWhatsApp) => {
                        self.fail(&session, &pending, MessageErrorCode::NotOnWhatsApp)
                            .await;
                    }
                    Err(WhatsAppError::InvalidTarget(_)) => {
                        self.fail(&session, &pending, MessageErrorCode::Rejected)
                            .await;
                    }
                    Err(WhatsAppError::NotConnected) => {
                        // Offline: wait for the reconnect (or look again
                        // later, for expiry).
                        let _ =
                            tokio::time::timeout(self.settings.offline_recheck, notify.notified())
                                .await;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(session = %session, error = %e, pause = ?backoff, "could not send a message; trying again");
                        let _ = tokio::time::timeout(backoff, notify.notified()).await;
                        backoff = (backoff * 2).min(self.settings.retry_cap);
                        break;
                    }
                }
            }
        }
    }
}

/// What the adapter is asked to send, `None` when a media message lost
/// its bytes (cannot happen through the store's writes).
fn outgoing(p: &PendingMessage) -> Option<OutgoingMessage> {
    let m = &p.message;
    let content = if m.kind == MessageType::Text {
        OutgoingContent::Text(m.text.clone().unwrap_or_default())
    } else {
        let info = m.media.as_ref()?;
        OutgoingContent::Media(OutgoingMedia {
            kind: m.kind,
            mimetype: info.mimetype.clone(),
            filename: info.filename.clone(),
            caption: m.caption.clone(),
            voice_note: m.voice_note,
            data: p.media_data.clone()?,
        })
    };
    Some(OutgoingMessage {
        id: m.id.clone(),
        to: m.to.clone(),
        content,
        reply_to: m.reply_to.clone(),
    })
}
