//! Request limits per credential: one token bucket per API key, or per
//! person (organization + subject) for login JWTs.
//!
//! A bucket holds up to `burst` tokens and refills at `requests_per_second`;
//! a request takes one token or is refused with the time until the next one.
//! A bucket that has refilled completely is the same as no bucket, so idle
//! ones are dropped: memory follows the credentials active in the last
//! `burst / requests_per_second` seconds, not every credential ever seen.
//!
//! The buckets live in a few shards, each behind a `std` mutex held only for
//! one map lookup and a little arithmetic (never across an `.await`), so
//! concurrent requests of different credentials rarely meet. Time is a
//! parameter ([`Instant`]), so tests move it without sleeping.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use wagate_domain::{ApiKeyId, OrgId, Principal, PrincipalKind};

/// How many requests a credential may make: `requests_per_second` on
/// average, up to `burst` at once (`limits.*` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestLimit {
    rate: f64,
    burst: u32,
    /// Time one token takes to come back (`1 / rate`).
    interval: Duration,
    /// How far ahead of now a bucket's "full again" time may be while it
    /// still has a token: `interval × (burst − 1)`.
    tolerance: Duration,
}

/// A [`RequestLimit`] that cannot work: a rate that is not a positive finite
/// number (or so small that one token takes longer than `Duration` holds),
/// or a burst of 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRequestLimit(&'static str);

impl std::fmt::Display for InvalidRequestLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for InvalidRequestLimit {}

impl RequestLimit {
    /// The default: 50 requests per second, bursts of up to 100.
    pub const DEFAULT: RequestLimit = RequestLimit {
        rate: 50.0,
        burst: 100,
        interval: Duration::from_millis(20),
        tolerance: Duration::from_millis(20 * 99),
    };

    /// `requests_per_second` on average (fractions allowed: `0.5` is one
    /// request every two seconds), up to `burst` at once.
    ///
    /// # Errors
    ///
    /// [`InvalidRequestLimit`] when the rate is not a positive finite number or
    /// the burst is 0.
    pub fn new(requests_per_second: f64, burst: u32) -> Result<Self, InvalidRequestLimit> {
        if !(requests_per_second.is_finite() && requests_per_second > 0.0) {
            return Err(InvalidRequestLimit(
                "requests per second must be a positive number",
            ));
        }
        if burst == 0 {
            return Err(InvalidRequestLimit("burst must be at least 1"));
        }
        let interval = Duration::try_from_secs_f64(1.0 / requests_per_second)
            .map_err(|_| InvalidRequestLimit("requests per second is too small"))?;
        Ok(Self {
            rate: requests_per_second,
            burst,
            interval,
            tolerance: interval.saturating_mul(burst - 1),
        })
    }

    /// Tokens added per second.
    pub fn requests_per_second(&self) -> f64 {
        self.rate
    }

    /// The most tokens a bucket holds.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// How long an empty bucket takes to fill up again.
    fn refill_time(&self) -> Duration {
        self.interval.saturating_mul(self.burst)
    }
}

impl Default for RequestLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Whose bucket a request takes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Credential {
    /// An API key (by id, never its secret).
    ApiKey(ApiKeyId),
    /// A person signed in on the frontend: their organization and the
    /// token's `sub`. Tokens without `sub` share one bucket per
    /// organization.
    User { org: OrgId, subject: Option<String> },
}

impl Credential {
    fn of(principal: &Principal) -> Self {
        match &principal.kind {
            PrincipalKind::ApiKey(id) => Self::ApiKey(*id),
            PrincipalKind::User { subject, .. } => Self::User {
                org: principal.org.clone(),
                subject: subject.clone(),
            },
        }
    }
}

/// One credential's token bucket, kept as the instant it will be full
/// again (the "theoretical arrival time" of GCRA): at `full_at` it holds
/// `burst` tokens, and every `interval` before that one fewer. One instant
/// instead of a token count and a timestamp, in exact integer time (no
/// floating-point drift at the edges).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    full_at: Instant,
}

impl Bucket {
    /// Takes one token at `now`, or tells how long until there is one. A
    /// refusal takes nothing.
    fn take(&mut self, limit: &RequestLimit, now: Instant) -> Decision {
        // Time never runs backwards here: an earlier `now` adds nothing.
        let full_at = self.full_at.max(now);
        // How much "emptier than full" the bucket is, as time.
        let debt = full_at.duration_since(now);
        if debt <= limit.tolerance {
            self.full_at = full_at.checked_add(limit.interval).unwrap_or(full_at);
            Decision::Allowed
        } else {
            Decision::Limited {
                retry_after_secs: whole_seconds(debt.saturating_sub(limit.tolerance)),
            }
        }
    }

    /// Whether the bucket is full at `now` (so it can be forgotten: a
    /// missing bucket is a full one).
    fn is_full_at(&self, now: Instant) -> bool {
        self.full_at <= now
    }
}

