//! The health and metrics HTTP listener, and the shared [`Health`] state it reports.
//!
//! * `GET /healthz` — liveness: 200 while the run loop's heartbeat is fresh, 503 when it is
//!   stale. It deliberately says nothing about bunq: an unreachable bank must not make the
//!   orchestrator restart a healthy process (restarts would not fix it).
//! * `GET /readyz` — readiness: 200 only when a config is loaded, the bunq session is valid and
//!   the last runs have not failed [`Health::failure_threshold`] times in a row. The JSON body
//!   always lists the blocking `reasons` and non-blocking `warnings` (a failed reload leaves the
//!   daemon ready on its last good config, but says so), and `dry_run` (true under
//!   `run --dry-run`, with a warning saying that nothing is written).
//! * `GET /metrics` — the Prometheus exposition of [`Metrics`].
//! * Anything else: 404; other methods on known paths: 405.
//!
//! The loop updates [`Health`] through cheap setters; the listener only reads it.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::{WallClock, system_clock};

use super::metrics::{self, Metrics};

/// `Content-Type` of the JSON bodies.
const JSON: &str = "application/json";

/// A client must send its request headers within this time, so idle or slow connections cannot
/// pile up (the listener may be reachable beyond loopback if the operator configures it).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`serve`] waits for open connections after shutdown before returning anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the loop last reported; behind a mutex, touched for microseconds at a time.
#[derive(Debug, Default)]
struct State {
    /// Last loop heartbeat (tokio clock, so paused-time tests can age it).
    last_beat: Option<Instant>,
    /// A validated config is in effect.
    config_loaded: bool,
    /// Wall-clock expiry of the current bunq session; `None` when there is no session.
    session_valid_until: Option<DateTime<Utc>>,
    /// Failed runs in a row.
    consecutive_failures: u32,
    /// The last failed run's message.
    last_failure: Option<String>,
    /// The last reload's error, while the daemon runs on the previous config.
    reload_error: Option<String>,
    /// bunq refuses the daemon's key or IP: nothing works until a person acts, so this makes
    /// the daemon not ready at once rather than after several failed runs.
    access_refused: Option<String>,
    /// bunq rejected the installation and a new registration waits for the re-registration
    /// interval: the daemon retries, but says why it cannot work meanwhile.
    registration_deferred: Option<String>,
    /// bunq refused the API key the key source now holds: the daemon works on with the
    /// previous key's session and retries, so this is a warning.
    key_rotation_failed: Option<String>,
    /// Dynamic sources failing now (name → error): the daemon works on, holding back those
    /// credentials' deactivations, so these are warnings, not reasons.
    source_errors: std::collections::BTreeMap<String, String>,
    /// `run --dry-run`: every run plans and reports, none writes.
    dry_run: bool,
}

/// Liveness and readiness state shared between the run loop and the listener.
pub struct Health {
    /// The reported state.
    state: Mutex<State>,
    /// A heartbeat older than this means the loop is stuck.
    heartbeat_timeout: Duration,
    /// This many failed runs in a row make the daemon not ready.
    failure_threshold: u32,
    /// What `/readyz` judges the session's expiry by: the daemon's one clock, the same the bunq
    /// client computed that expiry with.
    clock: WallClock,
}

/// The `/readyz` verdict.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Readiness {
    /// Whether the daemon is ready.
    pub ready: bool,
    /// Why it is not ready (empty when ready).
    pub reasons: Vec<String>,
    /// Problems that do not block readiness.
    pub warnings: Vec<String>,
    /// The daemon runs with `--dry-run`: it never writes, so ready does not mean converging.
    pub dry_run: bool,
}

