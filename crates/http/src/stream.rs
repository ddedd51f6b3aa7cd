//! The event stream (`GET /api/v1/events/stream`, server-sent events): one
//! task per client reads the log page by page and writes SSE messages into
//! a bounded buffer the response body drains.
//!
//! - It wakes on every commit of its organization in this process
//!   (`Gateway::watch_events`), and also at every keep-alive, so events
//!   written by another process on the same database arrive within one
//!   keep-alive interval.
//! - Memory is bounded: at most one page in hand and
//!   [`EventStreamConfig::buffer`] messages queued. The next event waits
//!   for room; a client that leaves its buffer full for
//!   [`EventStreamConfig::slow_client_timeout`] is disconnected (the body
//!   fails, actix closes the connection) instead of being buffered for.
//! - The credential is checked again every
//!   [`EventStreamConfig::keep_alive`], whatever the stream is doing
//!   (waiting, sending a backlog page after page, waiting for room in a
//!   slow client's buffer), so a revoked key or an expired login ends its
//!   streams within one keep-alive period. An idle stream also sends a
//!   `: keep-alive` comment then.
//! - Open streams are counted per credential and per organization
//!   ([`StreamSlots`]): one more than
//!   [`EventStreamConfig::max_per_credential`] or
//!   [`EventStreamConfig::max_per_org`] is refused (429).
//! - Streams end (cleanly, so clients reconnect with `Last-Event-ID`) when
//!   the server shuts down ([`Shutdown`]): graceful shutdown does not wait
//!   for them.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::web::Bytes;
use futures_util::Stream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use wagate_app::{AppError, EventPage};
use wagate_domain::{Event, EventCursor, OrgId, Principal};

use crate::rate_limit::Credential;

/// How event streams behave; see [`crate::AppState::with_event_stream`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventStreamConfig {
    /// A `: keep-alive` comment at least this often (the contract: at
    /// most 15 s). Also how often the credential is checked again (busy
    /// or idle) and the log is read without a wake-up.
    pub keep_alive: Duration,
    /// SSE messages queued for one client, at most.
    pub buffer: usize,
    /// How long a client may leave its buffer full before it is
    /// disconnected.
    pub slow_client_timeout: Duration,
    /// Streams one organization may have open at once (in this process).
    pub max_per_org: usize,
    /// Streams one credential (an API key; a person) may have open at once
    /// (in this process).
    pub max_per_credential: usize,
}

impl Default for EventStreamConfig {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(15),
            buffer: 256,
            slow_client_timeout: Duration::from_secs(30),
            max_per_org: 20,
            max_per_credential: 5,
        }
    }
}

/// The open streams of each organization and credential; a [`Slot`] is
/// one of them, given back when dropped.
#[derive(Debug, Default)]
pub(crate) struct StreamSlots {
    open: Mutex<OpenStreams>,
}

#[derive(Debug, Default)]
struct OpenStreams {
    per_org: HashMap<OrgId, usize>,
    per_credential: HashMap<Credential, usize>,
}

/// Why no slot was given: which cap is reached, and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TooMany {
    /// `events.max_streams_per_credential`.
    Credential(usize),
    /// `events.max_streams_per_org`.
    Org(usize),
}

impl StreamSlots {
    /// A slot for one more stream of `principal`, unless its credential
    /// or its organization has as many open as `config` allows.
    pub(crate) fn take(
        self: &Arc<Self>,
        principal: &Principal,
        config: &EventStreamConfig,
    ) -> Result<Slot, TooMany> {
        let credential = Credential::of(principal);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.per_credential.get(&credential).copied().unwrap_or(0) >= config.max_per_credential {
            return Err(TooMany::Credential(config.max_per_credential));
        }
        if open.per_org.get(&principal.org).copied().unwrap_or(0) >= config.max_per_org {
            return Err(TooMany::Org(config.max_per_org));
        }
        *open.per_credential.entry(credential.clone()).or_default() += 1;
        *open.per_org.entry(principal.org.clone()).or_default() += 1;
        Ok(Slot {
            slots: self.clone(),
            org: principal.org.clone(),
            credential,
        })
    }

    /// Streams open for `org` (for tests).
    #[cfg(test)]
    fn open_for(&self, org: &OrgId) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.per_org.get(org).copied().unwrap_or(0)
    }
}

/// One open stream, counted until dropped (its task ends).
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<StreamSlots>,
    org: OrgId,
    credential: Credential,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Counts that reach 0 leave the maps: memory follows open streams.
        if let Some(n) = open.per_org.get_mut(&self.org) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_org.remove(&self.org);
            }
        }
        if let Some(n) = open.per_credential.get_mut(&self.credential) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_credential.remove(&self.credential);
            }
        }
    }
}