/// A wait in seconds, rounded up, at least 1 (what `Retry-After` carries).
pub(crate) fn whole_seconds(wait: Duration) -> u64 {
    let secs = wait.as_secs();
    let secs = if wait.subsec_nanos() > 0 {
        secs.saturating_add(1)
    } else {
        secs
    };
    secs.max(1)
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Go on.
    Allowed,
    /// Refused: a token will be there in `retry_after_secs` (rounded up, ≥ 1).
    Limited {
        /// Seconds to wait.
        retry_after_secs: u64,
    },
}

/// Number of shards (a power of two).
const SHARDS: usize = 16;
/// A shard sweeps out full buckets once it holds this many, whatever the
/// time (then at twice what is left).
const MIN_SWEEP_LEN: usize = 1024;

#[derive(Debug)]
struct Shard {
    buckets: HashMap<Credential, Bucket>,
    /// Sweep at the first request after this instant …
    next_sweep: Instant,
    /// … or when the map grows to this many buckets.
    sweep_len: usize,
}

impl Shard {
    fn sweep(&mut self, limit: &RequestLimit, now: Instant) {
        self.buckets.retain(|_, b| !b.is_full_at(now));
        self.next_sweep = now.checked_add(limit.refill_time()).unwrap_or(now);
        self.sweep_len = (self.buckets.len() * 2).max(MIN_SWEEP_LEN);
        if self.buckets.capacity() > self.sweep_len * 2 {
            self.buckets.shrink_to(self.sweep_len);
        }
    }
}

/// The buckets of every credential, under one [`RequestLimit`].
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limit: RequestLimit,
    shard_of: RandomState,
    shards: Box<[Mutex<Shard>]>,
}