/// The `/healthz` verdict.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Liveness {
    /// Whether the loop's heartbeat is fresh.
    pub alive: bool,
    /// Why not, when not alive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Health {
    /// Fresh state: no heartbeat yet, no config, no session.
    ///
    /// `heartbeat_timeout` should exceed the loop's longest quiet period (it beats while it
    /// waits, too); `failure_threshold` of 0 is treated as 1.
    pub fn new(heartbeat_timeout: Duration, failure_threshold: u32) -> Health {
        Health {
            state: Mutex::new(State::default()),
            heartbeat_timeout,
            failure_threshold: failure_threshold.max(1),
            clock: system_clock(),
        }
    }

    /// The same state judged by `clock` instead of the system clock (the daemon's
    /// `Options::clock`).
    pub fn with_clock(mut self, clock: WallClock) -> Health {
        self.clock = clock;
        self
    }

    /// How many failed runs in a row make the daemon not ready.
    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the plain-data state inconsistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The loop is alive now.
    pub fn beat(&self) {
        self.beat_at(Instant::now());
    }

    /// The loop was alive at `at`.
    pub fn beat_at(&self, at: Instant) {
        self.state().last_beat = Some(at);
    }

    /// Whether a validated config is in effect.
    pub fn set_config_loaded(&self, loaded: bool) {
        self.state().config_loaded = loaded;
    }

    /// The current session's expiry, or `None` when there is no session.
    pub fn set_session_valid_until(&self, until: Option<DateTime<Utc>>) {
        self.state().session_valid_until = until;
    }

    /// A run ended; `message` describes a failure (ignored when `ok`).
    pub fn record_run_result(&self, ok: bool, message: &str) {
        let mut s = self.state();
        if ok {
            s.consecutive_failures = 0;
            s.last_failure = None;
        } else {
            s.consecutive_failures = s.consecutive_failures.saturating_add(1);
            s.last_failure = Some(message.to_owned());
        }
    }

    /// Failed runs in a row (connection attempts count as runs). This is the one failure
    /// counter: readiness is decided on it, and `/metrics` publishes it.
    pub fn consecutive_failures(&self) -> u32 {
        self.state().consecutive_failures
    }

    /// The last reload failed with `error` (the daemon runs on its previous config), or `None`
    /// after a successful reload.
    pub fn set_reload_error(&self, error: Option<String>) {
        self.state().reload_error = error;
    }

    /// bunq refused the daemon's API key or calling IP (`Some(why)`), or accepted it again.
    pub fn set_access_refused(&self, why: Option<String>) {
        self.state().access_refused = why;
    }

    /// bunq rejected the installation and registering anew is deferred (`Some(why)`), or the
    /// daemon has a working session again.
    pub fn set_registration_deferred(&self, why: Option<String>) {
        self.state().registration_deferred = why;
    }

    /// The daemon runs with `--dry-run` (set once, at start).
    pub fn set_dry_run(&self, dry_run: bool) {
        self.state().dry_run = dry_run;
    }

    /// bunq refused the new API key (`Some(why)`; the old session goes on), or the daemon
    /// switched to it or the key source holds the running key again.
    pub fn set_key_rotation_failed(&self, why: Option<String>) {
        self.state().key_rotation_failed = why;
    }

    /// Liveness as of `now`.
    pub fn liveness_at(&self, now: Instant) -> Liveness {
        let reason = match self.state().last_beat {
            None => Some("the run loop has not started".to_owned()),
            Some(beat) => {
                let age = now.saturating_duration_since(beat);
                (age > self.heartbeat_timeout).then(|| {
                    format!(
                        "no heartbeat from the run loop for {}s (limit {}s)",
                        age.as_secs(),
                        self.heartbeat_timeout.as_secs()
                    )
                })
            }
        };
        Liveness {
            alive: reason.is_none(),
            reason,
        }
    }

    /// Marks `source` (its display name) as failing with `error`, or as working (`None`).
    pub fn set_source_error(&self, source: &str, error: Option<String>) {
        let mut state = self.state();
        match error {
            Some(error) => state.source_errors.insert(source.to_owned(), error),
            None => state.source_errors.remove(source),
        };
    }

    /// Replaces every source warning with `errors` (name → error), what a run just resolved: a
    /// source the config no longer names, or one that works again, leaves no warning behind.
    pub fn replace_source_errors(&self, errors: std::collections::BTreeMap<String, String>) {
        self.state().source_errors = errors;
    }

    /// Readiness as of the wall-clock time `now`.
    pub fn readiness_at(&self, now: DateTime<Utc>) -> Readiness {
        let s = self.state();
        let mut reasons = Vec::new();
        let mut warnings = Vec::new();
        if !s.config_loaded {
            reasons.push("config not loaded".to_owned());
        }
        match s.session_valid_until {
            None => reasons.push("no bunq session".to_owned()),
            Some(until) if until <= now => reasons.push(format!(
                "session expired at {}",
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )),
            Some(_) => {}
        }
        if s.consecutive_failures >= self.failure_threshold {
            reasons.push(format!(
                "last {} runs failed: {}",
                s.consecutive_failures,
                s.last_failure.as_deref().unwrap_or("unknown error")
            ));
        }
        if let Some(why) = &s.access_refused {
            reasons.push(format!("bunq refuses this daemon: {why}"));
        }
        if let Some(why) = &s.registration_deferred {
            reasons.push(format!("re-registration with bunq is bounded: {why}"));
        }
        if s.dry_run {
            warnings.push(
                "dry run: every run plans and reports, none writes to bunq (started with \
                 run --dry-run)"
                    .to_owned(),
            );
        }
        if let Some(error) = &s.reload_error {
            warnings.push(format!(
                "config reload failed: {error} (running on last good config)"
            ));
        }
        if let Some(why) = &s.key_rotation_failed {
            warnings.push(format!(
                "bunq refused the new API key: {why} (running on the previous key's session; \
                 retrying)"
            ));
        }
        for (source, error) in &s.source_errors {
            warnings.push(format!(
                "source {source} failed: {error} (deactivations of the credentials using it are \
                 held back)"
            ));
        }
        Readiness {
            ready: reasons.is_empty(),
            reasons,
            warnings,
            dry_run: s.dry_run,
        }
    }
}

