//! Webhook deliveries: the [`WebhookDispatcher`], and the [`RetentionPruner`]
//! that keeps the event log within its retention.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use wagate_domain::{Clock, OrgId, WebhookId};
use wagate_store::{
    AttemptOutcome, DueDelivery, DueWebhook, Entropy, FinishedAttempt, WebhookStore,
};
use wagate_webhooks::{Answer, WebhookTransport, signed_headers};

use crate::Gateway;

/// The most deliveries a worker claims at once.
pub const MAX_BATCH: u32 = 16;
/// The longest the dispatcher sleeps without looking at the store.
pub const MAX_IDLE: Duration = Duration::from_secs(30);
/// Added to a claim's lease on top of the batch's timeouts: store writes,
/// and clocks of gateway processes that differ a little.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// Per delivery of a batch, on top of the timeout: signing and recording.
const LEASE_PER_SEND: Duration = Duration::from_secs(1);
/// Wait after a store error before asking again.
const STORE_BACKOFF: Duration = Duration::from_secs(1);
/// Tries of recording one attempt before leaving it to its lease.
const FINISH_TRIES: u32 = 5;
/// Bytes of a failed answer's body kept in the delivery's `error` (the
/// body as read, 64 KiB at most).
const ERROR_BODY_BYTES: usize = wagate_webhooks::MAX_ANSWER_BODY;
/// One organization's sends in flight are at most this fraction of
/// `max_in_flight` (at least one): with the default 64, eight per
/// organization, so seven organizations whose receivers all hang still
/// leave an eighth of the slots free for everyone else, who never wait.
pub const ORG_SHARE_OF_IN_FLIGHT: usize = 8;

/// How deliveries are made (`webhooks.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySettings {
    /// Longest wait for one answer (`webhooks.timeout`).
    pub timeout: Duration,
    /// The delay before each attempt: the first entry is the first
    /// attempt's (always made at once), each next one the wait after a
    /// failed attempt; when the list is used up the delivery fails
    /// (`webhooks.retry_schedule`).
    pub retry_schedule: Vec<Duration>,
    /// A webhook all of whose deliveries failed for this long is disabled
    /// (`webhooks.disable_after`).
    pub disable_after: Duration,
    /// Most sends in flight at once, all webhooks together
    /// (`webhooks.max_in_flight`); one organization's at most
    /// [`DeliverySettings::max_in_flight_per_org`].
    pub max_in_flight: usize,
    /// On stop, how long sends under way may take to finish before they
    /// are abandoned (an abandoned delivery is attempted again when its
    /// claim lapses).
    pub stop_grace: Duration,
}

impl Default for DeliverySettings {
    /// The contract's defaults: 10 s timeout; attempts immediately, then
    /// after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h; disabled after
    /// 5 days of failures; 64 sends in flight.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retry_schedule: DEFAULT_RETRY_SCHEDULE
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            disable_after: Duration::from_secs(5 * 24 * 3600),
            max_in_flight: 64,
            stop_grace: Duration::from_secs(5),
        }
    }
}

/// The default retry schedule, in seconds.
pub const DEFAULT_RETRY_SCHEDULE: [u64; 8] = [0, 5, 300, 1800, 7200, 18000, 36000, 36000];

impl DeliverySettings {
    /// The lease of a claim of `batch` deliveries: every send of it may
    /// time out and still be recorded before the claim lapses.
    pub fn lease(&self, batch: u32) -> Duration {
        (self.timeout + LEASE_PER_SEND) * batch.max(1) + LEASE_MARGIN
    }

    /// Most sends in flight at once for one organization's webhooks
    /// together: `max_in_flight` / [`ORG_SHARE_OF_IN_FLIGHT`], at least 1.
    pub fn max_in_flight_per_org(&self) -> usize {
        (self.max_in_flight / ORG_SHARE_OF_IN_FLIGHT).max(1)
    }
}

