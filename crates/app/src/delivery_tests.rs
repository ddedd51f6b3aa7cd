//! Dispatcher tests at the port boundary: an in-memory outbox and a
//! scripted transport, on tokio's paused clock (nothing here does real
//! I/O, so virtual time is exact); and one on the real SQLite store, woken
//! by a committed event.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use wagate_domain::{
    Clock, Delivery, DeliveryState, Event, EventCursor, EventId, OrgId, Webhook, WebhookId,
    WebhookSecret, WebhookUrl,
};
use wagate_store::{
    AttemptOutcome, DueDelivery, DueWebhook, Entropy, FinishedAttempt, StoreError, WebhookPatch,
    WebhookStore,
};
use wagate_webhooks::{Answer, SendError, WebhookTransport};

use super::*;

/// Tokio's clock as wall time: with the runtime's clock paused, time moves
/// only when every task waits, by exactly what they wait for.
#[derive(Debug)]
struct TokioClock {
    base: OffsetDateTime,
    start: tokio::time::Instant,
}

impl TokioClock {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            base: time::macros::datetime!(2026-01-01 00:00 UTC),
            start: tokio::time::Instant::now(),
        })
    }

    /// Time since the test started.
    fn since_start(&self, at: OffsetDateTime) -> Duration {
        Duration::try_from(at - self.base).unwrap()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> OffsetDateTime {
        self.base + span(self.start.elapsed())
    }
}

#[derive(Debug)]
struct Hook {
    org: OrgId,
    url: WebhookUrl,
    enabled: bool,
}

#[derive(Debug)]
struct Row {
    seq: u64,
    webhook: WebhookId,
    event: EventId,
    state: DeliveryState,
    attempt: u32,
    next: OffsetDateTime,
    claimed_until: Option<OffsetDateTime>,
    outcomes: Vec<AttemptOutcome>,
}

#[derive(Debug, Default)]
struct State {
    hooks: HashMap<WebhookId, Hook>,
    rows: Vec<Row>,
    disable_after: Vec<time::Duration>,
}

/// The outbox in memory, with the claim semantics of the real store.
#[derive(Debug)]
struct FakeStore {
    state: Mutex<State>,
    /// What the event bus would say when deliveries are queued.
    bus: watch::Sender<u64>,
}

fn not_here() -> StoreError {
    StoreError::Unavailable("not in the fake".into())
}

fn secret() -> WebhookSecret {
    WebhookSecret::from_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()
}

impl FakeStore {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::default(),
            bus: watch::channel(0).0,
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Webhook number `n` of `acme`, at `http://hook-n.test/`.
    fn add_hook(&self, n: u128) -> WebhookId {
        self.add_hook_of("acme", n)
    }

    /// Webhook number `n` of `org`, at `http://hook-n.test/`.
    fn add_hook_of(&self, org: &str, n: u128) -> WebhookId {
        let id = WebhookId::from_ulid(ulid::Ulid::from_parts(1, n));
        let url = WebhookUrl::parse(&format!("http://hook-{n}.test/")).unwrap();
        let org = OrgId::parse(org).unwrap();
        self.with(|s| {
            s.hooks.insert(
                id,
                Hook {
                    org,
                    url,
                    enabled: true,
                },
            )
        });
        id
    }

    /// What a PATCH or a DELETE of the webhook does to the outbox:
    /// `url` moves it, `None` deletes it (and its deliveries).
    fn change_hook(&self, hook: WebhookId, url: Option<&str>) {
        self.with(|s| match url {
            Some(url) => s.hooks.get_mut(&hook).unwrap().url = WebhookUrl::parse(url).unwrap(),
            None => {
                s.hooks.remove(&hook);
                s.rows.retain(|r| r.webhook != hook);
            }
        });
    }

