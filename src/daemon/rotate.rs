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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::bunq::client::REREGISTRATION_INTERVAL;
use crate::bunq::{BunqClient, BunqError, ClientSettings};
use crate::config::{self, Config};
use crate::daemon::connect::explain;
use crate::daemon::run_loop::Daemon;
use crate::daemon::schedule::Backoff;
use crate::daemon::tasks::Renewal;
use crate::secret::Secret;

/// The staging directory, inside the state directory, where a new key is registered.
pub const ROTATION_DIR: &str = "rotating";
/// How long a swap waits for the old client's renewal in flight.
const RENEWAL_STOP_GRACE: Duration = Duration::from_secs(30);
/// The first retry after bunq refused a new key.
const FIRST_RETRY: Duration = Duration::from_secs(60);

/// What the loop needs to rotate: how it connected, where the key comes from, when to retry.
pub(super) struct KeyRotation {
    /// The settings the running client was made with (clock, rate limiter, observer).
    settings: ClientSettings,
    /// The config the key source is read from: the one the daemon started with, since
    /// `bunq.api_key_file` and `bunq.api_key_credential` take effect only after a restart.
    key_config: Config,
    /// Delays between retries of a refused key.
    backoff: Backoff,
    /// When to check the key source again after a refusal.
    retry_at: Option<Instant>,
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

impl Daemon {
    /// Reads the key source and, when it holds another key than the running client's, rotates
    /// to it. An unreadable source changes nothing (the running key keeps working).
    pub(super) async fn check_api_key(&mut self) {
        let key = match config::resolve_api_key(&self.rotation.key_config) {
            Ok(key) => key,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the API key source; keeping the running key");
                return;
            }
        };
        if self.client.uses_api_key(&key) {
            if self.rotation.retry_at.take().is_some() {
                tracing::info!("the API key source holds the running key again");
            }
            self.rotation.backoff.reset();
            self.health.set_key_rotation_failed(None);
            return;
        }
        self.rotate_to(key).await;
    }

    /// Registers with `key` in the staging directory and swaps to it, or reports the refusal.
    async fn rotate_to(&mut self, key: Secret) {
        tracing::info!("the API key changed; registering with bunq with the new key");
        let _ = self.notifier.status("registering with the new API key");
        let state_dir = self.config.bunq.state_dir.clone();
        let staging = state_dir.join(ROTATION_DIR);
        let attempt = BunqClient::connect(self.rotation.settings.clone(), key, &staging);
        let connected = tokio::select! {
            () = self.shutdown.cancelled() => return,
            connected = attempt => connected,
        };
        let result = match connected.and_then(|client| self.same_user(client)) {
            Ok(client) => self.swap_to(client, &state_dir).await,
            Err(err) => Err(err),
        };
        match result {
            Ok(()) => {
                self.rotation.retry_at = None;
                self.rotation.backoff.reset();
                self.health.set_key_rotation_failed(None);
                self.observer
                    .session_valid_until(self.client.session_expires_at());
                tracing::info!("switched to the new API key: new installation, device and session");
                let _ = self.notifier.status("switched to the new API key");
            }
            Err(err) => self.rotation_refused(&err),
        }
    }

    /// `client` if its key belongs to the running client's bunq user. A key of another user
    /// would manage another user's credentials with this config: refused, not switched to.
    fn same_user(&self, client: BunqClient) -> Result<BunqClient, BunqError> {
        let (running, new) = (self.client.user_id(), client.user_id());
        if running == new {
            return Ok(client);
        }
        Err(BunqError::Context(format!(
            "the new API key belongs to bunq user {new}, not to user {running} whose \
             credentials this config manages; restart the daemon to switch users"
        )))
    }

    /// Stops the old client's renewal, moves the new context into `state_dir` and swaps the
    /// clients. If the move fails the old client goes on, with its renewal restarted.
    async fn swap_to(&mut self, client: BunqClient, state_dir: &Path) -> Result<(), BunqError> {
        if let Some(renewal) = self.renewal.take()
            && !renewal.stop(RENEWAL_STOP_GRACE).await
        {
            tracing::warn!("the old session's renewal was still running; abandoned");
        }
        let result = client
            .into_state_dir(state_dir)
            .map(|client| self.client = Arc::new(client));
        self.renewal = Some(Renewal::spawn(
            &self.client,
            self.config.sync.renew_before,
            &self.observer,
            &self.renew_trigger,
            &self.shutdown,
        ));
        result
    }

    /// bunq refused the new key: keep the old client, warn, notify, retry later.
    fn rotation_refused(&mut self, err: &BunqError) {
        let message = explain(err);
        let delay = self.rotation.backoff.next_delay();
        tracing::error!(
            error = %message,
            retry_in = ?delay,
            "bunq refused the new API key; still running on the previous key's session"
        );
        self.health.set_key_rotation_failed(Some(message.clone()));
        self.notifications.session_failed(
            "bunq refused the new API key; still running on the previous key's session",
            &message,
        );
        let _ = self
            .notifier
            .status("bunq refused the new API key; running on the previous one");
        self.rotation.retry_at = Some(Instant::now() + delay);
    }
}

#[cfg(test)]
#[path = "rotate_tests.rs"]
mod tests;