/// Slots to send in: at most `max_in_flight` sends in all, and at most
/// `max_in_flight_per_org` of one organization's. Both queues are FIFO: an
/// organization's webhooks take turns for its slots, and organizations
/// take turns for the rest. A slot is held for one send.
#[derive(Debug)]
struct SendSlots {
    all: Arc<Semaphore>,
    per_org: usize,
    orgs: Mutex<HashMap<OrgId, Arc<Semaphore>>>,
}

/// A slot to send in; freed when dropped.
#[derive(Debug)]
struct Slot {
    _org: OwnedSemaphorePermit,
    _all: OwnedSemaphorePermit,
}

impl SendSlots {
    fn new(settings: &DeliverySettings) -> Self {
        Self {
            all: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
            per_org: settings.max_in_flight_per_org(),
            orgs: Mutex::default(),
        }
    }

    /// Waits for a slot of `org` (the organization's first, then one of
    /// all); `None` once closed.
    async fn acquire(&self, org: &OrgId) -> Option<Slot> {
        let mine = self
            .orgs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(org.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_org)))
            .clone();
        let org_permit = mine.acquire_owned().await.ok()?;
        let all = self.all.clone().acquire_owned().await.ok()?;
        Some(Slot {
            _org: org_permit,
            _all: all,
        })
    }

    /// Forgets organizations nobody sends for or waits on (a permit or a
    /// waiter holds a clone of its semaphore).
    fn sweep(&self) {
        self.orgs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, s| Arc::strong_count(s) > 1);
    }
}

/// Spreads retries: the delay actually waited for a scheduled `delay`.
pub trait Jitter: Send + Sync + std::fmt::Debug {
    /// The delay to wait instead of `delay`.
    fn apply(&self, delay: Duration) -> Duration;
}

/// No jitter: the schedule as written (tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoJitter;

impl Jitter for NoJitter {
    fn apply(&self, delay: Duration) -> Duration {
        delay
    }
}

/// Up to a fifth more or less than the scheduled delay, uniformly, from an
/// [`Entropy`] source.
#[derive(Debug, Clone)]
pub struct EntropyJitter(pub Arc<dyn Entropy>);

