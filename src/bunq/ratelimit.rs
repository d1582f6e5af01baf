//! The client-side rate limiter: bunq's sliding windows, enforced before a request leaves.
//!
//! bunq allows, per IP and endpoint, at most N requests in *any* window of W seconds: GET 3 per
//! 3 s, POST 5 per 3 s, PUT 2 per 3 s, and `POST /session-server` 1 per 30 s. A token bucket
//! would not honour that (a bucket with burst 3 refilled at 1/s admits a 4th request inside some
//! 3-second window), so this limiter keeps, per key, N slots and admits a new request only when
//! a slot is free.
//!
//! bunq counts a request when it *arrives*, which the client cannot observe: it lies somewhere
//! between sending and the response. So a slot is occupied from the moment it is reserved, stays
//! occupied while its request is in flight (see [`Permit`]), and is freed one window after the
//! response or the error came back. The next request in that slot therefore arrives at least one
//! window after the previous one did, whatever the latency of either.
//!
//! Keys are method + route *pattern* (`GET /user/{user}/credential-password-ip/{cred}/ip`): bunq
//! counts per endpoint, so listing the IPs of two credentials shares one window.
//!
//! A window is half-open: a request completed at `t` holds its slot until `t + W`. Time comes
//! from `tokio::time::Instant`, so tests run with paused time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::Method;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The route pattern of `POST /session-server`, which has its own, much stricter limit.
pub const SESSION_SERVER_PATTERN: &str = "/session-server";

/// The safety margin the transport adds to bunq's windows by default (see
/// [`RateLimits::with_margin`]).
///
/// Not for network jitter: windows count from the response, which comes after bunq counted the
/// arrival, so latency cannot bring two requests of one slot closer than a window at bunq. The
/// margin covers what bunq does not document: whether its window boundary is inclusive, and how
/// finely it timestamps arrivals (bunq's own JavaScript SDK pads 3 s windows to 3.35 s). It costs
/// under a tenth of the burst throughput; a 429 costs a retry with backoff.
pub const DEFAULT_MARGIN: Duration = Duration::from_millis(250);

