//! Hooks through which the daemon watches the client (request counts, rate limiting, sessions)
//! without the client knowing about metrics. Every hook has an empty default, so an observer
//! implements only what it counts. Hooks receive route patterns, never URLs with tokens.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// One HTTP attempt as the observer sees it: the route pattern, never the URL (it may carry
/// ids an operator does not want in metric labels).
#[derive(Debug, Clone, Copy)]
pub struct FinishedRequest<'a> {
    /// `GET`, `POST` or `PUT`.
    pub method: &'a str,
    /// The route with placeholders, e.g. `/v1/user/{user}/credential-password-ip`.
    pub route_pattern: &'a str,
    /// `None` when no response arrived (network error, timeout).
    pub status: Option<u16>,
    /// From sending to the last body byte (rate-limiter waits and backoff excluded).
    pub elapsed: Duration,
}

/// Receives events from the transport and the session logic. Called inline: keep it cheap and
/// never block.
pub trait ApiObserver: Send + Sync {
    /// One HTTP attempt finished.
    fn request_finished(&self, request: &FinishedRequest<'_>) {
        let _ = request;
    }

    /// bunq answered 429 Too Many Requests.
    fn rate_limited(&self, route_pattern: &str) {
        let _ = route_pattern;
    }

    /// The client-side limiter held a request back for `waited`.
    fn throttled(&self, route_pattern: &str, waited: Duration) {
        let _ = (route_pattern, waited);
    }

    /// The client-side limiter is about to hold a `method` request on `route_pattern` back for
    /// `wait`, until bunq's window has room: called before the wait, so a progress display can
    /// say so instead of looking hung.
    fn waiting_for_window(&self, method: &str, route_pattern: &str, wait: Duration) {
        let _ = (method, route_pattern, wait);
    }

    /// A transient failure is retried after `delay`; `attempt` is the attempt that failed.
    fn retrying(&self, route_pattern: &str, attempt: u32, delay: Duration) {
        let _ = (route_pattern, attempt, delay);
    }

    /// A response failed server signature verification.
    fn signature_rejected(&self, route_pattern: &str) {
        let _ = route_pattern;
    }

    /// A new session was opened; it expires at `expires_at` unless renewed.
    fn session_created(&self, expires_at: DateTime<Utc>) {
        let _ = expires_at;
    }
}

/// The observer used when none is configured.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl ApiObserver for NoopObserver {}
