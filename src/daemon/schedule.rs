//! When reconcile runs happen.
//!
//! The [`Scheduler`] answers one question for the run loop, `next_run().await`, and is told how
//! each run ended with [`Scheduler::run_finished`]. Runs never overlap because the loop runs
//! them inline and only asks for the next one afterwards. The rules:
//!
//! * The first run happens at once ([`Trigger::Startup`]).
//! * **Interval cadence:** the next run is due `interval` (± a small [jitter](jittered)) after the
//!   previous run *finished*, so a slow run pushes the schedule back instead of causing a burst.
//! * **Cron cadence:** runs follow ticks arriving on a channel, fed by a [`CronTicker`] whose
//!   tokio-cron-scheduler job does nothing but send the tick. If ticks stop (the scheduler
//!   died or stalled), a fallback timer ([`cron_fallback`]) still triggers runs.
//! * A run that failed transiently is retried with exponential [`Backoff`], but only while the
//!   retry comes before the next scheduled run; after that the scheduled run is the retry.
//!
//! All waiting uses tokio's clock, so tests drive it with paused time.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::config::CronSchedule;

/// Jitter is at most this fraction of the interval...
pub const JITTER_FRACTION: f64 = 0.1;
/// ...and never more than this, so long intervals stay predictable.
pub const MAX_JITTER: Duration = Duration::from_secs(30);

/// The shortest period the scheduler accepts; shorter ones are raised to it so a bad value can
/// never make the daemon hammer bunq in a tight loop.
pub const MIN_PERIOD: Duration = Duration::from_secs(1);

/// Why [`Scheduler::next_run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The first run after start.
    Startup,
    /// The interval elapsed (interval cadence).
    Interval,
    /// A cron tick arrived (cron cadence).
    Cron,
    /// No cron tick arrived for the fallback period (cron cadence).
    Fallback,
    /// A dynamic source now yields other addresses than the last run used.
    SourceChanged,
    /// SIGHUP (`systemctl reload`) loaded a good config.
    Reload,
    /// The config file changed (an edit, a ConfigMap update) and the new one is good.
    ConfigChanged,
    /// Retry of a transiently failed run; `attempt` counts from 1.
    Retry {
        /// Which retry this is since the last non-transient outcome.
        attempt: u32,
    },
}

impl std::fmt::Display for Trigger {
    /// The `trigger` field of a run's summary line: one lower-case word an operator can grep
    /// for (`retry-2` is the second retry).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Trigger::Startup => "startup",
            Trigger::Interval => "interval",
            Trigger::Cron => "cron",
            Trigger::Fallback => "fallback",
            Trigger::SourceChanged => "source-changed",
            Trigger::Reload => "reload",
            Trigger::ConfigChanged => "config-changed",
            Trigger::Retry { attempt } => return write!(f, "retry-{attempt}"),
        };
        f.write_str(name)
    }
}

/// How a run ended, as far as scheduling cares; decided by [`crate::reconcile::verdict`].
pub use crate::reconcile::verdict::RunOutcome;

/// A source of jitter: each call returns a number in `[-1.0, 1.0]`.
///
/// Injectable so tests are deterministic; [`RandomJitter`] is the production source. Closures
/// `FnMut() -> f64` implement it.
pub trait JitterSource: Send {
    /// The next jitter fraction in `[-1.0, 1.0]`; values outside are clamped.
    fn next_fraction(&mut self) -> f64;
}

impl<F: FnMut() -> f64 + Send> JitterSource for F {
    fn next_fraction(&mut self) -> f64 {
        self()
    }
}

/// Pseudo-random jitter (xorshift64*) seeded from the OS random source; not for cryptography,
/// only to keep several daemons from hitting bunq in lockstep.
#[derive(Debug)]
pub struct RandomJitter {
    /// Never zero.
    state: u64,
}

