//! Opening the bunq connection at start: retried with backoff until it works or shutdown, with
//! the reason in `/readyz` and `STATUS=` meanwhile, and the heartbeat kept fresh while waiting.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bunq::{BunqClient, BunqError};
use crate::daemon::health::Health;
use crate::daemon::notify::Notifier;
use crate::daemon::schedule::Backoff;
use crate::notify::Notifications;

/// The idle loop beats this often, so `/healthz` and the watchdog see it alive between runs.
pub(super) const HEARTBEAT_PERIOD: Duration = Duration::from_secs(10);

/// Connects, retrying with backoff until it works or shutdown. bunq errors never end the
/// daemon: they show as a readiness reason.
pub(super) async fn connect_until_shutdown(
    settings: crate::bunq::ClientSettings,
    api_key: crate::secret::Secret,
    state_dir: &Path,
    health: &Health,
    notifier: &Notifier,
    notifications: &Notifications,
    shutdown: &CancellationToken,
) -> Option<BunqClient> {
    let mut backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(300));
    let mut told_systemd = false;
    loop {
        // `settings` carries the process's rate limiter: every attempt counts against it.
        let attempt = BunqClient::connect(settings.clone(), api_key.clone(), state_dir);
        let result = tokio::select! {
            () = shutdown.cancelled() => return None,
            result = attempt => result,
        };
        match result {
            Ok(client) => {
                health.set_access_refused(None);
                health.set_registration_deferred(None);
                return Some(client);
            }
            Err(err) => {
                let delay = backoff.next_delay();
                let message = explain(&err);
                tracing::error!(error = %message, retry_in = %crate::clock::log_seconds(delay), "cannot open a bunq session");
                health.record_run_result(false, &format!("cannot open a bunq session: {message}"));
                notifications.session_failed("cannot open a bunq session", &message);
                if err.is_credentials_rejected() {
                    health.set_access_refused(Some(message.clone()));
                }
                // Bounded: the next attempts still try session-server with the saved
                // installation (the client keeps it), one per backoff and per 30 s at most.
                health.set_registration_deferred(
                    err.is_registration_deferred().then(|| message.clone()),
                );
                if !told_systemd {
                    // Up and waiting is a state, not a failed start: without READY=1 systemd
                    // would kill and restart the daemon in a loop while bunq refuses it. The
                    // reason is in STATUS= and /readyz.
                    let _ = notifier.ready();
                    told_systemd = true;
                }
                let _ = notifier.status(&format!("waiting for bunq: {message}"));
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = sleep_beating(health, delay) => {}
                }
            }
        }
        health.beat();
    }
}

/// Sleeps for `delay`, beating every [`HEARTBEAT_PERIOD`]: waiting out a connection backoff
/// (up to minutes while bunq refuses) is the loop working as intended, and `/healthz` must not
/// fail over it (an orchestrator would restart a process that cannot fix bunq).
pub(super) async fn sleep_beating(health: &Health, delay: Duration) {
    let deadline = tokio::time::Instant::now() + delay;
    loop {
        health.beat();
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return;
        }
        tokio::time::sleep((deadline - now).min(HEARTBEAT_PERIOD)).await;
    }
}

/// The error text, plus what to do when bunq refuses the daemon's key or IP.
pub(super) fn explain(err: &BunqError) -> String {
    if err.is_credentials_rejected() {
        format!(
            "{err}. bunq refuses this API key from this IP: the daemon's own IP may have been \
             deactivated outside bunq-ipsync (re-activate it in the bunq app), or the key belongs \
             to the other environment"
        )
    } else {
        err.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use chrono::Utc;

    use crate::bunq::client::REREGISTRATION_INTERVAL;
    use crate::daemon::runtime::{FAILURE_THRESHOLD, HEARTBEAT_TIMEOUT};
    use crate::daemon::test_bank::Bank;
    use crate::simulator::{Fault, FaultKind};

    #[tokio::test(start_paused = true)]
    async fn connect_retries_while_bunq_rejects_every_installation_register_once_per_interval() {
        let bank = Bank::start(604_800, Duration::from_secs(600)).await;
        // Every session-server call meets "Insufficient authentication.": bunq forgets each
        // installation as the client tries to open a session with it.
        bank.sim.inject(
            Fault::once(FaultKind::ForgetInstallation)
                .on(reqwest::Method::POST, "/session-server")
                .times(100_000),
        );
        let health = Health::new(HEARTBEAT_TIMEOUT, FAILURE_THRESHOLD);
        let shutdown = CancellationToken::new();
        let started = tokio::time::Instant::now();
        let state_dir = bank.state_dir();
        let notifier = Notifier::disabled();
        let notifications = Notifications::disabled();
        let connecting = connect_until_shutdown(
            bank.settings.clone(),
            bank.key.api_key.clone(),
            &state_dir,
            &health,
            &notifier,
            &notifications,
            &shutdown,
        );
        let watching = async {
            // Three session-server attempts with the one installation...
            while bank.count("POST", "/session-server", Some(403)) < 3 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            assert_eq!(bank.installations(), 1);
            let reasons = health.readiness_at(Utc::now()).reasons;
            assert!(
                reasons
                    .iter()
                    .any(|r| r.starts_with("re-registration with bunq is bounded: ")),
                "{reasons:?}"
            );
            // ...and the next installation only once the interval has passed.
            while bank.installations() < 2 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            assert!(started.elapsed() >= REREGISTRATION_INTERVAL);
            shutdown.cancel();
        };
        let (client, ()) = tokio::join!(connecting, watching);
        assert!(client.is_none());
        assert_eq!(bank.installations(), 2);
        assert_eq!(bank.count("POST", "/device-server", Some(200)), 2);
        assert_eq!(
            bank.count("POST", "/session-server", Some(429)),
            0,
            "every attempt waited for session-server's window"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn connection_backoff_keeps_the_heartbeat_fresh() {
        let health = Arc::new(Health::new(HEARTBEAT_TIMEOUT, FAILURE_THRESHOLD));
        let longest_backoff = Duration::from_secs(300);
        let sleeper = tokio::spawn({
            let health = Arc::clone(&health);
            async move { sleep_beating(&health, longest_backoff).await }
        });
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let liveness = health.liveness_at(tokio::time::Instant::now());
            assert!(liveness.alive, "{liveness:?}");
        }
        sleeper.await.unwrap();
    }
}
