//! The one wall clock of the process: what the bunq client judges session expiry by, what the
//! daemon's renewal task schedules by and what its metrics stamp. Injected (through
//! [`crate::bunq::ClientSettings::clock`] and the daemon's `Options`) so tests can move time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A source of wall-clock time: `Utc::now` in production, a movable clock in tests. A shared
/// closure rather than a trait object, so it is cheap to clone into every task and client.
pub type WallClock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The system's real-time clock.
pub fn system_clock() -> WallClock {
    Arc::new(Utc::now)
}

/// A wall clock that starts at the current time and then follows tokio's clock, so under
/// `tokio::time::pause()` it advances exactly as far as the test advances time.
pub fn tokio_clock() -> WallClock {
    let origin = tokio::time::Instant::now();
    let wall = Utc::now();
    Arc::new(move || wall + chrono::Duration::from_std(origin.elapsed()).unwrap_or_default())
}

/// A duration as a log field's value: seconds with millisecond precision (`2.346s`), not Rust's
/// `Debug` text (`2.345678901s`, `150µs`), so every duration field reads and parses the same way.
pub fn log_seconds(duration: Duration) -> String {
    format!("{:.3}s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_seconds_are_seconds_with_milliseconds() {
        assert_eq!(log_seconds(Duration::from_nanos(2_345_678_901)), "2.346s");
        assert_eq!(log_seconds(Duration::from_micros(150)), "0.000s");
        assert_eq!(log_seconds(Duration::from_secs(10)), "10.000s");
    }
}
