//! The one place the daemon publishes what it learns from bunq into `/readyz`, `/healthz` and
//! the metrics: answered requests (the heartbeat), and the session's expiry, whichever path
//! learned it (a new session inside the client, the start-up connection, the renewal task, the
//! end of a run).

use std::sync::Arc;
use std::time::SystemTime;

use chrono::{DateTime, Utc};

use crate::bunq::{ApiObserver, BunqError, FinishedRequest};
use crate::daemon::connect::explain;
use crate::daemon::health::Health;
use crate::daemon::metrics::Metrics;
use crate::notify::Notifications;

/// Feeds bunq request events into the metrics and the heartbeat: every answered request is
/// progress, so a long, rate-limited apply keeps the watchdog fed.
pub(super) struct Observer {
    /// The Prometheus side.
    metrics: Arc<Metrics>,
    /// The `/healthz` and `/readyz` side.
    health: Arc<Health>,
    /// Webhooks: a failed session renewal is a `failed` event.
    notifications: Notifications,
}

impl Observer {
    /// An observer publishing into `metrics` and `health`.
    pub(super) fn new(metrics: Arc<Metrics>, health: Arc<Health>) -> Observer {
        Observer {
            metrics,
            health,
            notifications: Notifications::disabled(),
        }
    }

    /// This observer, also telling `notifications` about failed session renewals.
    pub(super) fn notifying(self, notifications: Notifications) -> Observer {
        Observer {
            notifications,
            ..self
        }
    }

    /// The shared health state (for the listener and the loop's own readiness reports).
    pub(super) fn health(&self) -> Arc<Health> {
        Arc::clone(&self.health)
    }

    /// The shared metrics (for the listener and the run accounting).
    pub(super) fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// The session in use is valid until `expires_at`: `/readyz` and the expiry gauge say so.
    pub(super) fn session_valid_until(&self, expires_at: DateTime<Utc>) {
        self.health.set_session_valid_until(Some(expires_at));
        self.metrics
            .set_session_expiry(SystemTime::from(expires_at));
    }

    /// The renewal task opened a new session that expires at `expires_at`.
    pub(super) fn session_renewed(&self, expires_at: DateTime<Utc>) {
        self.metrics.record_session_renewal(true);
        self.session_valid_until(expires_at);
    }

    /// The renewal task's attempt failed with `err` (it retries with backoff).
    pub(super) fn session_renewal_failed(&self, err: &BunqError) {
        self.metrics.record_session_renewal(false);
        self.notifications
            .session_failed("cannot renew the bunq session", &explain(err));
    }
}

impl ApiObserver for Observer {
    fn request_finished(&self, request: &FinishedRequest<'_>) {
        let FinishedRequest {
            method,
            route_pattern,
            status,
            elapsed,
        } = *request;
        self.metrics
            .record_api_request(route_pattern, method, status, elapsed);
        self.health.beat();
    }

    fn session_created(&self, expires_at: DateTime<Utc>) {
        self.session_valid_until(expires_at);
    }
}
