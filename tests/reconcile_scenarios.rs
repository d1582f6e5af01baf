//! Reconcile scenarios: the real bunq client and the real run orchestration (`plan_run`,
//! `apply_run`) against the in-process bunq simulator. Every test asserts on the simulator's
//! state (what bunq holds afterwards) and on its request log (what was sent), one behaviour per
//! test.
//!
//! The simulator runs with bunq's rate limits on, 100x faster (`time_scale`), and the client's
//! limiter runs with the same windows scaled the same way plus a small margin for loopback
//! jitter (the production client adds one for network jitter the same way), so the scenarios
//! also prove the client never trips bunq's limits.

// Helpers outside #[test] functions panic to fail the test, like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use bunq_ipsync::bunq::model::{CredentialId, EntryId, IpStatus, PermittedIp};
use bunq_ipsync::bunq::{ApiObserver, BunqClient, RateLimits, RetryPolicy, TransportSettings};
use bunq_ipsync::config::{self, Config};
use bunq_ipsync::reconcile::apply::{Outcome, OutcomeKind};
use bunq_ipsync::reconcile::bunq_adapter::client_settings;
use bunq_ipsync::reconcile::exit::ExitStatus;
use bunq_ipsync::reconcile::plan::{Action, ChangeKind, Drift, KeptReason, PlanOutcome, Rule};
use bunq_ipsync::reconcile::progress::ApplyProgress;
use bunq_ipsync::reconcile::record::RunRecord;
use bunq_ipsync::reconcile::report;
use bunq_ipsync::reconcile::run::{self, RunReport};
use bunq_ipsync::simulator::{
    DEFAULT_CALLER_IP, Fault, FaultKind, LoggedRequest, SimulatorOptions,
};
use hyper::Method;
use tokio_util::sync::CancellationToken;

use crate::support::{Account, ONE_OF_EACH_ENTRIES, ONE_OF_EACH_WANTED, sim_options};

// ---------------------------------------------------------------------------------------------
// Harness

/// Real seconds per bunq second in the simulator, and the factor on the client's windows.
const TIME_SCALE: f64 = 0.01;
/// Added to every scaled client window: requests are timed when sent, bunq counts arrivals, and
/// on a busy 2-core test machine two requests can arrive closer together than they were sent;
/// 30 ms doubles the scaled 30 ms windows.
const LOOPBACK_MARGIN: Duration = Duration::from_millis(30);
/// The device description the test client registers; it identifies the daemon's own credential.
const DEVICE: &str = "ipsync-scenarios";
/// The IP the simulated bunq sees: the daemon's own IP.
const OWN_IP: Ipv4Addr = DEFAULT_CALLER_IP;

crate::support::account_harness!(
    /// The shared [`Account`] (simulator, user and key, directory for config and state) under
    /// bunq's rate limits, scaled by [`TIME_SCALE`], with the scenarios' config and client on top.
    Harness
);

impl Harness {
    async fn start() -> Harness {
        Harness(
            Account::start(SimulatorOptions {
                time_scale: TIME_SCALE,
                rate_limits: true,
                ..sim_options()
            })
            .await,
        )
    }

    /// A harness with one more credential holding `entries` (no config yet).
    async fn with_credential(entries: &[(&str, IpStatus)]) -> (Harness, CredentialId) {
        let h = Harness::start().await;
        let credential = h.credential_with(entries);
        (h, credential)
    }

    /// A harness whose config manages only the daemon's own credential, wanting [`OWN_IP`] on
    /// it, and whose device has registered (binding that credential to [`OWN_IP`]).
    async fn with_own_registered() -> (Harness, CredentialId, Config) {
        let h = Harness::start().await;
        let own = h.own_credential();
        let registered = h.managing("sync", 10, own, &[&OWN_IP.to_string()]);
        drop(h.connect(&registered).await);
        (h, own, registered)
    }

    /// A harness with one more credential holding `entries`, a config managing only it
    /// ([`Harness::managing`]) and the client connected.
    async fn managing_one(
        entries: &[(&str, IpStatus)],
        policy: &str,
        max_changes: usize,
        ips: &[&str],
    ) -> (Harness, CredentialId, Config, BunqClient) {
        let credentials = |credential| credential_yaml(credential, ips);
        Harness::connected(entries, policy, max_changes, credentials).await
    }

    /// A harness with one more credential holding `entries`, a config with `credentials` (the
    /// YAML list items, given that credential's id) and the client connected.
    async fn connected(
        entries: &[(&str, IpStatus)],
        policy: &str,
        max_changes: usize,
        credentials: impl FnOnce(CredentialId) -> String,
    ) -> (Harness, CredentialId, Config, BunqClient) {
        let h = Harness::start().await;
        let credential = h.credential_with(entries);
        let config = h.config(policy, max_changes, &credentials(credential));
        let client = h.connect(&config).await;
        (h, credential, config, client)
    }

    /// The API key's own credential: device registration binds it to [`OWN_IP`].
    fn own_credential(&self) -> CredentialId {
        self.key.credential_id
    }

    /// A config managing only `credential`, wanting `ips` (see [`credential_yaml`]).
    fn managing(
        &self,
        policy: &str,
        max_changes: usize,
        credential: CredentialId,
        ips: &[&str],
    ) -> Config {
        self.config(policy, max_changes, &credential_yaml(credential, ips))
    }

    /// A config with `sync.policy` and `sync.max_changes`, and `credentials` as YAML list items.
    fn config(&self, policy: &str, max_changes: usize, credentials: &str) -> Config {
        self.config_from_text(&self.config_text(policy, max_changes, credentials))
    }

    /// A `sync` config wanting the `count` consecutive addresses from `first` on credential
    /// `ci`, with a change limit that lets them all through.
    fn wanting_consecutive(&self, ci: CredentialId, first: Ipv4Addr, count: u32) -> Config {
        let ips: Vec<String> = (0..count)
            .map(|n| Ipv4Addr::from(u32::from(first) + n).to_string())
            .collect();
        let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
        self.config("sync", count as usize, &credential_yaml(ci, &refs))
    }

    fn config_from_text(&self, text: &str) -> Config {
        let path = self.dir.path().join("config.yaml");
        std::fs::write(&path, text).unwrap();
        config::parse(&path, text).unwrap_or_else(|err| panic!("{err}\n{text}"))
    }

    fn config_text(&self, policy: &str, max_changes: usize, credentials: &str) -> String {
        self.config_text_with("", policy, max_changes, credentials)
    }

    /// [`Harness::config_text`] with `bunq_extra` (indented `key: value` lines) in `bunq:`.
    fn config_text_with(
        &self,
        bunq_extra: &str,
        policy: &str,
        max_changes: usize,
        credentials: &str,
    ) -> String {
        self.0
            .config_text(DEVICE, bunq_extra, policy, max_changes, credentials)
    }

    /// Connects the real client (installation, device, session) with the scaled limiter, then
    /// forgets the registration requests so tests see only what the run sends.
    async fn connect(&self, config: &Config) -> BunqClient {
        let limits = RateLimits::bunq()
            .with_windows_scaled(TIME_SCALE)
            .with_margin(LOOPBACK_MARGIN);
        self.connect_observed(config, None, limits).await
    }

