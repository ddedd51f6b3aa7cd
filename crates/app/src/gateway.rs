use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;
use wagate_domain::{
    Capability, Clock, DomainError, OrgId, Principal, RateLimit, Session, SessionId, SessionStatus,
    TokenBucket, since_unix_epoch,
};
use wagate_store::{
    ApiKeyCache, ApiKeyStore, Entropy, EventLog, GroupStore, MessageStore, SessionPatch,
    SessionRegistry, WebhookStore,
};
use wagate_webhooks::{MediaFetcher, WebhookTargets};
use wagate_whatsapp_port::{WhatsAppError, WhatsAppPort};

use crate::lifecycle::{Lifecycle, offline_status};
use crate::{AppError, MessagingSettings, Outbox};

/// What a [`Gateway`] is built from: the ports, and the few settings the use
/// cases need.
#[derive(Debug, Clone)]
pub struct GatewayDeps {
    /// Sessions.
    pub sessions: Arc<dyn SessionRegistry>,
    /// API keys.
    pub api_keys: Arc<dyn ApiKeyStore>,
    /// WhatsApp.
    pub whatsapp: Arc<dyn WhatsAppPort>,
    /// Told when a key is revoked, so it stops working at once.
    pub api_key_cache: Arc<dyn ApiKeyCache>,
    /// Randomness for new API keys.
    pub entropy: Arc<dyn Entropy>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Deadline of a WhatsApp call (`whatsapp.request_timeout_secs`).
    pub request_timeout: Duration,
    /// The event log (read side; events are written with the state changes).
    pub events: Arc<dyn EventLog>,
    /// Webhooks and their deliveries.
    pub webhooks: Arc<dyn WebhookStore>,
    /// The SSRF rule for webhook URLs.
    pub webhook_targets: Arc<dyn WebhookTargets>,
    /// Told by the store when events commit; wakes streams and deliveries.
    pub bus: Arc<crate::EventBus>,
    /// Pace of live WhatsApp calls per session
    /// (`limits.whatsapp_calls_per_minute`); `None`: unpaced.
    pub whatsapp_pacing: Option<RateLimit>,
    /// Messages, the send queue and idempotency keys.
    pub messages: Arc<dyn MessageStore>,
    /// The groups of each session's account.
    pub groups: Arc<dyn GroupStore>,
    /// Downloads media given by URL (under the webhooks' SSRF rule).
    pub media_fetcher: Arc<dyn MediaFetcher>,
    /// `messages.*`.
    pub messaging: MessagingSettings,
}

/// All of wagate's use cases. Cheap to share (`Arc<Gateway>`); every
/// method is safe to call concurrently.
pub struct Gateway {
    pub(crate) deps: GatewayDeps,
    /// Monotonic, so ids made in the same millisecond still sort in order.
    ids: UlidSource,
    /// API-key administration (the CLI uses it alone).
    pub(crate) keys: crate::ApiKeyAdmin,
    /// Lifecycle calls: one at a time per session, each a task that
    /// finishes even when its caller stopped waiting.
    pub(crate) lifecycle: Lifecycle,
    /// One bucket per session that made live WhatsApp calls lately, under
    /// `deps.whatsapp_pacing` (full buckets are forgotten).
    pacing: Mutex<HashMap<SessionId, TokenBucket>>,
    /// Sends accepted messages.
    pub(crate) outbox: Arc<Outbox>,
    /// Most webhooks of one organization (`webhooks.max_per_org`).
    pub(crate) max_webhooks_per_org: u32,
    /// The cluster's leases, when several gateways share the database
    /// ([`Gateway::set_leases`]).
    pub(crate) leases: std::sync::OnceLock<Arc<dyn wagate_store::NodeLeases>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("deps", &self.deps)
            .finish_non_exhaustive()
    }
}

/// Pacing buckets kept before full ones are swept out.
const PACING_SWEEP_AT: usize = 1024;

/// New ULIDs, monotonic: ids made in the same millisecond still sort in
/// the order they were made.
#[derive(Default)]
pub(crate) struct UlidSource(Mutex<ulid::Generator>);

