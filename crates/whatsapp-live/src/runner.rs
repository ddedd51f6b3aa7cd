//! One session's connection, supervised: the task that runs the client's
//! connect/read loop pass after pass, turns what the client reports into
//! session events (published in order, each awaited), and decides when to
//! reconnect.
//!
//! whatsapp-rust's own reconnect loop is switched off
//! (`enable_auto_reconnect = false`), so each `Client::run` is one pass: one
//! connect attempt and the connection it made. Between passes the runner
//! waits its own backoff ([`crate::ReconnectPolicy`], jitter injected) and
//! reports an unreachable server, which the library's loop retries
//! silently.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use wagate_domain::{LastError, QrCode, SessionErrorCode, SessionId};
use wagate_whatsapp_port::{SessionEvent, SessionEventKind, StatusUpdate};
use whatsapp_rust::Client;
use whatsapp_rust::bot::Bot;
use whatsapp_rust::types::events::{
    ChatPresenceUpdate, Event, EventHandler, EventInterest, EventKind, PresenceUpdate, Receipt,
    ServerAck,
};

use crate::live::{Shared, Slot};
use crate::mapping::{self, Next, Observed, Pass};
use crate::transport::TransportProbe;
use crate::{media, messages, presence};

/// Why a runner is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// Close the connection, keep the link.
    Disconnect,
    /// Unlink the device (tell WhatsApp when online), then close.
    Logout,
    /// The adapter is shutting down: close.
    Shutdown,
}

/// Group receipts published together at most (one write in the store).
const RECEIPT_BATCH: usize = 500;

/// The handle the adapter keeps for a running session.
#[derive(Debug)]
pub(crate) struct RunnerHandle {
    pub stop: watch::Sender<Option<StopReason>>,
    /// Cuts a reconnect pause short (`connect` on a waiting session).
    pub kick: Arc<Notify>,
    pub task: JoinHandle<()>,
}

/// Forwards the client's events, inline and in order, into the runner's
/// queue (`handle_event` must not block, so the async publish happens on
/// the runner's side of the channel).
pub(crate) struct Forwarder {
    pub tx: mpsc::UnboundedSender<Arc<Event>>,
}

impl EventHandler for Forwarder {
    fn handle_event(&self, event: Arc<Event>) {
        // A closed channel means the runner is gone; nothing to tell.
        let _ = self.tx.send(event);
    }

    fn interest(&self) -> EventInterest {
        EventInterest::of(&[
            EventKind::PairingQrCode,
            EventKind::PairSuccess,
            EventKind::PairError,
            EventKind::PairingQrCodesExhausted,
            EventKind::QrScannedWithoutMultidevice,
            EventKind::Connected,
            EventKind::Disconnected,
            EventKind::LoggedOut,
            EventKind::TemporaryBan,
            EventKind::ClientOutdated,
            EventKind::StreamReplaced,
            EventKind::ConnectFailure,
            EventKind::StreamError,
            EventKind::Receipt,
            EventKind::ServerAck,
            EventKind::GroupUpdate,
            EventKind::Presence,
            EventKind::ChatPresence,
        ])
    }
}

/// Everything one runner owns.
pub(crate) struct Runner {
    pub shared: Arc<Shared>,
    pub slot: Arc<Slot>,
    pub session: SessionId,
    pub device: i32,
    pub client: Arc<Client>,
    pub bot: Option<Bot>,
    pub events: mpsc::UnboundedReceiver<Arc<Event>>,
    pub probe: Arc<TransportProbe>,
    pub stop: watch::Receiver<Option<StopReason>>,
    pub kick: Arc<Notify>,
}

/// How a stretch of the runner's life ended.
enum Flow {
    Continue,
    Stopped(StopReason),
}

