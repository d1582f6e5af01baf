//! The client-side rate limiter: bunq's sliding windows, enforced before a request leaves.
//!
//! bunq allows, per IP and endpoint, at most N requests in *any* window of W seconds: GET 3 per
//! 3 s, POST 5 per 3 s, PUT 2 per 3 s, and `POST /session-server` 1 per 30 s. A token bucket
//! would not honour that (a bucket with burst 3 refilled at 1/s admits a 4th request inside some
//! 3-second window), so this limiter keeps, per key, the send times of the last N requests and
//! admits a new one only when the oldest of them has left the window.
//!
//! Keys are method + route *pattern* (`GET /user/{user}/credential-password-ip/{cred}/ip`): bunq
//! counts per endpoint, so listing the IPs of two credentials shares one window.
//!
//! A window is half-open: a request sent at `t` counts for `[t, t + W)`. Time comes from
//! `tokio::time::Instant`, so tests run with paused time.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::Method;
use tokio::time::Instant;

/// The route pattern of `POST /session-server`, which has its own, much stricter limit.
pub const SESSION_SERVER_PATTERN: &str = "/session-server";

/// The safety margin the transport adds to bunq's windows by default (see
/// [`RateLimits::with_margin`]).
pub const DEFAULT_MARGIN: Duration = Duration::from_millis(250);

/// At most `max_requests` in any window of `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Requests admitted per window; 0 is treated as 1 (a limit must let requests through).
    pub max_requests: usize,
    /// The window length.
    pub window: Duration,
}

impl Limit {
    /// `max_requests` per `window`.
    pub const fn new(max_requests: usize, window: Duration) -> Self {
        Limit {
            max_requests,
            window,
        }
    }
}

/// The limits per kind of request. Build with [`RateLimits::bunq`], then adjust.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// GET requests, per route pattern.
    pub get: Limit,
    /// POST requests except session-server, per route pattern.
    pub post: Limit,
    /// PUT requests, per route pattern.
    pub put: Limit,
    /// DELETE requests (undocumented by bunq; treated like POST).
    pub delete: Limit,
    /// `POST /session-server`.
    pub session_server: Limit,
    /// When false, [`RateLimiter::acquire`] never waits (fast tests, the simulator without limits).
    pub enabled: bool,
}

impl RateLimits {
    /// bunq's documented limits: GET 3/3 s, POST 5/3 s, PUT 2/3 s, session-server 1/30 s.
    pub fn bunq() -> Self {
        let three = Duration::from_secs(3);
        RateLimits {
            get: Limit::new(3, three),
            post: Limit::new(5, three),
            put: Limit::new(2, three),
            delete: Limit::new(5, three),
            session_server: Limit::new(1, Duration::from_secs(30)),
            enabled: true,
        }
    }

    /// No limiting at all.
    pub fn disabled() -> Self {
        RateLimits {
            enabled: false,
            ..RateLimits::bunq()
        }
    }

    /// The same request counts with every window multiplied by `factor` (e.g. `0.001` for tests
    /// against a simulator that enforces equally scaled limits, or `1.1` for a safety margin).
    pub fn with_windows_scaled(mut self, factor: f64) -> Self {
        let factor = if factor.is_finite() && factor > 0.0 {
            factor
        } else {
            1.0
        };
        for limit in [
            &mut self.get,
            &mut self.post,
            &mut self.put,
            &mut self.delete,
            &mut self.session_server,
        ] {
            limit.window = limit.window.mul_f64(factor);
        }
        self
    }

    /// The same limits with `margin` added to every window. bunq counts *arrivals*; requests
    /// sent exactly one window apart can arrive closer together after network jitter, so the
    /// transport's default adds [`DEFAULT_MARGIN`].
    pub fn with_margin(mut self, margin: Duration) -> Self {
        for limit in [
            &mut self.get,
            &mut self.post,
            &mut self.put,
            &mut self.delete,
            &mut self.session_server,
        ] {
            limit.window = limit.window.saturating_add(margin);
        }
        self
    }