impl std::fmt::Debug for UlidSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UlidSource")
    }
}

impl UlidSource {
    pub(crate) fn next(&self, now: OffsetDateTime) -> ulid::Ulid {
        let now = std::time::SystemTime::UNIX_EPOCH
            + Duration::from_millis(
                u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0),
            );
        let mut ids = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Overflow needs 2^80 ids in one millisecond; fall back to a plain one.
        ids.generate_from_datetime(now)
            .unwrap_or_else(|_| ulid::Ulid::from_datetime(now))
    }
}

/// Which answer a "not found" from WhatsApp becomes, per use case.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdapterContext {
    /// The session's status, for `NotConnected` and `Conflict` details.
    pub status: SessionStatus,
    /// The message of a 404 (`None`: WhatsApp has no business saying so).
    pub not_found: Option<&'static str>,
}

impl Gateway {
    /// A gateway over `deps`.
    pub fn new(deps: GatewayDeps) -> Self {
        let lifecycle = Lifecycle::new(
            deps.sessions.clone(),
            deps.whatsapp.clone(),
            deps.clock.clone(),
            deps.request_timeout,
        );
        let outbox = Arc::new(Outbox::new(
            deps.messages.clone(),
            deps.whatsapp.clone(),
            deps.clock.clone(),
            deps.entropy.clone(),
            deps.messaging.clone(),
        ));
        let keys = crate::ApiKeyAdmin::new(
            deps.api_keys.clone(),
            deps.api_key_cache.clone(),
            deps.entropy.clone(),
            deps.clock.clone(),
        );
        Self {
            deps,
            ids: UlidSource::default(),
            keys,
            lifecycle,
            pacing: Mutex::new(HashMap::new()),
            outbox,
            max_webhooks_per_org: crate::DEFAULT_MAX_WEBHOOKS_PER_ORG,
            leases: std::sync::OnceLock::new(),
        }
    }

    /// At most `max` webhooks per organization (`webhooks.max_per_org`;
    /// [`DEFAULT_MAX_WEBHOOKS_PER_ORG`](crate::DEFAULT_MAX_WEBHOOKS_PER_ORG)
    /// unless set): they bound what one organization's event costs the
    /// store's single writer (a delivery row per webhook) and how many
    /// deliveries it has in flight.
    #[must_use]
    pub fn with_max_webhooks_per_org(mut self, max: u32) -> Self {
        self.max_webhooks_per_org = max.max(1);
        self
    }

    /// The outbox that sends accepted messages (give it to the
    /// [`crate::SessionEventRecorder`], so reconnects resume sending).
    pub fn outbox(&self) -> Arc<Outbox> {
        self.outbox.clone()
    }

    /// After a restart, once serving: sends again every pending message
    /// (under its id). How many sessions have some.
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer.
    pub async fn resume_outbox(&self) -> Result<usize, AppError> {
        self.outbox.resume().await
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        self.deps.clock.now()
    }

    pub(crate) fn new_ulid(&self) -> ulid::Ulid {
        self.ids.next(self.now())
    }

    /// Fails with `Forbidden` unless the caller holds `cap`. Always the first
    /// step of a use case.
    pub(crate) fn require(principal: &Principal, cap: Capability) -> Result<(), AppError> {
        if principal.can(cap) {
            Ok(())
        } else {
            Err(AppError::Forbidden { required: cap })
        }
    }

    /// The caller's session `id`, or "not found".
    pub(crate) async fn owned_session(
        &self,
        org: &OrgId,
        id: &SessionId,
    ) -> Result<Session, AppError> {
        self.deps
            .sessions
            .get(org, id)
            .await?
            .ok_or_else(AppError::session_not_found)
    }

