//! The Prometheus metrics of the daemon: one registry, one typed recording method per event.
//!
//! Names follow the Prometheus conventions: everything is prefixed `bunq_ipsync_`, durations and
//! timestamps are in seconds, counters end in `_total`, build metadata is a `_info` series. Label
//! values come from the domain's closed enums ([`RunResult`], [`ChangeKind`], [`OutcomeKind`]), whose
//! own `as_str` is the label value, or from
//! small operator- or code-defined sets (safety rule names, API route patterns), never from
//! free text, so cardinality stays bounded.
//!
//! The exposition is OpenMetrics text ([`CONTENT_TYPE`]), which Prometheus scrapes natively.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry};

use super::process_metrics::ProcessCollector;
use crate::bunq::model::CredentialId;
use crate::notify::{DeliveryObserver, DeliveryResult, Target};
use crate::reconcile::apply::OutcomeKind;
use crate::reconcile::plan::{ChangeKind, Rule};
use crate::reconcile::run::RunReport;
pub use crate::reconcile::verdict::RunResult;
use crate::sources::{Source, SourceError};

mod definitions;
use definitions::*;

/// The prefix of every metric name.
pub const PREFIX: &str = "bunq_ipsync";

/// The `Content-Type` of [`Metrics::encode`]'s output (OpenMetrics 1.0 text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the run duration histogram: a converged run takes a few hundred
/// milliseconds, a run that waits out rate limits can take minutes.
const RUN_DURATION_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// Upper bounds (seconds) of the API request duration histogram: bunq usually answers in tens to
/// hundreds of milliseconds; the top buckets catch timeouts.
const API_DURATION_BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

macro_rules! label_value_via_as_str {
    ($($t:ty),*) => {$(
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }
    )*};
}
label_value_via_as_str!(RunResult, ChangeKind, OutcomeKind);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    result: RunResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    action: ChangeKind,
    outcome: OutcomeKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BlockedLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceFailureLabels {
    /// `dns`, `file` or `url`: never the source itself (a URL may carry a token).
    kind: &'static str,
    /// Why, e.g. `nxdomain`, `timeout`, `bad_line`.
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    endpoint: String,
    method: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    /// The webhook index (`0`, `1`, …) or `heartbeat`: never the URL, which carries a token.
    target: String,
    /// `delivered`, `failed` or `dropped`.
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CredentialLabels {
    /// The credential id: the config's own, bounded set.
    credential: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// Seconds since the Unix epoch as a float, the Prometheus timestamp convention. Times before
/// the epoch (a badly wrong clock) are reported as 0 rather than negative.
fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn result_label(ok: bool) -> &'static str {
    if ok { "success" } else { "failure" }
}

/// Every metric the daemon exports, behind typed recording methods.
///
/// All methods take `&self` and are cheap (atomics), so one `Arc<Metrics>` is shared by the run
/// loop, the bunq transport, the renewal task and the HTTP listener.
#[derive(Debug)]
pub struct Metrics {
    /// Owns the descriptors; encoding walks it.
    registry: Registry,
    /// When the last run started: alert on "no attempt for N intervals" (the loop is stuck).
    last_attempt: Gauge<f64, AtomicU64>,
    /// When the last run reached the desired state: alert on "no success for N intervals".
    last_success: Gauge<f64, AtomicU64>,
    /// How long runs take, to size intervals and timeouts.
    run_duration: Histogram,
    /// Runs by how they ended.
    runs: Family<RunLabels, Counter>,
    /// Failed runs in a row: the readiness state's count, copied at every scrape, so it is
    /// exactly what `/readyz` decides on.
    consecutive_failures: Gauge,
    /// Individual changes by action and outcome.
    changes: Family<ChangeLabels, Counter>,
    /// Changes refused by a safety rule, by rule name.
    changes_blocked: Family<BlockedLabels, Counter>,
    /// Entries differing between desired and actual state at the last run.
    drift_entries: Gauge,
    /// Failed resolutions of dynamic sources (in runs and between them), by kind and reason.
    source_failures: Family<SourceFailureLabels, Counter>,
    /// bunq API requests by route pattern, method and status.
    api_requests: Family<ApiLabels, Counter>,
    /// How long bunq API requests take (all endpoints together, to keep series few).
    api_request_duration: Histogram,
    /// HTTP 429 replies from bunq: the rate limiter is too optimistic if this grows.
    api_throttled: Counter,
    /// When the current bunq session expires.
    session_expiry: Gauge<f64, AtomicU64>,
    /// Session renewals by result.
    session_renewals: Family<ResultLabels, Counter>,
    /// Config reloads by result.
    config_reloads: Family<ResultLabels, Counter>,
    /// 1 when the last config read was applied, 0 when it failed and the daemon runs on the last
    /// good config.
    config_last_reload_successful: Gauge,
    /// When a config was last read and applied successfully.
    config_last_reload_success: Gauge<f64, AtomicU64>,
    /// Notification messages by target and result: alert on `failed` or `dropped`.
    notifications: Family<NotificationLabels, Counter>,
    /// Per configured credential, the changes the last run left unwritten: what an `observe`
    /// credential or a dry-run daemon is waiting to do, or what a rule or failure held back.
    pending_changes: Family<CredentialLabels, Gauge>,
    /// 1 under `run --dry-run`: a dashboard must not mistake a daemon that never writes for one
    /// that converged.
    dry_run: Gauge,
}

/// Registers `metric` under `definition` and hands it back (metrics are shared handles: the
/// registry keeps one clone for encoding, [`Metrics`] the other for recording).
fn add<M: Metric + Clone>(registry: &mut Registry, definition: Definition, metric: M) -> M {
    let Definition { name, help, unit } = definition;
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, metric.clone()),
        None => registry.register(name, help, metric.clone()),
    }
    metric
}

