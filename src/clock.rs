//! The one wall clock of the process: what the bunq client judges session expiry by, what the
//! daemon's renewal task schedules by and what its metrics stamp. Injected (through
//! [`crate::bunq::ClientSettings::clock`] and the daemon's `Options`) so tests can move time.

use std::sync::Arc;

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