    /// [`Harness::connect`] with `observer` watching the client and the client keeping to
    /// `rate_limits`.
    async fn connect_observed(
        &self,
        config: &Config,
        observer: Option<std::sync::Arc<dyn ApiObserver>>,
        rate_limits: RateLimits,
    ) -> BunqClient {
        let mut settings = client_settings(config, observer).unwrap();
        settings.transport = TransportSettings {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
            },
            rate_limits,
        };
        let client = BunqClient::connect(settings, self.key.api_key.clone(), &self.state_dir())
            .await
            .unwrap();
        self.sim.clear_request_log();
        client
    }

    fn entries(&self, credential: CredentialId) -> Vec<PermittedIp> {
        self.sim.entries(credential).unwrap()
    }

    fn entries_for(&self, credential: CredentialId, ip: &str) -> Vec<PermittedIp> {
        self.entries(credential)
            .into_iter()
            .filter(|entry| entry.ip == ip)
            .collect()
    }

    /// The IPs with an ACTIVE entry.
    fn active(&self, credential: CredentialId) -> BTreeSet<String> {
        self.entries(credential)
            .into_iter()
            .filter(|entry| entry.status == IpStatus::Active)
            .map(|entry| entry.ip)
            .collect()
    }

    fn status_of(&self, credential: CredentialId, entry: EntryId) -> IpStatus {
        self.entries(credential)
            .into_iter()
            .find(|found| found.id == entry)
            .unwrap()
            .status
    }

    /// Seeds an entry behind the client's back; its id.
    fn add_entry(&self, credential: CredentialId, ip: &str, status: IpStatus) -> EntryId {
        self.sim.add_entry(credential, ip, status).unwrap()
    }

    /// Sets an entry's status behind the client's back (an edit in the bunq app).
    fn set_status(&self, credential: CredentialId, entry: EntryId, status: IpStatus) {
        self.sim
            .set_entry_status(credential, entry, status)
            .unwrap();
    }

    fn inject(&self, fault: Fault) {
        self.sim.inject(fault);
    }

    fn log(&self) -> Vec<LoggedRequest> {
        self.sim.request_log()
    }
}

/// A credential holding [`ONE_OF_EACH_ENTRIES`] under a `sync` config wanting
/// [`ONE_OF_EACH_WANTED`] with `max_changes`: three changes (an activation, a create, a
/// deactivation).
async fn three_changes(max_changes: usize) -> (Harness, CredentialId, Config, BunqClient) {
    Harness::managing_one(
        &ONE_OF_EACH_ENTRIES,
        "sync",
        max_changes,
        &ONE_OF_EACH_WANTED,
    )
    .await
}

/// An empty credential wanting 203.0.113.10 (one create), with a fault of `kind` on the create.
async fn one_create_under(kind: FaultKind) -> (Harness, CredentialId, Config, BunqClient) {
    let (h, ci, config, client) = Harness::managing_one(&[], "sync", 10, &["203.0.113.10"]).await;
    h.inject(Fault::once(kind).on(Method::POST, "/ip"));
    (h, ci, config, client)
}

async fn apply(
    client: &BunqClient,
    config: &Config,
    previous: Option<&RunRecord>,
) -> (RunReport, RunRecord) {
    run::apply_run(client, config, previous, &CancellationToken::new())
        .await
        .unwrap()
}

/// [`apply`], failing unless the run exits with `status`.
async fn apply_exiting(
    client: &BunqClient,
    config: &Config,
    previous: Option<&RunRecord>,
    status: ExitStatus,
) -> (RunReport, RunRecord) {
    let (report, record) = apply(client, config, previous).await;
    assert_eq!(report.exit_status(), status, "the apply's exit status");
    (report, record)
}

/// [`plan`], failing unless the run exits with `status`.
async fn plan_exiting(
    client: &BunqClient,
    config: &Config,
    previous: Option<&RunRecord>,
    status: ExitStatus,
) -> RunReport {
    let report = plan(client, config, previous).await;
    assert_eq!(report.exit_status(), status, "the plan's exit status");
    report
}

async fn plan(client: &BunqClient, config: &Config, previous: Option<&RunRecord>) -> RunReport {
    run::plan_run(client, config, previous).await.unwrap().0
}

fn count(log: &[LoggedRequest], method: &Method) -> usize {
    log.iter()
        .filter(|request| request.method == *method)
        .count()
}

/// `log` holds `expected` requests of `method`; `why` says what that means.
fn assert_sent(log: &[LoggedRequest], method: &Method, expected: usize, why: &str) {
    assert_eq!(count(log, method), expected, "{why}: {log:?}");
}

/// Requests that change something: every method but GET.
fn writes(log: &[LoggedRequest]) -> Vec<&LoggedRequest> {
    log.iter()
        .filter(|request| request.method != Method::GET)
        .collect()
}

fn set(ips: &[&str]) -> BTreeSet<String> {
    ips.iter().map(|ip| (*ip).to_owned()).collect()
}

/// [`outcomes`], sorted: for runs whose order of writes the test does not pin.
fn sorted_outcomes(report: &RunReport) -> Vec<(ChangeKind, String, &'static str)> {
    let mut results = outcomes(report);
    results.sort();
    results
}

fn outcomes(report: &RunReport) -> Vec<(ChangeKind, String, &'static str)> {
    report
        .applied
        .as_ref()
        .unwrap()
        .results
        .iter()
        .map(|result| {
            (
                result.action.change.kind(),
                result.action.change.ip(),
                result.outcome.label(),
            )
        })
        .collect()
}

/// The plan's JSON document, for asserting on reason codes the way a program reads them.
fn plan_json(report: &RunReport) -> serde_json::Value {
    serde_json::from_str(&report::render_json(&report.plan).unwrap()).unwrap()
}

/// `(ip, rule, block_reason)` of every blocked action of credential `index` in the JSON plan.
fn blocked_json(report: &RunReport, index: usize) -> Vec<(String, String, String)> {
    plan_json(report)["credentials"][index]["blocked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|blocked| {
            let text = |key: &str| blocked[key].as_str().unwrap_or("(missing)").to_owned();
            (text("ip"), text("rule"), text("block_reason"))
        })
        .collect()
}