impl Metrics {
    /// Registers every metric; `version` goes into `bunq_ipsync_build_info`.
    ///
    /// `config_last_reload_successful` starts at 1: the daemon only starts on a valid config.
    /// The process metrics (`process_*`, read at each scrape) sit at the root, unprefixed, where
    /// dashboards for any exporter look for them; everything else under [`PREFIX`].
    pub fn new(version: &str) -> Self {
        let mut root = Registry::default();
        root.register_collector(Box::new(ProcessCollector));
        let r = root.sub_registry_with_prefix(PREFIX);
        let version = version.to_owned();
        r.register(BUILD.name, BUILD.help, Info::new(BuildLabels { version }));
        let metrics = Metrics {
            last_attempt: add(r, LAST_ATTEMPT, Gauge::default()),
            last_success: add(r, LAST_SUCCESS, Gauge::default()),
            run_duration: add(r, RUN_DURATION, Histogram::new(RUN_DURATION_BUCKETS)),
            runs: add(r, RUNS, Family::default()),
            consecutive_failures: add(r, CONSECUTIVE_FAILURES, Gauge::default()),
            changes: add(r, CHANGES, Family::default()),
            changes_blocked: add(r, CHANGES_BLOCKED, Family::default()),
            drift_entries: add(r, DRIFT_ENTRIES, Gauge::default()),
            source_failures: add(r, SOURCE_FAILURES, Family::default()),
            api_requests: add(r, API_REQUESTS, Family::default()),
            api_request_duration: add(
                r,
                API_REQUEST_DURATION,
                Histogram::new(API_DURATION_BUCKETS),
            ),
            api_throttled: add(r, API_THROTTLED, Counter::default()),
            session_expiry: add(r, SESSION_EXPIRY, Gauge::default()),
            session_renewals: add(r, SESSION_RENEWALS, Family::default()),
            config_reloads: add(r, CONFIG_RELOADS, Family::default()),
            config_last_reload_successful: add(r, CONFIG_LAST_RELOAD_SUCCESSFUL, Gauge::default()),
            config_last_reload_success: add(r, CONFIG_LAST_RELOAD_SUCCESS, Gauge::default()),
            notifications: add(r, NOTIFICATIONS, Family::default()),
            pending_changes: add(r, PENDING_CHANGES, Family::default()),
            dry_run: add(r, DRY_RUN, Gauge::default()),
            registry: root,
        };
        metrics.config_last_reload_successful.set(1);
        metrics.create_closed_series();
        metrics
    }