    /// The limit that applies to `method` on `route_pattern`.
    pub fn limit_for(&self, method: &Method, route_pattern: &str) -> Limit {
        if *method == Method::POST && route_pattern == SESSION_SERVER_PATTERN {
            self.session_server
        } else if *method == Method::GET {
            self.get
        } else if *method == Method::PUT {
            self.put
        } else if *method == Method::DELETE {
            self.delete
        } else {
            self.post
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::bunq()
    }
}

/// One sliding window: method + route pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LimitKey {
    /// HTTP method.
    pub method: Method,
    /// Route pattern with placeholders, never concrete ids.
    pub route_pattern: String,
}

impl LimitKey {
    /// The window of `method` on `route_pattern`.
    pub fn new(method: Method, route_pattern: impl Into<String>) -> Self {
        LimitKey {
            method,
            route_pattern: route_pattern.into(),
        }
    }
}

/// Admits requests so that no window ever holds more than its limit. Shared by all tasks of a
/// client (`&self` methods); the lock is never held across an await.
#[derive(Debug)]
pub struct RateLimiter {
    limits: RateLimits,
    sent: Mutex<HashMap<LimitKey, VecDeque<Instant>>>,
}

impl RateLimiter {
    /// A limiter with no history.
    pub fn new(limits: RateLimits) -> Self {
        RateLimiter {
            limits,
            sent: Mutex::new(HashMap::new()),
        }
    }

    /// The configured limits.
    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Waits until a request on `key` fits its window, then records it as sent now. Returns how
    /// long it waited (zero when a slot was free).
    pub async fn acquire(&self, key: &LimitKey) -> Duration {
        let started = Instant::now();
        if !self.limits.enabled {
            return Duration::ZERO;
        }
        let limit = self.limits.limit_for(&key.method, &key.route_pattern);
        loop {
            match self.try_reserve(key, limit, Instant::now()) {
                None => return started.elapsed(),
                Some(free_at) => tokio::time::sleep_until(free_at).await,
            }
        }
    }

