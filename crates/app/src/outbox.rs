//! The sender: one task per session with pending messages, sending them
//! at the session's pace, oldest first within each chat; a chat that does
//! not answer waits alone while the session's other chats go on; the
//! session waits as a whole only while it is offline.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use wagate_domain::{
    Clock, Jid, Message, MessageError, MessageErrorCode, MessageStatus, MessageType, SessionId,
};
use wagate_store::{Entropy, MessageStore, StatusChange};
use wagate_whatsapp_port::{
    OutgoingContent, OutgoingMedia, OutgoingMessage, Refusal, WhatsAppError, WhatsAppPort,
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

/// Messages read from the store at a time by a session's task: their
/// metadata only; a media message's bytes are read just before its send.
const BATCH: u32 = 32;

/// Sends of one session under way at once at most, each to another chat:
/// a chat whose send hangs (until `send_timeout`) leaves the session's other
/// chats going, and a session holds at most this many media blobs in memory.
const IN_FLIGHT: usize = 4;

#[derive(Debug)]
struct Worker {
    notify: Arc<Notify>,
    /// Woken since the worker last looked at the store.
    dirty: bool,
}

/// Sends accepted messages: one task per session that has pending ones
/// (none for the others), starting its sends at the pace of
/// [`MessagingSettings::send_rate`] with jitter, oldest first.
///
/// Order is kept per chat, not per session: a chat has at most one send
/// under way, and a chat whose send failed transiently (timed out,
/// WhatsApp unavailable) waits out its own backoff while the session's
/// other chats go on at the session's pace (up to [`IN_FLIGHT`] sends at
/// once). A refusal for good (not on WhatsApp, WhatsApp's 4xx, media the
/// media server refuses) fails that message at once. A session that is
/// offline keeps its task waiting until a reconnect ([`Outbox::connected`])
/// or [`MessagingSettings::offline_recheck`]; a message older than
/// [`MessagingSettings::max_pending_age`] fails `expired`.
///
/// Memory: one small entry per session with pending messages, one batch of
/// message metadata each, and the media bytes of its sends under way only
/// (read from the store just before each send).
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

    async fn fail(
        &self,
        session: &SessionId,
        m: &Message,
        code: MessageErrorCode,
        nack_code: Option<u32>,
    ) {
        let change = StatusChange {
            status: MessageStatus::Failed,
            at: self.clock.now(),
            error: Some(MessageError::new(code, nack_code)),
        };
        if let Err(e) = self
            .store
            .update_status(
                session,
                std::slice::from_ref(&m.id),
                &change,
                self.clock.now(),
            )
            .await
        {
            tracing::warn!(session = %session, id = %m.id, error = %e, "could not mark a message failed");
        }
    }

    fn expired(&self, m: &Message) -> bool {
        self.clock.now() - m.created_at > self.settings.max_pending_age
    }

    /// The next message that may be sent now: the oldest of a chat with
    /// nothing under way and not waiting, from the batch in hand or a new
    /// one. Expired messages met on the way fail. `None`: nothing is due.
    async fn next_due(
        &self,
        session: &SessionId,
        queue: &mut Queue,
        due: &mut Due,
    ) -> Result<Option<Message>, wagate_store::StoreError> {
        loop {
            let now = Instant::now();
            while let Some(m) = due.messages.pop_front() {
                // A chat passed over once stays passed over until the next
                // read: a later message of it must not overtake.
                if due.passed.contains(&m.chat) || !queue.may_send(&m.chat, now) {
                    due.passed.insert(m.chat.clone());
                    continue;
                }
                if self.expired(&m) {
                    self.fail(session, &m, MessageErrorCode::Expired, None)
                        .await;
                    continue;
                }
                return Ok(Some(m));
            }
            if due.drained {
                due.drained = false;
                return Ok(None);
            }
            let batch = self
                .store
                .pending(session, &queue.waiting_chats(now), BATCH)
                .await?;
            // An empty read ends the search (nothing of the chats free is
            // due); any other makes progress: its first message of each
            // chat is sent or failed.
            due.drained = batch.is_empty();
            due.messages = batch.into();
            due.passed.clear();
        }
    }

    /// Sends `m` (its media read from the store now) within the deadline.
    async fn attempt(&self, session: &SessionId, m: &Message) -> Outcome {
        let content = if m.kind == MessageType::Text {
            OutgoingContent::Text(m.text.clone().unwrap_or_default())
        } else if let Some(rich) = &m.rich {
            OutgoingContent::Rich(rich.clone())
        } else {
            let data = match self.store.pending_media(session, &m.id).await {
                Ok(Some(data)) => data,
                // No longer pending (sent after a requeue), or its bytes are
                // lost (cannot happen through the store's writes).
                Ok(None) => return Outcome::Failed(MessageErrorCode::Internal, None),
                Err(e) => return Outcome::Retry(format!("cannot read its media: {e}")),
            };
            let Some(info) = m.media.as_ref() else {
                return Outcome::Failed(MessageErrorCode::Internal, None);
            };
            OutgoingContent::Media(OutgoingMedia {
                kind: m.kind,
                mimetype: info.mimetype.clone(),
                filename: info.filename.clone(),
                caption: m.caption.clone(),
                voice_note: m.voice_note,
                data,
            })
        };
        let outgoing = OutgoingMessage {
            id: m.id.clone(),
            to: m.to.clone(),
            content,
            reply_to: m.reply_to.clone(),
            mentions: m.mentions.clone(),
        };
        let sent = tokio::time::timeout(
            self.settings.send_timeout,
            self.whatsapp.send_message(session, &outgoing),
        )
        .await
        .unwrap_or(Err(WhatsAppError::Timeout));
        match sent {
            Ok(()) => Outcome::Sent,
            Err(WhatsAppError::NotConnected) => Outcome::Offline,
            Err(WhatsAppError::NotOnWhatsApp) => {
                Outcome::Failed(MessageErrorCode::NotOnWhatsApp, None)
            }
            // Not allowed for good (e.g. an announcement group's non-admin).
            Err(WhatsAppError::InvalidTarget(_) | WhatsAppError::NotPermitted(_)) => {
                Outcome::Failed(MessageErrorCode::Rejected, None)
            }
            Err(WhatsAppError::Refused(Refusal::Server(code))) => {
                Outcome::Failed(MessageErrorCode::Rejected, Some(u32::from(code)))
            }
            Err(WhatsAppError::Refused(Refusal::Media(_))) => {
                Outcome::Failed(MessageErrorCode::MediaRejected, None)
            }
            Err(
                e @ (WhatsAppError::Timeout
                | WhatsAppError::Unavailable(_)
                | WhatsAppError::Internal(_)
                | WhatsAppError::NotFound(_)
                | WhatsAppError::NotPairing),
            ) => Outcome::Retry(e.to_string()),
        }
    }

    /// Records what a send came to.
    async fn settle(
        &self,
        session: &SessionId,
        queue: &mut Queue,
        done: Result<(tokio::task::Id, (Message, Outcome)), JoinError>,
    ) {
        let (task, outcome) = match done {
            Ok((task, (m, outcome))) => (task, Some((m, outcome))),
            Err(e) => {
                tracing::error!(session = %session, error = %e, "a send task failed");
                (e.id(), None)
            }
        };
        let Some(chat) = queue.busy.remove(&task) else {
            return;
        };
        let Some((m, outcome)) = outcome else {
            queue.hold(chat, &self.settings);
            return;
        };
        match outcome {
            Outcome::Sent => {
                queue.holds.remove(&chat);
                if let Err(e) = self
                    .store
                    .mark_handed(session, &m.id, self.clock.now())
                    .await
                {
                    // It stays due: sent again under the same id.
                    tracing::warn!(session = %session, error = %e, "could not record a message as handed over");
                }
            }
            Outcome::Failed(code, nack_code) => {
                queue.holds.remove(&chat);
                tracing::info!(session = %session, id = %m.id, code = code.as_str(), "a message was refused for good");
                self.fail(session, &m, code, nack_code).await;
            }
            Outcome::Offline => queue.offline = true,
            Outcome::Retry(why) => {
                let pause = queue.hold(chat, &self.settings);
                tracing::warn!(session = %session, id = %m.id, error = %why, ?pause, "could not send a message; its chat tries again later");
            }
        }
    }

    /// The session's task: until nothing of it is due, under way or waiting.
    async fn run(self: Arc<Self>, session: SessionId, notify: Arc<Notify>) {
        let mut queue = Queue {
            next_send: self.first_send(&session),
            ..Queue::default()
        };
        let mut due = Due::default();
        let mut sends: JoinSet<(Message, Outcome)> = JoinSet::new();
        let mut read_backoff = self.settings.retry_first;
        loop {
            while let Some(done) = sends.try_join_next_with_id() {
                self.settle(&session, &mut queue, done).await;
            }
            if queue.offline {
                // Wait for the reconnect (or look again later, for expiry);
                // sends under way are settled as they end.
                let recheck = Instant::now() + self.settings.offline_recheck;
                loop {
                    tokio::select! {
                        Some(done) = sends.join_next_with_id() => {
                            self.settle(&session, &mut queue, done).await;
                        }
                        () = notify.notified() => break,
                        () = tokio::time::sleep_until(recheck) => break,
                    }
                }
                queue.offline = false;
                due = Due::default();
                continue;
            }
            let next = if sends.len() < IN_FLIGHT {
                match self.next_due(&session, &mut queue, &mut due).await {
                    Ok(next) => {
                        read_backoff = self.settings.retry_first;
                        next
                    }
                    Err(e) => {
                        tracing::warn!(session = %session, error = %e, "could not read the send queue");
                        let _ = tokio::time::timeout(read_backoff, notify.notified()).await;
                        read_backoff = (read_backoff * 2).min(self.settings.retry_cap);
                        due = Due::default();
                        continue;
                    }
                }
            } else {
                None
            };
            if let Some(m) = next {
                // Its turn comes at the session's pace; sends ending before
                // then are settled (one may find the session offline).
                tokio::select! {
                    () = tokio::time::sleep_until(queue.next_send) => {}
                    Some(done) = sends.join_next_with_id() => {
                        self.settle(&session, &mut queue, done).await;
                        due.messages.push_front(m);
                        continue;
                    }
                }
                let interval = self.settings.send_interval();
                queue.next_send = Instant::now() + interval + self.jitter(interval);
                let chat = m.chat.clone();
                let this = self.clone();
                let task = sends.spawn(async move {
                    let outcome = this.attempt(&session, &m).await;
                    (m, outcome)
                });
                queue.busy.insert(task.id(), chat);
                continue;
            }
            let now = Instant::now();
            let wait_until = queue
                .holds
                .values()
                .map(|h| h.until)
                .filter(|u| *u > now)
                .min();
            if sends.is_empty() && wait_until.is_none() {
                if self.retire(&session, queue.next_send) {
                    return;
                }
                continue;
            }
            // Nothing may go now: wait for a send to end, a chat's pause
            // to end, or new messages.
            tokio::select! {
                Some(done) = sends.join_next_with_id() => {
                    self.settle(&session, &mut queue, done).await;
                }
                () = tokio::time::sleep_until(wait_until.unwrap_or(now)), if wait_until.is_some() => {}
                () = notify.notified() => {}
            }
            due = Due::default();
        }
    }
}

