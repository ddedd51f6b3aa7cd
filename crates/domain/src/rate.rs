//! Rate limits as token buckets: pure arithmetic on times handed in, so the
//! HTTP limiter (per credential, on a monotonic clock) and the WhatsApp-call
//! pacing (per session, on the injected wall clock) share one definition and
//! tests never sleep.
//!
//! A time is a [`Duration`] since an origin the caller chooses and keeps for
//! all of a bucket's life: the instant a limiter was made for a monotonic
//! clock, the Unix epoch for a wall clock ([`since_unix_epoch`]).

use std::time::Duration;

use time::OffsetDateTime;

use crate::DomainError;

/// A rate: tokens refill one every `1 / per_second` seconds, up to `burst`
/// saved up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    per_second: f64,
    burst: u32,
    /// Time one token takes to come back (`1 / per_second`).
    interval: Duration,
    /// How far ahead of now a bucket's "full again" time may be while it
    /// still has a token: `interval × (burst − 1)`.
    tolerance: Duration,
}

impl RateLimit {
    /// `per_second` tokens a second on average (fractions allowed: `0.5` is
    /// one every two seconds), at most `burst` at once.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on field `rate` when `per_second` is not a positive
    /// finite number (or so small that one token takes longer than a
    /// `Duration` holds), on field `burst` when `burst` is 0.
    pub fn new(per_second: f64, burst: u32) -> Result<Self, DomainError> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(DomainError::new("rate", "must be a positive number"));
        }
        if burst == 0 {
            return Err(DomainError::new("burst", "must be at least 1"));
        }
        let interval = Duration::try_from_secs_f64(1.0 / per_second)
            .map_err(|_| DomainError::new("rate", "is too small"))?;
        Ok(Self::with_interval(per_second, burst, interval))
    }

    /// `per_second` whole tokens a second, at most `burst` at once; `None`
    /// when either is 0. Usable in constants.
    pub const fn per_second(per_second: u32, burst: u32) -> Option<Self> {
        if per_second == 0 || burst == 0 {
            return None;
        }
        let interval = Duration::from_nanos(1_000_000_000 / per_second as u64);
        Some(Self::with_interval(per_second as f64, burst, interval))
    }

    /// `per_minute` tokens a minute, with a burst of as many.
    ///
    /// # Errors
    ///
    /// As [`RateLimit::new`], for `per_minute` of 0.
    pub fn per_minute(per_minute: u32) -> Result<Self, DomainError> {
        if per_minute == 0 {
            return Err(DomainError::new("rate", "must be a positive number"));
        }
        Ok(Self::with_interval(
            f64::from(per_minute) / 60.0,
            per_minute,
            Duration::from_secs(60) / per_minute,
        ))
    }

    const fn with_interval(per_second: f64, burst: u32, interval: Duration) -> Self {
        Self {
            per_second,
            burst,
            interval,
            tolerance: interval.saturating_mul(burst.saturating_sub(1)),
        }
    }

    /// Tokens (requests, calls) added per second.
    pub fn requests_per_second(&self) -> f64 {
        self.per_second
    }

    /// The most tokens a bucket holds.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// How long an empty bucket takes to fill up again.
    pub fn refill_time(&self) -> Duration {
        self.tolerance.saturating_add(self.interval)
    }
}

/// One caller's bucket under a [`RateLimit`], kept as the time it will be
/// full again (the "theoretical arrival time" of GCRA): then it holds
/// `burst` tokens, and every `interval` before that one fewer. One time
/// instead of a token count and a timestamp, in exact integer time (no
/// floating-point drift at the edges).
///
/// Times are [`Duration`]s since an origin of the caller's choosing (see the
/// [module](self)); the same bucket must always be given times from the
/// same origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    full_at: Duration,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn full(now: Duration) -> Self {
        Self { full_at: now }
    }

    /// Takes one token at `now`. A refusal takes nothing.
    ///
    /// A clock that steps back refills nothing (and takes nothing back):
    /// `now` counts as no earlier than the last token taken.
    ///
    /// # Errors
    ///
    /// How long until a token is there, when the bucket is empty.
    pub fn take(&mut self, limit: &RateLimit, now: Duration) -> Result<(), Duration> {
        // The last token was taken no earlier than a full refill before
        // `full_at`; with a clock going forwards `now` is never earlier.
        let now = now.max(self.full_at.saturating_sub(limit.refill_time()));
        let full_at = self.full_at.max(now);
        // How much "emptier than full" the bucket is, as time.
        let debt = full_at.saturating_sub(now);
        if debt <= limit.tolerance {
            self.full_at = full_at.saturating_add(limit.interval);
            Ok(())
        } else {
            Err(debt.saturating_sub(limit.tolerance))
        }
    }

    /// Whether the bucket has refilled at `now` (it is then the same as no
    /// bucket at all, so a limiter may forget it).
    pub fn is_full(&self, now: Duration) -> bool {
        self.full_at <= now
    }
}

/// A wall-clock time as a bucket time: the [`Duration`] since the Unix
/// epoch, 0 for anything before it.
pub fn since_unix_epoch(at: OffsetDateTime) -> Duration {
    Duration::try_from(at - OffsetDateTime::UNIX_EPOCH).unwrap_or(Duration::ZERO)
}