type Body = Full<Bytes>;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

fn json_reply(ok: bool, body: &impl serde::Serialize) -> Response<Body> {
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    match serde_json::to_vec(body) {
        Ok(bytes) => reply(status, JSON, bytes),
        Err(_) => reply(StatusCode::INTERNAL_SERVER_ERROR, JSON, "{}"),
    }
}

/// Answers one request; public so the routing can be tested without a socket.
pub fn route(method: &Method, path: &str, health: &Health, metrics: &Metrics) -> Response<Body> {
    let known = matches!(path, "/healthz" | "/readyz" | "/metrics");
    if !known {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n",
        );
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "method not allowed\n",
        );
        response
            .headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/healthz" => {
            let liveness = health.liveness_at(Instant::now());
            json_reply(liveness.alive, &liveness)
        }
        "/readyz" => {
            let readiness = health.readiness_at((health.clock)());
            json_reply(readiness.ready, &readiness)
        }
        _ => {
            // The failure streak has one owner, this state; the metric shows it as of now.
            metrics.set_consecutive_failures(health.consecutive_failures());
            match metrics.encode() {
                Ok(text) => reply(StatusCode::OK, metrics::CONTENT_TYPE, text),
                Err(_) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    "metrics encoding failed\n",
                ),
            }
        }
    }
}

