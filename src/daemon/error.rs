//! Why the daemon could not start: one variant per start-up failure.

use crate::bunq::BunqError;
use crate::config;
use crate::daemon::lock::LockError;
use crate::daemon::schedule;

/// Why the daemon could not start (once started, it only stops on a signal).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The config file is invalid or unreadable at start.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Another instance holds the state directory.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The health listener could not bind.
    #[error("cannot listen on {address} (http.listen): {source}")]
    Listen {
        /// The configured address.
        address: std::net::SocketAddr,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    /// The bunq settings are unusable (e.g. a refused base URL).
    #[error(transparent)]
    Bunq(#[from] BunqError),
    /// The cron expression could not be scheduled.
    #[error(transparent)]
    Schedule(#[from] schedule::ScheduleError),
}
