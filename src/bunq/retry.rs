//! The retry policy for transient failures: bounded attempts, exponential backoff, jitter.
//!
//! Which failures are transient is [`BunqError::is_transient`]'s call (429, 491, 5xx, network
//! trouble, timeouts). The policy only says how often and how long to wait. Jitter is "equal
//! jitter": the delay for attempt n is uniformly drawn from `[d/2, d]` with
//! `d = min(cap, base * 2^(n-1))`, so retries of several clients spread out but never collapse
//! to zero.
//!
//! A 429 is different: bunq counts requests per IP in sliding windows (3 s for most endpoints,
//! 30 s for session-server), and other clients behind the same egress IP fill the same
//! windows. Retrying within the window only earns another 429. So a 429 is retried after the
//! endpoint's whole window plus up to half a window of jitter, and a policy that retries at
//! all gets at least [`RATE_LIMITED_ATTEMPTS`] attempts for it: with bunq's 3 s windows the
//! five retries span at least 15 s before the call fails.

use std::time::Duration;

use rsa::rand_core::{OsRng, RngCore};

use crate::bunq::error::BunqError;

/// The least number of attempts (including the first) for a call answered 429, whatever
/// [`RetryPolicy::max_attempts`] says, unless the policy never retries.
pub const RATE_LIMITED_ATTEMPTS: u32 = 6;

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

    /// Whether a failure of attempt `attempt` (1-based) should be retried. A 429 has its own,
    /// larger budget ([`RetryPolicy::rate_limited_attempts`]).
    pub fn should_retry(&self, attempt: u32, error: &BunqError) -> bool {
        if matches!(error, BunqError::Api { status: 429, .. }) {
            return attempt < self.rate_limited_attempts();
        }
        attempt < self.max_attempts && error.is_transient()
    }

    /// Attempts for a call answered 429: at least [`RATE_LIMITED_ATTEMPTS`], or 1 for a policy
    /// that never retries.
    pub fn rate_limited_attempts(&self) -> u32 {
        if self.max_attempts <= 1 {
            1
        } else {
            self.max_attempts.max(RATE_LIMITED_ATTEMPTS)
        }
    }

    /// The delay after attempt `attempt` was answered 429 on an endpoint whose rate-limit
    /// window is `window`, with `unit` in `[0, 1]` choosing the jitter: `window` plus up to
    /// half a window. A zero window (the client-side limiter is disabled, as in fast tests)
    /// falls back to the ordinary backoff. Deterministic, for tests.
    pub fn rate_limited_delay_with(&self, attempt: u32, window: Duration, unit: f64) -> Duration {
        if window.is_zero() {
            return self.delay_with(attempt, unit);
        }
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            1.0
        };
        window + (window / 2).mul_f64(unit)
    }

    /// [`RetryPolicy::rate_limited_delay_with`] with random jitter.
    pub fn rate_limited_delay(&self, attempt: u32, window: Duration) -> Duration {
        self.rate_limited_delay_with(attempt, window, random_unit())
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
        self.delay_with(attempt, random_unit())
    }
}

/// A uniformly random number in `[0, 1]`.
fn random_unit() -> f64 {
    (OsRng.next_u32() as f64) / (u32::MAX as f64)
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

    fn rate_limited() -> BunqError {
        BunqError::Api {
            status: 429,
            description: "Too many requests.".into(),
            response_id: None,
            endpoint: "POST /x".into(),
        }
    }

    #[test]
    fn a_429_gets_at_least_six_attempts_that_wait_a_whole_window_and_span_15_s() {
        // The default policy with bunq's 3 s window (the transport adds a margin on top).
        let p = RetryPolicy::default();
        let window = Duration::from_secs(3);
        let attempts = (1..100)
            .take_while(|&n| p.should_retry(n, &rate_limited()))
            .count() as u32
            + 1;
        assert!(attempts >= 6, "{attempts}");
        for attempt in 1..attempts {
            for unit in [0.0, 0.5, 1.0] {
                let delay = p.rate_limited_delay_with(attempt, window, unit);
                assert!(delay >= window, "{attempt} {unit}: {delay:?}");
                assert!(delay <= window + window / 2, "{attempt} {unit}: {delay:?}");
            }
            let jittered = p.rate_limited_delay(attempt, window);
            assert!(jittered >= window && jittered <= window + window / 2);
        }
        let shortest_span: Duration = (1..attempts)
            .map(|attempt| p.rate_limited_delay_with(attempt, window, 0.0))
            .sum();
        assert!(
            shortest_span >= Duration::from_secs(15),
            "{shortest_span:?}"
        );
    }

    #[test]
    fn a_policy_that_never_retries_does_not_retry_a_429_either() {
        assert!(!RetryPolicy::never().should_retry(1, &rate_limited()));
        assert_eq!(RetryPolicy::never().rate_limited_attempts(), 1);
    }

    #[test]
    fn without_a_known_window_a_429_falls_back_to_the_backoff() {
        let p = policy();
        assert_eq!(
            p.rate_limited_delay_with(2, Duration::ZERO, 1.0),
            p.delay_with(2, 1.0)
        );
    }
}