/// Serves `/healthz`, `/readyz` and `/metrics` on `listener` until `shutdown` is cancelled,
/// then stops accepting, lets open connections finish their current request (at most
/// [`SHUTDOWN_GRACE`]), and returns.
///
/// Accept errors (e.g. out of file descriptors) are logged and retried after a short pause;
/// they never end the listener.
pub async fn serve(
    listener: TcpListener,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "health listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let health = Arc::clone(&health);
        let metrics = Arc::clone(&metrics);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = route(request.method(), request.uri().path(), &health, &metrics);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, "health listener: connection error");
            }
        });
    }
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("health listener: connections still open after shutdown grace period");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready_health() -> Health {
        let h = Health::new(Duration::from_secs(60), 3);
        h.set_config_loaded(true);
        h.set_session_valid_until(Some(Utc::now() + chrono::Duration::hours(1)));
        h
    }

    /// A ready daemon after failed runs with `messages`, in order.
    fn after_failures(messages: &[&str]) -> Health {
        let h = ready_health();
        for message in messages {
            h.record_run_result(false, message);
        }
        h
    }

    /// Why `h` is not ready now (empty when it is).
    fn reasons_now(h: &Health) -> Vec<String> {
        h.readiness_at(Utc::now()).reasons
    }

    /// On a ready daemon, `set(Some(why))` makes it not ready with exactly `reason`, and
    /// `set(None)` makes it ready again.
    fn assert_not_ready_until_cleared(set: fn(&Health, Option<String>), why: &str, reason: &str) {
        let h = ready_health();
        set(&h, Some(why.to_owned()));
        let not_ready = h.readiness_at(Utc::now());
        assert!(!not_ready.ready, "{why}");
        assert_eq!(not_ready.reasons, vec![reason]);
        set(&h, None);
        assert!(h.readiness_at(Utc::now()).ready, "{why} cleared");
    }

    #[test]
    fn source_failures_are_warnings_and_a_run_replaces_them_all() {
        let h = ready_health();
        h.set_source_error("dns:old.example", Some("NXDOMAIN".into()));
        h.set_source_error("dns:flaky.example", Some("SERVFAIL".into()));
        h.set_source_error("dns:flaky.example", None);
        let r = h.readiness_at(Utc::now());
        assert!(r.ready, "{r:?}");
        assert_eq!(r.warnings.len(), 1);
        assert!(r.warnings[0].starts_with("source dns:old.example failed: NXDOMAIN"));

        h.replace_source_errors([("dns:new.example".into(), "timed out".into())].into());
        let r = h.readiness_at(Utc::now());
        assert_eq!(r.warnings.len(), 1, "{r:?}");
        assert!(r.warnings[0].contains("dns:new.example"), "{r:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn alive_while_heartbeat_is_fresh() {
        let h = Health::new(Duration::from_secs(60), 3);
        h.beat();
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(h.liveness_at(Instant::now()).alive);
    }

    #[tokio::test(start_paused = true)]
    async fn not_alive_when_heartbeat_is_stale() {
        let h = Health::new(Duration::from_secs(60), 3);
        h.beat();
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(
            h.liveness_at(Instant::now()),
            Liveness {
                alive: false,
                reason: Some("no heartbeat from the run loop for 61s (limit 60s)".into())
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn not_alive_before_first_heartbeat() {
        let h = Health::new(Duration::from_secs(60), 3);
        assert!(!h.liveness_at(Instant::now()).alive);
    }

    #[test]
    fn ready_with_config_session_and_no_failures() {
        let r = ready_health().readiness_at(Utc::now());
        assert_eq!(
            r,
            Readiness {
                ready: true,
                reasons: vec![],
                warnings: vec![],
                dry_run: false,
            }
        );
    }

    #[test]
    fn a_dry_run_daemon_is_ready_and_says_it_never_writes() {
        let h = ready_health();
        h.set_dry_run(true);
        let r = h.readiness_at(Utc::now());
        assert!(r.ready && r.dry_run);
        assert!(r.warnings[0].starts_with("dry run:"), "{r:?}");
        let body = serde_json::to_value(&r).unwrap();
        assert_eq!(body["dry_run"], true);
    }

    #[test]
    fn refused_access_makes_not_ready_at_once_and_clears_when_accepted_again() {
        assert_not_ready_until_cleared(
            Health::set_access_refused,
            "Incorrect API key or IP address.",
            "bunq refuses this daemon: Incorrect API key or IP address.",
        );
    }

    #[test]
    fn deferred_registration_makes_not_ready_naming_the_reason_and_clears_when_connected() {
        assert_not_ready_until_cleared(
            Health::set_registration_deferred,
            "next registration allowed in 55m",
            "re-registration with bunq is bounded: next registration allowed in 55m",
        );
    }

    #[test]
    fn not_ready_without_config() {
        let h = ready_health();
        h.set_config_loaded(false);
        assert_eq!(reasons_now(&h), vec!["config not loaded"]);
    }

    #[test]
    fn not_ready_without_session() {
        let h = ready_health();
        h.set_session_valid_until(None);
        assert_eq!(reasons_now(&h), vec!["no bunq session"]);
    }

    #[test]
    fn not_ready_when_session_expired() {
        let h = ready_health();
        let expiry = DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        h.set_session_valid_until(Some(expiry));
        let r = h.readiness_at(expiry + chrono::Duration::seconds(1));
        assert_eq!(r.reasons, vec!["session expired at 2026-11-21T10:00:00Z"]);
    }

    #[test]
    fn failures_below_threshold_keep_ready() {
        let h = after_failures(&["timeout", "timeout"]);
        assert!(h.readiness_at(Utc::now()).ready);
    }

    #[test]
    fn failures_at_threshold_make_not_ready_with_last_message() {
        let h = after_failures(&["first", "second", "bunq returned 503"]);
        assert_eq!(
            reasons_now(&h),
            vec!["last 3 runs failed: bunq returned 503"]
        );
    }

    #[test]
    fn success_clears_failure_streak() {
        let h = after_failures(&["x"; 3]);
        h.record_run_result(true, "");
        assert!(h.readiness_at(Utc::now()).ready);
    }

    #[test]
    fn failed_reload_keeps_ready_with_warning() {
        let h = ready_health();
        h.set_reload_error(Some("line 3: unknown key `sinc`".into()));
        let r = h.readiness_at(Utc::now());
        assert!(r.ready);
        assert_eq!(
            r.warnings,
            vec!["config reload failed: line 3: unknown key `sinc` (running on last good config)"]
        );
    }

    #[test]
    fn unknown_path_is_404() {
        let h = ready_health();
        let m = Metrics::new("0");
        assert_eq!(
            route(&Method::GET, "/", &h, &m).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn metrics_publish_the_readiness_failure_streak() {
        let h = ready_health();
        h.record_run_result(false, "first");
        h.record_run_result(false, "second");
        let m = Metrics::new("0");
        let body = route(&Method::GET, "/metrics", &h, &m).into_body();
        let bytes = http_body_util::BodyExt::collect(body).await.unwrap();
        let text = String::from_utf8(bytes.to_bytes().to_vec()).unwrap();
        assert!(
            text.contains("\nbunq_ipsync_consecutive_failed_runs 2\n"),
            "{text}"
        );
    }

    #[test]
    fn post_to_known_path_is_405() {
        let h = ready_health();
        let m = Metrics::new("0");
        let r = route(&Method::POST, "/readyz", &h, &m);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[ALLOW], "GET, HEAD");
    }
}