impl Jitter for EntropyJitter {
    fn apply(&self, delay: Duration) -> Duration {
        let mut bytes = [0u8; 8];
        self.0.fill(&mut bytes);
        // u in [0, 1): 53 random bits, exactly representable.
        let u = (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64;
        delay.mul_f64(0.8 + 0.4 * u)
    }
}

/// What the dispatcher works with.
#[derive(Debug, Clone)]
pub struct DispatcherDeps {
    /// The outbox.
    pub store: Arc<dyn WebhookStore>,
    /// Sends one delivery.
    pub transport: Arc<dyn WebhookTransport>,
    /// The time (attempt timestamps, due times).
    pub clock: Arc<dyn Clock>,
    /// Changes whenever deliveries are queued by this process.
    pub wake: watch::Receiver<u64>,
    /// Spreads retries.
    pub jitter: Arc<dyn Jitter>,
}

/// Sends webhook deliveries in the background until stopped.
///
/// Deliveries are rows of the store's outbox, written in the transaction of
/// the event they carry, so a committed event's deliveries survive any
/// crash. The dispatcher is one task that wakes when this process queues
/// deliveries ([`EventBus::deliveries`](crate::EventBus::deliveries)), when
/// the store's [`next_due`](WebhookStore::next_due) time comes (a retry, a
/// lapsed claim), when a worker ends, and at least every
/// [`MAX_IDLE`] (deliveries queued by another gateway process). It asks
/// the store which webhooks have deliveries due and runs **one worker per
/// such webhook**:
///
/// - a worker sends its webhook's deliveries **one at a time**, in the
///   order the store hands them out (first attempts in cursor order;
///   retries fall due later and may be overtaken);
/// - each send takes a **slot** and frees it when it ends: at most
///   `max_in_flight` sends are in flight across all webhooks, and at most
///   [`DeliverySettings::max_in_flight_per_org`] of one organization's.
///   An organization's webhooks take turns for its slots (FIFO), and
///   organizations take turns for the rest (FIFO), so organizations whose
///   receivers hang hold only their own share and never the slots another
///   organization's deliveries need; the first slot of a batch is taken
///   before claiming it;
/// - it **claims** each batch with a lease ([`WebhookStore::claim_due`]'s
///   `hold_until`) long enough for every send of the batch to time out, so
///   another gateway process sharing the database never attempts the same
///   delivery meanwhile, and a crashed process's claims fall due again
///   when the lease ends;
/// - a batch starts at one delivery and doubles (up to [`MAX_BATCH`]) while
///   the receiver answers 2xx, and falls back to one after any failure;
/// - before each send of a batch it asks the store whether the delivery is
///   [still current](WebhookStore::still_current): once the webhook is
///   deleted, disabled or given another URL, the rest of the batch is not
///   sent to it (it is released, [`AttemptOutcome::Released`], and claimed
///   again with the new URL, or is gone); a send that would outlast the
///   claim's lease (a long wait for a slot), and the rest of a batch when
///   the dispatcher stops, are released too.
///
/// A slow, hanging or failing receiver therefore only delays its own
/// webhook and, within its organization's share of the slots, its own
/// organization: other webhooks have their own workers, every send is
/// bounded by `webhooks.timeout`, and nothing here runs on the HTTP
/// server's threads.
///
/// Each attempt is signed (Standard Webhooks; `webhook-id` is the event
/// id, `webhook-timestamp` the attempt's time), sent, and recorded with
/// [`WebhookStore::finish_attempts`] (a batch's attempts in one write, after
/// the batch): 2xx is delivered; 410 disables the
/// webhook (the store fails what is pending); anything else, a timeout or
/// a connection error is retried after the next delay of the schedule
/// (with jitter), and fails once the schedule is used up. After a 410 the
/// worker stops at once: the rest of its batch (failed by the store) is
/// not sent. A webhook whose deliveries have failed for `disable_after` is
/// disabled by the store.
///
/// Order across a crash: deliveries claimed by a process that died wait
/// for their lease to end, while newer deliveries of the same webhook may
/// go out meanwhile (the claims are per delivery). Every delivery still
/// arrives at least once, with its event's id: a crash in the middle of a
/// batch sends its attempts again, delivered ones included, once the claim
/// lapses (receivers deduplicate on `webhook-id`).
#[derive(Debug)]
pub struct WebhookDispatcher {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl WebhookDispatcher {
    /// Starts dispatching on the current tokio runtime.
    pub fn start(deps: DispatcherDeps, settings: DeliverySettings) -> Self {
        let (stop, stopped) = watch::channel(false);
        let (done, finished) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            slots: SendSlots::new(&settings),
            store: deps.store,
            transport: deps.transport,
            clock: deps.clock,
            jitter: deps.jitter,
            settings,
            stopped,
            done,
        });
        let task = tokio::spawn(run(shared, deps.wake, finished));
        Self { stop, task }
    }

    /// Stops: no new batch is claimed, nothing more of a batch is sent (it
    /// is released), sends under way get [`DeliverySettings::stop_grace`]
    /// to finish (then are abandoned, and attempted again when their claim
    /// lapses). Returns when every worker has ended.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            tracing::error!("the webhook dispatcher panicked");
        }
    }
}

impl Gateway {
    /// Starts the [`WebhookDispatcher`] on this gateway's store, clock and
    /// event bus, sending with `transport`; retries are spread with the
    /// gateway's entropy.
    pub fn start_webhook_dispatcher(
        &self,
        transport: Arc<dyn WebhookTransport>,
        settings: DeliverySettings,
    ) -> WebhookDispatcher {
        WebhookDispatcher::start(
            DispatcherDeps {
                store: self.deps.webhooks.clone(),
                transport,
                clock: self.deps.clock.clone(),
                wake: self.deps.bus.deliveries(),
                jitter: Arc::new(EntropyJitter(self.deps.entropy.clone())),
            },
            settings,
        )
    }
}