    /// Takes one of session `id`'s live-call tokens.
    ///
    /// # Errors
    ///
    /// `RateLimited` when the session has used up its pace.
    pub(crate) fn pace(&self, id: &SessionId) -> Result<(), AppError> {
        let Some(limit) = &self.deps.whatsapp_pacing else {
            return Ok(());
        };
        // The injected clock's time; a step back refills nothing.
        let now = since_unix_epoch(self.now());
        let mut buckets = self.pacing.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= PACING_SWEEP_AT {
            buckets.retain(|_, b| !b.is_full(now));
        }
        buckets
            .entry(*id)
            .or_insert_with(|| TokenBucket::full(now))
            .take(limit, now)
            .map_err(|wait| AppError::RateLimited { retry_after: wait })
    }

    /// Runs a WhatsApp call within the request deadline, mapping its error.
    pub(crate) async fn whatsapp<T>(
        &self,
        ctx: AdapterContext,
        call: impl Future<Output = Result<T, WhatsAppError>>,
    ) -> Result<T, AppError> {
        match tokio::time::timeout(self.deps.request_timeout, call).await {
            Ok(result) => result.map_err(|e| adapter_error(e, ctx)),
            Err(_) => Err(AppError::Timeout),
        }
    }

    /// Whether the database answers.
    pub async fn is_ready(&self) -> bool {
        self.deps.sessions.ping().await.is_ok()
    }

    /// How many sessions are in each status, every status listed (for
    /// metrics).
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer.
    pub async fn sessions_by_status(&self) -> Result<Vec<(SessionStatus, u64)>, AppError> {
        let counts = self.deps.sessions.count_by_status().await?;
        Ok(SessionStatus::ALL
            .into_iter()
            .map(|s| {
                (
                    s,
                    counts.iter().find(|(c, _)| *c == s).map_or(0, |(_, n)| *n),
                )
            })
            .collect())
    }

    /// First half of resuming after a restart, to run before serving: the
    /// statuses from before the restart are stale (no client runs now), so
    /// every session to keep connected is marked `connecting`, and every
    /// other one that claimed a running client gets its offline status.
    /// Returns what [`Gateway::resume_sessions`] must act on.
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer.
    pub async fn prepare_resume(&self) -> Result<Vec<Session>, AppError> {
        let sessions = self.deps.sessions.to_resume().await?;
        for chunk in sessions.chunks(MARK_BATCH) {
            let marks: Vec<_> = chunk.iter().map(|s| (s.id, resume_mark(s))).collect();
            for (marked, (id, _)) in self
                .deps
                .sessions
                .record_observed_all(&marks, self.now())
                .await?
                .into_iter()
                .zip(&marks)
            {
                // Fenced: another gateway's now (it resumes it there).
                if let Err(e) = marked {
                    tracing::warn!(session = %id, error = %e, "could not mark a session to resume");
                }
            }
        }
        Ok(sessions)
    }

    /// Second half: for each of `sessions`, under its lifecycle lock and
    /// decided on its row as it is *now* (requests are served meanwhile, and
    /// a disconnect, logout or delete made since the start is never undone):
    /// finishes a logout or delete the last run left pending, and connects
    /// again, with its stored JID (no new QR), one still to keep connected.
    /// One that cannot even start is recorded offline with a `lastError`.
    /// Returns how many started connecting.
    ///
    /// Paced at [`DEFAULT_RESUME_RATE`] sessions per second; see
    /// [`Gateway::resume_sessions_at`].
    pub async fn resume_sessions(&self, sessions: Vec<Session>) -> usize {
        self.resume_sessions_at(sessions, DEFAULT_RESUME_RATE).await
    }

