//! API-key rotation without a restart.
//!
//! The key source (the key file, or `$CREDENTIALS_DIRECTORY/<name>`) is watched like the config
//! file ([`crate::daemon::watch::watch_file`]), and SIGHUP checks it too. When it holds a key
//! other than the running client's, the loop registers with the new key as bunq wants for a new
//! key (installation, device-server, session-server) in a staging directory beside the state
//! (`state_dir/rotating`), so the running context is not touched while bunq decides. Then:
//!
//! * bunq accepts it: the old client's renewal task is stopped (so it cannot save the old
//!   context any more), the new context replaces the saved one in one atomic write
//!   ([`BunqClient::into_state_dir`]), the loop swaps clients and starts the new client's
//!   renewal. The config, the schedule and the run record are untouched; the next run uses the
//!   new session.
//! * bunq refuses it: the daemon goes on with the old client while its session works, `/readyz`
//!   warns, `failed` is notified, and the key source is checked again after a backoff (1 min,
//!   doubling, capped at the re-registration interval). The staged installation is kept, so a
//!   retry resumes at device-server instead of registering another installation; a key that
//!   changes again starts afresh.
//!
//! A new key of another bunq user is refused the same way (the config names this user's
//! credentials); switching users takes a restart. The context file records the key's
//! fingerprint only, as always. `$BUNQ_API_KEY` cannot
//! change under a running process and is not watched.
//!
//! This file holds the rotation's state; the loop's steps are in `run_loop/key_swap.rs`.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use crate::bunq::ClientSettings;
use crate::bunq::client::REREGISTRATION_INTERVAL;
use crate::config::{self, Config};
use crate::daemon::schedule::Backoff;

/// The staging directory, inside the state directory, where a new key is registered.
pub const ROTATION_DIR: &str = "rotating";
/// How long a swap waits for the old client's renewal in flight.
pub(super) const RENEWAL_STOP_GRACE: Duration = Duration::from_secs(30);
/// The first retry after bunq refused a new key.
const FIRST_RETRY: Duration = Duration::from_secs(60);

/// What the loop needs to rotate: how it connected, where the key comes from, when to retry.
pub(super) struct KeyRotation {
    /// The settings the running client was made with (clock, rate limiter, observer).
    pub(super) settings: ClientSettings,
    /// The config the key source is read from: the one the daemon started with, since
    /// `bunq.api_key_file` and `bunq.api_key_credential` take effect only after a restart.
    pub(super) key_config: Config,
    /// Delays between retries of a refused key.
    pub(super) backoff: Backoff,
    /// When to check the key source again after a refusal.
    pub(super) retry_at: Option<Instant>,
}

impl KeyRotation {
    /// Rotation for a daemon connected with `settings`, its key read through `key_config`.
    pub(super) fn new(settings: ClientSettings, key_config: Config) -> KeyRotation {
        KeyRotation {
            settings,
            key_config,
            backoff: Backoff::new(FIRST_RETRY, REREGISTRATION_INTERVAL),
            retry_at: None,
        }
    }

    /// When a refused key is to be tried again, for the loop's timer.
    pub(super) fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }
}

/// The key file to watch for `config` (see [`config::api_key_file`]).
pub(super) fn key_file(config: &Config) -> Option<PathBuf> {
    config::api_key_file(config)
}

/// Waits until `at`; forever without one (the loop's branch is disabled then anyway).
pub(super) async fn retry_timer(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "rotate_tests.rs"]
mod tests;