#[derive(Debug)]
struct Shared {
    store: Arc<dyn WebhookStore>,
    transport: Arc<dyn WebhookTransport>,
    clock: Arc<dyn Clock>,
    jitter: Arc<dyn Jitter>,
    settings: DeliverySettings,
    slots: SendSlots,
    /// `true` once stopping.
    stopped: watch::Receiver<bool>,
    /// A worker tells its webhook's id when it ends.
    done: mpsc::UnboundedSender<WebhookId>,
}

/// `d` as a `time::Duration` (saturating).
fn span(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

/// `at - now` as a wait (zero when `at` is past).
fn until(at: OffsetDateTime, now: OffsetDateTime) -> Duration {
    Duration::try_from(at - now).unwrap_or(Duration::ZERO)
}

/// The dispatcher's loop: start a worker for each webhook with deliveries
/// due, then sleep until something may be due.
async fn run(
    shared: Arc<Shared>,
    mut wake: watch::Receiver<u64>,
    mut finished: mpsc::UnboundedReceiver<WebhookId>,
) {
    let mut stopped = shared.stopped.clone();
    let mut workers: HashMap<WebhookId, JoinHandle<()>> = HashMap::new();
    let mut wake_open = true;
    wake.borrow_and_update();
    while !*stopped.borrow() {
        // A worker that ended (or panicked) leaves its webhook to a new one.
        while let Ok(id) = finished.try_recv() {
            workers.remove(&id);
        }
        workers.retain(|_, w| !w.is_finished());
        shared.slots.sweep();
        let now = shared.clock.now();
        let nap = match shared.store.webhooks_due(now).await {
            Ok(due) => {
                for hook in due {
                    workers
                        .entry(hook.id)
                        .or_insert_with(|| tokio::spawn(work(shared.clone(), hook)));
                }
                match shared.store.next_due().await {
                    Ok(Some(at)) if at > now => until(at, now).min(MAX_IDLE),
                    // Due now: its worker is on it, and tells when it ends;
                    // look again soon in case it ended in between.
                    Ok(Some(_)) => STORE_BACKOFF,
                    Ok(None) => MAX_IDLE,
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook deliveries: cannot read the next due time");
                        STORE_BACKOFF
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "webhook deliveries: cannot read what is due");
                STORE_BACKOFF
            }
        };
        tokio::select! {
            // The handle dropped without `stop` stops it too.
            changed = stopped.changed() => if changed.is_err() { break },
            changed = wake.changed(), if wake_open => wake_open = changed.is_ok(),
            Some(id) = finished.recv() => { workers.remove(&id); }
            () = tokio::time::sleep(nap) => {}
        }
    }
    // Workers see the stop themselves; give their sends the grace.
    let grace = tokio::time::sleep(shared.settings.stop_grace);
    tokio::pin!(grace);
    for (id, mut worker) in workers {
        tokio::select! {
            _ = &mut worker => {}
            () = &mut grace => {
                tracing::info!(webhook = %id, "webhook delivery abandoned at stop; attempted again when its claim lapses");
                worker.abort();
            }
        }
    }
}

/// One webhook's worker: claims and sends its due deliveries, batch after
/// batch, until none is due (or the dispatcher stops).
async fn work(shared: Arc<Shared>, hook: DueWebhook) {
    let id = hook.id;
    let mut stopped = shared.stopped.clone();
    let mut batch = 1;
    loop {
        // The batch's first slot before its claim: its lease starts with a
        // send, not with a wait.
        let Some(first) = shared.slot(&hook.org, &mut stopped).await else {
            break;
        };
        let now = shared.clock.now();
        let hold_until = now + span(shared.settings.lease(batch));
        let due = match shared.store.claim_due(&id, now, hold_until, batch).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(webhook = %id, error = %e, "webhook deliveries: cannot claim");
                break;
            }
        };
        if due.is_empty() {
            break;
        }
        // Its attempts are recorded together, in one write, after it.
        let mut attempts = Vec::with_capacity(due.len());
        let mut slot = Some(first);
        let mut end = false;
        let mut due = due.into_iter();
        while let Some(delivery) = due.next() {
            let held = match shared
                .step(&delivery, slot.take(), hold_until, &mut stopped)
                .await
            {
                Step::Send(held) => held,
                not_sent => {
                    // Released with the rest of the batch, due again at
                    // once (to the webhook as it now is, if it still is).
                    let released = std::iter::once(delivery).chain(due.by_ref());
                    attempts.extend(released.map(|d| FinishedAttempt {
                        seq: d.seq,
                        outcome: AttemptOutcome::Released,
                        duration_ms: 0,
                    }));
                    end = matches!(not_sent, Step::Stop);
                    break;
                }
            };
            let (sent, attempt) = shared.attempt(delivery).await;
            drop(held);
            attempts.push(attempt);
            match sent {
                Sent::Delivered => batch = (batch * 2).min(MAX_BATCH),
                Sent::Failed => batch = 1,
                // Disabled, its pending deliveries failed (the rest of
                // this batch too): nothing more is sent to it.
                Sent::Gone => {
                    end = true;
                    break;
                }
            }
        }
        shared.finish(&id, &attempts).await;
        if end {
            break;
        }
    }
    let _ = shared.done.send(id);
}