    /// Records a send at `now` if the window has room (returns `None`); otherwise returns when
    /// the oldest request in the window leaves it.
    fn try_reserve(&self, key: &LimitKey, limit: Limit, now: Instant) -> Option<Instant> {
        let max = limit.max_requests.max(1);
        let mut sent = self
            .sent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let times = sent.entry(key.clone()).or_default();
        while times
            .front()
            .is_some_and(|&oldest| oldest + limit.window <= now)
        {
            times.pop_front();
        }
        if times.len() < max {
            times.push_back(now);
            None
        } else {
            times.front().map(|&oldest| oldest + limit.window)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const IP_LIST: &str = "/user/{user}/credential-password-ip/{cred}/ip";

    fn get(pattern: &str) -> LimitKey {
        LimitKey::new(Method::GET, pattern)
    }

    /// Every window `[t, t + W)` that starts at a recorded send holds at most `max` sends.
    fn assert_no_window_overfull(times: &[Instant], limit: Limit) {
        for &start in times {
            let inside = times
                .iter()
                .filter(|&&t| t >= start && t < start + limit.window)
                .count();
            assert!(
                inside <= limit.max_requests,
                "{inside} requests in the window starting at {start:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn three_gets_go_at_once_and_the_fourth_waits_for_the_first_to_leave() {
        let limiter = RateLimiter::new(RateLimits::bunq());
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.acquire(&get(IP_LIST)).await, Duration::ZERO);
        }
        tokio::time::advance(Duration::from_millis(1000)).await;
        let waited = limiter.acquire(&get(IP_LIST)).await;
        assert_eq!(waited, Duration::from_millis(2000));
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_never_puts_more_than_the_limit_in_any_window() {
        let limiter = Arc::new(RateLimiter::new(RateLimits::bunq()));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let limiter = limiter.clone();
            tasks.push(tokio::spawn(async move {
                limiter.acquire(&get(IP_LIST)).await;
                Instant::now()
            }));
        }
        let mut times = Vec::new();
        for task in tasks {
            times.push(task.await.unwrap());
        }
        times.sort();
        assert_no_window_overfull(&times, RateLimits::bunq().get);
        // And the limiter is not needlessly slow: 20 requests at 3 per 3 s need 6 full windows.
        assert_eq!(*times.last().unwrap() - times[0], Duration::from_secs(18));
    }

    #[tokio::test(start_paused = true)]
    async fn spread_out_calls_never_overfill_a_window() {
        let limiter = RateLimiter::new(RateLimits::bunq());
        let mut times = Vec::new();
        for gap_ms in [0, 100, 2500, 10, 600, 2990, 0, 0, 1, 3000, 0, 0, 0] {
            tokio::time::advance(Duration::from_millis(gap_ms)).await;
            limiter.acquire(&get(IP_LIST)).await;
            times.push(Instant::now());
        }
        assert_no_window_overfull(&times, RateLimits::bunq().get);
    }

    #[tokio::test(start_paused = true)]
    async fn windows_are_per_route_pattern_and_method() {
        let limiter = RateLimiter::new(RateLimits::bunq());
        for _ in 0..3 {
            limiter.acquire(&get(IP_LIST)).await;
        }
        assert_eq!(
            limiter
                .acquire(&get("/user/{user}/credential-password-ip"))
                .await,
            Duration::ZERO
        );
        assert_eq!(
            limiter.acquire(&LimitKey::new(Method::POST, IP_LIST)).await,
            Duration::ZERO
        );
    }

    #[tokio::test(start_paused = true)]
    async fn session_server_is_limited_to_one_per_thirty_seconds() {
        let limiter = RateLimiter::new(RateLimits::bunq());
        let key = LimitKey::new(Method::POST, SESSION_SERVER_PATTERN);
        assert_eq!(limiter.acquire(&key).await, Duration::ZERO);
        assert_eq!(limiter.acquire(&key).await, Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn put_allows_two_per_window() {
        let limiter = RateLimiter::new(RateLimits::bunq());
        let key = LimitKey::new(
            Method::PUT,
            "/user/{user}/credential-password-ip/{cred}/ip/{id}",
        );
        limiter.acquire(&key).await;
        limiter.acquire(&key).await;
        assert_eq!(limiter.acquire(&key).await, Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_limits_never_wait() {
        let limiter = RateLimiter::new(RateLimits::disabled());
        for _ in 0..10 {
            assert_eq!(limiter.acquire(&get(IP_LIST)).await, Duration::ZERO);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn scaled_windows_shrink_the_wait() {
        let limiter = RateLimiter::new(RateLimits::bunq().with_windows_scaled(0.01));
        for _ in 0..3 {
            limiter.acquire(&get(IP_LIST)).await;
        }
        assert_eq!(
            limiter.acquire(&get(IP_LIST)).await,
            Duration::from_millis(30)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn margin_lengthens_every_window() {
        let limits = RateLimits::bunq().with_margin(Duration::from_millis(250));
        assert_eq!(limits.session_server.window, Duration::from_millis(30_250));
        let limiter = RateLimiter::new(limits);
        for _ in 0..3 {
            limiter.acquire(&get(IP_LIST)).await;
        }
        assert_eq!(
            limiter.acquire(&get(IP_LIST)).await,
            Duration::from_millis(3250)
        );
    }

    #[test]
    fn session_server_gets_its_own_limit_and_other_posts_the_post_limit() {
        let limits = RateLimits::bunq();
        assert_eq!(
            limits.limit_for(&Method::POST, SESSION_SERVER_PATTERN),
            Limit::new(1, Duration::from_secs(30))
        );
        assert_eq!(
            limits.limit_for(&Method::POST, "/device-server"),
            Limit::new(5, Duration::from_secs(3))
        );
    }
}
