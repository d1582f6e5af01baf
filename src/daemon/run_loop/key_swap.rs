//! The daemon loop's side of an API-key rotation ([`crate::daemon::rotate`] has the whole
//! story): read the key source, register the new key in the staging directory, swap clients or
//! keep the old one and retry.
use std::path::Path;
use std::sync::Arc;

use tokio::time::Instant;

use crate::bunq::{BunqClient, BunqError};
use crate::config;
use crate::daemon::connect::explain;
use crate::daemon::rotate::{RENEWAL_STOP_GRACE, ROTATION_DIR};
use crate::daemon::run_loop::Daemon;
use crate::daemon::tasks::Renewal;
use crate::secret::Secret;

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
        const REFUSED: &str =
            "bunq refused the new API key; still running on the previous key's session";
        let message = explain(err);
        let delay = self.rotation.backoff.next_delay();
        tracing::error!(
            error = %message,
            retry_in = %crate::clock::log_seconds(delay),
            "{REFUSED}"
        );
        self.health.set_key_rotation_failed(Some(message.clone()));
        self.notifications.session_failed(REFUSED, &message);
        let _ = self
            .notifier
            .status("bunq refused the new API key; running on the previous one");
        self.rotation.retry_at = Some(Instant::now() + delay);
    }
}