impl Runner {
    /// Runs the session until it is stopped or ends for good.
    pub(crate) async fn run(mut self) {
        // Each `Client::run` is one pass; the runner decides about the next.
        self.client
            .enable_auto_reconnect
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let mut failures: u32 = 0;
        let mut last_report: Option<LastError> = None;
        loop {
            // 1. The version to announce (pinned: given to the builder).
            if !self.shared.versions.is_pinned() {
                let version = tokio::select! {
                    biased;
                    reason = stopped(&mut self.stop) => return self.stop_with(reason, None).await,
                    v = self.shared.versions.get() => v,
                };
                match version {
                    Ok(v) => seed_version(&self.client, v).await,
                    Err(message) => {
                        let report = mapping::last_error(SessionErrorCode::Unreachable, message);
                        self.report(&mut last_report, report).await;
                        let delay = self.delay(failures);
                        failures = failures.saturating_add(1);
                        if let Flow::Stopped(reason) = self.wait(delay).await {
                            return self.stop_with(reason, None).await;
                        }
                        continue;
                    }
                }
            }

            // 2. One pass of the client's loop. A login (the device has
            // keys; a pairing waits for a person, not the CPU) first takes
            // a place among the logins under way, and holds it until it is
            // connected or the pass ends.
            let mut login: Option<tokio::sync::OwnedSemaphorePermit> = if self.client.pn().is_some()
                || self.client.lid().is_some()
            {
                tokio::select! {
                    biased;
                    reason = stopped(&mut self.stop) => return self.stop_with(reason, None).await,
                    permit = self.shared.logins.clone().acquire_owned() => permit.ok(),
                }
            } else {
                None
            };
            self.probe.reset();
            let mut task = match self.bot.take() {
                Some(bot) => tokio::spawn(bot.run()),
                None => {
                    let client = self.client.clone();
                    tokio::spawn(async move { client.run().await })
                }
            };
            let mut pass = Pass::default();
            // Group receipts not published yet (see `on_receipt`).
            let mut receipts: Vec<StatusUpdate> = Vec::new();
            // `Some` when the attempt ended for good, with the pass's task
            // if it still runs (a finished JoinHandle must not be polled
            // again).
            let ended = loop {
                tokio::select! {
                    biased;
                    reason = stopped(&mut self.stop) => return self.stop_with(reason, Some(task)).await,
                    event = self.events.recv() => {
                        if let Some(event) = event {
                            self.on_event(&event, &mut pass, &mut receipts, &mut failures, &mut last_report).await;
                            if pass.saw_connected {
                                drop(login.take());
                            }
                            // A burst of receipts is published once nothing
                            // else is queued (or it is large).
                            if self.events.is_empty()
                                || receipts.len() >= RECEIPT_BATCH
                                || pass.ending.is_some()
                            {
                                self.flush_receipts(&mut receipts).await;
                            }
                            if pass.ending.is_some() {
                                break Some(Some(task));
                            }
                        }
                    }
                    _ = &mut task => {
                        // Events dispatched before the pass returned are queued.
                        while let Ok(event) = self.events.try_recv() {
                            self.on_event(&event, &mut pass, &mut receipts, &mut failures, &mut last_report).await;
                            if pass.ending.is_some() {
                                break;
                            }
                        }
                        self.flush_receipts(&mut receipts).await;
                        break pass.ending.is_some().then_some(None);
                    }
                }
            };
            // The pass is over: its place goes to the next login (never
            // held through a pause).
            drop(login);
            if let Some(task) = ended {
                return self.end(pass, task).await;
            }

            // 3. Between passes.
            self.set_state(|s| {
                s.online = false;
                s.pairing = false;
                s.qr = None;
            });
            let probe = self.probe.get();
            pass.transport_opened = probe.opened;
            pass.transport_error = match (probe.attempted, probe.opened, probe.error) {
                (_, _, Some(e)) => Some(e),
                (true, false, None) => Some("no answer in time".to_owned()),
                _ => None,
            };
            match mapping::next_after(&pass, failures, &self.shared.url_text) {
                Next::Stop => return,
                Next::Retry { attempt, report } => {
                    if let Some(report) = report {
                        self.report(&mut last_report, report).await;
                    }
                    if let Some(attempt) = attempt {
                        let delay = self.delay(attempt);
                        failures = attempt.saturating_add(1);
                        tracing::debug!(session = %self.session, ?delay, "reconnecting after a pause");
                        if let Flow::Stopped(reason) = self.wait(delay).await {
                            return self.stop_with(reason, None).await;
                        }
                    }
                }
            }
        }
    }

    fn delay(&self, attempt: u32) -> Duration {
        let options = &self.shared.options;
        options.reconnect.delay(attempt, options.jitter.sample())
    }

    /// Waits `delay`, or less when asked to stop or to connect now.
    async fn wait(&mut self, delay: Duration) -> Flow {
        tokio::select! {
            biased;
            reason = stopped(&mut self.stop) => Flow::Stopped(reason),
            _ = self.kick.notified() => Flow::Continue,
            _ = tokio::time::sleep(delay) => Flow::Continue,
        }
    }

    fn set_state(&self, f: impl FnOnce(&mut crate::live::SlotState)) {
        self.slot.update(f);
    }

    fn stop_requested(&self) -> bool {
        self.stop.borrow().is_some()
    }

    /// Publishes one event, unless a stop was asked for (the caller of the
    /// stop owns the session's status from then on).
    async fn publish(&self, kind: SessionEventKind) {
        if self.stop_requested() {
            return;
        }
        self.shared
            .events
            .publish(SessionEvent {
                session: self.session,
                kind,
            })
            .await;
    }