/// Events read from the log per query.
pub(crate) const PAGE: u32 = 100;

/// Ends every event stream when the server stops. [`crate::server`]
/// closes it on SIGTERM and Ctrl-C; whoever stops the server otherwise
/// (a `ServerHandle`) should [`Shutdown::close`] it first, or graceful
/// shutdown waits for open streams until its timeout.
#[derive(Debug, Clone)]
pub struct Shutdown(Arc<watch::Sender<bool>>);

impl Default for Shutdown {
    fn default() -> Self {
        Self(Arc::new(watch::channel(false).0))
    }
}

impl Shutdown {
    /// Ends every open event stream (one opened afterwards ends after its
    /// first page).
    pub fn close(&self) {
        self.0.send_replace(true);
    }

    /// Whether [`Shutdown::close`] was called.
    pub fn is_closed(&self) -> bool {
        *self.0.borrow()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }

    /// Resolves once closed.
    pub(crate) async fn closed(&self) {
        closed(&mut self.subscribe()).await;
    }
}

/// Resolves once the shutdown receiver says closed (never, if its sender
/// is gone without closing).
async fn closed(rx: &mut watch::Receiver<bool>) {
    let closed = rx.wait_for(|c| *c).await.is_ok();
    if !closed {
        std::future::pending::<()>().await;
    }
}

/// Where a stream's events come from (the gateway, or a test's fake).
pub(crate) trait Source: Send + 'static {
    /// The next page after `after`.
    fn read(
        &mut self,
        after: EventCursor,
    ) -> impl Future<Output = Result<EventPage, AppError>> + Send;

    /// Whether the client's credential still lets it read.
    fn still_allowed(&mut self) -> impl Future<Output = bool> + Send;
}

/// Why a stream ended (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client went away.
    Closed,
    /// The client left its buffer full too long.
    Slow,
    /// The server stops.
    Shutdown,
    /// The client's position was pruned while it streamed.
    Gone,
    /// The credential stopped working.
    Revoked,
    /// The log could not be read.
    Failed,
}

/// One SSE message: `id`, `event`, `data` (the event object on one line).
pub(crate) fn frame(e: &Event) -> Bytes {
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        e.cursor,
        e.data.event_type(),
        e.to_json()
    ))
}

const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// Starts the stream's task, which goes on from `first` (already read, so
/// errors of the request were answered as statuses); the returned body
/// drains it.
/// `slot` is held until the task ends.
pub(crate) fn start<S: Source>(
    source: S,
    first: EventPage,
    wake: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
    config: EventStreamConfig,
    slot: Option<Slot>,
) -> SseBody {
    let (tx, rx) = mpsc::channel(config.buffer.max(1));
    let (kill, killed) = oneshot::channel();
    tokio::spawn(async move {
        let _slot = slot;
        let end = pump(source, first, wake, shutdown, &tx, config).await;
        tracing::debug!(?end, "event stream ended");
        if end == End::Slow {
            tracing::info!(
                "event stream client disconnected: its buffer stayed full for {:?}",
                config.slow_client_timeout
            );
            let _ = kill.send(());
        }
    });
    SseBody {
        rx,
        killed: Some(killed),
        done: false,
    }
}

/// When the credential is checked next: every `keep_alive`, whatever the
/// stream is doing.
struct Recheck {
    every: Duration,
    at: Instant,
}

impl Recheck {
    fn new(every: Duration) -> Self {
        Self {
            every,
            at: Instant::now() + every,
        }
    }

    fn due(&self) -> bool {
        Instant::now() >= self.at
    }

    /// Checks the credential now; `false` when it no longer lets the
    /// client read.
    async fn check<S: Source>(&mut self, source: &mut S) -> bool {
        self.at = Instant::now() + self.every;
        source.still_allowed().await
    }
}

