//! When and how the bunq session is renewed, independently of reconcile runs.
//!
//! [`renewal_deadline`] is the pure decision: renew `renew_before` ahead of the session's expiry
//! (default: 1 h or 10 % of the session timeout, whichever is less), or now if that moment has
//! passed. The daemon's lead is [`renewal_lead`]: `sync.renew_before`, at most half the user's
//! session timeout. [`run_renewal`] is the task around it: it sleeps towards the deadline in
//! steps of at most [`RenewalPolicy::max_sleep`], re-reading the wall clock and the session's
//! current expiry after each step, because tokio's monotonic clock stands still while the host
//! is suspended (a single long sleep would wake up after the session expired), and because a
//! request may have renewed the session inline meanwhile (renewing that new session again would
//! be a second session-server call for nothing). A failed renewal is retried with [`Backoff`];
//! a [`RenewTrigger`] forces an early renewal when bunq ends a session before its time.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::schedule::Backoff;
use crate::clock::WallClock;

/// The default lead time is at most this...
pub const DEFAULT_RENEW_BEFORE_MAX: Duration = Duration::from_secs(3600);
/// ...and at most this fraction of the session timeout (so short sessions are not renewed
/// almost continuously).
pub const DEFAULT_RENEW_BEFORE_FRACTION: u32 = 10;

/// The default lead time: 1 h or 10 % of `session_timeout`, whichever is less.
pub fn default_renew_before(session_timeout: Duration) -> Duration {
    DEFAULT_RENEW_BEFORE_MAX.min(session_timeout / DEFAULT_RENEW_BEFORE_FRACTION)
}

/// The lead time the daemon renews with: `renew_before`, but at most half of
/// `session_timeout`, the lifetime bunq gives every new session of the user.
///
/// Sized from `session_timeout`, never from what the current session has left: after a restart
/// that may be minutes, and half of it would make the task renew later than the client itself
/// considers the session due (the client renews inline at the same lead, see
/// [`crate::bunq::context::SessionContext::is_fresh`]), so both would open a session.
pub fn renewal_lead(renew_before: Duration, session_timeout: Duration) -> Duration {
    renew_before.min(session_timeout / 2)
}

/// When to renew a session that expires at `expires_at`: `renew_before` (or the
/// [default](default_renew_before)) ahead of it, but never before `now`.
pub fn renewal_deadline(
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    session_timeout: Duration,
    renew_before: Option<Duration>,
) -> DateTime<Utc> {
    let lead = renew_before.unwrap_or_else(|| default_renew_before(session_timeout));
    let deadline = expires_at
        .checked_sub_signed(chrono_duration(lead))
        .unwrap_or(now);
    deadline.max(now)
}

/// How the renewal task behaves.
#[derive(Clone, Debug)]
pub struct RenewalPolicy {
    /// The session timeout bunq applies; sizes the default lead time.
    pub session_timeout: Duration,
    /// Lead time before expiry; `None` for the default.
    pub renew_before: Option<Duration>,
    /// Longest single sleep before the wall clock is read again.
    pub max_sleep: Duration,
    /// Delays between failed attempts.
    pub backoff: Backoff,
}

impl RenewalPolicy {
    /// The policy for `session_timeout` with the default lead time, 60 s sleep steps and
    /// 5 s…5 min retry backoff.
    pub fn new(session_timeout: Duration) -> RenewalPolicy {
        RenewalPolicy {
            session_timeout,
            renew_before: None,
            max_sleep: Duration::from_secs(60),
            backoff: Backoff::default(),
        }
    }
}

/// Asks the renewal task to renew as soon as possible (bunq rejected the session early).
/// Cheap to clone; several requests before the task wakes count as one.
#[derive(Clone, Debug, Default)]
pub struct RenewTrigger(Arc<Notify>);

impl RenewTrigger {
    /// A new trigger to share between the task and whoever detects a rejected session.
    pub fn new() -> RenewTrigger {
        RenewTrigger::default()
    }

    /// Requests a renewal now (still subject to the backoff of a failing renewal).
    pub fn renew_now(&self) {
        self.0.notify_one();
    }
}

