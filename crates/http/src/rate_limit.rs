//! Request limits per credential: one token bucket per API key, or per
//! person (organization + subject) for login JWTs.
//!
//! The limit is a [`RateLimit`] and each bucket a [`TokenBucket`] of
//! `wagate_domain` (the same arithmetic that paces WhatsApp calls): a
//! request takes one token or is refused with the time until the next one.
//! A bucket that has refilled completely is the same as no bucket, so idle
//! ones are dropped: memory follows the credentials active in the last
//! `burst / requests_per_second` seconds, not every credential ever seen.
//!
//! The buckets live in a few shards, each behind a `std` mutex held only for
//! one map lookup and a little arithmetic (never across an `.await`), so
//! concurrent requests of different credentials rarely meet. Time is a
//! parameter ([`Instant`], on the monotonic clock: buckets count from the
//! instant the limiter was made), so tests move it without sleeping.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use wagate_domain::{ApiKeyId, OrgId, Principal, PrincipalKind, RateLimit, TokenBucket};

/// `Retry-After` seconds of a wait (rounded up, at least 1).
pub(crate) use wagate_domain::retry_after_secs as whole_seconds;

/// The default request limit per credential: 50 requests per second,
/// bursts of up to 100.
pub const DEFAULT_REQUEST_LIMIT: RateLimit = match RateLimit::per_second(50, 100) {
    Some(limit) => limit,
    None => panic!("50 a second, bursts of 100, is a limit"),
};

/// Whose bucket a request takes from (and whose event streams count
/// together, [`crate::stream::StreamSlots`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Credential {
    /// An API key (by id, never its secret).
    ApiKey(ApiKeyId),
    /// A person signed in on the frontend: their organization and the
    /// token's `sub`. Tokens without `sub` share one bucket per
    /// organization.
    User { org: OrgId, subject: Option<String> },
}

impl Credential {
    pub(crate) fn of(principal: &Principal) -> Self {
        match &principal.kind {
            PrincipalKind::ApiKey(id) => Self::ApiKey(*id),
            PrincipalKind::User { subject, .. } => Self::User {
                org: principal.org.clone(),
                subject: subject.clone(),
            },
        }
    }
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
    buckets: HashMap<Credential, TokenBucket>,
    /// Sweep at the first request after this time (since the limiter's
    /// origin) …
    next_sweep: Duration,
    /// … or when the map grows to this many buckets.
    sweep_len: usize,
}

impl Shard {
    fn sweep(&mut self, limit: &RateLimit, now: Duration) {
        self.buckets.retain(|_, b| !b.is_full(now));
        self.next_sweep = now.saturating_add(limit.refill_time());
        self.sweep_len = (self.buckets.len() * 2).max(MIN_SWEEP_LEN);
        if self.buckets.capacity() > self.sweep_len * 2 {
            self.buckets.shrink_to(self.sweep_len);
        }
    }
}

/// The buckets of every credential, under one [`RateLimit`].
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limit: RateLimit,
    /// Where the buckets' times count from.
    origin: Instant,
    shard_of: RandomState,
    shards: Box<[Mutex<Shard>]>,
}

impl RateLimiter {
    /// A limiter with no buckets yet; `now` is the origin of its times and
    /// starts the sweep schedule.
    pub(crate) fn new(limit: RateLimit, now: Instant) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    buckets: HashMap::new(),
                    next_sweep: limit.refill_time(),
                    sweep_len: MIN_SWEEP_LEN,
                })
            })
            .collect();
        Self {
            limit,
            origin: now,
            shard_of: RandomState::new(),
            shards,
        }
    }

    /// Takes one token from `principal`'s bucket at `now`.
    pub(crate) fn check(&self, principal: &Principal, now: Instant) -> Decision {
        self.check_credential(Credential::of(principal), now)
    }

    fn check_credential(&self, credential: Credential, now: Instant) -> Decision {
        // An instant before the origin counts as the origin: a bucket never
        // refills for time going backwards.
        let now = now.saturating_duration_since(self.origin);
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
        match shard
            .buckets
            .entry(credential)
            .or_insert_with(|| TokenBucket::full(now))
            .take(&self.limit, now)
        {
            Ok(()) => Decision::Allowed,
            Err(wait) => Decision::Limited {
                retry_after_secs: whole_seconds(wait),
            },
        }
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
        RateLimiter::new(RateLimit::new(rate, burst).unwrap(), now)
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
        // The rounding itself is `wagate_domain::retry_after_secs`'s.
        assert_eq!(whole_seconds(Duration::from_nanos(1_000_000_001)), 2);
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
    fn the_default_limit_is_50_a_second_in_bursts_of_100() {
        // Limits that cannot work are refused by `RateLimit::new`.
        assert!(RateLimit::new(0.0, 10).is_err());
        assert!(RateLimit::new(1.0, 0).is_err());
        assert_eq!(DEFAULT_REQUEST_LIMIT, RateLimit::new(50.0, 100).unwrap());
        assert_eq!(
            (
                DEFAULT_REQUEST_LIMIT.requests_per_second(),
                DEFAULT_REQUEST_LIMIT.burst()
            ),
            (50.0, 100)
        );
        assert_eq!(DEFAULT_REQUEST_LIMIT.refill_time(), Duration::from_secs(2));
    }
}