/// What one send came to.
#[derive(Debug)]
enum Outcome {
    /// Handed to WhatsApp.
    Sent,
    /// Refused for good: the message fails with this code (and nack code).
    Failed(MessageErrorCode, Option<u32>),
    /// The session is offline: the message stays due.
    Offline,
    /// A transient failure (why, for the log): its chat waits, then tries
    /// again.
    Retry(String),
}

/// A chat that waits after a transient failure.
#[derive(Debug, Clone, Copy)]
struct Hold {
    until: Instant,
    /// The pause it waited last (doubled on the next failure).
    pause: Duration,
}

/// What a session's task keeps track of.
#[derive(Debug)]
struct Queue {
    /// The chat of each send under way.
    busy: HashMap<tokio::task::Id, Jid>,
    /// Chats that failed transiently; gone once one of their sends ends.
    holds: HashMap<Jid, Hold>,
    /// A send found the session offline.
    offline: bool,
    /// When the next send may start (the session's pace).
    next_send: Instant,
}

impl Default for Queue {
    fn default() -> Self {
        Self {
            busy: HashMap::new(),
            holds: HashMap::new(),
            offline: false,
            next_send: Instant::now(),
        }
    }
}

impl Queue {
    fn may_send(&self, chat: &Jid, now: Instant) -> bool {
        !self.busy.values().any(|c| c == chat)
            && self.holds.get(chat).is_none_or(|h| h.until <= now)
    }

    /// The chats whose messages may not go now.
    fn waiting_chats(&self, now: Instant) -> Vec<Jid> {
        let held = self
            .holds
            .iter()
            .filter(|(_, h)| h.until > now)
            .map(|(chat, _)| chat);
        let mut chats: Vec<Jid> = self.busy.values().chain(held).cloned().collect();
        chats.sort_unstable_by_key(ToString::to_string);
        chats.dedup();
        chats
    }

    /// Makes `chat` wait: the first pause, or twice the last (capped).
    fn hold(&mut self, chat: Jid, settings: &MessagingSettings) -> Duration {
        let pause = self.holds.get(&chat).map_or(settings.retry_first, |h| {
            (h.pause * 2).min(settings.retry_cap)
        });
        self.holds.insert(
            chat,
            Hold {
                until: Instant::now() + pause,
                pause,
            },
        );
        pause
    }
}

/// The batch of due messages in hand, oldest first.
#[derive(Debug, Default)]
struct Due {
    messages: VecDeque<Message>,
    /// Chats of the batch passed over (busy or waiting).
    passed: HashSet<Jid>,
    /// The last read found nothing.
    drained: bool,
}