    /// Queues `count` new events for `hook` at `now`, as a commit would,
    /// and wakes the dispatcher; their ids in cursor order.
    fn queue(&self, hook: WebhookId, count: usize, now: OffsetDateTime) -> Vec<EventId> {
        let ids = self.with(|s| {
            (0..count)
                .map(|_| {
                    let seq = s.rows.len() as u64 + 1;
                    let event = EventId::from_ulid(ulid::Ulid::from_parts(2, u128::from(seq)));
                    s.rows.push(Row {
                        seq,
                        webhook: hook,
                        event,
                        state: DeliveryState::Pending,
                        attempt: 0,
                        next: now,
                        claimed_until: None,
                        outcomes: Vec::new(),
                    });
                    event
                })
                .collect()
        });
        self.bus.send_modify(|n| *n += 1);
        ids
    }

    fn row(&self, event: EventId) -> (DeliveryState, Vec<AttemptOutcome>) {
        self.with(|s| {
            let r = s.rows.iter().find(|r| r.event == event).unwrap();
            (r.state, r.outcomes.clone())
        })
    }

    fn enabled(&self, hook: WebhookId) -> bool {
        self.with(|s| s.hooks[&hook].enabled)
    }
}

#[async_trait]
impl WebhookStore for FakeStore {
    async fn insert_webhook(
        &self,
        _: &Webhook,
        _: &WebhookSecret,
        _: u32,
    ) -> Result<(), StoreError> {
        Err(not_here())
    }
    async fn get_webhook(&self, _: &OrgId, _: &WebhookId) -> Result<Option<Webhook>, StoreError> {
        Err(not_here())
    }
    async fn list_webhooks(&self, _: &OrgId) -> Result<Vec<Webhook>, StoreError> {
        Err(not_here())
    }
    async fn update_webhook(
        &self,
        _: &OrgId,
        _: &WebhookId,
        _: &WebhookPatch,
        _: OffsetDateTime,
    ) -> Result<Option<Webhook>, StoreError> {
        Err(not_here())
    }
    async fn delete_webhook(&self, _: &OrgId, _: &WebhookId) -> Result<bool, StoreError> {
        Err(not_here())
    }
    async fn rotate_secret(
        &self,
        _: &OrgId,
        _: &WebhookId,
        _: &WebhookSecret,
        _: OffsetDateTime,
        _: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        Err(not_here())
    }
    async fn queue_test(&self, _: &OrgId, _: &WebhookId, _: &Event) -> Result<bool, StoreError> {
        Err(not_here())
    }
    async fn replay(
        &self,
        _: &OrgId,
        _: &WebhookId,
        _: EventCursor,
        _: OffsetDateTime,
    ) -> Result<Option<u64>, StoreError> {
        Err(not_here())
    }
    async fn deliveries(
        &self,
        _: &OrgId,
        _: &WebhookId,
        _: Option<u64>,
        _: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        Err(not_here())
    }

    async fn webhooks_due(&self, now: OffsetDateTime) -> Result<Vec<DueWebhook>, StoreError> {
        Ok(self.with(|s| {
            let mut due: Vec<WebhookId> = s
                .rows
                .iter()
                .filter(|r| r.state == DeliveryState::Pending && r.next <= now)
                .filter(|r| r.claimed_until.is_none_or(|c| c <= now))
                .map(|r| r.webhook)
                .collect();
            due.sort();
            due.dedup();
            due.into_iter()
                .map(|id| DueWebhook {
                    id,
                    org: s.hooks[&id].org.clone(),
                })
                .collect()
        }))
    }

    async fn still_current(&self, d: &DueDelivery) -> Result<bool, StoreError> {
        Ok(self.with(|s| {
            let pending = s
                .rows
                .iter()
                .any(|r| r.seq == d.seq && r.state == DeliveryState::Pending);
            pending
                && s.hooks
                    .get(&d.webhook)
                    .is_some_and(|h| h.enabled && h.url == d.url)
        }))
    }

    async fn next_due(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        Ok(self.with(|s| {
            s.rows
                .iter()
                .filter(|r| r.state == DeliveryState::Pending)
                .map(|r| r.claimed_until.map_or(r.next, |c| c.max(r.next)))
                .min()
        }))
    }