async fn pump<S: Source>(
    mut source: S,
    first: EventPage,
    mut wake: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
    tx: &mpsc::Sender<Bytes>,
    config: EventStreamConfig,
) -> End {
    // One timer for the credential check and the keep-alive comment: an
    // idle stream gets both; a busy one is checked between its messages
    // (its messages are traffic enough).
    let mut recheck = Recheck::new(config.keep_alive);
    let mut cursor = first.next;
    let mut more = first.events.len() >= PAGE as usize;
    let mut pending = first.events;
    loop {
        for event in pending.drain(..) {
            let frame = frame(&event);
            let deadline = Instant::now() + config.slow_client_timeout;
            loop {
                tokio::select! {
                    biased;
                    () = closed(&mut shutdown) => return End::Shutdown,
                    // Also while the client's buffer is full.
                    () = tokio::time::sleep_until(recheck.at) => {
                        if !recheck.check(&mut source).await {
                            return End::Revoked;
                        }
                    }
                    room = tokio::time::timeout_at(deadline, tx.reserve()) => match room {
                        Ok(Ok(permit)) => {
                            permit.send(frame);
                            break;
                        }
                        Ok(Err(_)) => return End::Closed,
                        Err(_) => return End::Slow,
                    },
                }
            }
        }
        if more {
            // A stream always a page behind never waits below: check here.
            if recheck.due() && !recheck.check(&mut source).await {
                return End::Revoked;
            }
        } else {
            // Nothing left to read: wait for a commit or the next keep-alive.
            // The timer comes before the wake-up, so a busy organization's
            // commits never put the check off.
            tokio::select! {
                biased;
                () = closed(&mut shutdown) => return End::Shutdown,
                () = tx.closed() => return End::Closed,
                () = tokio::time::sleep_until(recheck.at) => {
                    if !recheck.check(&mut source).await {
                        return End::Revoked;
                    }
                    match tx.try_send(Bytes::from_static(KEEP_ALIVE)) {
                        // A full buffer is traffic enough.
                        Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                        Err(mpsc::error::TrySendError::Closed(_)) => return End::Closed,
                    }
                }
                changed = wake.changed() => {
                    if changed.is_err() {
                        return End::Shutdown;
                    }
                }
            }
        }
        match source.read(cursor).await {
            Ok(page) => {
                more = page.events.len() >= PAGE as usize;
                cursor = page.next;
                pending = page.events;
            }
            Err(AppError::Gone) => return End::Gone,
            Err(AppError::Forbidden { .. }) => return End::Revoked,
            Err(e) => {
                tracing::warn!(error = %e, "event stream cannot read the log");
                return End::Failed;
            }
        }
    }
}

/// The response body of a stream: what its task queued, until the task
/// ends (then the body ends) or disconnects a slow client (then it fails,
/// and actix drops the connection).
#[derive(Debug)]
pub(crate) struct SseBody {
    rx: mpsc::Receiver<Bytes>,
    killed: Option<oneshot::Receiver<()>>,
    done: bool,
}