    /// [`Gateway::resume_sessions`], starting at most `per_second` sessions
    /// a second (`whatsapp.live.resume_rate`; 0: unpaced), in order, several
    /// at once: at most [`RESUME_IN_FLIGHT`] (and at most `per_second`)
    /// resume calls run at the same time, each on its own task under its
    /// session's lock. Starts follow a fixed schedule, one every
    /// `1/per_second` s; a start late by more than [`RESUME_SLACK`] (the
    /// calls in flight were slow) moves the schedule on instead of catching
    /// up in a burst.
    pub async fn resume_sessions_at(&self, sessions: Vec<Session>, per_second: u32) -> usize {
        let lifecycle = self.lifecycle.clone();
        paced(sessions, per_second, move |s: Session| {
            let lifecycle = lifecycle.clone();
            async move {
                let (org, id) = (s.org.clone(), s.id);
                let done = lifecycle
                    .run_to_end(id, move |l| async move { l.resume(&org, &id).await })
                    .await;
                match done {
                    Ok(true) => 1,
                    Ok(false) => 0,
                    Err(e) => {
                        tracing::warn!(session = %id, error = %e, "could not resume session");
                        0
                    }
                }
            }
        })
        .await
    }
}

/// Sessions marked in one transaction before a resume: a restart of
/// 10,000 sessions commits ten times, not 10,000 (each commit an fsync on
/// SQLite), and the writer is free for others between the batches.
pub(crate) const MARK_BATCH: usize = 1000;

/// What a session to resume shows until its client reports: `connecting`
/// when it is to be kept connected (and no logout or delete is pending),
/// its offline status otherwise.
pub(crate) fn resume_mark(s: &Session) -> SessionPatch {
    SessionPatch::status(if s.keep_connected && s.pending.is_none() {
        SessionStatus::Connecting
    } else {
        offline_status(s)
    })
}

/// Sessions [`Gateway::resume_sessions`] starts per second after a restart
/// (the default of `whatsapp.live.resume_rate`): slow enough for WhatsApp's
/// own servers.
pub const DEFAULT_RESUME_RATE: u32 = 20;

/// Resume calls [`Gateway::resume_sessions_at`] runs at once, at most.
pub const RESUME_IN_FLIGHT: usize = 64;

/// How late a paced start may be and still keep the schedule (timer
/// granularity); later, the schedule moves on.
pub const RESUME_SLACK: Duration = Duration::from_millis(10);

/// Longest the runtime may take to come back to a task that yielded before
/// the next resume starts: past this, live traffic (API calls, running
/// clients) is waiting behind logins, and the resume waits for it.
pub const RESUME_MAX_LAG: Duration = Duration::from_millis(2);

/// How late the runtime is: yields, and measures how long the scheduler
/// takes to come back to this task.
async fn scheduler_lag() -> Duration {
    let asked = tokio::time::Instant::now();
    tokio::task::yield_now().await;
    asked.elapsed()
}

/// Waits until `lag` reports the runtime is not behind (see
/// [`RESUME_MAX_LAG`]), pausing 5 ms between measures, for at most ~1 s.
async fn when_runtime_keeps_up<L, LF>(lag: &mut L)
where
    L: FnMut() -> LF,
    LF: Future<Output = Duration>,
{
    for _ in 0..200 {
        if lag().await <= RESUME_MAX_LAG {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The time between two starts at `per_second`, `None` when unpaced.
fn resume_period(per_second: u32) -> Option<Duration> {
    (per_second > 0).then(|| Duration::from_secs(1) / per_second)
}

/// Runs `start(item)` for each of `items`, in order, each on a task of its
/// own: at most `per_second` started a second (0: unpaced) and at most
/// [`RESUME_IN_FLIGHT`] (and at most `per_second`) running at once. Starts
/// keep a fixed schedule, one every `1/per_second` s, unless one is later
/// than [`RESUME_SLACK`]: then the schedule moves on from it rather than
/// catching up in a burst. A start also waits while the runtime is behind
/// ([`RESUME_MAX_LAG`]), so that a mass resume takes the CPU that live
/// traffic leaves, not the other way round. Returns the sum of what the
/// tasks return.
async fn paced<T, F, Fut>(items: Vec<T>, per_second: u32, start: F) -> usize
where
    F: FnMut(T) -> Fut,
    Fut: Future<Output = usize> + Send + 'static,
{
    paced_by(items, per_second, start, scheduler_lag).await
}

/// [`paced`], measuring the runtime's lag with `lag`.
async fn paced_by<T, F, Fut, L, LF>(
    items: Vec<T>,
    per_second: u32,
    mut start: F,
    mut lag: L,
) -> usize
where
    F: FnMut(T) -> Fut,
    Fut: Future<Output = usize> + Send + 'static,
    L: FnMut() -> LF,
    LF: Future<Output = Duration>,
{
    let period = resume_period(per_second);
    let in_flight = match per_second {
        0 => RESUME_IN_FLIGHT,
        n => usize::try_from(n).map_or(RESUME_IN_FLIGHT, |n| n.min(RESUME_IN_FLIGHT)),
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let mut running = tokio::task::JoinSet::new();
    let mut next = tokio::time::Instant::now();
    let mut total = 0;
    let tally = |joined: Result<usize, tokio::task::JoinError>| {
        joined.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "a resume task failed");
            0
        })
    };
    for item in items {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break; // never closed
        };
        if let Some(period) = period {
            tokio::time::sleep_until(next).await;
            let now = tokio::time::Instant::now();
            next = next.max(now.checked_sub(RESUME_SLACK).unwrap_or(now)) + period;
        }
        when_runtime_keeps_up(&mut lag).await;
        let task = start(item);
        running.spawn(async move {
            let _slot = slot;
            task.await
        });
        while let Some(joined) = running.try_join_next() {
            total += tally(joined);
        }
    }
    while let Some(joined) = running.join_next().await {
        total += tally(joined);
    }
    total
}

