//! The retry policy for transient failures: bounded attempts, exponential backoff, jitter.
//!
//! Which failures are transient is [`BunqError::is_transient`]'s call (429, 491, 5xx, network
//! trouble, timeouts). The policy only says how often and how long to wait. Jitter is "equal
//! jitter": the delay for attempt n is uniformly drawn from `[d/2, d]` with
//! `d = min(cap, base * 2^(n-1))`, so retries of several clients spread out but never collapse
//! to zero.

use std::time::Duration;

use rsa::rand_core::{OsRng, RngCore};

use crate::bunq::error::BunqError;

/// How often and how patiently to retry transient failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts including the first; 1 means never retry.
    pub max_attempts: u32,
    /// Delay before the first retry (before jitter).
    pub base_delay: Duration,
    /// Upper bound of any single delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, 500 ms doubling up to 8 s: rides out a rate-limit window or a short blip,
    /// gives up well before the next reconcile tick.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn never() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Whether a failure of attempt `attempt` (1-based) should be retried.
    pub fn should_retry(&self, attempt: u32, error: &BunqError) -> bool {
        attempt < self.max_attempts && error.is_transient()
    }

    /// The un-jittered delay after failed attempt `attempt` (1-based): `base * 2^(attempt-1)`,
    /// capped.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        self.base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay)
    }

    /// The delay after failed attempt `attempt`, with `unit` in `[0, 1]` choosing the point in
    /// `[ceiling/2, ceiling]`. Deterministic, for tests.
    pub fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            1.0
        };
        ceiling / 2 + (ceiling / 2).mul_f64(unit)
    }

    /// The delay after failed attempt `attempt`, with random jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let unit = (OsRng.next_u32() as f64) / (u32::MAX as f64);
        self.delay_with(attempt, unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        }
    }

    #[test]
    fn ceiling_doubles_then_stops_at_the_cap() {
        let p = policy();
        let ceilings: Vec<_> = (1..=6).map(|n| p.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jittered_delay_stays_between_half_and_full_ceiling() {
        let p = policy();
        for attempt in 1..=40 {
            for _ in 0..20 {
                let delay = p.delay(attempt);
                assert!(delay >= p.ceiling(attempt) / 2, "{attempt}: {delay:?}");
                assert!(delay <= p.ceiling(attempt), "{attempt}: {delay:?}");
                assert!(delay <= p.max_delay);
            }
        }
        assert_eq!(p.delay_with(1, 0.0), Duration::from_millis(50));
        assert_eq!(p.delay_with(1, 1.0), Duration::from_millis(100));
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        assert_eq!(policy().ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn only_transient_errors_are_retried_and_only_within_the_attempt_budget() {
        let p = policy();
        let transient = BunqError::Api {
            status: 503,
            description: "x".into(),
            response_id: None,
            endpoint: "GET /x".into(),
        };
        let permanent = BunqError::Api {
            status: 400,
            description: "x".into(),
            response_id: None,
            endpoint: "GET /x".into(),
        };
        assert!(p.should_retry(1, &transient));
        assert!(p.should_retry(4, &transient));
        assert!(!p.should_retry(5, &transient));
        assert!(!p.should_retry(1, &permanent));
        assert!(!RetryPolicy::never().should_retry(1, &transient));
    }
}