impl Stream for SseBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(killed) = &mut this.killed {
            match Pin::new(killed).poll(cx) {
                Poll::Ready(Ok(())) => {
                    this.killed = None;
                    this.done = true;
                    this.rx.close();
                    return Poll::Ready(Some(Err(std::io::Error::other(
                        "event stream client too slow",
                    ))));
                }
                Poll::Ready(Err(_)) => this.killed = None,
                Poll::Pending => {}
            }
        }
        this.rx.poll_recv(cx).map(|m| m.map(Ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use wagate_domain::{EventData, EventId, OrgId, SessionStatus};

    fn event(seq: u64) -> Event {
        Event {
            id: EventId::from_ulid(ulid::Ulid::new()),
            cursor: EventCursor::from_seq(seq),
            org: OrgId::parse("acme").unwrap(),
            session: None,
            occurred_at: time::OffsetDateTime::UNIX_EPOCH,
            data: EventData::SessionStatus {
                status: SessionStatus::Pairing,
                previous: SessionStatus::New,
                last_error: None,
            },
        }
    }

    /// A log of `len` events, read `PAGE` at a time.
    #[derive(Clone)]
    struct Fake {
        len: u64,
        allowed: Arc<AtomicBool>,
    }

    impl Source for Fake {
        fn read(
            &mut self,
            after: EventCursor,
        ) -> impl Future<Output = Result<EventPage, AppError>> + Send {
            let len = self.len;
            async move {
                let events: Vec<_> = (after.seq() + 1..=len)
                    .take(PAGE as usize)
                    .map(event)
                    .collect();
                let next = events.last().map_or(after, |e| e.cursor);
                Ok(EventPage { events, next })
            }
        }

        fn still_allowed(&mut self) -> impl Future<Output = bool> + Send {
            let allowed = self.allowed.load(Ordering::SeqCst);
            async move { allowed }
        }
    }

    fn fake(len: u64) -> Fake {
        Fake {
            len,
            allowed: Arc::new(AtomicBool::new(true)),
        }
    }

    fn empty() -> EventPage {
        EventPage {
            events: vec![],
            next: EventCursor::START,
        }
    }

    fn config(buffer: usize) -> EventStreamConfig {
        EventStreamConfig {
            keep_alive: Duration::from_millis(20),
            buffer,
            slow_client_timeout: Duration::from_millis(100),
            ..EventStreamConfig::default()
        }
    }

    async fn next(body: &mut SseBody) -> Option<Result<Bytes, std::io::Error>> {
        tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("the stream answers in time")
    }

    #[test]
    fn a_frame_is_one_sse_message_with_the_event_on_one_line() {
        let mut e = event(7);
        e.data = EventData::SessionQr {
            code: "2@a\nb".into(),
            expires_at: time::OffsetDateTime::UNIX_EPOCH,
        };
        let text = String::from_utf8(frame(&e).to_vec()).unwrap();
        let lines: Vec<_> = text.split('\n').collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(lines[0], "id: 7");
        assert_eq!(lines[1], "event: session.qr");
        let data: serde_json::Value =
            serde_json::from_str(lines[2].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data, e.to_json());
        assert_eq!(&lines[3..], ["", ""]);
    }

    #[tokio::test]
    async fn reads_every_page_in_order_then_keeps_alive() {
        let (_commit, wake) = watch::channel(0);
        let shutdown = Shutdown::default();
        // As the handler does: the first page is read before the stream starts.
        let mut source = fake(250);
        let first = source.read(EventCursor::START).await.unwrap();
        let mut body = start(source, first, wake, shutdown.subscribe(), config(16), None);
        for seq in 1..=250 {
            let frame = next(&mut body).await.unwrap().unwrap();
            assert!(
                frame.starts_with(format!("id: {seq}\n").as_bytes()),
                "{seq}"
            );
        }
        let frame = next(&mut body).await.unwrap().unwrap();
        assert_eq!(&frame[..], KEEP_ALIVE);
        // Shutdown ends the stream cleanly.
        shutdown.close();
        loop {
            match next(&mut body).await {
                None => break,
                Some(Ok(frame)) => assert_eq!(&frame[..], KEEP_ALIVE),
                Some(Err(e)) => panic!("{e}"),
            }
        }
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_is_disconnected_not_buffered_for() {
        let (_commit, wake) = watch::channel(0);
        let shutdown = Shutdown::default();
        let mut body = start(
            fake(1000),
            empty(),
            wake,
            shutdown.subscribe(),
            config(4),
            None,
        );
        // The client reads nothing for longer than the timeout …
        let started = std::time::Instant::now();
        while !body.rx.is_closed() {
            assert!(started.elapsed() < Duration::from_secs(10), "never cut off");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // … so the body fails at once, with no more than the buffer queued.
        assert!(next(&mut body).await.unwrap().is_err());
        assert!(next(&mut body).await.is_none());
    }

    #[tokio::test]
    async fn a_revoked_credential_ends_the_stream() {
        let (_commit, wake) = watch::channel(0);
        let source = fake(0);
        let allowed = source.allowed.clone();
        let mut body = start(
            source,
            empty(),
            wake,
            Shutdown::default().subscribe(),
            config(4),
            None,
        );
        assert_eq!(&next(&mut body).await.unwrap().unwrap()[..], KEEP_ALIVE);
        allowed.store(false, Ordering::SeqCst);
        loop {
            match next(&mut body).await {
                None => break,
                Some(frame) => assert_eq!(&frame.unwrap()[..], KEEP_ALIVE),
            }
        }
    }

    /// Reads `body` until it ends; fails if it is still going after
    /// `limit` (the stream would never end by itself).
    async fn ends_within(body: &mut SseBody, limit: Duration) {
        let until = std::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(until.into(), body.next()).await {
                Ok(None) => return,
                Ok(Some(frame)) => {
                    frame.unwrap();
                }
                Err(_) => {
                    panic!("the stream still runs {limit:?} after its credential was revoked")
                }
            }
        }
    }

    #[tokio::test]
    async fn a_revoked_credential_ends_a_stream_that_is_always_a_page_behind() {
        let (_commit, wake) = watch::channel(0);
        // A log that never runs out: every read finds a full page.
        let source = fake(u64::MAX / 2);
        let allowed = source.allowed.clone();
        let first = EventPage {
            events: (1..=u64::from(PAGE)).map(event).collect(),
            next: EventCursor::from_seq(u64::from(PAGE)),
        };
        let mut body = start(
            source,
            first,
            wake,
            Shutdown::default().subscribe(),
            config(4),
            None,
        );
        for _ in 0..10 {
            next(&mut body).await.unwrap().unwrap();
        }
        allowed.store(false, Ordering::SeqCst);
        // The client keeps reading as fast as it can.
        ends_within(&mut body, Duration::from_secs(10)).await;
    }

    /// An organization so busy that a commit is always waiting when the
    /// stream has caught up: every read is followed by another commit.
    struct Busy(Fake, watch::Sender<u64>);

    impl Source for Busy {
        fn read(
            &mut self,
            after: EventCursor,
        ) -> impl Future<Output = Result<EventPage, AppError>> + Send {
            self.1.send_modify(|n| *n += 1);
            // The commits are other sessions' events: this stream filters
            // them out.
            self.0.read(after)
        }

        fn still_allowed(&mut self) -> impl Future<Output = bool> + Send {
            self.0.still_allowed()
        }
    }

    #[tokio::test]
    async fn a_revoked_credential_ends_the_stream_of_a_busy_organization() {
        let (commit, wake) = watch::channel(0);
        commit.send_modify(|n| *n += 1);
        let source = fake(0);
        let allowed = source.allowed.clone();
        let mut body = start(
            Busy(source, commit),
            empty(),
            wake,
            Shutdown::default().subscribe(),
            config(4),
            None,
        );
        allowed.store(false, Ordering::SeqCst);
        ends_within(&mut body, Duration::from_secs(10)).await;
    }

    #[test]
    fn streams_are_capped_per_credential_and_per_organization() {
        use wagate_domain::{ApiKeyId, CapabilitySet, PrincipalKind};
        let slots = Arc::new(StreamSlots::default());
        let config = EventStreamConfig {
            max_per_org: 3,
            max_per_credential: 2,
            ..EventStreamConfig::default()
        };
        let key = |org: &str, n: u128| Principal {
            org: OrgId::parse(org).unwrap(),
            capabilities: CapabilitySet::ALL,
            kind: PrincipalKind::ApiKey(ApiKeyId::from_ulid(ulid::Ulid::from(n))),
            credential_expires_at: None,
        };
        let acme = OrgId::parse("acme").unwrap();
        let a1 = slots.take(&key("acme", 1), &config).unwrap();
        let a2 = slots.take(&key("acme", 1), &config).unwrap();
        assert_eq!(
            slots.take(&key("acme", 1), &config).unwrap_err(),
            TooMany::Credential(2)
        );
        let b1 = slots.take(&key("acme", 2), &config).unwrap();
        assert_eq!(
            slots.take(&key("acme", 2), &config).unwrap_err(),
            TooMany::Org(3)
        );
        // Another organization is not held back by this one.
        let other = slots.take(&key("umbrella", 3), &config).unwrap();
        assert_eq!(slots.open_for(&acme), 3);
        // A stream that ends gives its slot back.
        drop(a1);
        let a3 = slots.take(&key("acme", 1), &config).unwrap();
        drop((a2, a3, b1, other));
        assert_eq!(slots.open_for(&acme), 0);
        let open = slots.open.lock().unwrap();
        assert!(open.per_org.is_empty() && open.per_credential.is_empty());
    }

    /// A log that grows when the test says so.
    struct Growing(Fake, Arc<std::sync::atomic::AtomicU64>);

    impl Source for Growing {
        fn read(
            &mut self,
            after: EventCursor,
        ) -> impl Future<Output = Result<EventPage, AppError>> + Send {
            self.0.len = self.1.load(Ordering::SeqCst);
            self.0.read(after)
        }

        fn still_allowed(&mut self) -> impl Future<Output = bool> + Send {
            self.0.still_allowed()
        }
    }

    #[tokio::test]
    async fn a_commit_wakes_the_stream() {
        let (commit, wake) = watch::channel(0);
        let len = Arc::new(std::sync::atomic::AtomicU64::new(0));
        // No keep-alive in the test's time: only the commit can wake it.
        let config = EventStreamConfig {
            keep_alive: Duration::from_secs(3600),
            ..config(4)
        };
        let mut body = start(
            Growing(fake(0), len.clone()),
            empty(),
            wake,
            Shutdown::default().subscribe(),
            config,
            None,
        );
        len.store(2, Ordering::SeqCst);
        commit.send_modify(|n| *n += 1);
        assert!(
            next(&mut body)
                .await
                .unwrap()
                .unwrap()
                .starts_with(b"id: 1\n")
        );
        assert!(
            next(&mut body)
                .await
                .unwrap()
                .unwrap()
                .starts_with(b"id: 2\n")
        );
    }
}
