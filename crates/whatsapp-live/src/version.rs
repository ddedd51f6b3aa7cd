//! The WhatsApp Web version every client announces: pinned by
//! configuration, or learned once per process and shared by every client.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use wagate_domain::Clock;

use crate::config::version_text;

/// A learned version is trusted this long before it is fetched again.
const FRESH_FOR: time::Duration = time::Duration::days(1);
/// After a failed fetch, callers are told so at once for this long instead
/// of each queueing for its own fetch (an offline machine with many
/// sessions would otherwise serialize one timeout per session).
const FAILURE_HOLD: time::Duration = time::Duration::seconds(30);
/// The longest one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(20);

/// Where a version comes from when it is not pinned.
#[async_trait]
pub(crate) trait VersionSource: Send + Sync + fmt::Debug {
    /// Asks for the current version.
    async fn fetch(&self) -> Result<(u32, u32, u32), String>;
}

/// WhatsApp Web's service-worker script, read through whatsapp-rust's own
/// fetcher and HTTP client.
pub(crate) struct WebVersionSource {
    http: Arc<dyn whatsapp_rust::http::HttpClient>,
}

impl WebVersionSource {
    pub(crate) fn new() -> Self {
        Self {
            http: Arc::new(whatsapp_rust::http::UreqHttpClient::new()),
        }
    }
}

impl fmt::Debug for WebVersionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebVersionSource")
    }
}

#[async_trait]
impl VersionSource for WebVersionSource {
    async fn fetch(&self) -> Result<(u32, u32, u32), String> {
        whatsapp_rust::version::fetch_latest_app_version(&self.http)
            .await
            .map_err(|e| format!("{e:#}"))
    }
}

#[derive(Debug, Clone)]
enum Cached {
    Empty,
    Good {
        version: (u32, u32, u32),
        at: OffsetDateTime,
    },
    Failed {
        message: String,
        at: OffsetDateTime,
        stale: Option<(u32, u32, u32)>,
    },
}

/// Hands every client the same version: the pinned one, or one fetch per
/// day shared by all sessions (single-flight).
#[derive(Debug)]
pub(crate) struct VersionResolver {
    pinned: Option<(u32, u32, u32)>,
    source: Arc<dyn VersionSource>,
    clock: Arc<dyn Clock>,
    cache: tokio::sync::Mutex<Cached>,
}

