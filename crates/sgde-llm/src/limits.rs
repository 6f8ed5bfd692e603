//! Per-endpoint admission: how many requests may be in flight, and how fast they may start.
//!
//! Every HTTP attempt (not every logical call: a call waiting out a backoff holds nothing) first
//! passes the rate limiters, then takes a semaphore permit it holds until the reply body is read.
//! Requests per minute are exact; tokens per minute are approximated before the call from the
//! prompt length and `max_tokens`, since the real count is known only afterwards.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::config::RateLimit;

pub(crate) struct Limits {
    in_flight: Semaphore,
    requests: Option<DefaultDirectRateLimiter>,
    tokens: Option<(DefaultDirectRateLimiter, NonZeroU32)>,
}

impl Limits {
    pub fn new(max_concurrency: u32, rate: RateLimit) -> Self {
        let permits =
            usize::try_from(max_concurrency.max(1)).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
        let per_minute = |n: Option<u32>| n.and_then(NonZeroU32::new).map(Quota::per_minute);
        Self {
            in_flight: Semaphore::new(permits),
            requests: per_minute(rate.requests_per_minute).map(RateLimiter::direct),
            tokens: per_minute(rate.tokens_per_minute).map(|q| (RateLimiter::direct(q), q.burst_size())),
        }
    }

    /// Waits until one request of about `estimated_tokens` may start. `None` only if the
    /// semaphore was closed, which this crate never does.
    pub async fn admit(&self, estimated_tokens: u64) -> Option<SemaphorePermit<'_>> {
        if let Some(limiter) = &self.requests {
            limiter.until_ready().await;
        }
        if let Some((limiter, burst)) = &self.tokens {
            // A call larger than the whole per-minute budget waits for a full bucket, no more.
            let wanted = u32::try_from(estimated_tokens).unwrap_or(u32::MAX).clamp(1, burst.get());
            let wanted = NonZeroU32::new(wanted).unwrap_or(NonZeroU32::MIN);
            // Cannot fail: `wanted` is clamped to the burst size.
            let _ = limiter.until_n_ready(wanted).await;
        }
        self.in_flight.acquire().await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn permits_bound_concurrency() {
        let limits = Limits::new(2, RateLimit::default());
        let a = limits.admit(10).await.unwrap();
        let _b = limits.admit(10).await.unwrap();
        assert!(tokio::time::timeout(std::time::Duration::from_millis(20), limits.admit(10)).await.is_err());
        drop(a);
        assert!(limits.admit(10).await.is_some());
    }

    #[tokio::test]
    async fn huge_token_estimates_do_not_deadlock() {
        let limits =
            Limits::new(1, RateLimit { requests_per_minute: Some(600), tokens_per_minute: Some(100) });
        assert!(limits.admit(1_000_000).await.is_some());
    }
}