    /// Every series with a closed label set exists from the start at 0, so `rate()` and
    /// `increase()` see the first event and absent series never hide a broken exporter.
    fn create_closed_series(&self) {
        for result in RunResult::ALL {
            let _ = self.runs.get_or_create(&RunLabels { result });
        }
        for action in ChangeKind::ALL {
            for outcome in OutcomeKind::ALL {
                let _ = self
                    .changes
                    .get_or_create(&ChangeLabels { action, outcome });
            }
        }
        for rule in Rule::ALL {
            let reason = rule.name().to_owned();
            let _ = self
                .changes_blocked
                .get_or_create(&BlockedLabels { reason });
        }
        for kind in Source::KINDS {
            for reason in SourceError::REASONS {
                let labels = SourceFailureLabels { kind, reason };
                let _ = self.source_failures.get_or_create(&labels);
            }
        }
        for ok in [true, false] {
            let labels = ResultLabels {
                result: result_label(ok),
            };
            let _ = self.session_renewals.get_or_create(&labels);
            let _ = self.config_reloads.get_or_create(&labels);
        }
    }

    /// A run starts now.
    pub fn record_run_started(&self, at: SystemTime) {
        self.last_attempt.set(unix_seconds(at));
    }

    /// A run that took `duration` ended at `finished_at` with `result`. Successful results move
    /// the last-success timestamp. (The failure streak is kept by [`crate::daemon::health::Health`]
    /// and published with [`Metrics::set_consecutive_failures`].)
    pub fn record_run(&self, result: RunResult, duration: Duration, finished_at: SystemTime) {
        self.runs.get_or_create(&RunLabels { result }).inc();
        self.run_duration.observe(duration.as_secs_f64());
        if result.is_success() {
            self.last_success.set(unix_seconds(finished_at));
        }
    }

    /// Failed runs in a row, as counted by the one owner of that count, the readiness state.
    pub fn set_consecutive_failures(&self, failures: u32) {
        self.consecutive_failures.set(i64::from(failures));
    }

    /// What a finished run found and did: its drift, and every planned change by kind and
    /// outcome (blocked ones by rule, too).
    pub fn record_report(&self, report: &RunReport) {
        self.set_drift_entries(report.drift_count() as u64);
        self.set_pending_changes(&report.pending_changes());
        for result in report.applied.iter().flat_map(|applied| &applied.results) {
            if let crate::reconcile::apply::Outcome::Blocked(rule) = &result.outcome {
                self.record_blocked(rule.name(), 1);
            }
            self.record_change(result.action.change.kind(), result.outcome.kind());
        }
    }