/// A wait for a window at least this long is said (at info, target `rate_limit`) before it
/// starts, so a long apply or the demo does not look hung; shorter ones are not worth a line.
pub const WAIT_NOTE_AFTER: Duration = Duration::from_secs(1);

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
    /// What a client keeps to by default: bunq's limits with [`DEFAULT_MARGIN`] on every window,
    /// for bunq's undocumented window arithmetic and network jitter.
    pub fn client_default() -> Self {
        RateLimits::bunq().with_margin(DEFAULT_MARGIN)
    }

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

    /// Every limit, so adjustments cannot forget one.
    fn all_mut(&mut self) -> [&mut Limit; 5] {
        [
            &mut self.get,
            &mut self.post,
            &mut self.put,
            &mut self.delete,
            &mut self.session_server,
        ]
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
        for limit in self.all_mut() {
            limit.window = limit.window.mul_f64(factor);
        }
        self
    }

    /// The same limits with `margin` added to every window, for the transport's default
    /// [`DEFAULT_MARGIN`].
    pub fn with_margin(mut self, margin: Duration) -> Self {
        for limit in self.all_mut() {
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

/// One admitted request in a window: in flight until its permit is released, then counted for
/// one window from the moment it completed.
#[derive(Debug)]
struct Slot {
    /// Identifies the slot for its [`Permit`].
    id: u64,
    /// When the response (or the error) came back; `None` while the request is in flight.
    completed_at: Option<Instant>,
}

/// The slots of every window, and the id of the next slot.
#[derive(Debug, Default)]
struct Windows {
    slots: HashMap<LimitKey, Vec<Slot>>,
    next_id: u64,
}

/// What [`RateLimiter::try_reserve`] decided.
enum Admission {
    /// A slot was taken; its id.
    Reserved(u64),
    /// The window is full of completed requests; the oldest leaves it at this instant.
    FreeAt(Instant),
    /// The window is full and every request in it is still in flight: wait for one to complete.
    AllInFlight,
}

/// Admits requests so that no window ever holds more than its limit. Shared by all tasks of a
/// client (`&self` methods); the lock is never held across an await.
#[derive(Debug)]
pub struct RateLimiter {
    limits: RateLimits,
    windows: Mutex<Windows>,
    /// Wakes the tasks waiting on a window whose slots were all in flight when one completes.
    completed: Notify,
}

impl RateLimiter {
    /// The process's one limiter, with [`RateLimits::client_default`]; created on first use.
    ///
    /// bunq counts requests per calling IP, so two clients of one process (the daemon's
    /// connection attempts after each backoff, `demo`'s walkthrough and then its daemon) spend
    /// the same windows: with a limiter each, session-server's 1 per 30 s would hold per client
    /// only, and bunq may block an IP that calls it more often. The commands and the daemon
    /// hand this limiter to every client they build (`ClientSettings::rate_limiter`); tests
    /// that run many independent simulated banks in one process give each client its own.
    pub fn process() -> Arc<RateLimiter> {
        static PROCESS: OnceLock<Arc<RateLimiter>> = OnceLock::new();
        Arc::clone(PROCESS.get_or_init(|| Arc::new(RateLimiter::new(RateLimits::client_default()))))
    }

    /// A limiter with no history.
    pub fn new(limits: RateLimits) -> Self {
        RateLimiter {
            limits,
            windows: Mutex::new(Windows::default()),
            completed: Notify::new(),
        }
    }

    /// The configured limits.
    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Waits until a request on `key` fits its window and takes a slot for it. Hold the returned
    /// [`Permit`] while the request is in flight and drop it (or call [`Permit::complete`]) when
    /// the response or the error has come back: the slot counts from that moment.
    pub async fn acquire(&self, key: &LimitKey) -> Permit<'_> {
        self.acquire_noting(key, |_| {}).await
    }

    /// [`RateLimiter::acquire`], calling `on_wait` with the time to wait each time the window
    /// is full and the request has to wait for a slot to leave it: what a progress display
    /// shows instead of looking hung. (A window full of requests still in flight is waited on
    /// without a call: its requests complete within their own latency.)
    pub async fn acquire_noting(
        &self,
        key: &LimitKey,
        mut on_wait: impl FnMut(Duration),
    ) -> Permit<'_> {
        let started = Instant::now();
        if !self.limits.enabled {
            return Permit {
                limiter: self,
                key: None,
                waited: Duration::ZERO,
            };
        }
        let limit = self.limits.limit_for(&key.method, &key.route_pattern);
        let mut noted = false;
        loop {
            // Registered before looking, so a completion between the look and the wait is not
            // missed.
            let completed = self.completed.notified();
            let mut completed = std::pin::pin!(completed);
            completed.as_mut().enable();
            match self.try_reserve(key, limit, Instant::now()) {
                Admission::Reserved(id) => {
                    return Permit {
                        limiter: self,
                        key: Some((key.clone(), id)),
                        waited: started.elapsed(),
                    };
                }
                Admission::FreeAt(free_at) => {
                    let wait = free_at.saturating_duration_since(Instant::now());
                    if !noted && wait >= WAIT_NOTE_AFTER {
                        noted = true;
                        tracing::info!(
                            target: "rate_limit",
                            request = %format!("{} {}", key.method, key.route_pattern),
                            wait = %crate::clock::log_seconds(wait),
                            "waiting for bunq's rate-limit window"
                        );
                    }
                    on_wait(wait);
                    tokio::time::sleep_until(free_at).await;
                }
                Admission::AllInFlight => completed.await,
            }
        }
    }

    /// Takes a slot on `key` at `now` if the window has room, or says when to look again.
    fn try_reserve(&self, key: &LimitKey, limit: Limit, now: Instant) -> Admission {
        let max = limit.max_requests.max(1);
        let mut windows = self.lock();
        let Windows { slots, next_id } = &mut *windows;
        let slots = slots.entry(key.clone()).or_default();
        slots.retain(|slot| {
            slot.completed_at
                .is_none_or(|completed| completed + limit.window > now)
        });
        if slots.len() < max {
            let id = *next_id;
            *next_id = next_id.wrapping_add(1);
            slots.push(Slot {
                id,
                completed_at: None,
            });
            return Admission::Reserved(id);
        }
        // A request still in flight completes after now, so it frees its slot later than any
        // completed one: the earliest completed slot decides.
        match slots.iter().filter_map(|slot| slot.completed_at).min() {
            Some(oldest) => Admission::FreeAt(oldest + limit.window),
            None => Admission::AllInFlight,
        }
    }

    /// Starts the window of slot `id` on `key` now.
    fn complete(&self, key: &LimitKey, id: u64) {
        let now = Instant::now();
        {
            let mut windows = self.lock();
            if let Some(slot) = windows
                .slots
                .get_mut(key)
                .and_then(|slots| slots.iter_mut().find(|slot| slot.id == id))
            {
                slot.completed_at = Some(now);
            }
        }
        self.completed.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows> {
        self.windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A slot in a window, held while its request is in flight.
///
/// bunq counts a request when it *arrives*, and the arrival is somewhere between sending and
/// the response. Counting the window from the completion (never earlier than the arrival) and
/// keeping the slot occupied until then guarantees that the next request in that slot arrives
/// at least one window after this one did, however long either spent on the network.
#[derive(Debug)]
#[must_use = "the slot is released (and its window starts) when the permit is dropped"]
pub struct Permit<'a> {
    limiter: &'a RateLimiter,
    /// The window and slot; `None` when limiting is disabled.
    key: Option<(LimitKey, u64)>,
    waited: Duration,
}

impl Permit<'_> {
    /// How long [`RateLimiter::acquire`] waited for this slot (zero when one was free).
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// Marks the request as completed now (the same as dropping the permit).
    pub fn complete(self) {}
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some((key, id)) = self.key.take() {
            self.limiter.complete(&key, id);
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

    /// A request with no latency: takes a slot and completes at once. Returns the wait.
    async fn send_now(limiter: &RateLimiter, key: &LimitKey) -> Duration {
        limiter.acquire(key).await.waited()
    }

    /// Lets spawned tasks run up to their next wait.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    /// Every window `[t, t + W)` that starts at a recorded arrival holds at most `max` arrivals.
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
    async fn the_fourth_get_waits_until_the_first_has_been_complete_for_a_window() {
        let limiter = RateLimiter::new(RateLimits::bunq());
        let start = Instant::now();
        let first = limiter.acquire(&get(IP_LIST)).await;
        let second = limiter.acquire(&get(IP_LIST)).await;
        let third = limiter.acquire(&get(IP_LIST)).await;
        assert_eq!(third.waited(), Duration::ZERO);
        tokio::time::advance(Duration::from_millis(500)).await;
        first.complete();
        tokio::time::advance(Duration::from_millis(500)).await;
        drop((second, third));
        tokio::time::advance(Duration::from_millis(1000)).await;

        let waited = send_now(&limiter, &get(IP_LIST)).await;
        // The first request's window runs from its completion at 0.5 s to 3.5 s.
        assert_eq!(waited, Duration::from_millis(1500));
        assert_eq!(Instant::now() - start, Duration::from_millis(3500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_must_wait_for_the_window_says_how_long_before_it_waits() {
        let limiter = RateLimiter::new(RateLimits::bunq());
        let mut waits = Vec::new();
        for _ in 0..3 {
            drop(
                limiter
                    .acquire_noting(&get(IP_LIST), |wait| waits.push(wait))
                    .await,
            );
        }
        assert!(waits.is_empty(), "three GETs fit the window: {waits:?}");
        drop(
            limiter
                .acquire_noting(&get(IP_LIST), |wait| waits.push(wait))
                .await,
        );
        assert_eq!(waits, [Duration::from_secs(3)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_is_not_freed_while_its_request_is_in_flight() {
        let limiter = Arc::new(RateLimiter::new(RateLimits::bunq()));
        let start = Instant::now();
        let mut in_flight = Vec::new();
        for _ in 0..3 {
            in_flight.push(limiter.acquire(&get(IP_LIST)).await);
        }
        let fourth = tokio::spawn({
            let limiter = Arc::clone(&limiter);
            async move {
                let waited = send_now(&limiter, &get(IP_LIST)).await;
                (waited, Instant::now())
            }
        });
        settle().await;
        tokio::time::advance(Duration::from_secs(10)).await;
        settle().await;
        assert!(
            !fourth.is_finished(),
            "a slot was freed while its request was in flight"
        );

        in_flight.remove(0).complete();
        let (waited, admitted) = fourth.await.unwrap();
        assert_eq!(admitted - start, Duration::from_secs(13));
        assert_eq!(waited, Duration::from_secs(13));
        drop(in_flight);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_with_uneven_latency_never_puts_more_than_the_limit_in_any_window_at_bunq() {
        // bunq counts a request when it arrives, anywhere between sending and the response. Each
        // request here takes its own time; half arrive at once, half just before the response.
        let limiter = Arc::new(RateLimiter::new(RateLimits::bunq()));
        let mut tasks = Vec::new();
        for i in 0..20u64 {
            let limiter = Arc::clone(&limiter);
            tasks.push(tokio::spawn(async move {
                let permit = limiter.acquire(&get(IP_LIST)).await;
                let sent = Instant::now();
                let latency = Duration::from_millis((i * 7919) % 13 * 100);
                tokio::time::sleep(latency).await;
                drop(permit);
                if i % 2 == 0 { sent } else { sent + latency }
            }));
        }
        let mut arrivals = Vec::new();
        for task in tasks {
            arrivals.push(task.await.unwrap());
        }
        arrivals.sort();
        assert_no_window_overfull(&arrivals, RateLimits::bunq().get);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_without_latency_uses_every_slot() {
        let limiter = Arc::new(RateLimiter::new(RateLimits::bunq()));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let limiter = Arc::clone(&limiter);
            tasks.push(tokio::spawn(async move {
                send_now(&limiter, &get(IP_LIST)).await;
                Instant::now()
            }));
        }
        let mut times = Vec::new();
        for task in tasks {
            times.push(task.await.unwrap());
        }
        times.sort();
        assert_no_window_overfull(&times, RateLimits::bunq().get);
        // Not needlessly slow: 20 requests at 3 per 3 s need 6 full windows.
        assert_eq!(*times.last().unwrap() - times[0], Duration::from_secs(18));
    }

    #[tokio::test(start_paused = true)]
    async fn spread_out_calls_never_overfill_a_window() {
        let limiter = RateLimiter::new(RateLimits::bunq());
        let mut times = Vec::new();
        for gap_ms in [0, 100, 2500, 10, 600, 2990, 0, 0, 1, 3000, 0, 0, 0] {
            tokio::time::advance(Duration::from_millis(gap_ms)).await;
            send_now(&limiter, &get(IP_LIST)).await;
            times.push(Instant::now());
        }
        assert_no_window_overfull(&times, RateLimits::bunq().get);
    }

    #[tokio::test(start_paused = true)]
    async fn windows_are_per_route_pattern_and_method() {
        let limiter = RateLimiter::new(RateLimits::bunq());
        for _ in 0..3 {
            send_now(&limiter, &get(IP_LIST)).await;
        }
        assert_eq!(
            send_now(&limiter, &get("/user/{user}/credential-password-ip")).await,
            Duration::ZERO
        );
        assert_eq!(
            send_now(&limiter, &LimitKey::new(Method::POST, IP_LIST)).await,
            Duration::ZERO
        );
    }

    #[tokio::test(start_paused = true)]
    async fn session_server_is_limited_to_one_per_thirty_seconds() {
        let limiter = RateLimiter::new(RateLimits::bunq());
        let key = LimitKey::new(Method::POST, SESSION_SERVER_PATTERN);
        assert_eq!(send_now(&limiter, &key).await, Duration::ZERO);
        assert_eq!(send_now(&limiter, &key).await, Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn put_allows_two_per_window() {
        let limiter = RateLimiter::new(RateLimits::bunq());
        let key = LimitKey::new(
            Method::PUT,
            "/user/{user}/credential-password-ip/{cred}/ip/{id}",
        );
        send_now(&limiter, &key).await;
        send_now(&limiter, &key).await;
        assert_eq!(send_now(&limiter, &key).await, Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_given_up_takes_no_slot() {
        let limiter = RateLimiter::new(RateLimits::bunq());
        for _ in 0..3 {
            send_now(&limiter, &get(IP_LIST)).await;
        }
        let gave_up =
            tokio::time::timeout(Duration::from_secs(1), limiter.acquire(&get(IP_LIST))).await;
        assert!(gave_up.is_err());
        tokio::time::advance(Duration::from_secs(2)).await;
        for _ in 0..3 {
            assert_eq!(send_now(&limiter, &get(IP_LIST)).await, Duration::ZERO);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_limits_never_wait() {
        let limiter = RateLimiter::new(RateLimits::disabled());
        let mut held = Vec::new();
        for _ in 0..10 {
            let permit = limiter.acquire(&get(IP_LIST)).await;
            assert_eq!(permit.waited(), Duration::ZERO);
            held.push(permit);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn scaled_windows_shrink_the_wait() {
        let limiter = RateLimiter::new(RateLimits::bunq().with_windows_scaled(0.01));
        for _ in 0..3 {
            send_now(&limiter, &get(IP_LIST)).await;
        }
        assert_eq!(
            send_now(&limiter, &get(IP_LIST)).await,
            Duration::from_millis(30)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn margin_lengthens_every_window() {
        let limits = RateLimits::bunq().with_margin(Duration::from_millis(250));
        assert_eq!(limits.session_server.window, Duration::from_millis(30_250));
        let limiter = RateLimiter::new(limits);
        for _ in 0..3 {
            send_now(&limiter, &get(IP_LIST)).await;
        }
        assert_eq!(
            send_now(&limiter, &get(IP_LIST)).await,
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