/// What to do with the next delivery of a batch.
#[derive(Debug)]
enum Step {
    /// Send it, in this slot.
    Send(Slot),
    /// Release it and the rest, then claim again.
    Reclaim,
    /// Release it and the rest, and end the worker (stopping, or the store
    /// does not answer: the dispatcher starts a new one later).
    Stop,
}

/// How an attempt went, for the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// 2xx.
    Delivered,
    /// To be retried, or failed for good.
    Failed,
    /// 410: the webhook is disabled.
    Gone,
}

/// A failed answer, for the delivery's `error`: the status and the start
/// of the body.
fn describe(answer: &Answer) -> String {
    let body = String::from_utf8_lossy(&answer.body_prefix);
    let mut body = body.trim();
    if body.is_empty() {
        return format!("HTTP {}", answer.status);
    }
    if body.len() > ERROR_BODY_BYTES {
        let mut end = ERROR_BODY_BYTES;
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        body = &body[..end];
    }
    format!("HTTP {}: {body}", answer.status)
}

impl Shared {
    /// A slot of `org`, unless the dispatcher stops first.
    async fn slot(&self, org: &OrgId, stopped: &mut watch::Receiver<bool>) -> Option<Slot> {
        if *stopped.borrow() {
            return None;
        }
        tokio::select! {
            slot = self.slots.acquire(org) => slot,
            _ = stopped.changed() => None,
        }
    }

    /// Whether and in which slot to send `d`, the next delivery of a batch
    /// held until `hold_until` (`slot`: one already taken for it).
    async fn step(
        &self,
        d: &DueDelivery,
        slot: Option<Slot>,
        hold_until: OffsetDateTime,
        stopped: &mut watch::Receiver<bool>,
    ) -> Step {
        let slot = match slot {
            Some(slot) if !*stopped.borrow() => slot,
            Some(_) => return Step::Stop,
            None => match self.slot(&d.org, stopped).await {
                Some(slot) => slot,
                None => return Step::Stop,
            },
        };
        // The claim must outlast the send and its recording; after a long
        // wait for the slot it may not, and another process could take it.
        if self.clock.now() + span(self.settings.timeout + LEASE_PER_SEND) > hold_until {
            return Step::Reclaim;
        }
        match self.store.still_current(d).await {
            Ok(true) => Step::Send(slot),
            // Deleted, disabled, or moved to another URL since the claim.
            Ok(false) => Step::Reclaim,
            Err(e) => {
                tracing::warn!(webhook = %d.webhook, error = %e, "webhook deliveries: cannot check a delivery before sending it");
                Step::Stop
            }
        }
    }