    /// Publishes `Disconnected` with `report`, unless the same was the last
    /// thing reported (a server that stays down is reported once).
    async fn report(&self, last: &mut Option<LastError>, report: LastError) {
        if last.as_ref() == Some(&report) {
            return;
        }
        tracing::info!(session = %self.session, code = report.code.as_str(), message = %report.message, "session not connected");
        self.publish(SessionEventKind::Disconnected {
            error: Some(report.clone()),
        })
        .await;
        *last = Some(report);
    }

    async fn on_event(
        &self,
        event: &Event,
        pass: &mut Pass,
        receipts: &mut Vec<StatusUpdate>,
        failures: &mut u32,
        last_report: &mut Option<LastError>,
    ) {
        if pass.ending.is_some() {
            return;
        }
        if let Event::Receipt(receipt) = event {
            return self.on_receipt(receipt, receipts).await;
        }
        // Whatever comes next is published after the receipts before it.
        self.flush_receipts(receipts).await;
        match event {
            Event::ServerAck(ack) => return self.on_ack(ack).await,
            Event::GroupUpdate(update) => return self.on_group_update(update).await,
            Event::Presence(update) => return self.on_presence(update).await,
            Event::ChatPresence(update) => return self.on_chat_presence(update).await,
            _ => {}
        }
        let Some(observed) = mapping::observe(event) else {
            return;
        };
        match observed {
            Observed::Qr { code, ttl } => {
                pass.saw_qr = true;
                let expires_at = self.shared.clock.now()
                    + time::Duration::try_from(ttl).unwrap_or(time::Duration::seconds(20));
                let qr = QrCode { code, expires_at };
                self.set_state(|s| {
                    s.pairing = true;
                    s.qr = Some(qr.clone());
                });
                *last_report = None;
                self.publish(SessionEventKind::Pairing).await;
                self.publish(SessionEventKind::QrShown(qr)).await;
            }
            Observed::PairSuccess => {
                pass.saw_pair_success = true;
                self.set_state(|s| {
                    s.pairing = false;
                    s.qr = None;
                    s.pair_code = None;
                });
                self.publish(SessionEventKind::Connecting).await;
            }
            Observed::Connected => {
                let jid = self
                    .client
                    .pn()
                    .or_else(|| self.client.lid())
                    .and_then(|j| mapping::from_wa_jid(&j));
                let Some(jid) = jid else {
                    tracing::error!(session = %self.session, "logged in, but the client does not know its own JID");
                    return;
                };
                pass.saw_connected = true;
                *failures = 0;
                *last_report = None;
                let push_name = Some(self.client.push_name()).filter(|n| !n.trim().is_empty());
                self.set_state(|s| {
                    s.online = true;
                    s.pairing = false;
                    s.qr = None;
                });
                tracing::info!(session = %self.session, "session connected");
                self.publish(SessionEventKind::Connected { jid, push_name })
                    .await;
            }
            Observed::Lost(how) => {
                pass.lost = true;
                self.set_state(|s| {
                    s.online = false;
                    s.pairing = false;
                    s.qr = None;
                });
                let report = mapping::last_error(
                    SessionErrorCode::Unreachable,
                    format!("the connection to WhatsApp was lost ({how}); reconnecting"),
                );
                self.report(last_report, report).await;
            }
            Observed::Refused(report) => {
                pass.refused = true;
                self.set_state(|s| s.online = false);
                self.report(last_report, report).await;
            }
            Observed::RateLimited => pass.rate_limited = true,
            Observed::QrExhaustedCodePending => self.set_state(|s| s.qr = None),
            Observed::Ended(ending) => {
                self.set_state(|s| {
                    s.ended = true;
                    s.online = false;
                    s.pairing = false;
                    s.qr = None;
                    s.pair_code = None;
                });
                pass.ending = Some(ending);
            }
        }
    }

    /// A contact's receipt: `MessageStatus` for the messages it names. A
    /// group participant's waits in `receipts` for the ones right behind
    /// it (a group of 1,000 sends 1,000 receipts of each message).
    async fn on_receipt(&self, receipt: &Receipt, receipts: &mut Vec<StatusUpdate>) {
        let own = media::own(&self.client);
        let alternates =
            media::alternates(&self.client, messages::receipt_chat_to_learn(receipt)).await;
        let Some(update) = messages::receipt_status(receipt, &own, &alternates) else {
            return;
        };
        if update.participant.is_some() {
            receipts.push(update);
        } else {
            self.flush_receipts(receipts).await;
            self.publish(SessionEventKind::MessageStatus(update)).await;
        }
    }