/// Whole seconds to tell a caller to wait (`Retry-After`): `wait` rounded up,
/// at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs();
    let secs = if wait.subsec_nanos() > 0 {
        secs.saturating_add(1)
    } else {
        secs
    };
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_bucket_allows_its_burst_then_paces() {
        let limit = RateLimit::new(2.0, 3).unwrap();
        let t0 = Duration::from_secs(1_000);
        let mut b = TokenBucket::full(t0);
        for _ in 0..3 {
            assert!(b.take(&limit, t0).is_ok());
        }
        let wait = b.take(&limit, t0).unwrap_err();
        assert_eq!(wait, ms(500));
        assert_eq!(retry_after_secs(wait), 1);
        // Refusals take nothing: half a second later there is one token.
        assert_eq!(b.take(&limit, t0 + ms(499)), Err(ms(1)));
        let t1 = t0 + ms(500);
        assert!(b.take(&limit, t1).is_ok());
        assert!(b.take(&limit, t1).is_err());
        assert!(!b.is_full(t1));
        assert!(b.is_full(t1 + Duration::from_secs(2)));
        // Ten seconds idle refill to the burst, not beyond.
        let t2 = t0 + Duration::from_secs(10);
        for _ in 0..3 {
            assert!(b.take(&limit, t2).is_ok());
        }
        assert!(b.take(&limit, t2).is_err());
    }

    #[test]
    fn retry_after_is_rounded_up_to_whole_seconds() {
        // One token every 4 s.
        let limit = RateLimit::new(0.25, 1).unwrap();
        let t0 = Duration::ZERO;
        let mut b = TokenBucket::full(t0);
        assert!(b.take(&limit, t0).is_ok());
        let retry_at = |b: &mut TokenBucket, t| b.take(&limit, t).map_err(retry_after_secs);
        assert_eq!(retry_at(&mut b, t0), Err(4));
        assert_eq!(retry_at(&mut b, t0 + ms(1500)), Err(3));
        assert_eq!(retry_at(&mut b, t0 + ms(3999)), Err(1));
        assert_eq!(retry_at(&mut b, t0 + ms(4000)), Ok(()));
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_nanos(1_000_000_001)), 2);
        assert_eq!(retry_after_secs(ms(2001)), 3);
        assert_eq!(retry_after_secs(Duration::MAX), u64::MAX);
    }

    #[test]
    fn a_clock_stepping_back_refills_nothing() {
        let limit = RateLimit::per_minute(1).unwrap();
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let mut b = TokenBucket::full(since_unix_epoch(t0));
        assert!(b.take(&limit, since_unix_epoch(t0)).is_ok());
        let back = since_unix_epoch(t0 - time::Duration::hours(1));
        let wait = b.take(&limit, back).unwrap_err();
        assert_eq!(retry_after_secs(wait), 60);
        assert!(!b.is_full(back));
        let later = since_unix_epoch(t0 + time::Duration::seconds(60));
        assert!(b.take(&limit, later).is_ok());

        // Likewise on a monotonic clock, with a bucket of one a second.
        let limit = RateLimit::new(1.0, 1).unwrap();
        let t0 = Duration::from_secs(60);
        let mut b = TokenBucket::full(t0);
        assert!(b.take(&limit, t0).is_ok());
        assert!(b.take(&limit, t0 - Duration::from_secs(30)).is_err());
        assert!(b.take(&limit, t0 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn wall_clock_times_count_from_the_unix_epoch() {
        assert_eq!(
            since_unix_epoch(datetime!(1970-01-01 00:01 UTC)),
            Duration::from_secs(60)
        );
        assert_eq!(
            since_unix_epoch(datetime!(1969-12-31 23:00 UTC)),
            Duration::ZERO
        );
    }

    #[test]
    fn bad_rates_are_refused() {
        assert!(RateLimit::new(0.0, 1).is_err());
        assert!(RateLimit::new(-1.0, 10).is_err());
        assert!(RateLimit::new(f64::NAN, 1).is_err());
        assert!(RateLimit::new(f64::INFINITY, 10).is_err());
        assert!(RateLimit::new(1.0, 0).is_err());
        assert!(RateLimit::per_minute(0).is_err());
        assert_eq!(RateLimit::per_second(0, 1), None);
        assert_eq!(RateLimit::per_second(1, 0), None);
        let l = RateLimit::new(0.5, 1).unwrap();
        assert_eq!((l.requests_per_second(), l.burst()), (0.5, 1));
        assert_eq!(
            RateLimit::per_second(50, 100),
            Some(RateLimit::new(50.0, 100).unwrap())
        );
        assert_eq!(
            RateLimit::per_minute(60).unwrap(),
            RateLimit::new(1.0, 60).unwrap()
        );
        assert_eq!(
            RateLimit::new(50.0, 100).unwrap().refill_time(),
            Duration::from_secs(2)
        );
        // One token every 3 s, bursts of 2: "full again" at most 6 s ahead.
        let l = RateLimit::new(1.0 / 3.0, 2).unwrap();
        assert_eq!(l.refill_time().as_secs_f64().round(), 6.0);
    }
}