impl VersionResolver {
    pub(crate) fn new(
        pinned: Option<(u32, u32, u32)>,
        source: Arc<dyn VersionSource>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            pinned,
            source,
            clock,
            cache: tokio::sync::Mutex::new(Cached::Empty),
        }
    }

    /// Whether the version is pinned by configuration.
    pub(crate) fn is_pinned(&self) -> bool {
        self.pinned.is_some()
    }

    /// The version to announce now.
    ///
    /// Holds one async lock while a fetch runs, so concurrent callers share
    /// it; a fetch is bounded by [`FETCH_TIMEOUT`]. When a refetch fails, the
    /// last good version keeps being used.
    pub(crate) async fn get(&self) -> Result<(u32, u32, u32), String> {
        if let Some(v) = self.pinned {
            return Ok(v);
        }
        let mut cache = self.cache.lock().await;
        let now = self.clock.now();
        let stale = match &*cache {
            Cached::Good { version, at } if now - *at < FRESH_FOR => return Ok(*version),
            Cached::Good { version, .. } => Some(*version),
            Cached::Failed { message, at, stale } if now - *at < FAILURE_HOLD => {
                return stale.ok_or_else(|| message.clone());
            }
            Cached::Failed { stale, .. } => *stale,
            Cached::Empty => None,
        };
        let fetched = tokio::time::timeout(FETCH_TIMEOUT, self.source.fetch())
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} s", FETCH_TIMEOUT.as_secs())));
        let now = self.clock.now();
        match fetched {
            Ok(version) => {
                tracing::info!(version = %version_text(version), "learned the current WhatsApp Web version");
                *cache = Cached::Good { version, at: now };
                Ok(version)
            }
            Err(e) => {
                let message = format!("could not learn the current WhatsApp Web version: {e}");
                tracing::warn!(error = %message, "version fetch failed");
                *cache = Cached::Failed {
                    message: message.clone(),
                    at: now,
                    stale,
                };
                stale.ok_or(message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Debug)]
    struct ManualClock(Mutex<OffsetDateTime>);
    impl ManualClock {
        fn advance(&self, d: time::Duration) {
            if let Ok(mut t) = self.0.lock() {
                *t += d;
            }
        }
    }
    impl Clock for ManualClock {
        fn now(&self) -> OffsetDateTime {
            self.0
                .lock()
                .map(|t| *t)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        }
    }

    type Answer = Result<(u32, u32, u32), String>;

    #[derive(Debug, Default)]
    struct Scripted {
        calls: AtomicUsize,
        answers: Mutex<Vec<Answer>>,
    }
    #[async_trait]
    impl VersionSource for Scripted {
        async fn fetch(&self) -> Result<(u32, u32, u32), String> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            self.answers.lock().unwrap().remove(0)
        }
    }

    fn setup(answers: Vec<Answer>) -> (VersionResolver, Arc<Scripted>, Arc<ManualClock>) {
        let source = Arc::new(Scripted {
            answers: Mutex::new(answers),
            ..Scripted::default()
        });
        let clock = Arc::new(ManualClock(Mutex::new(OffsetDateTime::UNIX_EPOCH)));
        let r = VersionResolver::new(None, source.clone(), clock.clone());
        (r, source, clock)
    }

    #[tokio::test]
    async fn pinned_never_fetches() {
        let source = Arc::new(Scripted::default());
        let clock = Arc::new(ManualClock(Mutex::new(OffsetDateTime::UNIX_EPOCH)));
        let r = VersionResolver::new(Some((2, 3000, 7)), source.clone(), clock);
        assert!(r.is_pinned());
        assert_eq!(r.get().await, Ok((2, 3000, 7)));
        assert_eq!(source.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn one_shared_fetch_cached_for_a_day() {
        let (r, source, clock) = setup(vec![Ok((2, 3000, 1)), Ok((2, 3000, 2))]);
        let r = Arc::new(r);
        let all = futures_join(&r, 8).await;
        assert!(all.iter().all(|v| *v == Ok((2, 3000, 1))));
        assert_eq!(source.calls.load(Ordering::SeqCst), 1);
        clock.advance(time::Duration::hours(23));
        assert_eq!(r.get().await, Ok((2, 3000, 1)));
        assert_eq!(source.calls.load(Ordering::SeqCst), 1);
        clock.advance(time::Duration::hours(2));
        assert_eq!(r.get().await, Ok((2, 3000, 2)));
        assert_eq!(source.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn failures_are_held_briefly_and_stale_versions_survive() {
        let (r, source, clock) = setup(vec![
            Err("offline".into()),
            Ok((2, 3000, 1)),
            Err("offline again".into()),
        ]);
        let e = r.get().await.unwrap_err();
        assert!(e.contains("offline"), "{e}");
        // Within the hold: no new fetch.
        assert!(r.get().await.is_err());
        assert_eq!(source.calls.load(Ordering::SeqCst), 1);
        clock.advance(time::Duration::seconds(31));
        assert_eq!(r.get().await, Ok((2, 3000, 1)));
        clock.advance(time::Duration::days(2));
        // The refetch fails: the last good version is kept.
        assert_eq!(r.get().await, Ok((2, 3000, 1)));
        assert_eq!(r.get().await, Ok((2, 3000, 1)));
        assert_eq!(source.calls.load(Ordering::SeqCst), 3);
    }

    async fn futures_join(r: &Arc<VersionResolver>, n: usize) -> Vec<Answer> {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let r = r.clone();
                tokio::spawn(async move { r.get().await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }
}