fn credential_yaml(id: CredentialId, ips: &[&str]) -> String {
    let mut text = format!("  - id: {id}\n    ips:\n");
    for ip in ips {
        text.push_str(&format!("      - {ip}\n"));
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Convergence

#[tokio::test]
async fn fresh_account_converges_in_one_apply_and_the_second_apply_writes_nothing() {
    let seeded = [
        ("203.0.113.10", IpStatus::Active),
        ("203.0.113.11", IpStatus::Inactive),
        ("192.0.2.1", IpStatus::Active),
    ];
    let (h, ci, config, client) = Harness::managing_one(
        &seeded,
        "sync",
        10,
        &["203.0.113.10", "203.0.113.11", "203.0.113.12"],
    )
    .await;

    let (_, record) = apply_exiting(&client, &config, None, ExitStatus::Success).await;
    assert_eq!(
        h.active(ci),
        set(&["203.0.113.10", "203.0.113.11", "203.0.113.12"])
    );
    let log = h.log();
    assert_sent(&log, &Method::POST, 1, "one create");
    assert_sent(&log, &Method::PUT, 2, "one activation, one deactivation");
    assert!(
        log.iter().all(|request| request.status == Some(200)),
        "{log:?}"
    );

    h.sim.clear_request_log();
    let (second, _) = apply_exiting(&client, &config, Some(&record), ExitStatus::Success).await;
    assert_eq!(second.plan.outcome(), PlanOutcome::NothingToDo);
    assert!(second.plan.actions().is_empty());
    let log = h.log();
    assert!(writes(&log).is_empty(), "second apply wrote: {log:?}");
    assert!(!log.is_empty(), "the second apply still reads bunq");
}

#[tokio::test]
async fn every_grant_of_a_credential_reaches_bunq_before_that_credentials_deactivation() {
    let (h, first) = Harness::with_credential(&[("192.0.2.1", IpStatus::Active)]).await;
    let old = h.entries_for(first, "192.0.2.1")[0].id;
    let second = h.credential_with(&[("203.0.113.11", IpStatus::Inactive)]);
    let credentials = format!(
        "{}{}",
        credential_yaml(first, &["203.0.113.10"]),
        credential_yaml(second, &["203.0.113.11", "203.0.113.12"])
    );
    let config = h.config("sync", 10, &credentials);
    let client = h.connect(&config).await;

    apply_exiting(&client, &config, None, ExitStatus::Success).await;
    let sent: Vec<String> = writes(&h.log())
        .iter()
        .map(|request| format!("{} {}", request.method, request.path))
        .collect();
    let position = |suffix: &str| {
        sent.iter()
            .position(|line| line.ends_with(suffix))
            .unwrap_or_else(|| panic!("{suffix} not sent: {sent:?}"))
    };
    let deactivation = position(&format!("/credential-password-ip/{first}/ip/{old}"));
    // The POSTs and the PUTs run side by side, so only the credential's own grant is ordered
    // before its deactivation.
    assert!(
        position(&format!(
            "POST /v1/user/{}/credential-password-ip/{first}/ip",
            h.key.user_id
        )) < deactivation,
        "{sent:?}"
    );
    assert_eq!(
        sent.len(),
        4,
        "two creates, one activation, one deactivation: {sent:?}"
    );
    assert_eq!(h.active(first), set(&["203.0.113.10"]));
}

/// `count` IPs from `first` on, as text.
fn ip_range(first: Ipv4Addr, count: u32) -> Vec<String> {
    (0..count)
        .map(|n| Ipv4Addr::from(u32::from(first) + n).to_string())
        .collect()
}

#[tokio::test]
async fn a_mixed_run_overlaps_posts_and_puts_without_a_single_429() {
    let h = Harness::start().await;
    let mut credentials = String::new();
    let mut managed = Vec::new();
    for n in 0..2u8 {
        let fresh = ip_range(Ipv4Addr::new(10, 30 + n, 0, 1), 10);
        let inactive = ip_range(Ipv4Addr::new(10, 40 + n, 0, 1), 5);
        let unwanted = ip_range(Ipv4Addr::new(10, 50 + n, 0, 1), 5);
        let seeded: Vec<(&str, IpStatus)> = inactive
            .iter()
            .map(|ip| (ip.as_str(), IpStatus::Inactive))
            .chain(unwanted.iter().map(|ip| (ip.as_str(), IpStatus::Active)))
            .collect();
        let credential = h.credential_with(&seeded);
        let wanted: Vec<&str> = fresh.iter().chain(&inactive).map(String::as_str).collect();
        credentials.push_str(&credential_yaml(credential, &wanted));
        let deactivated: Vec<EntryId> = unwanted
            .iter()
            .map(|ip| h.entries_for(credential, ip)[0].id)
            .collect();
        managed.push((credential, wanted.len(), deactivated));
    }
    let config = h.config("sync", 40, &credentials);
    let client = h.connect(&config).await;

    let (report, _) = apply_exiting(&client, &config, None, ExitStatus::Success).await;
    assert_eq!(
        report.applied.as_ref().unwrap().count(OutcomeKind::Applied),
        40
    );
    let log = h.log();
    let limited: Vec<_> = log.iter().filter(|r| r.status == Some(429)).collect();
    assert!(
        limited.is_empty(),
        "{} requests got 429: {limited:?}",
        limited.len()
    );
    let sent = writes(&log);
    let last_post = sent.iter().rposition(|r| r.method == Method::POST).unwrap();
    let first_put = sent.iter().position(|r| r.method == Method::PUT).unwrap();
    assert!(
        first_put < last_post,
        "the PUTs waited for the POSTs: {sent:?}"
    );
    for (credential, wanted, deactivated) in &managed {
        assert_eq!(h.active(*credential).len(), *wanted);
        let on = |request: &&&LoggedRequest| {
            request
                .path
                .contains(&format!("/credential-password-ip/{credential}/ip"))
        };
        let is_deactivation = |request: &&LoggedRequest| {
            deactivated
                .iter()
                .any(|id| request.path.ends_with(&format!("/ip/{id}")))
        };
        let mine: Vec<&&LoggedRequest> = sent.iter().filter(on).collect();
        let first_deactivation = mine.iter().position(|r| is_deactivation(r)).unwrap();
        let last_grant = mine.iter().rposition(|r| !is_deactivation(r)).unwrap();
        assert!(
            last_grant < first_deactivation,
            "credential {credential}: {sent:?}"
        );
    }
}

#[tokio::test]
async fn out_of_band_drift_is_reported_against_the_last_run_and_repaired() {
    let (h, ci) = Harness::with_credential(&[("203.0.113.10", IpStatus::Active)]).await;
    let undesired = h.add_entry(ci, "192.0.2.99", IpStatus::Inactive);
    let config = h.managing("sync", 10, ci, &["203.0.113.10"]);
    let client = h.connect(&config).await;
    let (first, record) = apply(&client, &config, None).await;
    assert_eq!(
        first.drift_count(),
        0,
        "a first run has nothing to compare with"
    );
    let desired = h.entries_for(ci, "203.0.113.10")[0].id;

    // Someone toggles both IPs in the bunq app.
    h.set_status(ci, desired, IpStatus::Inactive);
    h.set_status(ci, undesired, IpStatus::Active);

    let planned = plan(&client, &config, Some(&record)).await;
    assert_eq!(
        planned.plan.credentials[0].drift,
        vec![
            Drift {
                ip: "192.0.2.99".into(),
                before: Some(IpStatus::Inactive),
                now: Some(IpStatus::Active),
            },
            Drift {
                ip: "203.0.113.10".into(),
                before: Some(IpStatus::Active),
                now: Some(IpStatus::Inactive),
            },
        ]
    );
    assert_eq!(planned.plan.summary().drift, 2);

    h.sim.clear_request_log();
    let (repair, record) = apply(&client, &config, Some(&record)).await;
    assert_eq!(
        repair.drift_count(),
        2,
        "the repairing run reports the drift too"
    );
    assert_eq!(repair.exit_status(), ExitStatus::Success);
    assert_eq!(h.status_of(ci, desired), IpStatus::Active);
    assert_eq!(h.status_of(ci, undesired), IpStatus::Inactive);
    let log = h.log();
    assert_sent(&log, &Method::PUT, 2, "");
    assert_sent(&log, &Method::POST, 0, "repairs reuse the entries");

    let after = plan(&client, &config, Some(&record)).await;
    assert_eq!(after.drift_count(), 0, "the repair itself is not drift");
}

#[tokio::test]
async fn additive_leaves_extra_ips_active_and_never_deactivates() {
    let seeded = [
        ("198.51.100.21", IpStatus::Active),
        ("198.51.100.22", IpStatus::Active),
    ];
    let (h, office, config, client) =
        Harness::managing_one(&seeded, "additive", 10, &["198.51.100.20"]).await;

    let (report, record) = apply_exiting(&client, &config, None, ExitStatus::Success).await;
    assert_eq!(
        h.active(office),
        set(&["198.51.100.20", "198.51.100.21", "198.51.100.22"])
    );
    let kept: Vec<KeptReason> = report.plan.credentials[0]
        .kept
        .iter()
        .map(|kept| kept.reason)
        .collect();
    assert_eq!(kept, vec![KeptReason::Additive, KeptReason::Additive]);
    let log = h.log();
    assert_sent(&log, &Method::PUT, 0, "additive never PUTs INACTIVE");
    assert_sent(&log, &Method::POST, 1, "");

    h.sim.clear_request_log();
    let (again, _) = apply(&client, &config, Some(&record)).await;
    assert_eq!(
        again.plan.outcome(),
        PlanOutcome::NothingToDo,
        "extras are not pending changes"
    );
    assert!(writes(&h.log()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Safety rules

#[tokio::test]
async fn own_ip_deactivation_is_blocked_the_rest_is_applied_and_the_run_is_blocked() {
    let h = Harness::start().await;
    let own = h.own_credential();
    // The desired state forgets the daemon's own IP on its own credential. The daemon calls
    // bunq from its registration IP only, and says so: other IPs of its credential may go.
    let text = h.config_text_with(
        &format!("  egress_ips: [{OWN_IP}]\n"),
        "sync",
        10,
        &credential_yaml(own, &["203.0.113.5"]),
    );
    let config = h.config_from_text(&text);
    let client = h.connect(&config).await;
    assert_eq!(
        h.sim
            .credential(own)
            .unwrap()
            .permitted_device
            .unwrap()
            .description
            .as_deref(),
        Some(DEVICE),
        "registration bound the key's credential to our device"
    );
    assert_eq!(h.active(own), set(&[&OWN_IP.to_string()]));
    let stale = h.add_entry(own, "192.0.2.50", IpStatus::Active);

    let (report, _) = apply_exiting(&client, &config, None, ExitStatus::Blocked).await;
    let blocked = &report.plan.credentials[0].blocked;
    assert_eq!(blocked.len(), 1, "{blocked:?}");
    assert_eq!(blocked[0].rule, Rule::OwnIp);
    assert_eq!(blocked[0].action.change.ip(), OWN_IP.to_string());
    let results = sorted_outcomes(&report);
    assert_eq!(
        results,
        vec![
            (ChangeKind::Create, "203.0.113.5".to_owned(), "applied"),
            (ChangeKind::Deactivate, "192.0.2.50".to_owned(), "applied"),
            (ChangeKind::Deactivate, OWN_IP.to_string(), "blocked"),
        ]
    );
    let own_entry = h.entries_for(own, &OWN_IP.to_string())[0].id;
    let refused = report
        .applied
        .as_ref()
        .unwrap()
        .results
        .iter()
        .find(|result| result.outcome == Outcome::Blocked(Rule::OwnIp));
    assert_eq!(
        refused.unwrap().entry,
        Some(own_entry),
        "the audit names the entry that was kept"
    );
    assert_eq!(h.active(own), set(&["203.0.113.5", &OWN_IP.to_string()]));
    assert_eq!(h.status_of(own, stale), IpStatus::Inactive);
    let log = h.log();
    assert_sent(&log, &Method::POST, 1, "");
    assert_sent(&log, &Method::PUT, 1, "only the stale entry is deactivated");

    // The daemon still gets in, and keeps reporting the block until the config is fixed.
    let again = plan_exiting(&client, &config, None, ExitStatus::Blocked).await;
    assert_eq!(again.plan.summary().blocking_rules, vec![Rule::OwnIp]);
}

#[tokio::test]
async fn own_ip_stays_protected_after_the_device_description_changes_in_the_config() {
    let (h, own, _) = Harness::with_own_registered().await;

    // The operator renames the device in the config; the saved registration is reused, so bunq
    // still shows the old description on the daemon's credential.
    let renamed = h.config_from_text(
        &h.config_text("sync", 10, &credential_yaml(own, &["203.0.113.5"]))
            .replace(DEVICE, "renamed-device"),
    );
    let client = h.connect(&renamed).await;
    assert!(
        h.log().is_empty(),
        "the saved registration and session were reused"
    );
    let (report, _) = apply_exiting(&client, &renamed, None, ExitStatus::Blocked).await;
    assert_eq!(report.plan.summary().blocking_rules, vec![Rule::OwnIp]);
    assert_eq!(h.active(own), set(&["203.0.113.5", &OWN_IP.to_string()]));
    let again = plan(&client, &renamed, None).await;
    assert_eq!(
        again.exit_status(),
        ExitStatus::Blocked,
        "the daemon is not locked out"
    );
}

#[tokio::test]
async fn no_deactivation_is_applied_on_any_credential_when_the_own_credential_is_not_found() {
    let h = Harness::start().await;
    let own = h.own_credential();
    let ci = h.credential_with(&ONE_OF_EACH_ENTRIES);
    let credentials = format!(
        "{}{}",
        credential_yaml(own, &["203.0.113.5"]),
        credential_yaml(ci, &ONE_OF_EACH_WANTED)
    );
    let config = h.config("sync", 10, &credentials);
    let client = h.connect(&config).await;
    // The device was renamed in the app: no credential shows the daemon's description any more,
    // so any of them may be the one the daemon signs in with.
    h.sim
        .set_permitted_device(own, Some("renamed-in-the-app"), Some(OWN_IP))
        .unwrap();

    let (report, _) = apply_exiting(&client, &config, None, ExitStatus::Blocked).await;
    let results = sorted_outcomes(&report);
    assert_eq!(
        results,
        vec![
            (ChangeKind::Create, "203.0.113.12".to_owned(), "applied"),
            (ChangeKind::Create, "203.0.113.5".to_owned(), "applied"),
            (ChangeKind::Activate, "203.0.113.11".to_owned(), "applied"),
            (ChangeKind::Deactivate, "192.0.2.1".to_owned(), "blocked"),
            (ChangeKind::Deactivate, OWN_IP.to_string(), "blocked"),
        ]
    );
    let unknown = |ip: &str| {
        (
            ip.to_owned(),
            "own-ip".to_owned(),
            "own-credential-unknown".to_owned(),
        )
    };
    assert_eq!(blocked_json(&report, 0), vec![unknown(&OWN_IP.to_string())]);
    assert_eq!(blocked_json(&report, 1), vec![unknown("192.0.2.1")]);
    let text = report::render_text(&report.plan);
    assert!(text.contains("bunq.device_description"), "{text}");
    assert_eq!(h.active(own), set(&["203.0.113.5", &OWN_IP.to_string()]));
    assert_eq!(
        h.active(ci),
        set(&["192.0.2.1", "203.0.113.11", "203.0.113.12"])
    );
    let log = h.log();
    assert_sent(
        &log,
        &Method::PUT,
        1,
        "the activation is the only status change sent",
    );
}

#[tokio::test]
async fn an_undesired_ip_on_the_own_credential_stays_active_while_egress_ips_is_unset() {
    let h = Harness::start().await;
    let own = h.own_credential();
    let ci = h.credential_with(&[("192.0.2.1", IpStatus::Active)]);
    let credentials = format!(
        "{}{}",
        credential_yaml(own, &[&OWN_IP.to_string()]),
        credential_yaml(ci, &["203.0.113.10"])
    );
    let config = h.config("sync", 10, &credentials);
    let client = h.connect(&config).await;
    // The daemon may now call bunq from this IP (a new NAT address, say).
    let egress = h.add_entry(own, "192.0.2.50", IpStatus::Active);

    let (report, _) = apply_exiting(&client, &config, None, ExitStatus::Blocked).await;
    assert_eq!(
        blocked_json(&report, 0),
        vec![(
            "192.0.2.50".to_owned(),
            "own-ip".to_owned(),
            "egress-unknown".to_owned()
        )]
    );
    let text = report::render_text(&report.plan);
    assert!(text.contains("bunq.egress_ips"), "{text}");
    assert_eq!(h.status_of(own, egress), IpStatus::Active);
    assert_eq!(
        h.active(ci),
        set(&["203.0.113.10"]),
        "other credentials are unaffected"
    );
}

#[tokio::test]
async fn egress_ips_on_the_own_credential_are_never_deactivated_and_other_ips_are() {
    let h = Harness::start().await;
    let own = h.own_credential();
    let text = h.config_text_with(
        "  egress_ips: [192.0.2.48/30]\n",
        "sync",
        10,
        &credential_yaml(own, &["203.0.113.5"]),
    );
    let config = h.config_from_text(&text);
    let client = h.connect(&config).await;
    let egress = h.add_entry(own, "192.0.2.50", IpStatus::Active);
    let stale = h.add_entry(own, "198.51.100.9", IpStatus::Active);

    let (report, _) = apply_exiting(&client, &config, None, ExitStatus::Blocked).await;
    assert_eq!(
        blocked_json(&report, 0),
        vec![
            (
                "192.0.2.50".to_owned(),
                "own-ip".to_owned(),
                "egress-ip".to_owned()
            ),
            (
                OWN_IP.to_string(),
                "own-ip".to_owned(),
                "registration-ip".to_owned()
            ),
        ]
    );
    assert_eq!(h.status_of(own, egress), IpStatus::Active);
    assert_eq!(h.status_of(own, stale), IpStatus::Inactive);
    assert_eq!(
        h.active(own),
        set(&["192.0.2.50", "203.0.113.5", &OWN_IP.to_string()])
    );
}

#[tokio::test]
async fn a_re_registration_updates_the_description_the_own_ip_rule_matches() {
    let (h, own, registered) = Harness::with_own_registered().await;
    // That registration was over an hour ago, so a new one is not deferred by the
    // re-registration bound (one per REREGISTRATION_INTERVAL per state directory).
    let store = bunq_ipsync::bunq::ContextStore::open(&registered.bunq.state_dir).unwrap();
    let mut saved = store.load().unwrap().unwrap();
    saved.registered_at = Some(chrono::Utc::now() - chrono::Duration::hours(2));
    store.save(&saved).unwrap();
    // The operator renames the device; the saved registration (old name) is reused until bunq
    // forgets the installation and the client registers anew, under the new name.
    let renamed = h.config_from_text(
        &h.config_text("sync", 10, &credential_yaml(own, &["203.0.113.5"]))
            .replace(DEVICE, "renamed-device"),
    );
    let client = h.connect(&renamed).await;
    h.sim.forget_installations();

    let (report, _) = apply(&client, &renamed, None).await;
    let device = h.sim.credential(own).unwrap().permitted_device.unwrap();
    assert_eq!(
        device.description.as_deref(),
        Some("renamed-device"),
        "the run registered anew"
    );
    assert_eq!(report.exit_status(), ExitStatus::Blocked);
    assert_own_ip_blocked(&report, "registration-ip");
    assert_eq!(h.active(own), set(&["203.0.113.5", &OWN_IP.to_string()]));
}

#[tokio::test]
async fn entries_that_are_not_ipv4_are_kept_and_never_written() {
    let seeded = [
        ("203.0.113.10", IpStatus::Active),
        ("*", IpStatus::Active),
        ("2001:db8::1", IpStatus::Active),
        ("not-an-ip", IpStatus::Inactive),
    ];
    let (h, ci, config, client) =
        Harness::managing_one(&seeded, "sync", 10, &["203.0.113.10"]).await;

    let (report, record) = apply_exiting(&client, &config, None, ExitStatus::Success).await;
    assert_eq!(report.plan.outcome(), PlanOutcome::NothingToDo);
    let kept: Vec<(String, &str)> = report.plan.credentials[0]
        .kept
        .iter()
        .map(|kept| (kept.ip.clone(), kept.reason.code()))
        .collect();
    assert_eq!(
        kept,
        vec![
            ("*".to_owned(), "not-ipv4"),
            ("2001:db8::1".to_owned(), "not-ipv4"),
            ("not-an-ip".to_owned(), "not-ipv4"),
        ]
    );
    assert!(writes(&h.log()).is_empty(), "{:?}", h.log());
    assert_eq!(h.active(ci), set(&["*", "2001:db8::1", "203.0.113.10"]));

    plan_exiting(&client, &config, Some(&record), ExitStatus::Success).await;
}

#[tokio::test]
async fn protected_ips_are_kept_without_blocking_or_pending() {
    let entries = [
        ("203.0.113.10", IpStatus::Active),
        ("192.0.2.1", IpStatus::Active),
    ];
    let protected = |ci| {
        let wanted = credential_yaml(ci, &["203.0.113.10"]);
        format!("{wanted}    protected: [192.0.2.1]\n")
    };
    let (h, ci, config, client) = Harness::connected(&entries, "sync", 10, protected).await;

    let planned = plan(&client, &config, None).await;
    assert_eq!(planned.plan.outcome(), PlanOutcome::NothingToDo);
    assert_eq!(planned.exit_status(), ExitStatus::Success);
    let kept = &planned.plan.credentials[0].kept;
    assert_eq!(kept.len(), 1);
    assert_eq!(
        (kept[0].ip.as_str(), kept[0].reason),
        ("192.0.2.1", KeptReason::Protected)
    );
    assert!(planned.plan.fired_rules().contains(&Rule::Protected));
    assert!(planned.plan.summary().blocking_rules.is_empty());

    apply_exiting(&client, &config, None, ExitStatus::Success).await;
    assert_eq!(h.active(ci), set(&["192.0.2.1", "203.0.113.10"]));
    assert!(writes(&h.log()).is_empty(), "{:?}", h.log());
}

#[tokio::test]
async fn more_changes_than_max_changes_block_the_whole_run_and_write_nothing() {
    let (h, ci, config, client) = three_changes(2).await;
    let before = h.entries(ci);

    let (report, _) = apply_exiting(&client, &config, None, ExitStatus::Blocked).await;
    let block = report.plan.run_block.unwrap();
    assert_eq!(
        (block.rule, block.changes, block.limit),
        (Rule::MaxChanges, 3, 2)
    );
    // The full plan is still there to print.
    let actions = report.plan.actions();
    let planned: Vec<ChangeKind> = actions.iter().map(|a| a.change.kind()).collect();
    assert_eq!(
        planned,
        vec![
            ChangeKind::Activate,
            ChangeKind::Create,
            ChangeKind::Deactivate
        ]
    );
    let applied = report.applied.as_ref().unwrap();
    assert_eq!(applied.count(OutcomeKind::Blocked), 3);
    let outcomes: Vec<&Outcome> = applied
        .results
        .iter()
        .map(|result| &result.outcome)
        .collect();
    assert_eq!(outcomes, [&Outcome::Blocked(Rule::MaxChanges); 3]);
    assert_eq!(h.entries(ci), before, "bunq is untouched");
    assert!(writes(&h.log()).is_empty(), "{:?}", h.log());
}

#[test]
fn empty_ips_without_allow_empty_is_a_config_error_naming_the_field() {
    let text = "bunq:\n  environment: sandbox\n  api_key_file: /nonexistent\n\
                sync:\n  policy: sync\n\
                credentials:\n  - id: 7\n    ips: []\n";
    let err = config::parse(Path::new("c.yaml"), text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("credentials[0].ips"), "{err}");
    assert!(err.contains("allow_empty"), "{err}");

    let allowed = text.replace("ips: []", "ips: []\n    allow_empty: true");
    let config = config::parse(Path::new("c.yaml"), &allowed).unwrap();
    assert!(config.credentials[0].ips.is_empty());
}

#[tokio::test]
async fn allowed_empty_ips_under_sync_deactivates_every_entry() {
    let entries = [
        ("192.0.2.1", IpStatus::Active),
        ("192.0.2.2", IpStatus::Active),
    ];
    let allowed_empty = |ci| format!("  - id: {ci}\n    ips: []\n    allow_empty: true\n");
    let (h, ci, config, client) = Harness::connected(&entries, "sync", 10, allowed_empty).await;
    apply_exiting(&client, &config, None, ExitStatus::Success).await;
    assert!(h.active(ci).is_empty());
    assert_eq!(count(&h.log(), &Method::PUT), 2);
}

#[tokio::test]
async fn plan_reads_only_and_writes_nothing() {
    let (h, ci, config, client) = three_changes(10).await;
    let before = h.entries(ci);

    let planned = plan_exiting(&client, &config, None, ExitStatus::ChangesPending).await;
    assert_eq!(planned.plan.actions().len(), 3);
    assert!(planned.applied.is_none());
    let log = h.log();
    assert!(!log.is_empty());
    assert!(
        log.iter().all(|request| request.method == Method::GET),
        "plan sent a write: {log:?}"
    );
    assert_eq!(h.entries(ci), before);
}

#[tokio::test]
async fn a_re_added_ip_reactivates_its_old_entry() {
    let (h, ci) = Harness::with_credential(&[]).await;
    let both = h.managing("sync", 10, ci, &["203.0.113.10", "203.0.113.11"]);
    let client = h.connect(&both).await;
    let (_, record) = apply(&client, &both, None).await;
    let original = h.entries_for(ci, "203.0.113.11");
    assert_eq!(original.len(), 1);

    let one = h.managing("sync", 10, ci, &["203.0.113.10"]);
    let (_, record) = apply(&client, &one, Some(&record)).await;
    assert_eq!(h.status_of(ci, original[0].id), IpStatus::Inactive);
    let entries_before = h.entries(ci).len();

    h.sim.clear_request_log();
    let (report, _) = apply_exiting(&client, &both, Some(&record), ExitStatus::Success).await;
    assert_eq!(
        outcomes(&report),
        vec![(ChangeKind::Activate, "203.0.113.11".to_owned(), "applied")]
    );
    let log = h.log();
    assert_sent(&log, &Method::PUT, 1, "");
    assert_sent(&log, &Method::POST, 0, "never a duplicate");
    assert_eq!(h.entries(ci).len(), entries_before);
    assert_eq!(h.status_of(ci, original[0].id), IpStatus::Active);
}

// ---------------------------------------------------------------------------------------------
// Failures

#[tokio::test]
async fn ambiguous_create_ends_with_exactly_one_entry() {
    // bunq creates the entry, then the connection breaks before the answer arrives.
    let (h, ci, config, client) = one_create_under(FaultKind::ResetAfterApply).await;

    let (report, record) = apply(&client, &config, None).await;
    assert_eq!(h.entries_for(ci, "203.0.113.10").len(), 1);
    assert_eq!(h.active(ci), set(&["203.0.113.10"]));
    let log = h.log();
    assert_sent(&log, &Method::POST, 1, "a create is never retried blindly");
    assert_eq!(
        log.iter()
            .filter(|r| r.fault == Some(FaultKind::ResetAfterApply))
            .count(),
        1
    );
    assert_eq!(
        outcomes(&report),
        vec![(ChangeKind::Create, "203.0.113.10".to_owned(), "applied")],
        "the re-read found the entry"
    );

    h.sim.clear_request_log();
    let (next, _) = apply(&client, &config, Some(&record)).await;
    assert_eq!(next.plan.outcome(), PlanOutcome::NothingToDo);
    assert!(writes(&h.log()).is_empty());
    assert_eq!(h.entries_for(ci, "203.0.113.10").len(), 1);
}

#[tokio::test]
async fn create_reset_before_bunq_applied_it_fails_and_the_next_run_creates_one_entry() {
    let (h, ci, config, client) = one_create_under(FaultKind::ResetBeforeApply).await;

    let (_, record) = apply_exiting(&client, &config, None, ExitStatus::Error).await;
    assert!(h.entries_for(ci, "203.0.113.10").is_empty());
    assert_eq!(count(&h.log(), &Method::POST), 1);

    apply_exiting(&client, &config, Some(&record), ExitStatus::Success).await;
    assert_eq!(h.entries_for(ci, "203.0.113.10").len(), 1);
}

/// What a progress display hears from the executor and the client, one line per event:
/// `start IP`, `IP outcome`, `wait METHOD`.
#[derive(Default)]
struct Heard(std::sync::Mutex<Vec<String>>);

impl Heard {
    fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl ApiObserver for Heard {
    fn waiting_for_window(&self, method: &str, _route_pattern: &str, wait: Duration) {
        assert!(!wait.is_zero());
        self.push(format!("wait {method}"));
    }
}

impl ApplyProgress for Heard {
    fn action_started(&self, action: &Action) {
        self.push(format!("start {}", action.change.ip()));
    }

    fn action_finished(&self, action: &Action, outcome: &'static str) {
        self.push(format!("{} {outcome}", action.change.ip()));
    }
}

#[tokio::test]
async fn progress_hears_each_action_once_in_plan_order_and_each_wait_for_a_window() {
    let (h, ci) = Harness::with_credential(&[]).await;
    let config = h.wanting_consecutive(ci, Ipv4Addr::new(10, 60, 0, 1), 12);
    let heard = std::sync::Arc::new(Heard::default());
    let observer: std::sync::Arc<dyn ApiObserver> = heard.clone();
    // Client windows of 0.9 s (bunq's scaled by 0.3): five creates surely fit in one, so the
    // sixth and the eleventh wait for the POST window whatever the machine's speed.
    let limits = RateLimits::bunq().with_windows_scaled(0.3);
    let client = h.connect_observed(&config, Some(observer), limits).await;

    let stop = CancellationToken::new();
    let (report, _) = run::apply_run_with_progress(&client, &config, None, &stop, &*heard)
        .await
        .unwrap();

    let lines = heard.lines();
    let finished: Vec<String> = lines
        .iter()
        .filter(|line| line.ends_with(" applied"))
        .cloned()
        .collect();
    let planned: Vec<String> = report
        .plan
        .actions()
        .iter()
        .map(|action| format!("{} applied", action.change.ip()))
        .collect();
    assert_eq!(finished, planned);
    // 12 creates at 5 per window: the 6th waits for the POST window (later ones may too, as
    // the slots free one by one), and the display hears of each wait after the action started
    // and before it is sent.
    let waits: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| *line == "wait POST")
        .map(|(at, _)| at)
        .collect();
    assert!(!waits.is_empty(), "{lines:?}");
    for &at in &waits {
        assert!(lines[at - 1].starts_with("start "), "{lines:?}");
    }
    let sixth = format!("start {}", report.plan.actions()[5].change.ip());
    assert_eq!(lines[waits[0] - 1], sixth, "{lines:?}");
}

// ---------------------------------------------------------------------------------------------
// Scale

#[tokio::test]
async fn three_hundred_ips_converge_without_a_single_429() {
    let (h, ci) = Harness::with_credential(&[]).await;
    let config = h.wanting_consecutive(ci, Ipv4Addr::new(10, 20, 0, 1), 300);
    let client = h.connect(&config).await;

    let (report, record) = apply_exiting(&client, &config, None, ExitStatus::Success).await;
    assert_eq!(
        report.applied.as_ref().unwrap().count(OutcomeKind::Applied),
        300
    );
    assert_eq!(h.active(ci).len(), 300);
    assert_eq!(h.entries(ci).len(), 300);
    let log = h.log();
    assert_eq!(count(&log, &Method::POST), 300);
    let limited: Vec<_> = log.iter().filter(|r| r.status == Some(429)).collect();
    assert!(
        limited.is_empty(),
        "{} requests got 429: {limited:?}",
        limited.len()
    );

    h.sim.clear_request_log();
    let (again, _) = apply(&client, &config, Some(&record)).await;
    assert_eq!(again.plan.outcome(), PlanOutcome::NothingToDo);
    assert_eq!(again.plan.credentials[0].in_sync.len(), 300);
    let log = h.log();
    assert!(writes(&log).is_empty());
    assert!(log.iter().all(|r| r.status == Some(200)), "{log:?}");
}

#[tokio::test]
async fn a_response_with_a_bad_signature_stops_the_run_before_the_next_write() {
    let seeded = [("192.0.2.1", IpStatus::Active)];
    let (h, ci, config, client) =
        Harness::managing_one(&seeded, "sync", 10, &["203.0.113.10", "203.0.113.11"]).await;
    h.inject(Fault::once(FaultKind::GarbleSignature).on(Method::POST, "/ip"));

    let (report, _) = apply_exiting(&client, &config, None, ExitStatus::Error).await;
    let applied = report.applied.as_ref().unwrap();
    assert!(applied.security_failure.is_some());
    assert_eq!(
        outcomes(&report),
        vec![
            (ChangeKind::Create, "203.0.113.10".to_owned(), "failed"),
            (ChangeKind::Create, "203.0.113.11".to_owned(), "skipped"),
            (ChangeKind::Deactivate, "192.0.2.1".to_owned(), "skipped"),
        ]
    );
    let log = h.log();
    assert_eq!(
        writes(&log).len(),
        1,
        "nothing sent after the bad signature: {log:?}"
    );
    assert!(h.active(ci).contains("192.0.2.1"));
}

// ---------------------------------------------------------------------------------------------
// A context imported from the SDK: the own device is read back from bunq

/// Makes the saved context look like one `import-sdk-context` wrote: a device without id or
/// description (the SDK records neither). Returns the store.
fn forget_device_as_an_sdk_import_does(config: &Config) -> bunq_ipsync::bunq::ContextStore {
    let store = bunq_ipsync::bunq::ContextStore::open(&config.bunq.state_dir).unwrap();
    let mut saved = store.load().unwrap().unwrap();
    let device = saved.device.as_mut().unwrap();
    device.id = None;
    device.description = None;
    store.save(&saved).unwrap();
    store
}

/// Registers, then leaves the state directory as `import-sdk-context` would: the device without
/// id or description, and a config that names another description than the one registered (the
/// SDK's), wanting 203.0.113.5 on the own credential.
async fn imported(h: &Harness) -> (Config, bunq_ipsync::bunq::ContextStore) {
    let own = h.own_credential();
    drop(
        h.connect(&h.config("sync", 10, &credential_yaml(own, &[&OWN_IP.to_string()])))
            .await,
    );
    let config = h.config_from_text(
        &h.config_text("sync", 10, &credential_yaml(own, &["203.0.113.5"]))
            .replace(DEVICE, "not-what-the-sdk-registered"),
    );
    let store = forget_device_as_an_sdk_import_does(&config);
    (config, store)
}

/// The one blocked action of the first credential: the own registration IP, by `own-ip` for
/// `reason`.
fn assert_own_ip_blocked(report: &RunReport, reason: &str) {
    assert_eq!(
        blocked_json(report, 0),
        vec![(OWN_IP.to_string(), "own-ip".to_owned(), reason.to_owned())]
    );
}

#[tokio::test]
async fn an_imported_context_reads_the_own_device_from_bunq_so_the_own_ip_rule_still_protects() {
    let h = Harness::start().await;
    let own = h.own_credential();
    let (config, store) = imported(&h).await;

    let client = h.connect(&config).await;
    assert_eq!(client.device_description().as_deref(), Some(DEVICE));
    let saved = store.load().unwrap().unwrap().device.unwrap();
    assert_eq!(
        saved.description.as_deref(),
        Some(DEVICE),
        "saved for the next start"
    );
    assert!(saved.id.is_some());

    let (report, _) = apply_exiting(&client, &config, None, ExitStatus::Blocked).await;
    assert_own_ip_blocked(&report, "registration-ip");
    assert_eq!(h.active(own), set(&["203.0.113.5", &OWN_IP.to_string()]));
}

#[tokio::test]
async fn a_failed_device_lookup_leaves_the_own_credential_unknown_and_the_connect_working() {
    let h = Harness::start().await;
    let own = h.own_credential();
    let (config, store) = imported(&h).await;
    h.inject(
        Fault::once(FaultKind::Status(500))
            .on(Method::GET, "/device-server")
            .times(usize::MAX),
    );

    let client = h.connect(&config).await;
    assert_eq!(client.device_description(), None);
    assert_eq!(
        store.load().unwrap().unwrap().device.unwrap().description,
        None
    );
    let (report, _) = apply(&client, &config, None).await;
    assert_own_ip_blocked(&report, "own-credential-unknown");
    assert!(h.active(own).contains(&OWN_IP.to_string()));
}

#[tokio::test]
async fn a_read_only_client_reads_the_imported_device_but_leaves_the_state_file_as_it_was() {
    let h = Harness::start().await;
    let own = h.own_credential();
    let config = h.config("sync", 10, &credential_yaml(own, &[&OWN_IP.to_string()]));
    drop(h.connect(&config).await);
    let store = forget_device_as_an_sdk_import_does(&config);
    let before = std::fs::read(store.path()).unwrap();

    let settings = client_settings(&config, None).unwrap();
    let client = BunqClient::connect_read_only(settings, h.key.api_key.clone(), &h.state_dir())
        .await
        .unwrap();
    assert_eq!(client.device_description().as_deref(), Some(DEVICE));
    assert_eq!(
        std::fs::read(store.path()).unwrap(),
        before,
        "no byte changed"
    );
}

#[tokio::test]
async fn several_active_devices_leave_the_own_credential_unknown_and_every_deactivation_blocked() {
    let h = Harness::start().await;
    let own = h.own_credential();
    let (config, store) = imported(&h).await;
    h.sim
        .add_device(h.key.user_id, "phone app", Ipv4Addr::new(192, 0, 2, 44))
        .unwrap();

    let client = h.connect(&config).await;
    assert_eq!(
        client.device_description(),
        None,
        "not guessed between two devices"
    );
    assert_eq!(
        store.load().unwrap().unwrap().device.unwrap().description,
        None
    );

    let (report, _) = apply_exiting(&client, &config, None, ExitStatus::Blocked).await;
    assert_own_ip_blocked(&report, "own-credential-unknown");
    assert!(h.active(own).contains(&OWN_IP.to_string()));
}

// ---------------------------------------------------------------------------------------------
// Dynamic sources: DNS names and files in the desired state

use bunq_ipsync::simulator::{DnsAnswer, DnsServer};

/// `credentials` YAML items plus a `sources:` section pointing DNS at `dns`.
fn with_sources(h: &Harness, dns: &DnsServer, credentials: &str) -> Config {
    h.config_from_text(&format!(
        "{}sources:\n  dns:\n    nameservers: [{}]\n    timeout: 500ms\n",
        h.config_text("sync", 10, credentials),
        dns.address()
    ))
}

fn ipv4(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

#[tokio::test]
async fn a_moved_name_grants_the_new_address_before_it_retires_the_old_one() {
    let (h, ci) = Harness::with_credential(&[]).await;
    let dns = DnsServer::start().await.unwrap();
    dns.set("home.example.org", DnsAnswer::a(&[ipv4("203.0.113.10")], 5));
    let config = with_sources(
        &h,
        &dns,
        &format!("  - id: {ci}\n    ips:\n      - dns: home.example.org\n"),
    );
    let client = h.connect(&config).await;
    let (_, record) = apply_exiting(&client, &config, None, ExitStatus::Success).await;
    assert_eq!(h.active(ci), set(&["203.0.113.10"]));

    dns.set("home.example.org", DnsAnswer::a(&[ipv4("203.0.113.20")], 5));
    h.sim.clear_request_log();
    let (second, _) = apply_exiting(&client, &config, Some(&record), ExitStatus::Success).await;
    assert_eq!(h.active(ci), set(&["203.0.113.20"]));
    let order: Vec<Method> = writes(&h.log()).iter().map(|w| w.method.clone()).collect();
    assert_eq!(
        order,
        vec![Method::POST, Method::PUT],
        "grant, then deactivation"
    );
    let json = plan_json(&second);
    assert_eq!(
        json["credentials"][0]["actions"][0]["source"],
        "dns:home.example.org"
    );
    assert_eq!(
        json["credentials"][0]["actions"][1]["source"],
        serde_json::Value::Null
    );
    assert_eq!(json["sources"][0]["source"], "dns:home.example.org");
    assert_eq!(
        json["sources"][0]["addresses"],
        serde_json::json!(["203.0.113.20"])
    );
    assert_eq!(json["sources"][0]["ttl"], 5);
    let text = report::render_text(&second.plan);
    assert!(text.contains("(from dns:home.example.org)"), "{text}");
}

#[tokio::test]
async fn a_failed_lookup_holds_back_that_credentials_deactivations_only() {
    for failure in [DnsAnswer::NxDomain, DnsAnswer::ServFail, DnsAnswer::Silent] {
        let h = Harness::start().await;
        let home = h.credential_with(&[("198.51.100.99", IpStatus::Active)]);
        let other = h.credential_with(&[("192.0.2.99", IpStatus::Active)]);
        let dns = DnsServer::start().await.unwrap();
        dns.set("home.example.org", failure.clone());
        let config = with_sources(
            &h,
            &dns,
            &format!(
                "  - id: {home}\n    ips:\n      - 203.0.113.10\n      - dns: home.example.org\n\
                 {}",
                credential_yaml(other, &["192.0.2.10"])
            ),
        );
        let client = h.connect(&config).await;
        let (report, _) = apply(&client, &config, None).await;
        assert_eq!(report.exit_status(), ExitStatus::Blocked, "{failure:?}");
        assert_eq!(
            h.active(home),
            set(&["198.51.100.99", "203.0.113.10"]),
            "{failure:?}: the static item is created, nothing deactivated"
        );
        assert_eq!(
            blocked_json(&report, 0),
            vec![(
                "198.51.100.99".to_owned(),
                "source-unavailable".to_owned(),
                "source-unavailable".to_owned()
            )]
        );
        assert_eq!(
            h.active(other),
            set(&["192.0.2.10"]),
            "other credentials apply"
        );
        let json = plan_json(&report);
        assert_eq!(
            json["credentials"][0]["failed_sources"][0]["source"],
            "dns:home.example.org"
        );
        assert_eq!(json["sources"][0]["ok"], false);
        let text = report::render_text(&report.plan);
        assert!(
            text.contains("SOURCE FAILED dns:home.example.org"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_source_shared_by_two_credentials_is_resolved_once_per_run() {
    let h = Harness::start().await;
    let (one, two) = (h.credential_with(&[]), h.credential_with(&[]));
    let dns = DnsServer::start().await.unwrap();
    dns.set("nat.example.org", DnsAnswer::a(&[ipv4("203.0.113.30")], 60));
    let item = "    ips:\n      - dns: nat.example.org\n";
    let config = with_sources(
        &h,
        &dns,
        &format!("  - id: {one}\n{item}  - id: {two}\n{item}"),
    );
    let client = h.connect(&config).await;
    apply(&client, &config, None).await;
    assert_eq!(dns.queries("nat.example.org"), 1);
    assert_eq!(h.active(one), set(&["203.0.113.30"]));
    assert_eq!(h.active(two), set(&["203.0.113.30"]));
}

#[tokio::test]
async fn a_file_source_is_read_every_run_and_a_bad_line_blocks_with_its_number() {
    let (h, ci) = Harness::with_credential(&[]).await;
    let dns = DnsServer::start().await.unwrap();
    let file = h.dir.path().join("nat.txt");
    std::fs::write(&file, "203.0.113.40\n").unwrap();
    let config = with_sources(
        &h,
        &dns,
        &format!("  - id: {ci}\n    ips:\n      - file: {}\n", file.display()),
    );
    let client = h.connect(&config).await;
    let (_, record) = apply(&client, &config, None).await;
    assert_eq!(h.active(ci), set(&["203.0.113.40"]));

    std::fs::write(&file, "203.0.113.41\n203.0.113.43/31\n").unwrap();
    let (report, _) = apply_exiting(&client, &config, Some(&record), ExitStatus::Blocked).await;
    assert_eq!(
        h.active(ci),
        set(&["203.0.113.40"]),
        "nothing written on a bad line"
    );
    let error = plan_json(&report)["credentials"][0]["failed_sources"][0]["error"].clone();
    assert!(error.as_str().unwrap().starts_with("line 2:"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Reads: only what the run needs.

/// The GETs of `log`, as paths.
fn gets(log: &[LoggedRequest]) -> Vec<String> {
    log.iter()
        .filter(|request| request.method == Method::GET)
        .map(|request| request.path.clone())
        .collect()
}

#[tokio::test]
async fn a_steady_state_run_reads_each_managed_credential_once_and_not_the_credentials_listing() {
    let h = Harness::start().await;
    let credentials: Vec<CredentialId> = (0..3)
        .map(|_| h.credential_with(&[("203.0.113.10", IpStatus::Active)]))
        .collect();
    let items: String = credentials
        .iter()
        .map(|credential| credential_yaml(*credential, &["203.0.113.10"]))
        .collect();
    let config = h.config("sync", 10, &items);
    let client = h.connect(&config).await;

    let (report, _) = apply(&client, &config, None).await;

    assert_eq!(report.plan.actions().len(), 0, "nothing to do");
    let gets = gets(&h.log());
    assert_eq!(
        gets.len(),
        3,
        "exactly one GET per managed credential: {gets:?}"
    );
    for credential in &credentials {
        let listing = format!("credential-password-ip/{credential}/ip");
        assert_eq!(
            gets.iter().filter(|path| path.contains(&listing)).count(),
            1,
            "{gets:?}"
        );
    }
    assert_eq!(h.log().len(), 3, "and nothing else");
}

#[tokio::test]
async fn a_planned_deactivation_reads_the_credentials_listing_and_the_own_ip_rule_still_guards() {
    // The own credential, managed, wanting another IP: deactivating OWN_IP would lock the
    // daemon out; only the credentials listing says it is the daemon's own.
    let h = Harness::start().await;
    let own = h.own_credential();
    let config = h.managing("sync", 10, own, &["203.0.113.10"]);
    let client = h.connect(&config).await;

    let (report, _) = apply(&client, &config, None).await;

    let gets = gets(&h.log());
    assert!(
        gets.iter()
            .any(|path| path.contains("credential-password-ip?count")),
        "the listing was read for the deactivation: {gets:?}"
    );
    let blocked = &report.plan.credentials[0].blocked;
    assert_eq!(blocked.len(), 1, "{blocked:?}");
    assert_eq!(blocked[0].why.code(), "registration-ip", "{blocked:?}");
    assert!(h.active(own).contains(&OWN_IP.to_string()));
}

#[tokio::test]
async fn an_unknown_credential_is_named_from_its_404_with_the_credentials_bunq_knows() {
    let h = Harness::start().await;
    let known = h.credential_with(&[]);
    let config = h.managing("sync", 10, 999_999, &["203.0.113.10"]);
    let client = h.connect(&config).await;

    let err = run::plan_run(&client, &config, None).await.unwrap_err();

    match &err {
        run::RunError::UnknownCredential { id, known: listed } => {
            assert_eq!(*id, 999_999);
            assert!(listed.contains(&known.to_string()), "{listed}");
            assert!(listed.contains(&h.own_credential().to_string()), "{listed}");
        }
        other => panic!("expected UnknownCredential, got {other:?}"),
    }
    assert!(err.to_string().contains("check credentials[].id"), "{err}");
    let gets = gets(&h.log());
    assert_eq!(
        gets.len(),
        2,
        "the 404, then the listing that names the known ids: {gets:?}"
    );
    assert_eq!(
        count(&h.log(), &Method::POST) + count(&h.log(), &Method::PUT),
        0
    );
}