    /// Signs and sends one attempt; the caller records it.
    async fn attempt(&self, d: DueDelivery) -> (Sent, FinishedAttempt) {
        let started = tokio::time::Instant::now();
        let event_id = d.event_id.to_string();
        let timestamp = self.clock.now().unix_timestamp();
        let headers = match signed_headers(&d.secrets, &event_id, timestamp, d.body.as_bytes()) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(webhook = %d.webhook, event = %event_id, error = %e, "cannot sign a delivery");
                let outcome = AttemptOutcome::Failed {
                    status: None,
                    error: e.to_string(),
                };
                return (
                    Sent::Failed,
                    FinishedAttempt {
                        seq: d.seq,
                        outcome,
                        duration_ms: 0,
                    },
                );
            }
        };
        let timeout = self.settings.timeout;
        let result =
            tokio::time::timeout(timeout, self.transport.send(&d.url, &headers, &d.body)).await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let outcome = match result {
            Ok(Ok(answer)) if (200..300).contains(&answer.status) => AttemptOutcome::Delivered {
                status: answer.status,
            },
            Ok(Ok(answer)) if answer.status == 410 => {
                tracing::info!(webhook = %d.webhook, org = %d.org, "the receiver answered 410 Gone: webhook disabled");
                AttemptOutcome::Gone
            }
            Ok(Ok(answer)) => self.retry(&d, Some(answer.status), describe(&answer)),
            Ok(Err(e)) => self.retry(&d, None, e.to_string()),
            Err(_) => self.retry(
                &d,
                None,
                format!("no answer within {} ms", timeout.as_millis()),
            ),
        };
        tracing::debug!(
            webhook = %d.webhook,
            event = %event_id,
            attempt = d.attempt + 1,
            duration_ms,
            outcome = ?outcome,
            "webhook delivery attempted"
        );
        let sent = match outcome {
            AttemptOutcome::Delivered { .. } => Sent::Delivered,
            AttemptOutcome::Gone => Sent::Gone,
            AttemptOutcome::Retry { .. }
            | AttemptOutcome::Failed { .. }
            | AttemptOutcome::Released => Sent::Failed,
        };
        (
            sent,
            FinishedAttempt {
                seq: d.seq,
                outcome,
                duration_ms,
            },
        )
    }

    /// After a failed attempt: try again after the schedule's next delay,
    /// or fail when it is used up.
    fn retry(&self, d: &DueDelivery, status: Option<u16>, error: String) -> AttemptOutcome {
        // `d.attempt` attempts were made before this one; the schedule's
        // entry `n` is the delay before attempt `n` (from 0).
        let next = usize::try_from(d.attempt)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        match self.settings.retry_schedule.get(next) {
            Some(delay) => AttemptOutcome::Retry {
                status,
                error,
                next_at: self.clock.now() + span(self.jitter.apply(*delay)),
            },
            None => AttemptOutcome::Failed { status, error },
        }
    }

    /// Records a batch's attempts, trying again a few times on a store
    /// error; if they cannot be recorded, their claim lapses and they are
    /// attempted again.
    async fn finish(&self, webhook: &WebhookId, attempts: &[FinishedAttempt]) {
        let disable_after = span(self.settings.disable_after);
        let mut wait = Duration::from_millis(50);
        for n in 1..=FINISH_TRIES {
            match self
                .store
                .finish_attempts(attempts, self.clock.now(), disable_after)
                .await
            {
                Ok(()) => return,
                Err(e) if n == FINISH_TRIES => {
                    tracing::warn!(webhook = %webhook, deliveries = attempts.len(), error = %e,
                        "cannot record delivery attempts; they are made again when their claim lapses");
                }
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }
}

/// Prunes the event log to its retention in the background: at start, then
/// every `every`.
#[derive(Debug)]
pub struct RetentionPruner {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RetentionPruner {
    /// Starts pruning events older than `retention` (`events.retention`)
    /// through [`Gateway::prune_events`].
    pub fn start(gateway: Arc<Gateway>, retention: time::Duration, every: Duration) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                match gateway.prune_events(retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(events = n, "pruned events past their retention"),
                    Err(e) => tracing::warn!(error = %e, "cannot prune the event log"),
                }
                tokio::select! {
                    _ = stopped.changed() => return,
                    () = tokio::time::sleep(every) => {}
                }
            }
        });
        Self { stop, task }
    }

    /// Stops (a pruning under way finishes first).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

#[cfg(test)]
#[path = "delivery_tests.rs"]
mod tests;