    async fn claim_due(
        &self,
        id: &WebhookId,
        now: OffsetDateTime,
        hold_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        Ok(self.with(|s| {
            let Some(hook) = s.hooks.get(id).filter(|h| h.enabled) else {
                return Vec::new();
            };
            let (url, org) = (hook.url.clone(), hook.org.clone());
            let mut due: Vec<&mut Row> = s
                .rows
                .iter_mut()
                .filter(|r| r.webhook == *id && r.state == DeliveryState::Pending)
                .filter(|r| r.next <= now && r.claimed_until.is_none_or(|c| c <= now))
                .collect();
            due.sort_by_key(|r| (r.next, r.seq));
            due.into_iter()
                .take(limit as usize)
                .map(|r| {
                    r.claimed_until = Some(hold_until);
                    DueDelivery {
                        seq: r.seq,
                        webhook: *id,
                        org: org.clone(),
                        url: url.clone(),
                        secrets: vec![secret()],
                        body: format!(r#"{{"id":"{}"}}"#, r.event),
                        event_id: r.event,
                        attempt: r.attempt,
                    }
                })
                .collect()
        }))
    }

    async fn finish_attempts(
        &self,
        attempts: &[FinishedAttempt],
        _: OffsetDateTime,
        disable_after: time::Duration,
    ) -> Result<(), StoreError> {
        self.with(|s| {
            s.disable_after.push(disable_after);
            for attempt in attempts {
                // Deleted meanwhile: nothing to record.
                let Some(r) = s.rows.iter_mut().find(|r| r.seq == attempt.seq) else {
                    continue;
                };
                if attempt.outcome == AttemptOutcome::Released {
                    r.claimed_until = None;
                    continue;
                }
                r.attempt += 1;
                r.claimed_until = None;
                r.outcomes.push(attempt.outcome.clone());
                let hook = r.webhook;
                match &attempt.outcome {
                    AttemptOutcome::Delivered { .. } => r.state = DeliveryState::Succeeded,
                    AttemptOutcome::Retry { next_at, .. } => r.next = *next_at,
                    AttemptOutcome::Failed { .. } => r.state = DeliveryState::Failed,
                    AttemptOutcome::Released => unreachable!(),
                    AttemptOutcome::Gone => {
                        s.hooks.get_mut(&hook).unwrap().enabled = false;
                        for r in s.rows.iter_mut().filter(|r| r.webhook == hook) {
                            if r.state == DeliveryState::Pending {
                                r.state = DeliveryState::Failed;
                            }
                        }
                    }
                }
            }
        });
        Ok(())
    }
}

/// What the transport does with one send.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Status(u16),
    /// Never answers (the dispatcher's timeout ends it).
    Hang,
    /// Connection refused.
    Refused,
}

/// One send the transport saw, when it started.
#[derive(Debug, Clone)]
struct Sent {
    host: String,
    event: String,
    at: OffsetDateTime,
    headers: Vec<(&'static str, String)>,
}

/// Answers by script: per host, replies in turn, then its default.
#[derive(Debug)]
struct FakeTransport {
    clock: Arc<TokioClock>,
    script: Mutex<HashMap<String, VecDeque<Reply>>>,
    defaults: Mutex<HashMap<String, Reply>>,
    /// Per event id: replies in turn (before the host's).
    per_event: Mutex<HashMap<String, VecDeque<Reply>>>,
    sent: mpsc::UnboundedSender<Sent>,
}

impl FakeTransport {
    fn new(clock: Arc<TokioClock>) -> (Arc<Self>, mpsc::UnboundedReceiver<Sent>) {
        let (sent, seen) = mpsc::unbounded_channel();
        let t = Arc::new(Self {
            clock,
            script: Mutex::default(),
            defaults: Mutex::default(),
            per_event: Mutex::default(),
            sent,
        });
        (t, seen)
    }

    fn answer(&self, hook: u128, reply: Reply) {
        self.defaults
            .lock()
            .unwrap()
            .insert(format!("hook-{hook}.test"), reply);
    }