/// The one mapping of adapter errors to use-case errors.
pub(crate) fn adapter_error(e: WhatsAppError, ctx: AdapterContext) -> AppError {
    match e {
        WhatsAppError::NotConnected => AppError::NotConnected { status: ctx.status },
        WhatsAppError::NotPairing => AppError::Conflict {
            message: "session is not pairing",
            status: Some(ctx.status),
        },
        WhatsAppError::NotFound(reason) => match ctx.not_found {
            Some(what) => AppError::NotFound { what, reason },
            None => AppError::Internal(
                "the WhatsApp adapter answered 'not found' to a lifecycle call".into(),
            ),
        },
        WhatsAppError::InvalidTarget(m) => AppError::InvalidArgument(DomainError::new("jid", m)),
        WhatsAppError::NotPermitted(_) => AppError::Conflict {
            message: "WhatsApp does not let the account do this (only the group's admins may)",
            status: None,
        },
        WhatsAppError::NotOnWhatsApp => AppError::InvalidArgument(DomainError::new(
            "jid",
            "the number has no WhatsApp account",
        )),
        WhatsAppError::Timeout => AppError::Timeout,
        WhatsAppError::Unavailable(m) => AppError::Unavailable(m),
        // Not the caller's input, and not transient: logged, a 500.
        WhatsAppError::Refused(r) => AppError::Internal(format!("WhatsApp refused: {r}")),
        WhatsAppError::Internal(m) => AppError::Internal(m),
    }
}

#[cfg(test)]
mod paced_tests {
    //! The pace of resuming, on tokio's paused clock (no real waiting).

    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::time::Instant;

    use super::*;

    /// What the started tasks saw: when each started, how many ran at most.
    #[derive(Default)]
    struct Seen {
        starts: Mutex<Vec<(usize, Instant)>>,
        running: AtomicUsize,
        most: AtomicUsize,
    }

    /// Resumes `n` items at `per_second`, each taking `takes`.
    async fn run(n: usize, per_second: u32, takes: Duration) -> (Arc<Seen>, usize, Duration) {
        let seen = Arc::new(Seen::default());
        let begin = Instant::now();
        let total = paced((0..n).collect(), per_second, |i| {
            let seen = seen.clone();
            async move {
                seen.starts
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((i, Instant::now()));
                let now = seen.running.fetch_add(1, Ordering::SeqCst) + 1;
                seen.most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(takes).await;
                seen.running.fetch_sub(1, Ordering::SeqCst);
                usize::from(i % 2 == 0)
            }
        })
        .await;
        (seen, total, begin.elapsed())
    }