impl RandomJitter {
    /// A generator with a fresh random seed.
    pub fn new() -> RandomJitter {
        let (a, b) = uuid::Uuid::new_v4().as_u64_pair();
        RandomJitter { state: (a ^ b) | 1 }
    }
}

impl Default for RandomJitter {
    fn default() -> Self {
        RandomJitter::new()
    }
}

impl JitterSource for RandomJitter {
    fn next_fraction(&mut self) -> f64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let x = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d);
        // 53 high bits → [0, 1) → [-1, 1).
        let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
        unit * 2.0 - 1.0
    }
}

/// `interval` moved by `fraction` (in `[-1, 1]`) of the jitter spread: [`JITTER_FRACTION`] of
/// the interval, capped at [`MAX_JITTER`] and at `bound` (the configured `sync.jitter`).
pub fn jittered(interval: Duration, bound: Duration, fraction: f64) -> Duration {
    let fraction = if fraction.is_finite() {
        fraction.clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let spread = interval.mul_f64(JITTER_FRACTION).min(MAX_JITTER).min(bound);
    let offset = spread.mul_f64(fraction.abs());
    if fraction >= 0.0 {
        interval.saturating_add(offset)
    } else {
        interval.saturating_sub(offset)
    }
}

/// Exponential backoff: `initial`, then doubling, never above `max`.
#[derive(Clone, Debug)]
pub struct Backoff {
    /// The first delay.
    initial: Duration,
    /// The cap.
    max: Duration,
    /// Delays handed out since the last reset.
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `initial` and capped at `max` (`max` below `initial` is raised to it).
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The next delay; each call doubles it up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.attempt = self.attempt.saturating_add(1);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// How many delays were handed out since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Start over at `initial` (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

impl Default for Backoff {
    /// 5 s, 10 s, 20 s, … capped at 5 min: long enough for a rate limit window to pass, short
    /// enough that a blip is repaired well before the next regular run.
    fn default() -> Self {
        Backoff::new(Duration::from_secs(5), Duration::from_secs(300))
    }
}

/// Decides when the next reconcile run happens. See the module docs for the rules.
pub struct Scheduler {
    /// Interval cadence: the period. Cron cadence: the fallback period.
    period: Duration,
    /// Cron ticks; `None` in interval cadence, or once the ticker is gone.
    ticks: Option<mpsc::Receiver<()>>,
    /// Whether this is cron cadence (ticks may still have ended).
    cron: bool,
    /// Spreads interval runs.
    jitter: Box<dyn JitterSource>,
    /// The most an interval run is moved by jitter (besides the scheduler's own caps).
    jitter_bound: Duration,
    /// Retry delays after transient failures.
    backoff: Backoff,
    /// Whether the startup run was handed out.
    started: bool,
    /// When the next regular (interval or fallback) run is due.
    next_scheduled: Instant,
    /// When a retry is due, if one is pending.
    retry_at: Option<Instant>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("period", &self.period)
            .field("cron", &self.cron)
            .field("backoff", &self.backoff)
            .field("next_scheduled", &self.next_scheduled)
            .field("retry_at", &self.retry_at)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// Interval cadence: a run at start, then `interval` after each run finished (spread by
    /// [`Scheduler::with_jitter`], if set). Intervals below [`MIN_PERIOD`] are raised to it.
    pub fn every(interval: Duration) -> Scheduler {
        Scheduler::fresh(interval, None)
    }

    /// Cron cadence: a run at start, then one per tick on `ticks`; if no tick arrives for
    /// `fallback` after a run, a run happens anyway (at least [`MIN_PERIOD`]).
    pub fn on_ticks(ticks: mpsc::Receiver<()>, fallback: Duration) -> Scheduler {
        Scheduler::fresh(fallback, Some(ticks))
    }

    /// A scheduler before its first run: `period` (the interval, or the cron fallback) raised
    /// to [`MIN_PERIOD`], cron cadence when `ticks` are given, no jitter, the default backoff.
    fn fresh(period: Duration, ticks: Option<mpsc::Receiver<()>>) -> Scheduler {
        let period = period.max(MIN_PERIOD);
        Scheduler {
            period,
            cron: ticks.is_some(),
            ticks,
            jitter: Box::new(|| 0.0),
            jitter_bound: Duration::ZERO,
            backoff: Backoff::default(),
            started: false,
            next_scheduled: Instant::now() + period,
            retry_at: None,
        }
    }

    /// Spreads interval runs by up to `bound` (`sync.jitter`, as configured), drawing from
    /// `source`; the spread is further capped as [`jittered`] says. Cron cadence ignores it.
    pub fn with_jitter(
        mut self,
        bound: Duration,
        source: impl JitterSource + 'static,
    ) -> Scheduler {
        self.jitter = Box::new(source);
        self.jitter_bound = bound;
        self
    }

    /// Replaces the default retry backoff.
    pub fn with_backoff(mut self, backoff: Backoff) -> Scheduler {
        self.backoff = backoff;
        self
    }

    /// Waits until the next run is due and says why. Cancel-safe: dropping the future (e.g. in
    /// a `select!` that took a signal branch) loses no trigger.
    ///
    /// Once a trigger is returned it is consumed: until [`Scheduler::run_finished`] re-arms the
    /// timers, a provisional deadline one period away applies.
    pub async fn next_run(&mut self) -> Trigger {
        if !self.started {
            self.started = true;
            self.consume(Instant::now());
            return Trigger::Startup;
        }
        loop {
            let retry_at = self.retry_at;
            let regular = if self.cron {
                Trigger::Fallback
            } else {
                Trigger::Interval
            };
            tokio::select! {
                biased;
                _ = sleep_until(retry_at.unwrap_or(self.next_scheduled)), if retry_at.is_some() => {
                    self.consume(Instant::now());
                    return Trigger::Retry { attempt: self.backoff.attempt() };
                }
                tick = recv_tick(&mut self.ticks) => match tick {
                    Some(()) => {
                        self.consume(Instant::now());
                        return Trigger::Cron;
                    }
                    None => {
                        tracing::warn!("cron ticker stopped; runs continue on the fallback period");
                        self.ticks = None;
                    }
                },
                _ = sleep_until(self.next_scheduled) => {
                    self.consume(Instant::now());
                    return regular;
                }
            }
        }
    }

    /// Tells the scheduler a run ended with `outcome`, re-arming the timers from now.
    ///
    /// Call it after every run, including runs the loop started on its own (after a reload).
    pub fn run_finished(&mut self, outcome: RunOutcome) {
        let now = Instant::now();
        let period = if self.cron {
            self.period
        } else {
            jittered(self.period, self.jitter_bound, self.jitter.next_fraction())
        };
        self.next_scheduled = now + period;
        self.retry_at = None;
        match outcome {
            RunOutcome::Completed | RunOutcome::Failed => self.backoff.reset(),
            RunOutcome::TransientFailure => {
                let retry_at = now + self.backoff.next_delay();
                if retry_at < self.next_scheduled {
                    self.retry_at = Some(retry_at);
                }
            }
        }
    }

    /// When the next regular (interval or fallback) run is due.
    pub fn next_scheduled(&self) -> Instant {
        self.next_scheduled
    }

    fn consume(&mut self, now: Instant) {
        self.retry_at = None;
        self.next_scheduled = now + self.period;
    }
}

/// The next tick, or pending forever when there is no tick source.
async fn recv_tick(ticks: &mut Option<mpsc::Receiver<()>>) -> Option<()> {
    match ticks {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Why a cron schedule could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The expression does not parse (six fields, seconds first: `sec min hour dom mon dow`).
    #[error(
        "invalid cron expression {expr:?}: expected six fields `sec min hour day-of-month month \
         day-of-week`, e.g. \"0 */5 * * * *\""
    )]
    InvalidCron {
        /// The rejected expression.
        expr: String,
    },
    /// The cron scheduler could not be started or stopped.
    #[error("cron scheduler failed: {0}")]
    Scheduler(String),
}

fn cron_job(
    expr: &str,
    run: impl FnMut(uuid::Uuid, JobScheduler) + Send + Sync + 'static,
) -> Result<Job, ScheduleError> {
    Job::new(expr, run).map_err(|_| ScheduleError::InvalidCron {
        expr: expr.to_owned(),
    })
}

/// The fallback period in cron cadence: `max(interval, 2 × the cron period)`, so the fallback
/// only fires when ticks really stopped. The period was measured when the config was read.
pub fn cron_fallback(interval: Duration, schedule: &CronSchedule) -> Duration {
    interval.max(schedule.period().saturating_mul(2))
}

/// A running tokio-cron-scheduler whose only job sends a tick per firing.
///
/// The channel holds one tick: firings while a run is in progress coalesce into one run after
/// it. Dropping the receiver makes sends fail silently.
pub struct CronTicker {
    /// Kept to shut the scheduler down.
    scheduler: JobScheduler,
}

impl std::fmt::Debug for CronTicker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CronTicker").finish_non_exhaustive()
    }
}

