//! The daemon's background tasks beside the run loop: signal forwarding, the systemd watchdog
//! and session renewal. Each runs until the shutdown token is cancelled.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::bunq::BunqClient;
use crate::daemon::health::Health;
use crate::daemon::notify::Notifier;
use crate::daemon::observer::Observer;
use crate::daemon::renew::{self, RenewTrigger, RenewalPolicy};
use crate::daemon::signals::{SignalEvent, SignalListener};

/// Why a reload was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reload {
    /// SIGHUP: always re-read.
    Signal,
}

/// SIGTERM/SIGINT cancel `shutdown` directly (so a run in progress sees it); SIGHUP becomes a
/// reload request for the loop.
pub(super) fn forward_signals(
    shutdown: CancellationToken,
    reloads: mpsc::Sender<Reload>,
) -> std::io::Result<SignalListener> {
    let (listener, mut events) = SignalListener::start()?;
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                SignalEvent::Reload => {
                    let _ = reloads.try_send(Reload::Signal);
                }
                SignalEvent::Shutdown => {
                    tracing::info!("shutdown requested; finishing the call in flight");
                    shutdown.cancel();
                }
            }
        }
    });
    Ok(listener)
}

/// main loop is busy inside a long, rate-limited apply for minutes; the heartbeat stays fresh
/// then through every answered bunq request, and goes stale only if the daemon really hangs.
pub(super) async fn watchdog_task(
    notifier: Notifier,
    health: Arc<Health>,
    period: Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if health.liveness_at(tokio::time::Instant::now()).alive {
            let _ = notifier.watchdog();
        } else {
            tracing::error!("main loop heartbeat is stale; withholding WATCHDOG=1");
        }
    }
}

/// The running session renewal task of one client, stoppable on its own: a key rotation
/// replaces it with the new client's, the daemon's shutdown ends it.
pub(super) struct Renewal {
    task: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
}

impl Renewal {
    /// Starts [`renewal_task`] for `client`; it also stops with `shutdown`.
    pub(super) fn spawn(
        client: &Arc<BunqClient>,
        renew_before: Duration,
        observer: &Arc<Observer>,
        trigger: &RenewTrigger,
        shutdown: &CancellationToken,
    ) -> Renewal {
        let stop = shutdown.child_token();
        let task = tokio::spawn(renewal_task(
            Arc::clone(client),
            renew_before,
            Arc::clone(observer),
            trigger.clone(),
            stop.clone(),
        ));
        Renewal { task, stop }
    }

    /// Stops the task and waits, up to `grace`, for a renewal in flight to finish and save its
    /// session: after this it writes no context any more. `false` when it was abandoned.
    pub(super) async fn stop(self, grace: Duration) -> bool {
        self.stop.cancel();
        tokio::time::timeout(grace, self.task).await.is_ok()
    }
}

/// Keeps the session alive ahead of expiry, independent of sync cycles.
pub(super) async fn renewal_task(
    client: Arc<BunqClient>,
    renew_before: Duration,
    observer: Arc<Observer>,
    trigger: RenewTrigger,
    shutdown: CancellationToken,
) {
    let clock = client.wall_clock();
    // The user's session_timeout is what every new session lives; the current session may have
    // only minutes left (a restart), which must not shrink the lead. Only a session imported
    // without its timeout falls back to what it has left.
    let session_timeout = client.session_timeout().unwrap_or_else(|| {
        (client.session_expires_at() - clock())
            .to_std()
            .unwrap_or(Duration::from_secs(60))
    });
    let mut policy = RenewalPolicy::new(session_timeout);
    policy.renew_before = Some(renew::renewal_lead(renew_before, session_timeout));
    let expiry_client = Arc::clone(&client);
    let current_expiry = move || expiry_client.session_expires_at();
    let renew = move || {
        let client = Arc::clone(&client);
        let observer = Arc::clone(&observer);
        async move {
            let before = client.session_expires_at();
            let result = client.renew_session().await;
            match &result {
                // The client keeps a session younger than 30 s (bunq allows one session-server
                // call per 30 s): nothing was renewed, so nothing is counted.
                Ok(expires_at) if *expires_at == before => {}
                Ok(expires_at) => observer.session_renewed(*expires_at),
                Err(err) => observer.session_renewal_failed(err),
            }
            result
        }
    };
    renew::run_renewal(policy, clock, current_expiry, renew, trigger, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::daemon::metrics::Metrics;
    use crate::daemon::runtime::{FAILURE_THRESHOLD, HEARTBEAT_TIMEOUT};
    use crate::daemon::test_bank::{Bank, MINUTE};

    /// Runs the daemon's renewal task for `client` until the returned token is cancelled.
    fn spawn_renewal(
        client: &Arc<BunqClient>,
        renew_before: Duration,
    ) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(renewal_task(
            Arc::clone(client),
            renew_before,
            Arc::new(Observer::new(
                Arc::new(Metrics::new("test")),
                Arc::new(Health::new(HEARTBEAT_TIMEOUT, FAILURE_THRESHOLD)),
            )),
            RenewTrigger::new(),
            shutdown.clone(),
        ));
        (shutdown, task)
    }

    #[tokio::test(start_paused = true)]
    async fn renewal_after_a_restart_is_sized_from_the_session_timeout_not_the_time_left() {
        // One-hour sessions, renew 15 min ahead. A restart 40 min into a session finds 20 min
        // left; the lead stays 15 min (not half of 20).
        let renew_before = 15 * MINUTE;
        let bank = Bank::start(3600, renew_before).await;
        drop(bank.connect().await);
        tokio::time::sleep(40 * MINUTE).await;
        let client = Arc::new(bank.connect().await);
        assert_eq!(
            bank.sim.sessions_created(),
            1,
            "the saved session is reused"
        );

        let (shutdown, task) = spawn_renewal(&client, renew_before);
        tokio::time::sleep(6 * MINUTE).await;
        assert_eq!(
            bank.sim.sessions_created(),
            2,
            "renewed 15 min before expiry (at 45 min), not 10 min before"
        );
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn session_renewed_inline_by_a_request_is_not_renewed_again_by_the_task() {
        let renew_before = 10 * MINUTE;
        let bank = Bank::start(3600, renew_before).await;
        let client = Arc::new(bank.connect().await);
        let (shutdown, task) = spawn_renewal(&client, renew_before);

        // 5 min in, bunq ends the session early; the next request opens a new one inline.
        tokio::time::sleep(5 * MINUTE).await;
        bank.sim.expire_all_sessions();
        client.list_credentials().await.unwrap();
        assert_eq!(bank.sim.sessions_created(), 2);

        // The first session's renewal time (50 min) passes: that session is gone already.
        tokio::time::sleep(47 * MINUTE).await;
        assert_eq!(
            bank.sim.sessions_created(),
            2,
            "no second session-server call for the renewed session"
        );
        // The new session is renewed at its own time (55 min).
        tokio::time::sleep(4 * MINUTE).await;
        assert_eq!(bank.sim.sessions_created(), 3);
        shutdown.cancel();
        task.await.unwrap();
    }
}
