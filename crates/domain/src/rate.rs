//! Rate limits as token buckets: pure arithmetic on times handed in, so the
//! HTTP limiter and the WhatsApp-call pacing share one definition and tests
//! never sleep.

use std::time::Duration;

use time::OffsetDateTime;

use crate::DomainError;

/// A rate: `per_second` tokens refill continuously, up to `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    per_second: f64,
    burst: f64,
}

impl RateLimit {
    /// `per_second` tokens a second, at most `burst` at once.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on field `rate` when `per_second` is not a positive
    /// finite number, or `burst` is below 1.
    pub fn new(per_second: f64, burst: u32) -> Result<Self, DomainError> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(DomainError::new("rate", "must be a positive number"));
        }
        if burst == 0 {
            return Err(DomainError::new("burst", "must be at least 1"));
        }
        Ok(Self {
            per_second,
            burst: f64::from(burst),
        })
    }

    /// `per_minute` tokens a minute, with a burst of as many.
    ///
    /// # Errors
    ///
    /// As [`RateLimit::new`], for `per_minute` of 0.
    pub fn per_minute(per_minute: u32) -> Result<Self, DomainError> {
        Self::new(f64::from(per_minute) / 60.0, per_minute)
    }
}

/// One caller's bucket under a [`RateLimit`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    at: OffsetDateTime,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn full(limit: &RateLimit, now: OffsetDateTime) -> Self {
        Self {
            tokens: limit.burst,
            at: now,
        }
    }

    fn refill(&mut self, limit: &RateLimit, now: OffsetDateTime) {
        // A clock that steps back refills nothing (and takes nothing back).
        let elapsed = (now - self.at).as_seconds_f64().max(0.0);
        self.tokens = (self.tokens + elapsed * limit.per_second).min(limit.burst);
        if now > self.at {
            self.at = now;
        }
    }

    /// Takes one token at `now`.
    ///
    /// # Errors
    ///
    /// How long until a token is there, when the bucket is empty.
    pub fn take(&mut self, limit: &RateLimit, now: OffsetDateTime) -> Result<(), Duration> {
        self.refill(limit, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / limit.per_second,
            ))
        }
    }

    /// Whether the bucket has refilled at `now` (it is then the same as no
    /// bucket at all, so a limiter may forget it).
    pub fn is_full(&self, limit: &RateLimit, now: OffsetDateTime) -> bool {
        let mut b = *self;
        b.refill(limit, now);
        b.tokens >= limit.burst
    }
}

/// Whole seconds to tell a caller to wait (`Retry-After`): `wait` rounded up,
/// at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_bucket_allows_its_burst_then_paces() {
        let limit = RateLimit::new(2.0, 3).unwrap();
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let mut b = TokenBucket::full(&limit, t0);
        for _ in 0..3 {
            assert!(b.take(&limit, t0).is_ok());
        }
        let wait = b.take(&limit, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(retry_after_secs(wait), 1);
        let t1 = t0 + time::Duration::milliseconds(500);
        assert!(b.take(&limit, t1).is_ok());
        assert!(b.take(&limit, t1).is_err());
        assert!(!b.is_full(&limit, t1));
        assert!(b.is_full(&limit, t1 + time::Duration::seconds(2)));
    }

    #[test]
    fn a_clock_stepping_back_refills_nothing() {
        let limit = RateLimit::per_minute(1).unwrap();
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let mut b = TokenBucket::full(&limit, t0);
        assert!(b.take(&limit, t0).is_ok());
        let wait = b.take(&limit, t0 - time::Duration::hours(1)).unwrap_err();
        assert_eq!(retry_after_secs(wait), 60);
        assert!(b.take(&limit, t0 + time::Duration::seconds(60)).is_ok());
    }

    #[test]
    fn bad_rates_are_refused() {
        assert!(RateLimit::new(0.0, 1).is_err());
        assert!(RateLimit::new(f64::NAN, 1).is_err());
        assert!(RateLimit::new(1.0, 0).is_err());
        assert!(RateLimit::per_minute(0).is_err());
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }
}