    /// Publishes the group receipts waiting, together.
    async fn flush_receipts(&self, receipts: &mut Vec<StatusUpdate>) {
        if !receipts.is_empty() {
            self.publish(SessionEventKind::GroupReceipts(std::mem::take(receipts)))
                .await;
        }
    }

    /// A group notification: `group.*` events for changes others made.
    async fn on_group_update(&self, update: &whatsapp_rust::types::events::GroupUpdate) {
        let own = media::own(&self.client);
        for notice in crate::groups::notices(&self.client, &own, update).await {
            self.publish(SessionEventKind::Group(notice)).await;
        }
    }

    /// A contact's presence (WhatsApp tells it to subscribers only).
    async fn on_presence(&self, update: &PresenceUpdate) {
        let own = media::own(&self.client);
        let alternates = media::alternates(&self.client, presence::to_learn(&update.from)).await;
        if let Some(kind) = presence::presence(update, &own, &alternates) {
            self.publish(kind).await;
        }
    }

    /// Someone typing, recording or stopping in a chat with the account.
    async fn on_chat_presence(&self, update: &ChatPresenceUpdate) {
        let own = media::own(&self.client);
        let wanted = presence::to_learn(&update.source.sender)
            .filter(|_| update.source.sender_alt.is_none());
        let alternates = media::alternates(&self.client, wanted).await;
        if let Some(kind) = presence::chat_state(update, &own, &alternates) {
            self.publish(kind).await;
        }
    }

    /// The server's ack (or nack) of a message this account sent.
    async fn on_ack(&self, ack: &ServerAck) {
        let own = media::own(&self.client);
        let alternates = media::alternates(&self.client, messages::ack_chat_to_learn(ack)).await;
        let now = self.shared.clock.now();
        if let Some(update) = messages::ack_status(ack, &own, &alternates, now) {
            if update.error_code.is_some() {
                tracing::warn!(session = %self.session, id = %ack.id, code = ?update.error_code, "WhatsApp refused a message");
            }
            self.publish(SessionEventKind::MessageStatus(update)).await;
        }
    }

    /// The attempt ended for good: close the client, erase the keys when the
    /// link is gone, report.
    async fn end(self, pass: Pass, task: Option<JoinHandle<()>>) {
        let Some(ending) = pass.ending else {
            return;
        };
        tracing::warn!(session = %self.session, code = ending.error.code.as_str(), message = %ending.error.message, "session ended");
        self.close(task, false).await;
        if ending.unlinked
            && let Err(e) = self.shared.devices.erase(self.device).await
        {
            tracing::error!(session = %self.session, error = %e, "could not erase the device keys");
        }
        self.publish(ending.event()).await;
        self.set_state(|s| s.client = None);
    }

    /// Asked to stop: close (or log out) and wait for the pass to end.
    async fn stop_with(self, reason: StopReason, task: Option<JoinHandle<()>>) {
        tracing::debug!(session = %self.session, ?reason, "stopping session");
        self.close(task, reason == StopReason::Logout).await;
        self.set_state(|s| {
            s.client = None;
            s.online = false;
            s.pairing = false;
            s.qr = None;
            s.pair_code = None;
        });
    }

    /// Closes the client (logging out first if asked and online) and waits
    /// for its pass, if one runs, to end; aborts it after the stop timeout.
    async fn close(&self, mut task: Option<JoinHandle<()>>, logout: bool) {
        let timeout = self.shared.options.stop_timeout;
        let client = self.client.clone();
        let closed = tokio::time::timeout(timeout, async {
            if logout && client.is_logged_in() {
                client.logout().await;
            } else {
                client.disconnect().await;
            }
            if let Some(task) = task.as_mut() {
                let _ = task.await;
            }
        })
        .await;
        if closed.is_err() {
            tracing::warn!(session = %self.session, "the client did not close in time; aborting it");
            if let Some(task) = task {
                task.abort();
            }
        }
    }
}

/// Resolves when a stop is asked for (or the adapter dropped the handle).
async fn stopped(stop: &mut watch::Receiver<Option<StopReason>>) -> StopReason {
    loop {
        if let Some(reason) = *stop.borrow_and_update() {
            return reason;
        }
        if stop.changed().await.is_err() {
            return StopReason::Shutdown;
        }
    }
}

/// Hands the client the process-wide version as freshly fetched, so its own
/// per-device fetch (on a version older than a day) never runs.
pub(crate) async fn seed_version(client: &Client, (p, s, t): (u32, u32, u32)) {
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let now_ms = i64::try_from(now_ms).unwrap_or(i64::MAX);
    client
        .persistence_manager()
        .modify_device(|d| {
            d.app_version_primary = p;
            d.app_version_secondary = s;
            d.app_version_tertiary = t;
            d.app_version_last_fetched_ms = now_ms;
        })
        .await;
}