impl CronTicker {
    /// Starts a scheduler firing on `expr` (six fields, UTC) and returns the tick receiver.
    pub async fn start(expr: &str) -> Result<(CronTicker, mpsc::Receiver<()>), ScheduleError> {
        let (tx, rx) = mpsc::channel(1);
        let job = cron_job(expr, move |_, _| {
            // Full means a tick is already pending; closed means nobody listens. Either way
            // there is nothing else to do here: the job must never do work itself.
            let _ = tx.try_send(());
        })?;
        let scheduler = JobScheduler::new()
            .await
            .map_err(|e| ScheduleError::Scheduler(e.to_string()))?;
        scheduler
            .add(job)
            .await
            .map_err(|e| ScheduleError::Scheduler(e.to_string()))?;
        scheduler
            .start()
            .await
            .map_err(|e| ScheduleError::Scheduler(e.to_string()))?;
        Ok((CronTicker { scheduler }, rx))
    }

    /// Stops the scheduler.
    pub async fn shutdown(mut self) -> Result<(), ScheduleError> {
        self.scheduler
            .shutdown()
            .await
            .map_err(|e| ScheduleError::Scheduler(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    const MIN: Duration = secs(60);

    const fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    /// Polls `next_run` once without letting time pass beyond what is already due.
    async fn due_now(s: &mut Scheduler) -> Option<Trigger> {
        tokio::time::timeout(Duration::ZERO, s.next_run())
            .await
            .ok()
    }

    /// Takes the next trigger and reports the run's `outcome`.
    async fn run_once(s: &mut Scheduler, outcome: RunOutcome) {
        s.next_run().await;
        s.run_finished(outcome);
    }

    /// A cron scheduler with `fallback`, its startup run done, and the sender of its ticks.
    async fn cron_after_startup(fallback: Duration) -> (mpsc::Sender<()>, Scheduler) {
        let (tx, rx) = mpsc::channel(1);
        let mut s = Scheduler::on_ticks(rx, fallback);
        run_once(&mut s, RunOutcome::Completed).await;
        (tx, s)
    }

    /// Asserts that nothing is due once `quiet` has passed and that `trigger` is due `then`
    /// later.
    async fn assert_due_only_after(
        s: &mut Scheduler,
        quiet: Duration,
        then: Duration,
        trigger: Trigger,
    ) {
        advance(quiet).await;
        assert_eq!(due_now(s).await, None, "due before {quiet:?}");
        advance(then).await;
        assert_eq!(
            due_now(s).await,
            Some(trigger),
            "after {quiet:?} + {then:?}"
        );
    }

    #[test]
    fn jitter_is_ten_percent_of_short_intervals() {
        assert_eq!(jittered(MIN, Duration::MAX, 1.0), secs(66));
        assert_eq!(jittered(MIN, Duration::MAX, -1.0), secs(54));
        assert_eq!(jittered(MIN, Duration::MAX, 0.5), secs(63));
        assert_eq!(jittered(MIN, Duration::MAX, 0.0), MIN);
    }

    #[test]
    fn jitter_is_capped_for_long_intervals() {
        let hour = secs(3600);
        assert_eq!(jittered(hour, Duration::MAX, 1.0), hour + MAX_JITTER);
        assert_eq!(jittered(hour, Duration::MAX, -1.0), hour - MAX_JITTER);
    }

    #[test]
    fn out_of_range_jitter_is_clamped() {
        assert_eq!(jittered(MIN, Duration::MAX, 7.0), secs(66));
        assert_eq!(jittered(MIN, Duration::MAX, f64::NAN), MIN);
    }

    #[test]
    fn random_jitter_stays_in_range() {
        let mut j = RandomJitter::new();
        for _ in 0..10_000 {
            let f = j.next_fraction();
            assert!((-1.0..1.0).contains(&f), "{f}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = Backoff::new(secs(1), secs(5));
        let delays: Vec<u64> = (0..5).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        assert_eq!(b.attempt(), 5);
    }

    #[test]
    fn backoff_reset_starts_over() {
        let mut b = Backoff::new(secs(1), secs(60));
        b.next_delay();
        b.next_delay();
        b.reset();
        assert_eq!(b.next_delay(), secs(1));
    }

    #[test]
    fn backoff_survives_many_attempts() {
        let mut b = Backoff::new(secs(1), secs(60));
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.next_delay(), secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn first_run_is_immediate() {
        let mut s = Scheduler::every(MIN);
        assert_eq!(due_now(&mut s).await, Some(Trigger::Startup));
    }

    #[tokio::test(start_paused = true)]
    async fn next_run_waits_the_interval_after_the_run_finished() {
        let mut s = Scheduler::every(MIN);
        s.next_run().await;
        advance(secs(10)).await; // the run takes 10 s
        s.run_finished(RunOutcome::Completed);
        assert_due_only_after(&mut s, secs(59), secs(1), Trigger::Interval).await;
    }

    #[tokio::test(start_paused = true)]
    async fn interval_is_jittered_by_the_injected_source() {
        let mut s = Scheduler::every(MIN).with_jitter(Duration::MAX, || 1.0);
        run_once(&mut s, RunOutcome::Completed).await;
        assert_due_only_after(&mut s, secs(65), secs(1), Trigger::Interval).await;
    }

    #[tokio::test(start_paused = true)]
    async fn zero_interval_is_raised_to_the_minimum() {
        let mut s = Scheduler::every(Duration::ZERO);
        run_once(&mut s, RunOutcome::Completed).await;
        assert_eq!(due_now(&mut s).await, None);
        advance(MIN_PERIOD).await;
        assert_eq!(due_now(&mut s).await, Some(Trigger::Interval));
    }

    #[tokio::test(start_paused = true)]
    async fn returned_trigger_does_not_fire_twice() {
        let mut s = Scheduler::every(MIN);
        s.next_run().await;
        assert_eq!(due_now(&mut s).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failure_is_retried_with_backoff() {
        let mut s = Scheduler::every(secs(600)).with_backoff(Backoff::new(secs(5), secs(60)));
        run_once(&mut s, RunOutcome::TransientFailure).await;
        assert_due_only_after(&mut s, secs(4), secs(1), Trigger::Retry { attempt: 1 }).await;
        s.run_finished(RunOutcome::TransientFailure);
        assert_due_only_after(&mut s, secs(9), secs(1), Trigger::Retry { attempt: 2 }).await;
    }

    #[tokio::test(start_paused = true)]
    async fn success_after_retry_resets_backoff() {
        let mut s = Scheduler::every(secs(600)).with_backoff(Backoff::new(secs(5), secs(60)));
        run_once(&mut s, RunOutcome::TransientFailure).await;
        run_once(&mut s, RunOutcome::Completed).await;
        run_once(&mut s, RunOutcome::TransientFailure).await;
        advance(secs(5)).await;
        assert_eq!(due_now(&mut s).await, Some(Trigger::Retry { attempt: 1 }));
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_is_scheduled_past_the_next_regular_run() {
        let mut s = Scheduler::every(MIN).with_backoff(Backoff::new(secs(90), secs(300)));
        run_once(&mut s, RunOutcome::TransientFailure).await;
        advance(MIN).await;
        assert_eq!(due_now(&mut s).await, Some(Trigger::Interval));
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failure_waits_for_the_next_regular_run() {
        let mut s = Scheduler::every(MIN);
        run_once(&mut s, RunOutcome::Failed).await;
        assert_due_only_after(&mut s, secs(59), secs(1), Trigger::Interval).await;
    }

    #[tokio::test(start_paused = true)]
    async fn cron_tick_triggers_a_run() {
        let (tx, mut s) = cron_after_startup(secs(3600)).await;
        assert_eq!(due_now(&mut s).await, None);
        tx.send(()).await.unwrap();
        assert_eq!(due_now(&mut s).await, Some(Trigger::Cron));
    }

    #[tokio::test(start_paused = true)]
    async fn fallback_runs_when_cron_ticks_stop() {
        let (_tx, mut s) = cron_after_startup(secs(3600)).await;
        assert_due_only_after(&mut s, secs(3599), secs(1), Trigger::Fallback).await;
    }

    #[tokio::test(start_paused = true)]
    async fn fallback_runs_when_cron_ticker_is_gone() {
        let (tx, rx) = mpsc::channel(1);
        drop(tx);
        let mut s = Scheduler::on_ticks(rx, secs(100));
        run_once(&mut s, RunOutcome::Completed).await;
        advance(secs(100)).await;
        assert_eq!(due_now(&mut s).await, Some(Trigger::Fallback));
    }

    #[tokio::test(start_paused = true)]
    async fn cron_tick_pushes_the_fallback_back() {
        let (tx, mut s) = cron_after_startup(secs(100)).await;
        advance(secs(90)).await;
        tx.send(()).await.unwrap();
        assert_eq!(s.next_run().await, Trigger::Cron);
        s.run_finished(RunOutcome::Completed);
        advance(secs(90)).await;
        assert_eq!(due_now(&mut s).await, None);
    }

    #[test]
    fn jitter_is_bounded_by_the_configured_jitter() {
        let hour = secs(3600);
        let bound = secs(15);
        assert_eq!(jittered(hour, bound, 1.0), hour + bound);
        assert_eq!(jittered(hour, bound, -0.5), hour - bound / 2);
        assert_eq!(jittered(MIN, bound, 1.0), secs(66));
        assert_eq!(jittered(MIN, Duration::ZERO, 1.0), MIN);
    }

    #[tokio::test(start_paused = true)]
    async fn interval_without_jitter_is_exact() {
        let mut s = Scheduler::every(MIN);
        run_once(&mut s, RunOutcome::Completed).await;
        assert_due_only_after(
            &mut s,
            MIN - Duration::from_millis(1),
            Duration::from_millis(1),
            Trigger::Interval,
        )
        .await;
    }

    #[test]
    fn cron_fallback_is_at_least_twice_the_period() {
        let every_five_minutes = CronSchedule::parse("0 */5 * * * *").unwrap();
        assert_eq!(cron_fallback(MIN, &every_five_minutes), 10 * MIN);
        assert_eq!(cron_fallback(secs(3600), &every_five_minutes), secs(3600));
    }

    #[tokio::test]
    async fn five_field_cron_is_rejected_by_the_ticker_with_a_hint() {
        let err = CronTicker::start("*/5 * * * *").await.unwrap_err();
        assert!(matches!(err, ScheduleError::InvalidCron { .. }), "{err}");
        assert!(err.to_string().contains("expected six fields"), "{err}");
    }
}