/// Keeps a session alive until `shutdown`: renews at the deadline, retries failures with
/// backoff, and renews early on `trigger`. A renewal in progress when `shutdown` is cancelled
/// is finished, not dropped.
///
/// `current_expiry` reports the expiry of the session in use now; it is read before every
/// decision, so a session someone else renewed (a request that found it due or rejected) moves
/// the deadline instead of being renewed once more. The task never goes by an expiry earlier
/// than one it saw: a new session always outlives the one it replaced.
///
/// `renew` creates a new session and returns its expiry; it is responsible for installing the
/// session, and for metrics and health. Its error is logged with `Display`, so it must not carry
/// secrets.
pub async fn run_renewal<F, Fut, E>(
    policy: RenewalPolicy,
    clock: WallClock,
    current_expiry: impl Fn() -> DateTime<Utc>,
    mut renew: F,
    trigger: RenewTrigger,
    shutdown: CancellationToken,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<DateTime<Utc>, E>>,
    E: Display,
{
    let mut backoff = policy.backoff.clone();
    let mut retry_not_before: Option<DateTime<Utc>> = None;
    let mut forced = false;
    let mut expires_at = current_expiry();
    loop {
        let now = clock();
        expires_at = expires_at.max(current_expiry());
        let due = if forced {
            now
        } else {
            renewal_deadline(now, expires_at, policy.session_timeout, policy.renew_before)
        };
        let due = retry_not_before.map_or(due, |not_before| due.max(not_before));
        if due <= now {
            // Not raced against shutdown: an abandoned renewal could leave a session created at
            // bunq but never stored. The bunq client's request timeout bounds this wait.
            let attempt = renew().await;
            if shutdown.is_cancelled() {
                return;
            }
            forced = false;
            retry_not_before =
                after_attempt(attempt, &mut expires_at, &policy, &mut backoff, &clock);
            continue;
        }
        let wait = (due - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(policy.max_sleep);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = trigger.0.notified() => forced = true,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Books one renewal attempt: a new expiry moves `expires_at` forward. Returns the earliest time
/// of the next attempt, or `None` to wait for the regular deadline.
fn after_attempt<E: Display>(
    attempt: Result<DateTime<Utc>, E>,
    expires_at: &mut DateTime<Utc>,
    policy: &RenewalPolicy,
    backoff: &mut Backoff,
    clock: &WallClock,
) -> Option<DateTime<Utc>> {
    match attempt {
        Ok(new_expiry) => {
            tracing::info!(expires_at = %new_expiry, "bunq session renewed");
            *expires_at = (*expires_at).max(new_expiry);
            let after = clock();
            let next = renewal_deadline(
                after,
                *expires_at,
                policy.session_timeout,
                policy.renew_before,
            );
            if next <= after {
                // The new session is already inside the renewal window (lead time longer
                // than the session lives): space attempts out instead of spinning.
                let delay = backoff.next_delay();
                tracing::warn!(
                    retry_in = %crate::clock::log_seconds(delay),
                    "renewed bunq session expires within the renewal lead time; \
                     renew_before is too long for the session timeout"
                );
                Some(
                    after
                        .checked_add_signed(chrono_duration(delay))
                        .unwrap_or(after),
                )
            } else {
                backoff.reset();
                None
            }
        }
        Err(error) => {
            let delay = backoff.next_delay();
            tracing::warn!(%error, retry_in = %crate::clock::log_seconds(delay), "bunq session renewal failed");
            let after = clock();
            Some(
                after
                    .checked_add_signed(chrono_duration(delay))
                    .unwrap_or(after),
            )
        }
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};
    use tokio::sync::mpsc;
    use tokio::time::Instant;

    const HOUR: Duration = Duration::from_secs(3600);

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Wall time that advances with tokio's (paused) clock, plus a jump to simulate suspend.
    #[derive(Clone)]
    struct TestClock {
        start_wall: DateTime<Utc>,
        start: Instant,
        jump_secs: Arc<AtomicI64>,
    }

    impl TestClock {
        fn new(start_wall: DateTime<Utc>) -> TestClock {
            TestClock {
                start_wall,
                start: Instant::now(),
                jump_secs: Arc::default(),
            }
        }

        fn now(&self) -> DateTime<Utc> {
            let elapsed = chrono::Duration::from_std(self.start.elapsed()).unwrap();
            self.start_wall
                + elapsed
                + chrono::Duration::seconds(self.jump_secs.load(Ordering::SeqCst))
        }

        /// This clock as the task takes it.
        fn wall(self) -> WallClock {
            Arc::new(move || self.now())
        }
    }

    /// When every test starts: 2026-11-21 09:00 UTC.
    const START: &str = "2026-11-21T09:00:00Z";

    /// A running renewal task and the wall times its fake renew was called at.
    struct Renewal {
        calls: mpsc::UnboundedReceiver<DateTime<Utc>>,
        trigger: RenewTrigger,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    impl Renewal {
        /// Asserts that the next renew calls come at `times` (RFC 3339), in order.
        async fn assert_calls_at(&mut self, times: &[&str]) {
            for at in times {
                assert_eq!(self.calls.recv().await, Some(t(at)), "renewal due at {at}");
            }
        }

        /// Shuts the task down and waits until it has ended.
        async fn stop(&mut self) {
            self.shutdown.cancel();
            (&mut self.task).await.unwrap();
        }
    }

    /// Starts the task with a fake renew that reports each call's wall time and then answers
    /// with the next scripted result (`Ok(lifetime)` → expiry = call time + lifetime).
    fn start(
        policy: RenewalPolicy,
        clock: TestClock,
        expires_at: &str,
        script: Vec<Result<Duration, &'static str>>,
    ) -> Renewal {
        let (tx, calls) = mpsc::unbounded_channel();
        let trigger = RenewTrigger::new();
        let shutdown = CancellationToken::new();
        let mut script = script.into_iter();
        let call_clock = clock.clone();
        let renew = move || {
            let at = call_clock.now();
            tx.send(at).unwrap();
            let next = script.next().unwrap_or(Err("script exhausted"));
            async move { next.map(|lifetime| at + chrono::Duration::from_std(lifetime).unwrap()) }
        };
        let expires_at = t(expires_at);
        let task = tokio::spawn(run_renewal(
            policy,
            clock.wall(),
            move || expires_at,
            renew,
            trigger.clone(),
            shutdown.clone(),
        ));
        Renewal {
            calls,
            trigger,
            shutdown,
            task,
        }
    }

    #[test]
    fn default_lead_is_one_hour_for_long_sessions() {
        assert_eq!(default_renew_before(7 * 24 * HOUR), HOUR);
    }

    #[test]
    fn default_lead_is_ten_percent_for_short_sessions() {
        assert_eq!(
            default_renew_before(Duration::from_secs(1800)),
            Duration::from_secs(180)
        );
    }

    #[test]
    fn lead_is_renew_before_when_the_session_lives_more_than_twice_that() {
        assert_eq!(
            renewal_lead(Duration::from_secs(600), 7 * 24 * HOUR),
            Duration::from_secs(600)
        );
    }

    #[test]
    fn lead_is_half_the_session_timeout_when_renew_before_exceeds_it() {
        assert_eq!(
            renewal_lead(Duration::from_secs(600), Duration::from_secs(300)),
            Duration::from_secs(150)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn session_renewed_inline_moves_the_deadline_instead_of_being_renewed_again() {
        let clock = TestClock::new(t(START));
        let current = Arc::new(std::sync::Mutex::new(t("2026-11-21T10:00:00Z")));
        let (tx, mut calls) = mpsc::unbounded_channel();
        let call_clock = clock.clone();
        let renew = move || {
            let at = call_clock.now();
            tx.send(at).unwrap();
            async move { Ok::<_, &str>(at + chrono::Duration::hours(1)) }
        };
        let mut policy = RenewalPolicy::new(HOUR);
        policy.renew_before = Some(Duration::from_secs(600));
        let shutdown = CancellationToken::new();
        let expiry = Arc::clone(&current);
        let task = tokio::spawn(run_renewal(
            policy,
            clock.wall(),
            move || *expiry.lock().unwrap(),
            renew,
            RenewTrigger::new(),
            shutdown.clone(),
        ));
        // At 09:40 a request finds the session rejected and opens a new one (until 10:40).
        tokio::time::sleep(Duration::from_secs(40 * 60)).await;
        *current.lock().unwrap() = t("2026-11-21T10:40:00Z");
        // The old deadline (09:50) passes without a call; the new one (10:30) is kept.
        assert_eq!(calls.recv().await, Some(t("2026-11-21T10:30:00Z")));
        shutdown.cancel();
        task.await.unwrap();
    }

    /// The deadline computed at `now` for a session expiring at `expires_at`.
    fn deadline(
        now: &str,
        expires_at: &str,
        session_timeout: Duration,
        renew_before: Option<Duration>,
    ) -> DateTime<Utc> {
        renewal_deadline(t(now), t(expires_at), session_timeout, renew_before)
    }

    #[test]
    fn deadline_is_expiry_minus_default_lead() {
        let d = deadline(START, "2026-11-21T12:00:00Z", 7 * 24 * HOUR, None);
        assert_eq!(d, t("2026-11-21T11:00:00Z"));
    }

    #[test]
    fn explicit_lead_overrides_default() {
        let lead = Some(Duration::from_secs(300));
        let d = deadline(START, "2026-11-21T12:00:00Z", 7 * 24 * HOUR, lead);
        assert_eq!(d, t("2026-11-21T11:55:00Z"));
    }

    #[test]
    fn deadline_in_the_past_is_clamped_to_now() {
        let now = "2026-11-21T11:30:00Z";
        let d = deadline(now, "2026-11-21T12:00:00Z", 7 * 24 * HOUR, None);
        assert_eq!(d, t(now));
    }

    #[test]
    fn huge_lead_does_not_overflow() {
        let d = deadline(START, "2026-11-21T12:00:00Z", HOUR, Some(Duration::MAX));
        assert_eq!(d, t(START));
    }

    #[tokio::test(start_paused = true)]
    async fn renews_at_the_deadline_not_before() {
        let (clock, policy) = (TestClock::new(t(START)), RenewalPolicy::new(2 * HOUR));
        let mut renewal = start(policy, clock, "2026-11-21T11:00:00Z", vec![Ok(2 * HOUR)]);
        // Lead = 10 % of 2 h = 12 min.
        renewal.assert_calls_at(&["2026-11-21T10:48:00Z"]).await;
        renewal.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn next_renewal_follows_the_new_expiry() {
        let (clock, policy) = (TestClock::new(t(START)), RenewalPolicy::new(2 * HOUR));
        let mut renewal = start(
            policy,
            clock,
            "2026-11-21T09:30:00Z",
            vec![Ok(2 * HOUR), Ok(2 * HOUR)],
        );
        renewal
            .assert_calls_at(&["2026-11-21T09:18:00Z", "2026-11-21T11:06:00Z"])
            .await;
        renewal.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn failed_renewal_is_retried_with_backoff() {
        let clock = TestClock::new(t(START));
        let mut policy = RenewalPolicy::new(2 * HOUR);
        policy.backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(60));
        let script = vec![Err("503"), Err("503"), Ok(2 * HOUR)];
        let mut renewal = start(policy, clock, "2026-11-21T09:12:00Z", script);
        let retries = [START, "2026-11-21T09:00:05Z", "2026-11-21T09:00:15Z"];
        renewal.assert_calls_at(&retries).await;
        // Success: the next call is the regular one, 12 min before the new expiry.
        renewal.assert_calls_at(&["2026-11-21T10:48:15Z"]).await;
        renewal.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn trigger_renews_at_once() {
        let clock = TestClock::new(t(START));
        let week = RenewalPolicy::new(7 * 24 * HOUR);
        let mut renewal = start(week, clock, "2026-11-28T09:00:00Z", vec![Ok(HOUR)]);
        tokio::time::sleep(Duration::from_secs(30)).await;
        renewal.trigger.renew_now();
        renewal.assert_calls_at(&["2026-11-21T09:00:30Z"]).await;
        renewal.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn wall_clock_jump_is_noticed_within_one_sleep_step() {
        let clock = TestClock::new(t(START));
        let jump = Arc::clone(&clock.jump_secs);
        let week = RenewalPolicy::new(7 * 24 * HOUR);
        let mut renewal = start(week, clock, "2026-11-21T12:00:00Z", vec![Ok(HOUR)]);
        // Host suspended for 2 h 30 min: wall time moves, tokio's clock does not.
        tokio::time::sleep(Duration::from_secs(1)).await;
        jump.store(9000, Ordering::SeqCst);
        let at = renewal.calls.recv().await.unwrap();
        assert!(at <= t("2026-11-21T11:31:01Z"), "renewed only at {at}");
        assert!(at >= t("2026-11-21T11:30:01Z"), "renewed at {at}");
        renewal.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn session_shorter_than_lead_time_does_not_spin() {
        let clock = TestClock::new(t(START));
        let mut policy = RenewalPolicy::new(7 * 24 * HOUR);
        policy.renew_before = Some(HOUR);
        policy.backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(60));
        let lifetime = Duration::from_secs(1800);
        let script = vec![Ok(lifetime), Ok(lifetime), Ok(lifetime)];
        let mut renewal = start(policy, clock, "2026-11-21T09:30:00Z", script);
        let retries = [START, "2026-11-21T09:00:05Z", "2026-11-21T09:00:15Z"];
        renewal.assert_calls_at(&retries).await;
        renewal.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn renewal_in_progress_is_finished_on_shutdown() {
        use std::sync::atomic::AtomicBool;
        let clock = TestClock::new(t(START));
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let finished = Arc::new(AtomicBool::new(false));
        let mut release_rx = Some(release_rx);
        let mut started_tx = Some(started_tx);
        let done = Arc::clone(&finished);
        let renew = move || {
            let release = release_rx.take();
            let started = started_tx.take();
            let done = Arc::clone(&done);
            async move {
                if let (Some(release), Some(started)) = (release, started) {
                    started.send(()).unwrap();
                    release.await.unwrap();
                    done.store(true, Ordering::SeqCst);
                }
                Ok::<_, &str>(t("2026-11-22T09:00:00Z"))
            }
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_renewal(
            RenewalPolicy::new(HOUR),
            clock.wall(),
            || t("2026-11-21T09:00:00Z"),
            renew,
            RenewTrigger::new(),
            shutdown.clone(),
        ));
        started_rx.await.unwrap();
        shutdown.cancel();
        release_tx.send(()).unwrap();
        task.await.unwrap();
        assert!(finished.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_task() {
        let clock = TestClock::new(t(START));
        let week = RenewalPolicy::new(7 * 24 * HOUR);
        let mut renewal = start(week, clock, "2026-11-28T09:00:00Z", vec![]);
        renewal.stop().await;
        assert_eq!(renewal.calls.recv().await, None);
    }
}
