//! Per-key request rate limits: one API key (one client application) cannot starve the others.
//!
//! A token bucket per key (GCRA, `governor`): `per_second` requests on average with bursts of up
//! to `burst`. A request over the limit is refused with 429 `rate_limited` and a `Retry-After`
//! saying when the next one will be accepted; nothing is queued. Limits are per replica (each
//! replica holds its own buckets), so behind a load balancer the effective limit is the sum.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

/// Keys whose buckets have been full for a while are forgotten when the map grows past this.
const FORGET_ABOVE: usize = 10_000;

/// The configured limit of every key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

/// The buckets of every key seen.
pub struct KeyRateLimiter {
    limiter: DefaultKeyedRateLimiter<Uuid>,
}

impl KeyRateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        let quota = Quota::per_second(limit.per_second).allow_burst(limit.burst);
        Self { limiter: RateLimiter::keyed(quota) }
    }

    /// Takes one request from `key`'s bucket, or says how long until one is available.
    pub fn check(&self, key: Uuid) -> Result<(), Duration> {
        if self.limiter.len() > FORGET_ABOVE {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&key).map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_waits_and_other_keys_are_unaffected() {
        let limit =
            RateLimit { per_second: NonZeroU32::MIN, burst: NonZeroU32::new(3).unwrap_or(NonZeroU32::MIN) };
        let limiter = KeyRateLimiter::new(limit);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
        }
        let wait = limiter.check(a).expect_err("the fourth request in a burst of three");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limiter.check(b).is_ok(), "another key has its own bucket");
    }
}