    fn answer_event(&self, event: EventId, replies: &[Reply]) {
        self.per_event
            .lock()
            .unwrap()
            .insert(event.to_string(), replies.iter().copied().collect());
    }
}

#[async_trait]
impl WebhookTransport for FakeTransport {
    async fn send(
        &self,
        url: &WebhookUrl,
        headers: &[(&'static str, String)],
        _body: &str,
    ) -> Result<Answer, SendError> {
        let host = url.host_port().0.to_owned();
        let event = headers
            .iter()
            .find(|(k, _)| *k == "webhook-id")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let _ = self.sent.send(Sent {
            host: host.clone(),
            event: event.clone(),
            at: self.clock.now(),
            headers: headers.to_vec(),
        });
        let scripted = self
            .per_event
            .lock()
            .unwrap()
            .get_mut(&event)
            .and_then(VecDeque::pop_front)
            .or_else(|| {
                self.script
                    .lock()
                    .unwrap()
                    .get_mut(&host)
                    .and_then(VecDeque::pop_front)
            });
        let reply = scripted
            .or_else(|| self.defaults.lock().unwrap().get(&host).copied())
            .unwrap_or(Reply::Status(200));
        match reply {
            Reply::Status(status) => Ok(Answer {
                status,
                body_prefix: b"nope".to_vec(),
            }),
            Reply::Hang => std::future::pending().await,
            Reply::Refused => Err(SendError::Connect("connection refused".into())),
        }
    }
}

struct Rig {
    clock: Arc<TokioClock>,
    store: Arc<FakeStore>,
    transport: Arc<FakeTransport>,
    seen: mpsc::UnboundedReceiver<Sent>,
    settings: DeliverySettings,
}

fn rig() -> Rig {
    let clock = TokioClock::new();
    let (transport, seen) = FakeTransport::new(clock.clone());
    Rig {
        store: FakeStore::new(),
        transport,
        seen,
        settings: DeliverySettings {
            stop_grace: Duration::from_secs(1),
            ..DeliverySettings::default()
        },
        clock,
    }
}

impl Rig {
    fn start(&self) -> WebhookDispatcher {
        WebhookDispatcher::start(
            DispatcherDeps {
                store: self.store.clone(),
                transport: self.transport.clone(),
                clock: self.clock.clone(),
                wake: self.store.bus.subscribe(),
                jitter: Arc::new(NoJitter),
            },
            self.settings.clone(),
        )
    }

    async fn next(&mut self) -> Sent {
        self.seen.recv().await.unwrap()
    }

    /// Lets virtual time run `d` and says whether anything was sent meanwhile.
    async fn quiet_for(&mut self, d: Duration) -> bool {
        tokio::time::sleep(d).await;
        self.seen.try_recv().is_err()
    }
}

#[tokio::test(start_paused = true)]
async fn failures_are_retried_on_the_schedule_then_fail() {
    let mut rig = rig();
    let hook = rig.store.add_hook(1);
    rig.transport.answer(1, Reply::Status(500));
    let dispatcher = rig.start();
    let [event] = <[EventId; 1]>::try_from(rig.store.queue(hook, 1, rig.clock.now())).unwrap();
    let mut times = Vec::new();
    for _ in 0..8 {
        let sent = rig.next().await;
        assert_eq!(sent.event, event.to_string());
        times.push(rig.clock.since_start(sent.at));
    }
    // Immediately, then each delay of the schedule after the failure before.
    assert_eq!(times[0], Duration::ZERO);
    for (i, pair) in times.windows(2).enumerate() {
        let waited = pair[1] - pair[0];
        let planned = rig.settings.retry_schedule[i + 1];
        assert!(
            waited >= planned && waited < planned + Duration::from_millis(20),
            "attempt {}: waited {waited:?}, planned {planned:?}",
            i + 2
        );
    }
    // The eighth failure used the schedule up: the delivery failed, and
    // nothing more is sent.
    assert!(rig.quiet_for(Duration::from_secs(3 * 86_400)).await);
    let (state, outcomes) = rig.store.row(event);
    assert_eq!(state, DeliveryState::Failed);
    assert_eq!(outcomes.len(), 8);
    assert!(
        outcomes[..7]
            .iter()
            .all(|o| matches!(o, AttemptOutcome::Retry { status: Some(500), error, .. } if error == "HTTP 500: nope"))
    );
    assert_eq!(
        outcomes[7],
        AttemptOutcome::Failed {
            status: Some(500),
            error: "HTTP 500: nope".into()
        }
    );
    // `disable_after` goes to the store with every attempt.
    assert!(rig.store.with(|s| {
        s.disable_after
            .iter()
            .all(|d| *d == time::Duration::days(5))
    }));
    dispatcher.stop().await;
}

#[tokio::test(start_paused = true)]
async fn timeouts_and_connection_errors_are_retried() {
    let mut rig = rig();
    let hook = rig.store.add_hook(1);
    let dispatcher = rig.start();
    let [event] = <[EventId; 1]>::try_from(rig.store.queue(hook, 1, rig.clock.now())).unwrap();
    rig.transport
        .answer_event(event, &[Reply::Hang, Reply::Refused, Reply::Status(204)]);
    let first = rig.next().await;
    let second = rig.next().await;
    // The hang ran into the timeout, then waited 5 s.
    assert!(
        rig.clock.since_start(second.at) >= rig.settings.timeout + Duration::from_secs(5),
        "{:?}",
        rig.clock.since_start(second.at)
    );
    let third = rig.next().await;
    assert!(third.at - second.at >= time::Duration::minutes(5));
    assert!(first.event == third.event);
    assert!(rig.quiet_for(Duration::from_secs(86_400)).await);
    let (state, outcomes) = rig.store.row(event);
    assert_eq!(state, DeliveryState::Succeeded);
    assert!(
        matches!(&outcomes[0], AttemptOutcome::Retry { status: None, error, .. } if error == "no answer within 10000 ms"),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[1], AttemptOutcome::Retry { status: None, error, .. } if error.contains("connection refused")),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[2], AttemptOutcome::Delivered { status: 204 });
    dispatcher.stop().await;
}

#[tokio::test(start_paused = true)]
async fn gone_disables_the_webhook_and_nothing_more_is_sent_to_it() {
    let mut rig = rig();
    let gone = rig.store.add_hook(1);
    let other = rig.store.add_hook(2);
    rig.transport.answer(1, Reply::Status(410));
    let dispatcher = rig.start();
    let now = rig.clock.now();
    let events = rig.store.queue(gone, 3, now);
    let others = rig.store.queue(other, 2, now);
    let mut to_gone = 0;
    for _ in 0..3 {
        let sent = rig.next().await;
        to_gone += usize::from(sent.host == "hook-1.test");
    }
    assert_eq!(to_gone, 1, "one 410 is enough");
    assert!(rig.quiet_for(Duration::from_secs(86_400)).await);
    assert!(!rig.store.enabled(gone));
    assert_eq!(rig.store.row(events[0]).1, vec![AttemptOutcome::Gone]);
    for e in &events[1..] {
        assert_eq!(rig.store.row(*e), (DeliveryState::Failed, vec![]));
    }
    for e in others {
        assert_eq!(rig.store.row(e).0, DeliveryState::Succeeded);
    }
    dispatcher.stop().await;
}

#[tokio::test(start_paused = true)]
async fn after_a_410_the_rest_of_the_batch_is_not_sent() {
    let mut rig = rig();
    let hook = rig.store.add_hook(1);
    let dispatcher = rig.start();
    let events = rig.store.queue(hook, 10, rig.clock.now());
    // Batches of 1, 2, then 4: the fourth event opens the third batch.
    rig.transport.answer_event(events[3], &[Reply::Status(410)]);
    for e in &events[..4] {
        assert_eq!(rig.next().await.event, e.to_string());
    }
    assert!(rig.quiet_for(Duration::from_secs(86_400)).await);
    assert!(!rig.store.enabled(hook));
    for e in &events[4..] {
        assert_eq!(rig.store.row(*e), (DeliveryState::Failed, vec![]));
    }
    dispatcher.stop().await;
}

#[tokio::test(start_paused = true)]
async fn first_attempts_go_in_cursor_order_and_retries_may_overtake() {
    let mut rig = rig();
    let hook = rig.store.add_hook(1);
    let dispatcher = rig.start();
    let events = rig.store.queue(hook, 40, rig.clock.now());
    rig.transport.answer_event(events[2], &[Reply::Status(503)]);
    let mut order = Vec::new();
    for _ in 0..41 {
        order.push(rig.next().await);
    }
    let firsts: Vec<String> = order[..40].iter().map(|s| s.event.clone()).collect();
    let expected: Vec<String> = events.iter().map(ToString::to_string).collect();
    assert_eq!(firsts, expected, "first attempts in cursor order");
    // The failed one comes again after its delay, behind the others.
    assert_eq!(order[40].event, events[2].to_string());
    assert!(rig.clock.since_start(order[40].at) >= Duration::from_secs(5));
    for e in events {
        assert_eq!(rig.store.row(e).0, DeliveryState::Succeeded);
    }
    dispatcher.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_hanging_webhook_does_not_delay_another() {
    let mut rig = rig();
    // Two slots for the organization.
    rig.settings.max_in_flight = 2 * ORG_SHARE_OF_IN_FLIGHT;
    let hanging = rig.store.add_hook(1);
    let healthy = rig.store.add_hook(2);
    rig.transport.answer(1, Reply::Hang);
    let dispatcher = rig.start();
    let start = rig.clock.now();
    rig.store.queue(hanging, 5, start);
    let first = rig.next().await;
    assert_eq!(first.host, "hook-1.test");
    // While that send hangs, another webhook's deliveries all go out at once.
    let fast = rig.store.queue(healthy, 20, start);
    for e in &fast {
        let sent = rig.next().await;
        assert_eq!(sent.event, e.to_string());
        assert_eq!(sent.at, start, "delayed by the hanging receiver");
    }
    // The hanging one ran into its timeout, and was retried on its own pace.
    let again = rig.next().await;
    assert_eq!(again.host, "hook-1.test");
    assert!(again.at - start >= time::Duration::seconds(10));
    dispatcher.stop().await;
}

#[tokio::test(start_paused = true)]
async fn at_most_max_in_flight_sends_at_once() {
    let mut rig = rig();
    rig.settings.max_in_flight = 2;
    // Each in its own organization: the cap of all, not of one organization.
    let hooks: Vec<WebhookId> = (1..=3)
        .map(|n| rig.store.add_hook_of(&format!("org{n}"), n))
        .collect();
    for n in 1..=3 {
        rig.transport.answer(n, Reply::Hang);
    }
    let dispatcher = rig.start();
    let start = rig.clock.now();
    for h in &hooks {
        rig.store.queue(*h, 1, start);
    }
    let a = rig.next().await;
    let b = rig.next().await;
    let c = rig.next().await;
    assert_eq!((a.at, b.at), (start, start));
    // The third waited for a permit: until one of the first two timed out.
    assert!(
        c.at - start >= time::Duration::seconds(10),
        "{:?}",
        c.at - start
    );
    let mut hosts = vec![a.host, b.host, c.host];
    hosts.sort();
    hosts.dedup();
    assert_eq!(hosts.len(), 3);
    dispatcher.stop().await;
}

/// Issue 18, finding 4: five organizations with twenty hanging webhooks
/// each (more than `max_in_flight`) hold only their own share of the
/// slots; a sixth organization's deliveries all go out at once.
#[tokio::test(start_paused = true)]
async fn hanging_organizations_do_not_delay_another() {
    let mut rig = rig();
    let start = rig.clock.now();
    let mut n = 0;
    for org in 1..=5 {
        for _ in 0..20 {
            n += 1;
            let hook = rig.store.add_hook_of(&format!("attacker{org}"), n);
            rig.transport.answer(n, Reply::Hang);
            rig.store.queue(hook, 3, start);
        }
    }
    let healthy = rig.store.add_hook_of("victim", 1000);
    let dispatcher = rig.start();
    // Every attacker takes its share: 8 each of the 64 slots.
    let share = rig.settings.max_in_flight_per_org();
    for _ in 0..5 * share {
        assert_ne!(rig.next().await.host, "hook-1000.test");
    }
    let fast = rig.store.queue(healthy, 15, start);
    for e in &fast {
        let sent = loop {
            let sent = rig.next().await;
            if sent.host == "hook-1000.test" {
                break sent;
            }
        };
        assert_eq!(sent.event, e.to_string());
        assert_eq!(sent.at, start, "delayed by other organizations' receivers");
    }
    dispatcher.stop().await;
}

#[tokio::test(start_paused = true)]
async fn one_organization_has_at_most_its_share_in_flight() {
    let mut rig = rig();
    let share = rig.settings.max_in_flight_per_org();
    let start = rig.clock.now();
    let hooks: Vec<WebhookId> = (1..=share as u128 + 1)
        .map(|n| {
            rig.transport.answer(n, Reply::Hang);
            rig.store.add_hook(n)
        })
        .collect();
    let dispatcher = rig.start();
    for h in &hooks {
        rig.store.queue(*h, 1, start);
    }
    for _ in 0..share {
        assert_eq!(rig.next().await.at, start);
    }
    // The last one waited for one of its organization's slots.
    let last = rig.next().await;
    assert!(last.at - start >= time::Duration::seconds(10));
    dispatcher.stop().await;
}

/// Issue 18, finding 9: a webhook moved to another URL while its batch is
/// under way gets the rest of the batch at the new URL; a deleted one gets
/// nothing more.
#[tokio::test(start_paused = true)]
async fn a_change_during_a_batch_stops_it() {
    for deleted in [false, true] {
        let mut rig = rig();
        let hook = rig.store.add_hook(1);
        let dispatcher = rig.start();
        let events = rig.store.queue(hook, 12, rig.clock.now());
        // Batches of 1, 2, then 4 (events 3 to 6): the first of it hangs.
        rig.transport.answer_event(events[3], &[Reply::Hang]);
        for e in &events[..4] {
            assert_eq!(rig.next().await.event, e.to_string());
        }
        rig.store
            .change_hook(hook, (!deleted).then_some("http://hook-2.test/"));
        if deleted {
            assert!(rig.quiet_for(Duration::from_secs(86_400)).await);
        } else {
            // The rest goes to the new URL, in order; the hung one is
            // retried there after its delay.
            for e in &events[4..] {
                let sent = rig.next().await;
                assert_eq!(
                    (sent.host.as_str(), sent.event.clone()),
                    ("hook-2.test", e.to_string())
                );
            }
            let retry = rig.next().await;
            assert_eq!(
                (retry.host.as_str(), retry.event.clone()),
                ("hook-2.test", events[3].to_string())
            );
        }
        dispatcher.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_claim_of_another_process_is_left_until_it_lapses() {
    let mut rig = rig();
    let hook = rig.store.add_hook(1);
    let start = rig.clock.now();
    let [event] = <[EventId; 1]>::try_from(rig.store.queue(hook, 1, start)).unwrap();
    // Another gateway process claimed it, then died.
    rig.store.with(|s| {
        s.rows[0].claimed_until = Some(start + time::Duration::seconds(40));
    });
    let dispatcher = rig.start();
    let sent = rig.next().await;
    assert_eq!(sent.event, event.to_string());
    assert!(rig.clock.since_start(sent.at) >= Duration::from_secs(40));
    dispatcher.stop().await;
}

#[tokio::test(start_paused = true)]
async fn every_attempt_is_signed_for_standard_webhooks() {
    let mut rig = rig();
    let hook = rig.store.add_hook(1);
    let dispatcher = rig.start();
    let [event] = <[EventId; 1]>::try_from(rig.store.queue(hook, 1, rig.clock.now())).unwrap();
    let sent = rig.next().await;
    let header = |name: &str| {
        sent.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let ts = rig.clock.now().unix_timestamp();
    assert_eq!(header("webhook-id"), event.to_string());
    assert_eq!(header("webhook-timestamp"), ts.to_string());
    let body = format!(r#"{{"id":"{event}"}}"#);
    assert_eq!(
        header("webhook-signature"),
        wagate_webhooks::signature(&[secret()], &event.to_string(), ts, body.as_bytes()).unwrap()
    );
    dispatcher.stop().await;
}

#[tokio::test(start_paused = true)]
async fn stop_abandons_a_hanging_send_after_the_grace_and_leaves_it_pending() {
    let mut rig = rig();
    let hook = rig.store.add_hook(1);
    rig.transport.answer(1, Reply::Hang);
    let dispatcher = rig.start();
    let start = rig.clock.now();
    let [event] = <[EventId; 1]>::try_from(rig.store.queue(hook, 1, start)).unwrap();
    rig.next().await;
    dispatcher.stop().await;
    assert_eq!(
        rig.clock.since_start(rig.clock.now()),
        rig.settings.stop_grace
    );
    // Not recorded: still pending, claimed until its lease lapses.
    let (state, outcomes) = rig.store.row(event);
    assert_eq!((state, outcomes.len()), (DeliveryState::Pending, 0));
    let held = rig.store.with(|s| s.rows[0].claimed_until).unwrap();
    assert_eq!(held - start, span(rig.settings.lease(1)));
}

#[derive(Debug)]
struct Fixed(u8);
impl Entropy for Fixed {
    fn fill(&self, buf: &mut [u8]) {
        buf.fill(self.0);
    }
}

#[test]
fn jitter_stays_within_a_fifth_of_the_delay() {
    let d = Duration::from_secs(100);
    let low = EntropyJitter(Arc::new(Fixed(0))).apply(d);
    let high = EntropyJitter(Arc::new(Fixed(0xff))).apply(d);
    assert_eq!(low, Duration::from_secs(80));
    assert!(high > Duration::from_secs(119) && high <= Duration::from_secs(120));
    assert_eq!(
        EntropyJitter(Arc::new(Fixed(0x55))).apply(Duration::ZERO),
        Duration::ZERO
    );
}

#[test]
fn leases_outlast_every_send_of_their_batch() {
    let s = DeliverySettings::default();
    assert_eq!(s.lease(1), Duration::from_secs(16));
    assert!(s.lease(MAX_BATCH) > s.timeout * MAX_BATCH);
}

/// On the real store: a committed status change queues a delivery in its
/// transaction, the commit wakes the dispatcher through the event bus,
/// and the delivery is made and recorded.
#[tokio::test]
async fn a_committed_event_is_delivered_from_the_real_outbox() {
    use wagate_domain::{SessionStatus, SystemClock};
    use wagate_store::{SessionPatch, SessionRegistry, SqliteStore};

    let store = Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap());
    store.migrate().await.unwrap();
    let bus = Arc::new(crate::EventBus::default());
    store.set_commit_listener(bus.clone());
    let now = OffsetDateTime::now_utc();
    let org = OrgId::parse("acme").unwrap();
    let hook = Webhook {
        id: WebhookId::from_ulid(ulid::Ulid::new()),
        org: org.clone(),
        url: WebhookUrl::parse("http://hook-1.test/").unwrap(),
        events: vec![wagate_domain::EventPattern::parse("session.*", "events").unwrap()],
        session_ids: None,
        description: wagate_domain::WebhookDescription::default(),
        enabled: true,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
    };
    store.insert_webhook(&hook, &secret(), 25).await.unwrap();
    let (transport, mut seen) = FakeTransport::new(TokioClock::new());
    let dispatcher = WebhookDispatcher::start(
        DispatcherDeps {
            store: store.clone(),
            transport,
            clock: Arc::new(SystemClock),
            wake: bus.deliveries(),
            jitter: Arc::new(NoJitter),
        },
        DeliverySettings::default(),
    );
    let session = wagate_domain::Session {
        id: wagate_domain::SessionId::parse("sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX").unwrap(),
        org: org.clone(),
        name: None,
        status: SessionStatus::New,
        jid: None,
        push_name: None,
        keep_connected: false,
        created_at: now,
        updated_at: now,
        last_connected_at: None,
        last_error: None,
        pending: None,
        revision: 0,
    };
    store.insert(&session).await.unwrap();
    store
        .record_observed(
            &session.id,
            &SessionPatch::status(SessionStatus::Pairing),
            now,
        )
        .await
        .unwrap();
    let sent = tokio::time::timeout(Duration::from_secs(30), seen.recv())
        .await
        .expect("delivered")
        .unwrap();
    assert_eq!(sent.host, "hook-1.test");
    // Recorded as succeeded (the recording follows the send at once).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let log = store.deliveries(&org, &hook.id, None, 10).await.unwrap();
        if log
            .first()
            .is_some_and(|d| d.state == DeliveryState::Succeeded)
        {
            assert_eq!(log[0].event_id.to_string(), sent.event);
            assert_eq!(log[0].response_status, Some(200));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{log:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    dispatcher.stop().await;
}