impl RateLimiter {
    /// A limiter with no buckets yet; `now` starts the sweep schedule.
    pub(crate) fn new(limit: RequestLimit, now: Instant) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    buckets: HashMap::new(),
                    next_sweep: now.checked_add(limit.refill_time()).unwrap_or(now),
                    sweep_len: MIN_SWEEP_LEN,
                })
            })
            .collect();
        Self {
            limit,
            shard_of: RandomState::new(),
            shards,
        }
    }

    /// Takes one token from `principal`'s bucket at `now`.
    pub(crate) fn check(&self, principal: &Principal, now: Instant) -> Decision {
        self.check_credential(Credential::of(principal), now)
    }

    fn check_credential(&self, credential: Credential, now: Instant) -> Decision {
        let index = usize::try_from(self.shard_of.hash_one(&credential) % SHARDS as u64)
            .unwrap_or_default();
        let Some(shard) = self.shards.get(index) else {
            return Decision::Allowed;
        };
        // A panic while holding the lock cannot leave a bucket half-written
        // in a way that matters (at worst one token is off): keep going.
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if now >= shard.next_sweep || shard.buckets.len() >= shard.sweep_len {
            shard.sweep(&self.limit, now);
        }
        shard
            .buckets
            .entry(credential)
            .or_insert(Bucket { full_at: now })
            .take(&self.limit, now)
    }

    /// Buckets currently held (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.buckets.len()).unwrap_or_default())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wagate_domain::{CapabilitySet, Role};

    fn limiter(rate: f64, burst: u32, now: Instant) -> RateLimiter {
        RateLimiter::new(RequestLimit::new(rate, burst).unwrap(), now)
    }

    fn key(n: u128) -> Credential {
        Credential::ApiKey(ApiKeyId::from_ulid(ulid::Ulid::from(n)))
    }

    fn user(org: &str, subject: Option<&str>) -> Principal {
        Principal {
            org: OrgId::parse(org).unwrap(),
            capabilities: CapabilitySet::ALL,
            kind: PrincipalKind::User {
                subject: subject.map(str::to_owned),
                role: Role::new("owner"),
            },
            credential_expires_at: None,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let l = limiter(2.0, 3, t0);
        for _ in 0..3 {
            assert_eq!(l.check_credential(key(1), t0), Decision::Allowed);
        }
        // Empty: the next token comes in 0.5 s, which is 1 whole second.
        assert_eq!(
            l.check_credential(key(1), t0),
            Decision::Limited {
                retry_after_secs: 1
            }
        );
        // Refusals take nothing: half a second later there is one token.
        assert_eq!(
            l.check_credential(key(1), t0 + ms(499)),
            Decision::Limited {
                retry_after_secs: 1
            }
        );
        assert_eq!(l.check_credential(key(1), t0 + ms(500)), Decision::Allowed);
        assert_eq!(
            l.check_credential(key(1), t0 + ms(500)),
            Decision::Limited {
                retry_after_secs: 1
            }
        );
        // Ten seconds idle refill to the burst, not beyond.
        let t1 = t0 + Duration::from_secs(10);
        for _ in 0..3 {
            assert_eq!(l.check_credential(key(1), t1), Decision::Allowed);
        }
        assert!(matches!(
            l.check_credential(key(1), t1),
            Decision::Limited { .. }
        ));
    }

    #[test]
    fn retry_after_is_rounded_up_to_whole_seconds() {
        let t0 = Instant::now();
        // One token every 4 s.
        let l = limiter(0.25, 1, t0);
        assert_eq!(l.check_credential(key(1), t0), Decision::Allowed);
        assert_eq!(
            l.check_credential(key(1), t0),
            Decision::Limited {
                retry_after_secs: 4
            }
        );
        assert_eq!(
            l.check_credential(key(1), t0 + ms(1500)),
            Decision::Limited {
                retry_after_secs: 3
            }
        );
        assert_eq!(
            l.check_credential(key(1), t0 + ms(3999)),
            Decision::Limited {
                retry_after_secs: 1
            }
        );
        assert_eq!(l.check_credential(key(1), t0 + ms(4000)), Decision::Allowed);
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_secs(1)), 1);
        assert_eq!(whole_seconds(Duration::from_nanos(1_000_000_001)), 2);
        assert_eq!(whole_seconds(Duration::MAX), u64::MAX);
    }

    #[test]
    fn credentials_have_their_own_buckets() {
        let t0 = Instant::now();
        let l = limiter(1.0, 1, t0);
        assert_eq!(l.check_credential(key(1), t0), Decision::Allowed);
        assert!(matches!(
            l.check_credential(key(1), t0),
            Decision::Limited { .. }
        ));
        assert_eq!(l.check_credential(key(2), t0), Decision::Allowed);

        // People: by organization and subject.
        let alice = user("acme", Some("alice"));
        assert_eq!(l.check(&alice, t0), Decision::Allowed);
        assert!(matches!(l.check(&alice, t0), Decision::Limited { .. }));
        assert_eq!(l.check(&user("acme", Some("bob")), t0), Decision::Allowed);
        assert_eq!(
            l.check(&user("globex", Some("alice")), t0),
            Decision::Allowed
        );
        // Tokens without `sub` share their organization's bucket.
        assert_eq!(l.check(&user("acme", None), t0), Decision::Allowed);
        assert!(matches!(
            l.check(&user("acme", None), t0),
            Decision::Limited { .. }
        ));
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let t0 = Instant::now() + Duration::from_secs(60);
        let l = limiter(1.0, 1, t0);
        assert_eq!(l.check_credential(key(1), t0), Decision::Allowed);
        assert!(matches!(
            l.check_credential(key(1), t0 - Duration::from_secs(30)),
            Decision::Limited { .. }
        ));
        assert_eq!(
            l.check_credential(key(1), t0 + Duration::from_secs(1)),
            Decision::Allowed
        );
    }

    #[test]
    fn refilled_buckets_are_forgotten() {
        let t0 = Instant::now();
        // Refill time: 2 s.
        let l = limiter(50.0, 100, t0);
        // Enough credentials that every shard outgrows its sweep size: the
        // sweeps it triggers drop nothing, since no bucket is full yet.
        let many = u128::try_from(SHARDS * MIN_SWEEP_LEN * 5 / 4).unwrap();
        for n in 0..many {
            assert_eq!(l.check_credential(key(n), t0), Decision::Allowed);
        }
        assert_eq!(l.len() as u128, many);
        // After the refill time, every shard drops its full buckets at its
        // next request; a credential still in use keeps its bucket.
        let t1 = t0 + Duration::from_secs(3);
        for _ in 0..10 {
            assert_eq!(l.check_credential(key(99_999), t1), Decision::Allowed);
        }
        for n in 0..SHARDS as u128 * 64 {
            l.check_credential(key(100_000 + n), t1);
        }
        let t2 = t1 + Duration::from_secs(3);
        for n in 0..SHARDS as u128 * 64 {
            l.check_credential(key(200_000 + n), t2);
        }
        // Only the last round's buckets (taken at t2, not yet refilled) are left.
        assert_eq!(l.len(), SHARDS * 64);
        // A forgotten bucket is a full one.
        for _ in 0..100 {
            assert_eq!(l.check_credential(key(1), t2), Decision::Allowed);
        }
        assert!(matches!(
            l.check_credential(key(1), t2),
            Decision::Limited { .. }
        ));
    }

    #[test]
    fn invalid_limits_are_refused() {
        assert!(RequestLimit::new(0.0, 10).is_err());
        assert!(RequestLimit::new(-1.0, 10).is_err());
        assert!(RequestLimit::new(f64::NAN, 10).is_err());
        assert!(RequestLimit::new(f64::INFINITY, 10).is_err());
        assert!(RequestLimit::new(1.0, 0).is_err());
        let l = RequestLimit::new(0.5, 1).unwrap();
        assert_eq!((l.requests_per_second(), l.burst()), (0.5, 1));
        assert_eq!(
            RequestLimit::default(),
            RequestLimit::new(50.0, 100).unwrap()
        );
        assert_eq!(RequestLimit::DEFAULT.refill_time(), Duration::from_secs(2));
        // One token every 3 s, bursts of 2: "full again" at most 6 s ahead.
        let l = RequestLimit::new(1.0 / 3.0, 2).unwrap();
        assert_eq!(l.refill_time().as_secs_f64().round(), 6.0);
    }
}
