//! The simulator's notion of time.
//!
//! bunq's rules are stated in bunq seconds (a 3 s rate-limit window, a 604800 s session). The
//! simulator measures them on [`tokio::time::Instant`], so `#[tokio::test(start_paused = true)]`
//! tests can jump over them with `tokio::time::advance`, and divides elapsed real time by
//! `time_scale`, so a demo can run bunq's windows 100x faster (`time_scale = 0.01`). Wall-clock
//! timestamps (`created`, `updated`) are the wall time at start plus the simulated elapsed time,
//! so they move with paused time too.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::bunq::model::TIMESTAMP_FORMAT;

/// A point in simulated (bunq) time: how long the simulator has been running, in bunq seconds.
pub(crate) type SimTime = Duration;

/// Converts tokio time into bunq time.
#[derive(Debug, Clone)]
pub(crate) struct Clock {
    /// Tokio instant at simulator start; all simulated times are measured from here.
    origin: Instant,
    /// Wall time at simulator start, the base of every timestamp the simulator writes.
    wall_origin: DateTime<Utc>,
    /// Real seconds per bunq second (1.0 = real time, 0.01 = 100x faster).
    scale: f64,
}

impl Clock {
    /// A clock starting now. `scale` must be finite and positive (checked by the caller).
    pub(crate) fn new(scale: f64) -> Self {
        Clock {
            origin: Instant::now(),
            wall_origin: Utc::now(),
            scale,
        }
    }

    /// Simulated time elapsed since start.
    pub(crate) fn now(&self) -> SimTime {
        self.origin.elapsed().div_f64(self.scale)
    }

    /// A bunq timestamp (`YYYY-MM-DD hh:mm:ss.ffffff`, UTC) for the current simulated time.
    pub(crate) fn timestamp(&self) -> String {
        let elapsed = chrono::Duration::from_std(self.now()).unwrap_or(chrono::Duration::MAX);
        let wall = self
            .wall_origin
            .checked_add_signed(elapsed)
            .unwrap_or(self.wall_origin);
        wall.format(TIMESTAMP_FORMAT).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn simulated_time_runs_faster_by_the_inverse_scale() {
        let clock = Clock::new(0.01);
        tokio::time::advance(Duration::from_millis(30)).await;
        assert_eq!(clock.now(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn timestamps_use_bunq_format_and_follow_simulated_time() {
        let clock = Clock::new(1.0);
        let before = clock.timestamp();
        tokio::time::advance(Duration::from_secs(2)).await;
        let after = clock.timestamp();
        assert!(
            chrono::NaiveDateTime::parse_from_str(&after, TIMESTAMP_FORMAT).is_ok(),
            "{after}"
        );
        assert_eq!(after.len(), "2026-01-01 00:00:00.000000".len());
        assert!(after > before, "{before} {after}");
    }
}