    /// A runtime that is behind holds starts back: while the lag measured
    /// is over [`RESUME_MAX_LAG`], nothing starts; once it is back under,
    /// the rest start.
    #[tokio::test(start_paused = true)]
    async fn a_runtime_that_is_behind_holds_starts_back() {
        let measures = Arc::new(AtomicUsize::new(0));
        let begin = Instant::now();
        let lag = {
            let measures = measures.clone();
            move || {
                // Behind for the first 10 measures, then keeping up.
                let n = measures.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 10 {
                        RESUME_MAX_LAG * 3
                    } else {
                        Duration::ZERO
                    }
                }
            }
        };
        let started = Arc::new(Mutex::new(Vec::new()));
        let total = paced_by(
            (0..5).collect::<Vec<usize>>(),
            0,
            |_| {
                let started = started.clone();
                async move {
                    started
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(Instant::now() - begin);
                    1
                }
            },
            lag,
        )
        .await;
        assert_eq!(total, 5);
        let started = started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        // Ten measures behind, 5 ms apart, before the first start.
        assert_eq!(started.len(), 5);
        assert!(
            started.iter().all(|at| *at >= Duration::from_millis(50)),
            "{started:?}"
        );
        assert_eq!(measures.load(Ordering::SeqCst), 15);
    }

    fn starts(seen: &Seen) -> Vec<(usize, Instant)> {
        seen.starts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    #[tokio::test(start_paused = true)]
    async fn starts_follow_the_rate() {
        let (seen, total, took) = run(25, 10, Duration::ZERO).await;
        assert_eq!(total, 13, "the tasks' answers are summed");
        let starts = starts(&seen);
        assert_eq!(starts.len(), 25);
        let first = starts[0].1;
        for (k, (i, at)) in starts.iter().enumerate() {
            assert_eq!(*i, k, "in order");
            assert_eq!(*at - first, Duration::from_millis(100) * k as u32);
        }
        assert_eq!(took, Duration::from_millis(2400));
    }

    #[tokio::test(start_paused = true)]
    async fn unpaced_runs_a_bounded_number_at_once() {
        let (seen, total, took) = run(200, 0, Duration::from_secs(1)).await;
        assert_eq!(total, 100);
        assert_eq!(seen.most.load(Ordering::SeqCst), RESUME_IN_FLIGHT);
        assert_eq!(took, Duration::from_secs(4), "200 in rounds of 64");
    }

    #[tokio::test(start_paused = true)]
    async fn slow_calls_hold_the_pace_back_without_a_burst_after() {
        // 5 a second, each taking 3 s: at most 5 at once, and never more
        // than 5 starts within a second, also once slots free up again.
        let (seen, total, _) = run(20, 5, Duration::from_secs(3)).await;
        assert_eq!(total, 10);
        assert_eq!(seen.most.load(Ordering::SeqCst), 5);
        let starts = starts(&seen);
        assert_eq!(starts.len(), 20);
        for w in starts.windows(6) {
            assert!(
                w[5].1 - w[0].1 >= Duration::from_secs(1) - RESUME_SLACK,
                "6 starts within a second: {:?}",
                w.iter()
                    .map(|(_, at)| *at - starts[0].1)
                    .collect::<Vec<_>>()
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_high_rate_is_bounded_by_the_calls_in_flight() {
        let (seen, total, took) = run(640, 1000, Duration::from_millis(100)).await;
        assert_eq!(total, 320);
        assert_eq!(seen.most.load(Ordering::SeqCst), RESUME_IN_FLIGHT);
        // 64 in flight, each 100 ms: 640 per second at best.
        assert!(took >= Duration::from_secs(1), "{took:?}");
        assert!(took < Duration::from_millis(1200), "{took:?}");
    }

    #[test]
    fn the_period_of_a_rate() {
        assert_eq!(resume_period(0), None);
        assert_eq!(resume_period(20), Some(Duration::from_millis(50)));
        assert_eq!(resume_period(1000), Some(Duration::from_millis(1)));
    }
}