    /// The last run's pending changes of every configured credential; credentials no longer
    /// configured lose their series.
    pub fn set_pending_changes(&self, pending: &BTreeMap<CredentialId, usize>) {
        self.pending_changes.clear();
        for (credential, count) in pending {
            let labels = CredentialLabels {
                credential: credential.to_string(),
            };
            self.pending_changes
                .get_or_create(&labels)
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
    }

    /// Whether the daemon runs with `--dry-run`.
    pub fn set_dry_run(&self, dry_run: bool) {
        self.dry_run.set(i64::from(dry_run));
    }

    /// A source of kind `kind` (`dns`, `file`, `url`) failed for `reason`.
    pub fn record_source_failure(&self, kind: &'static str, reason: &'static str) {
        self.source_failures
            .get_or_create(&SourceFailureLabels { kind, reason })
            .inc();
    }

    /// One planned change ended with `outcome`.
    pub fn record_change(&self, action: ChangeKind, outcome: OutcomeKind) {
        self.changes
            .get_or_create(&ChangeLabels { action, outcome })
            .inc();
    }

    /// The safety rule named `rule` refused `changes` changes.
    pub fn record_blocked(&self, rule: &str, changes: u64) {
        self.changes_blocked
            .get_or_create(&BlockedLabels {
                reason: rule.to_owned(),
            })
            .inc_by(changes);
    }

    /// The last run found `entries` permitted-IP entries differing from the desired state.
    pub fn set_drift_entries(&self, entries: u64) {
        self.drift_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// One bunq API request finished after `duration`.
    ///
    /// `endpoint` must be the route pattern (`/v1/user/{id}/credential-password-ip`), never the
    /// concrete path, to keep cardinality bounded. `status` is `None` when no HTTP reply arrived
    /// (connect error, timeout) and is then labelled `error`. A 429 also counts towards
    /// `bunq_ipsync_api_throttled_total`.
    pub fn record_api_request(
        &self,
        endpoint: &str,
        method: &str,
        status: Option<u16>,
        duration: Duration,
    ) {
        self.api_request_duration.observe(duration.as_secs_f64());
        let status_label = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
        self.api_requests
            .get_or_create(&ApiLabels {
                endpoint: endpoint.to_owned(),
                method: method.to_ascii_uppercase(),
                status: status_label,
            })
            .inc();
        if status == Some(429) {
            self.api_throttled.inc();
        }
    }

    /// The current session expires at `expires_at`.
    pub fn set_session_expiry(&self, expires_at: SystemTime) {
        self.session_expiry.set(unix_seconds(expires_at));
    }

    /// A session renewal ended; `ok` is whether a new session was obtained.
    pub fn record_session_renewal(&self, ok: bool) {
        self.session_renewals
            .get_or_create(&ResultLabels {
                result: result_label(ok),
            })
            .inc();
    }

    /// A notification message to `target` ended with `result`.
    pub fn record_notification(&self, target: Target, result: DeliveryResult) {
        self.notification_series(target, result).inc();
    }

    /// `target` is configured: its series exist from now on, at 0.
    pub fn notification_target(&self, target: Target) {
        for result in DeliveryResult::ALL {
            let _ = self.notification_series(target, result);
        }
    }

    /// The counter of `target`'s messages that ended with `result`, created at 0 if new.
    fn notification_series(&self, target: Target, result: DeliveryResult) -> Counter {
        self.notifications
            .get_or_create(&NotificationLabels {
                target: target.label(),
                result: result.as_str(),
            })
            .clone()
    }

    /// A config reload ended at `at`; `ok` is whether the new config was applied.
    ///
    /// On failure the success timestamp stays, and `config_last_reload_successful` drops to 0
    /// until the next successful reload.
    pub fn record_config_reload(&self, ok: bool, at: SystemTime) {
        self.config_reloads
            .get_or_create(&ResultLabels {
                result: result_label(ok),
            })
            .inc();
        if ok {
            self.config_last_reload_successful.set(1);
            self.config_last_reload_success.set(unix_seconds(at));
        } else {
            self.config_last_reload_successful.set(0);
        }
    }

    /// The OpenMetrics text exposition of every metric, ending in `# EOF`.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl DeliveryObserver for Metrics {
    fn target_configured(&self, target: Target) {
        self.notification_target(target);
    }

    fn delivery(&self, target: Target, result: DeliveryResult) {
        self.record_notification(target, result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::assert_contains;

    /// The value of the series whose name-and-labels part is exactly `series`.
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
            let (s, v) = l.rsplit_once(' ')?;
            (s == series).then(|| v.parse().ok()).flatten()
        })
    }

    /// Asserts that every `(series, value)` is exported with exactly that value.
    fn assert_series(text: &str, expected: &[(&str, f64)]) {
        for &(series, want) in expected {
            assert_eq!(value(text, series), Some(want), "{series} in\n{text}");
        }
    }

    /// Encodes `metrics` and asserts every `(series, value)` as [`assert_series`] does.
    fn assert_exports(metrics: &Metrics, expected: &[(&str, f64)]) {
        assert_series(&metrics.encode().unwrap(), expected);
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn build_info_carries_the_version() {
        let text = Metrics::new("1.2.3").encode().unwrap();
        assert_series(
            &text,
            &[(r#"bunq_ipsync_build_info{version="1.2.3"}"#, 1.0)],
        );
    }

    #[test]
    fn exposition_ends_with_eof_marker() {
        let text = Metrics::new("0").encode().unwrap();
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn run_started_sets_attempt_timestamp_only() {
        let m = Metrics::new("0");
        m.record_run_started(at(1_700_000_000));
        assert_exports(
            &m,
            &[
                (
                    "bunq_ipsync_last_run_attempt_timestamp_seconds",
                    1_700_000_000.0,
                ),
                ("bunq_ipsync_last_run_success_timestamp_seconds", 0.0),
            ],
        );
    }

    #[test]
    fn successful_run_counts_result_duration_and_success_time() {
        let m = Metrics::new("0");
        m.record_run(
            RunResult::ChangesApplied,
            Duration::from_millis(300),
            at(1_700_000_100),
        );
        assert_exports(
            &m,
            &[
                (r#"bunq_ipsync_runs_total{result="changes_applied"}"#, 1.0),
                (
                    "bunq_ipsync_last_run_success_timestamp_seconds",
                    1_700_000_100.0,
                ),
                ("bunq_ipsync_run_duration_seconds_count", 1.0),
                ("bunq_ipsync_run_duration_seconds_sum", 0.3),
                (r#"bunq_ipsync_run_duration_seconds_bucket{le="0.25"}"#, 0.0),
                (r#"bunq_ipsync_run_duration_seconds_bucket{le="0.5"}"#, 1.0),
            ],
        );
    }

    #[test]
    fn failed_run_does_not_move_success_time() {
        let m = Metrics::new("0");
        m.record_run(RunResult::Converged, Duration::ZERO, at(100));
        m.record_run(RunResult::Failed, Duration::ZERO, at(200));
        m.record_run(RunResult::Failed, Duration::ZERO, at(300));
        assert_exports(
            &m,
            &[
                ("bunq_ipsync_last_run_success_timestamp_seconds", 100.0),
                (r#"bunq_ipsync_runs_total{result="failed"}"#, 2.0),
            ],
        );
    }

    #[test]
    fn failure_streak_is_published_as_given() {
        let m = Metrics::new("0");
        assert_exports(&m, &[("bunq_ipsync_consecutive_failed_runs", 0.0)]);
        m.set_consecutive_failures(2);
        assert_exports(&m, &[("bunq_ipsync_consecutive_failed_runs", 2.0)]);
    }

    #[test]
    fn blocked_run_is_not_a_success() {
        let m = Metrics::new("0");
        m.record_run(RunResult::Blocked, Duration::ZERO, at(500));
        assert_exports(
            &m,
            &[
                (r#"bunq_ipsync_runs_total{result="blocked"}"#, 1.0),
                ("bunq_ipsync_last_run_success_timestamp_seconds", 0.0),
            ],
        );
    }

    #[test]
    fn changes_are_counted_by_action_and_outcome() {
        let m = Metrics::new("0");
        m.record_change(ChangeKind::Create, OutcomeKind::Applied);
        m.record_change(ChangeKind::Create, OutcomeKind::Applied);
        m.record_change(ChangeKind::Deactivate, OutcomeKind::Blocked);
        assert_exports(
            &m,
            &[
                (
                    r#"bunq_ipsync_changes_total{action="create",outcome="applied"}"#,
                    2.0,
                ),
                (
                    r#"bunq_ipsync_changes_total{action="deactivate",outcome="blocked"}"#,
                    1.0,
                ),
                (
                    r#"bunq_ipsync_changes_total{action="activate",outcome="applied"}"#,
                    0.0,
                ),
            ],
        );
    }

    #[test]
    fn blocked_changes_are_counted_by_rule() {
        let m = Metrics::new("0");
        m.record_blocked("max_deactivations", 3);
        m.record_blocked("max_deactivations", 2);
        assert_exports(
            &m,
            &[(
                r#"bunq_ipsync_changes_blocked_total{reason="max_deactivations"}"#,
                5.0,
            )],
        );
    }

    #[test]
    fn drift_entries_reflect_the_last_run() {
        let m = Metrics::new("0");
        m.set_drift_entries(4);
        m.set_drift_entries(1);
        assert_exports(&m, &[("bunq_ipsync_drift_entries", 1.0)]);
    }

    #[test]
    fn api_requests_are_counted_by_endpoint_method_and_status() {
        let m = Metrics::new("0");
        m.record_api_request(
            "/v1/user/{id}/credential-password-ip",
            "get",
            Some(200),
            Duration::from_millis(80),
        );
        m.record_api_request("/v1/session-server", "POST", None, Duration::from_secs(30));
        assert_exports(
            &m,
            &[
                (
                    r#"bunq_ipsync_api_requests_total{endpoint="/v1/user/{id}/credential-password-ip",method="GET",status="200"}"#,
                    1.0,
                ),
                (
                    r#"bunq_ipsync_api_requests_total{endpoint="/v1/session-server",method="POST",status="error"}"#,
                    1.0,
                ),
                ("bunq_ipsync_api_throttled_total", 0.0),
            ],
        );
    }

    #[test]
    fn api_request_durations_are_observed() {
        let m = Metrics::new("0");
        m.record_api_request("/v1/user", "GET", Some(200), Duration::from_millis(80));
        m.record_api_request("/v1/user", "GET", Some(200), Duration::from_secs(3));
        assert_exports(
            &m,
            &[
                ("bunq_ipsync_api_request_duration_seconds_count", 2.0),
                (
                    r#"bunq_ipsync_api_request_duration_seconds_bucket{le="0.1"}"#,
                    1.0,
                ),
                (
                    r#"bunq_ipsync_api_request_duration_seconds_bucket{le="5.0"}"#,
                    2.0,
                ),
            ],
        );
    }

    #[test]
    fn http_429_counts_as_throttled() {
        let m = Metrics::new("0");
        m.record_api_request("/v1/user", "GET", Some(429), Duration::ZERO);
        assert_exports(&m, &[("bunq_ipsync_api_throttled_total", 1.0)]);
    }

    #[test]
    fn session_expiry_and_renewals_are_exported() {
        let m = Metrics::new("0");
        m.set_session_expiry(at(1_800_000_000));
        m.record_session_renewal(true);
        m.record_session_renewal(false);
        m.record_session_renewal(true);
        assert_exports(
            &m,
            &[
                (
                    "bunq_ipsync_session_expiry_timestamp_seconds",
                    1_800_000_000.0,
                ),
                (
                    r#"bunq_ipsync_session_renewals_total{result="success"}"#,
                    2.0,
                ),
                (
                    r#"bunq_ipsync_session_renewals_total{result="failure"}"#,
                    1.0,
                ),
            ],
        );
    }

    #[test]
    fn running_config_is_current_before_any_reload() {
        let text = Metrics::new("0").encode().unwrap();
        assert_series(&text, &[("bunq_ipsync_config_last_reload_successful", 1.0)]);
    }

    #[test]
    fn failed_reload_keeps_success_time_and_clears_current_flag() {
        let m = Metrics::new("0");
        m.record_config_reload(true, at(1000));
        m.record_config_reload(false, at(2000));
        assert_exports(
            &m,
            &[
                ("bunq_ipsync_config_last_reload_successful", 0.0),
                (
                    "bunq_ipsync_config_last_reload_success_timestamp_seconds",
                    1000.0,
                ),
                (r#"bunq_ipsync_config_reloads_total{result="failure"}"#, 1.0),
                (r#"bunq_ipsync_config_reloads_total{result="success"}"#, 1.0),
            ],
        );
    }

    #[test]
    fn successful_reload_after_failure_restores_current_flag() {
        let m = Metrics::new("0");
        m.record_config_reload(false, at(1000));
        m.record_config_reload(true, at(3000));
        assert_exports(
            &m,
            &[
                ("bunq_ipsync_config_last_reload_successful", 1.0),
                (
                    "bunq_ipsync_config_last_reload_success_timestamp_seconds",
                    3000.0,
                ),
            ],
        );
    }

    #[test]
    fn notification_targets_start_at_zero_and_count_by_index() {
        let metrics = Metrics::new("0");
        metrics.notification_target(Target::Webhook(0));
        metrics.notification_target(Target::Heartbeat);
        metrics.record_notification(Target::Webhook(0), DeliveryResult::Failed);
        let text = metrics.encode().unwrap();
        let series = |target: &str, result: &str| {
            format!(r#"bunq_ipsync_notifications_total{{target="{target}",result="{result}"}}"#)
        };
        assert_eq!(value(&text, &series("0", "failed")), Some(1.0));
        for result in ["delivered", "dropped"] {
            assert_eq!(value(&text, &series("0", result)), Some(0.0));
        }
        for result in ["delivered", "failed", "dropped"] {
            assert_eq!(value(&text, &series("heartbeat", result)), Some(0.0));
        }
        assert_eq!(
            value(&text, &series("1", "delivered")),
            None,
            "not configured"
        );
    }

    #[test]
    fn closed_label_sets_start_at_zero() {
        let text = Metrics::new("0").encode().unwrap();
        for result in ["converged", "changes_applied", "blocked", "failed"] {
            let series = format!(r#"bunq_ipsync_runs_total{{result="{result}"}}"#);
            assert_eq!(value(&text, &series), Some(0.0), "{series}");
        }
        for action in ["create", "activate", "deactivate"] {
            for outcome in ["applied", "failed", "skipped", "blocked", "observe"] {
                let series = format!(
                    r#"bunq_ipsync_changes_total{{action="{action}",outcome="{outcome}"}}"#
                );
                assert_eq!(value(&text, &series), Some(0.0), "{series}");
            }
        }
        for result in ["success", "failure"] {
            for name in ["session_renewals", "config_reloads"] {
                let series = format!(r#"bunq_ipsync_{name}_total{{result="{result}"}}"#);
                assert_eq!(value(&text, &series), Some(0.0), "{series}");
            }
        }
        let rules = [
            "own-ip",
            "protected",
            "max-changes",
            "unknown-status",
            "source-unavailable",
        ];
        for reason in rules {
            let series = format!(r#"bunq_ipsync_changes_blocked_total{{reason="{reason}"}}"#);
            assert_eq!(value(&text, &series), Some(0.0), "{series}");
        }
        for kind in ["dns", "file", "url"] {
            for reason in ["nxdomain", "timeout", "bad_line", "http_status"] {
                let series = format!(
                    r#"bunq_ipsync_source_failures_total{{kind="{kind}",reason="{reason}"}}"#
                );
                assert_eq!(value(&text, &series), Some(0.0), "{series}");
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_appear_unprefixed_with_plausible_values() {
        crate::daemon::process_metrics::tests::burn_until_cpu_time_shows();
        let text = Metrics::new("0").encode().unwrap();
        let read = |series: &str| value(&text, series).unwrap_or_else(|| panic!("{series}"));
        assert!(
            read("process_resident_memory_bytes") > 1_048_576.0,
            "{text}"
        );
        assert!(read("process_cpu_seconds_total") > 0.0, "{text}");
        assert!(read("process_open_fds") >= 3.0, "{text}");
        assert!(
            read("process_start_time_seconds") > 1_700_000_000.0,
            "{text}"
        );
        assert!(
            text.contains("# TYPE process_cpu_seconds counter\n"),
            "{text}"
        );
        assert!(!text.contains("bunq_ipsync_process_"), "{text}");
        assert!(text.ends_with("# EOF\n"), "one exposition: {text}");
    }

    #[test]
    fn pending_changes_are_a_gauge_per_credential_replaced_every_run() {
        let m = Metrics::new("0");
        m.set_pending_changes(&[(1, 2), (2, 0)].into());
        assert_exports(
            &m,
            &[
                (r#"bunq_ipsync_pending_changes{credential="1"}"#, 2.0),
                (r#"bunq_ipsync_pending_changes{credential="2"}"#, 0.0),
            ],
        );
        m.set_pending_changes(&[(2, 1)].into());
        let text = m.encode().unwrap();
        assert_eq!(
            value(&text, r#"bunq_ipsync_pending_changes{credential="1"}"#),
            None
        );
        assert_eq!(
            value(&text, r#"bunq_ipsync_pending_changes{credential="2"}"#),
            Some(1.0)
        );
    }

    #[test]
    fn dry_run_is_zero_unless_set() {
        let m = Metrics::new("0");
        assert_eq!(
            value(&m.encode().unwrap(), "bunq_ipsync_dry_run"),
            Some(0.0)
        );
        m.set_dry_run(true);
        assert_eq!(
            value(&m.encode().unwrap(), "bunq_ipsync_dry_run"),
            Some(1.0)
        );
    }

    #[test]
    fn counters_carry_total_suffix_and_type() {
        let text = Metrics::new("0").encode().unwrap();
        assert_contains(&text, "# TYPE bunq_ipsync_runs counter\n");
        assert_contains(&text, "# TYPE bunq_ipsync_run_duration_seconds histogram\n");
        assert_contains(&text, "# UNIT bunq_ipsync_run_duration_seconds seconds\n");
    }
}
