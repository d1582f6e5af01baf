//! The fault-injection suite: the real bunq client and the real reconcile run (plan + the single
//! executor) against the in-process simulator, one injected fault per test.
//!
//! For every fault the daemon either converges to the desired state or refuses safely, and
//! [`assert_invariants`] (called after every run of every test) checks that it never
//! deactivated an IP that is desired or protected, never created a duplicate entry, never wrote
//! to a credential it does not manage, and never lost its bunq context (no re-registration, the
//! saved installation unchanged).
//!
//! Every test records what it observed with [`record_outcome`]. With `FAULT_TABLE=<path>` set,
//! the suite writes the table of faults and outcomes to that file (between the
//! `fault-table:begin/end` markers if the file has them), which is how `docs/faults.md` is made:
//!
//! ```text
//! FAULT_TABLE=docs/faults.md cargo test --test integration faults::
//! ```
//!
//! Timeouts: the slow-response tests need real time (the simulator's delay and the client's
//! timeout are real sockets and real timers; tokio's paused clock would fire timeouts while
//! loopback I/O is pending), so they use a 400 ms request timeout against a 2 s delay. Nothing
//! here asserts a duration.

// The whole file is test code: helpers outside `#[test]` fns may panic to report failure too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use bunq_ipsync::bunq::context::CONTEXT_FILE_NAME;
use bunq_ipsync::bunq::model::{CredentialId, EntryId, IpStatus, PermittedIp};
use bunq_ipsync::bunq::{
    BaseUrl, BunqClient, BunqError, ClientSettings, RateLimits, RetryPolicy, TransportSettings,
};
use bunq_ipsync::config::{self, Config};
use bunq_ipsync::reconcile::apply::{ApplyReport, Outcome, OutcomeKind};
use bunq_ipsync::reconcile::record::RecordStore;
use bunq_ipsync::reconcile::run::{self, AllowlistWriter, RunError, RunReport};
use bunq_ipsync::secret::Secret;
use bunq_ipsync::simulator::{Fault, FaultKind, LoggedRequest, Simulator};
use hyper::Method;
use tokio_util::sync::CancellationToken;

use crate::invariants::{Snapshot, assert_invariants, saved_installation};

use crate::support::bank::{Hook, Hooked};
use crate::support::{config_text, sim_options};

// ---------------------------------------------------------------------------------------------
// The outcome table.

/// One row of the table: a fault from the issue and the test that injects it.
struct Row {
    fault: &'static str,
    injected: &'static str,
    /// The test in this file, or `daemon_e2e::name` for faults tested against the real process.
    test: &'static str,
}

const E2E: &str = "daemon_e2e::";

const ROWS: &[Row] = &[
    Row {
        fault: "HTTP 500",
        injected: "`Status(500)` on the first create (POST .../ip)",
        test: "http_500_on_a_create_fails_it_holds_back_deactivations_and_the_next_run_converges",
    },
    Row {
        fault: "HTTP 500 after bunq committed the create",
        injected: "`StatusAfterApply(500)` on the first create",
        test: "http_500_after_a_committed_create_is_resolved_by_re_listing_and_never_duplicates",
    },
    Row {
        fault: "HTTP 500, bunq commits the create after the re-read",
        injected: "`Status(500)` on the first create, the entry added before run 2",
        test: "http_500_on_a_create_that_bunq_commits_late_is_not_reported_as_drift",
    },
    Row {
        fault: "Unreadable 200 on a create",
        injected: "`UnreadableAfterApply` on the first create (committed, body cut short)",
        test: "unreadable_200_on_a_create_is_resolved_by_re_listing_and_never_duplicates",
    },
    Row {
        fault: "HTTP 500",
        injected: "`Status(500)` twice on the IP listing (GET)",
        test: "http_500_on_a_listing_is_retried_and_the_run_converges",
    },
    Row {
        fault: "HTTP 500 on a later page",
        injected: "`Status(500)` on page 2 of a 255-entry listing (`older_id`)",
        test: "http_500_on_the_second_page_is_retried_and_nothing_is_duplicated",
    },
    Row {
        fault: "HTTP 491 (maintenance)",
        injected: "`Status(491)` on every credentials listing for a whole run (retry budget spent)",
        test: "maintenance_491_refuses_the_run_without_writes_and_the_next_run_converges",
    },
    Row {
        fault: "HTTP 503 with an HTML body",
        injected: "`Html503` (no bunq headers) on the credentials listing, 4 times (the retry budget)",
        test: "html_503_from_a_proxy_refuses_the_run_with_a_readable_error_and_no_writes",
    },
    Row {
        fault: "HTTP 503 with an HTML body",
        injected: "`Html503` on the first deactivation (PUT)",
        test: "html_503_on_a_status_change_is_retried_and_the_run_converges",
    },
    Row {
        fault: "Connection reset before the write (POST)",
        injected: "`ResetBeforeApply` on the first create",
        test: "reset_before_a_create_is_resolved_by_re_listing_and_never_duplicates",
    },
    Row {
        fault: "Connection reset after the write (POST)",
        injected: "`ResetAfterApply` on the first create (bunq created the entry)",
        test: "reset_after_a_create_is_resolved_by_re_listing_and_never_duplicates",
    },
    Row {
        fault: "Connection reset before the write (PUT)",
        injected: "`ResetBeforeApply` on the activation",
        test: "reset_before_a_status_change_is_retried_and_the_run_converges",
    },
    Row {
        fault: "Connection reset after the write (PUT)",
        injected: "`ResetAfterApply` on the first deactivation",
        test: "reset_after_a_status_change_is_retried_idempotently_and_the_run_converges",
    },
    Row {
        fault: "Slow response beyond the timeout (POST)",
        injected: "`Delay(2s)` on the first create, client timeout 400 ms (the write happened)",
        test: "slow_create_beyond_the_timeout_is_resolved_by_re_listing_and_never_duplicates",
    },
    Row {
        fault: "Slow response beyond the timeout (PUT)",
        injected: "`Delay(2s)` on the activation, client timeout 400 ms (the write happened)",
        test: "slow_status_change_beyond_the_timeout_is_retried_and_the_run_converges",
    },
    Row {
        fault: "429 burst",
        injected: "`Status(429)` three times on the IP listing",
        test: "rate_limit_burst_on_a_listing_is_ridden_out_by_backoff",
    },
    Row {
        fault: "429 burst",
        injected: "`Status(429)` on the first create (bunq made nothing, so it is retried)",
        test: "rate_limit_on_a_create_is_retried_and_the_run_converges",
    },
    Row {
        fault: "Another client keeps the write windows busy",
        injected: "`Status(429)` on every POST and PUT for 10 s, client limiter on, paused clock",
        test: "writes_kept_busy_by_another_client_for_10_s_are_waited_out_and_the_run_converges",
    },
    Row {
        fault: "Session expired early by the server",
        injected: "`expire_all_sessions()` between runs",
        test: "sessions_expired_between_runs_are_renewed_without_losing_the_context",
    },
    Row {
        fault: "Session expired early by the server",
        injected: "`ExpireSession` on the first create",
        test: "session_expired_during_a_create_is_renewed_and_the_create_sent_once_more",
    },
    Row {
        fault: "Garbled response signature",
        injected: "`GarbleSignature` on the first create (bunq created the entry)",
        test: "garbled_signature_on_a_create_stops_the_run_and_the_next_run_does_not_duplicate",
    },
    Row {
        fault: "Garbled response signature",
        injected: "`GarbleSignature` on the credentials listing",
        test: "garbled_signature_on_a_listing_refuses_the_run_without_writes",
    },
    Row {
        fault: "Garbled response signature",
        injected: "`GarbleSignature` on page 2 of a 255-entry listing",
        test: "garbled_signature_on_the_second_page_refuses_the_run_instead_of_planning_from_page_one",
    },
    Row {
        fault: "Garbled response signature",
        injected: "`GarbleSignature` on session-server after the session expired",
        test: "garbled_signature_on_session_renewal_refuses_the_run_and_the_next_run_recovers",
    },
    Row {
        fault: "Dropped response signature",
        injected: "`DropSignature` on the activation (PUT)",
        test: "dropped_signature_on_a_status_change_stops_the_run_before_any_deactivation",
    },
    Row {
        fault: "Dropped response signature",
        injected: "`DropSignature` on the IP listing",
        test: "dropped_signature_on_a_listing_refuses_the_run_without_writes",
    },
    Row {
        fault: "State file deleted between runs",
        injected: "`bunq-context.json` and `last-run.json` removed, client restarted",
        test: "deleted_state_file_registers_cleanly_without_touching_any_allowlist",
    },
    Row {
        fault: "State file deleted while running",
        injected: "`bunq-context.json` removed under a running client, then sessions expired",
        test: "state_file_deleted_while_running_is_written_again_at_the_next_session_renewal",
    },
    Row {
        fault: "State file corrupted between runs",
        injected: "`bunq-context.json` overwritten with garbage, client restarted",
        test: "corrupt_state_file_is_a_clear_error_sends_nothing_and_is_left_in_place",
    },
    Row {
        fault: "Last-run record corrupted between runs",
        injected: "`last-run.json` overwritten with garbage",
        test: "corrupt_last_run_record_only_restarts_drift_reporting",
    },
    Row {
        fault: "Bad config",
        injected: "YAML syntax error",
        test: "config_with_a_syntax_error_is_refused_before_anything_is_sent",
    },
    Row {
        fault: "Bad config",
        injected: "one invalid IP among valid ones",
        test: "config_with_one_invalid_ip_is_refused_whole_before_anything_is_sent",
    },
    Row {
        fault: "Bad config on reload (SIGHUP)",
        injected: "real daemon process, broken file then SIGHUP",
        test: "daemon_e2e::sighup_with_a_bad_config_keeps_the_old_one_and_writes_nothing",
    },
    Row {
        fault: "SIGTERM mid-apply (executor)",
        injected: "stop token cancelled while a `Delay(100ms)` activation (PUT) is in flight",
        test: "stop_during_apply_finishes_the_write_in_flight_and_skips_the_rest",
    },
    Row {
        fault: "SIGTERM mid-apply (process)",
        injected: "real daemon process, SIGTERM during a run",
        test: "daemon_e2e::sigterm_during_an_apply_exits_zero_without_half_applied_state",
    },
    Row {
        fault: "Own IP deactivated out of band",
        injected: "`set_entry_status` INACTIVE on the daemon's own caller-IP entry",
        test: "own_ip_deactivated_out_of_band_is_a_credentials_error_with_no_writes",
    },
];

static OBSERVED: Mutex<BTreeMap<&'static str, String>> = Mutex::new(BTreeMap::new());

const TABLE_BEGIN: &str = "<!-- fault-table:begin -->";
const TABLE_END: &str = "<!-- fault-table:end -->";

/// [`record_outcome`] for a test whose first run ends as `first` says and whose later runs
/// converge.
fn record_then_converged(first: &str, runs: &[Run]) {
    record_outcome(format!("{first}; {}", converged_summary(&runs[1..])));
}

/// [`record_outcome`] for a test that converged in exactly `needed` runs; `note` says how the
/// fault was ridden out (empty when the summary says it all).
fn record_converged(runs: &[Run], needed: usize, note: &str) {
    assert_eq!(runs.len(), needed, "runs until converged");
    let summary = converged_summary(runs);
    record_outcome(if note.is_empty() {
        summary
    } else {
        format!("{summary}; {note}")
    });
}

/// Run 1 was refused for `label` (its metric label) before any write and run 2 converged;
/// recorded as `first` and the summary of run 2.
fn assert_refused_then_converged(runs: &[Run], label: &str, first: &str) {
    assert_eq!(runs[0].writes(), 0);
    assert_eq!(runs[0].error().metric_label(), label);
    assert_eq!(runs.len(), 2);
    record_then_converged(first, runs);
}

/// Run 1 was refused for a bad bunq signature (a security error) before any write and run 2
/// converged.
fn assert_refused_for_the_signature(runs: &[Run]) {
    let first = "run 1 refused (security error), 0 writes";
    assert_refused_then_converged(runs, "signature", first);
}

/// The running test's row name: libtest runs each test on a thread named by its path
/// (`faults::NAME`), so a test states its name once, in its `fn` line.
fn this_test() -> &'static str {
    let thread = std::thread::current();
    let path = thread.name().expect("tests run on named threads");
    let name = path.rsplit("::").next().unwrap_or(path);
    ROWS.iter()
        .map(|row| row.test)
        .find(|test| *test == name)
        .unwrap_or_else(|| panic!("{name} has no row in ROWS"))
}

/// Records what the running test observed and, with `FAULT_TABLE` set, rewrites the table.
/// Every test rewrites the whole table, so after the last one it is complete; a row whose test
/// did not run (or failed before recording) says so.
fn record_outcome(outcome: impl Into<String>) {
    let test = this_test();
    let mut observed = OBSERVED.lock().unwrap_or_else(|err| err.into_inner());
    observed.insert(test, outcome.into());
    if let Some(path) = std::env::var_os("FAULT_TABLE") {
        write_table(Path::new(&path), &observed);
    }
}

fn render_table(observed: &BTreeMap<&'static str, String>) -> String {
    let mut out =
        String::from("| Fault | Injected | Test | Observed outcome |\n|---|---|---|---|\n");
    for row in ROWS {
        let (test, outcome) = match row.test.strip_prefix(E2E) {
            Some(name) => (
                format!("`tests/daemon_e2e.rs::{name}`"),
                "covered in daemon_e2e".to_owned(),
            ),
            None => (
                format!("`{}`", row.test),
                observed
                    .get(row.test)
                    .cloned()
                    .unwrap_or_else(|| "NOT OBSERVED (test not run or failed)".to_owned()),
            ),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            row.fault, row.injected, test, outcome
        ));
    }
    out
}

fn write_table(path: &Path, observed: &BTreeMap<&'static str, String>) {
    let table = render_table(observed);
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let text = match (existing.find(TABLE_BEGIN), existing.find(TABLE_END)) {
        (Some(begin), Some(end)) if begin < end => format!(
            "{}{TABLE_BEGIN}\n{table}{}",
            &existing[..begin],
            &existing[end..]
        ),
        _ => format!("{TABLE_BEGIN}\n{table}{TABLE_END}\n"),
    };
    std::fs::write(path, text).unwrap();
}

// ---------------------------------------------------------------------------------------------
// The simulated bank, the client and the runs.

const DEVICE: &str = "bunq-ipsync-faults";
const IN_SYNC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const TO_ACTIVATE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
const TO_CREATE_A: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 12);
const TO_CREATE_B: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 13);
const PROTECTED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const STRAY_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
const STRAY_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 51);
/// A slow response: far beyond [`SLOW_TIMEOUT`].
const DELAY: Duration = Duration::from_secs(2);
/// The request timeout of the slow-response tests.
const SLOW_TIMEOUT: Duration = Duration::from_millis(400);

/// A user with the daemon's own key and a managed credential "pool" with work of every kind:
/// one desired IP in sync, one to reactivate, two to create, a protected IP and two undesired
/// ACTIVE entries to deactivate (5 actions: 2 creates, 1 activation, 2 deactivations).
struct Bank {
    sim: Simulator,
    dir: tempfile::TempDir,
    api_key: Secret,
    own: CredentialId,
    pool: CredentialId,
    seeded: BTreeMap<Ipv4Addr, EntryId>,
    config: Config,
    desired: BTreeSet<Ipv4Addr>,
    protected: BTreeSet<Ipv4Addr>,
}

impl Bank {
    async fn start() -> Bank {
        let sim = Simulator::start(sim_options()).await.unwrap();
        let key = sim.create_user_with_api_key();
        let pool = sim
            .add_credential(key.user_id, Some("ci-pool"), Some(IN_SYNC))
            .unwrap();
        let mut seeded = BTreeMap::new();
        for (ip, status) in [
            (IN_SYNC, IpStatus::Active),
            (TO_ACTIVATE, IpStatus::Inactive),
            (PROTECTED, IpStatus::Active),
            (STRAY_A, IpStatus::Active),
            (STRAY_B, IpStatus::Active),
        ] {
            let entry = sim.add_entry(pool, &ip.to_string(), status).unwrap();
            seeded.insert(ip, entry);
        }
        let dir = tempfile::tempdir().unwrap();
        let text = config_text(&sim, dir.path(), pool);
        let config = config::parse(&dir.path().join("config.yaml"), &text).unwrap();
        Bank {
            desired: [IN_SYNC, TO_ACTIVATE, TO_CREATE_A, TO_CREATE_B].into(),
            protected: [PROTECTED].into(),
            sim,
            dir,
            api_key: key.api_key,
            own: key.credential_id,
            pool,
            seeded,
            config,
        }
    }

    /// Adds `count` undesired INACTIVE entries after the seeded ones, so the listing takes two
    /// pages (200 per page, newest first) and the seeded entries are all on the second.
    fn with_history(self, count: u8) -> Bank {
        for n in 0..count {
            self.sim
                .add_entry(self.pool, &format!("10.0.0.{n}"), IpStatus::Inactive)
                .unwrap();
        }
        self
    }

    fn state_dir(&self) -> &Path {
        &self.config.bunq.state_dir
    }

    fn settings(&self, request_timeout: Duration) -> ClientSettings {
        let mut settings =
            ClientSettings::new(BaseUrl::parse(&self.sim.base_url()).unwrap(), DEVICE);
        settings.transport = TransportSettings {
            connect_timeout: Duration::from_secs(5),
            request_timeout,
            retry: RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(4),
            },
            rate_limits: RateLimits::disabled(),
        };
        settings
    }

    /// Connects like the daemon does at start (registering on the first call).
    async fn try_connect(&self, request_timeout: Duration) -> Result<BunqClient, BunqError> {
        BunqClient::connect(
            self.settings(request_timeout),
            self.api_key.clone(),
            self.state_dir(),
        )
        .await
    }

    async fn connect(&self) -> BunqClient {
        self.try_connect(Duration::from_secs(10)).await.unwrap()
    }

    fn entries(&self) -> Vec<PermittedIp> {
        self.sim.entries(self.pool).unwrap()
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot::take(&self.sim, &[self.pool], &[self.own], self.state_dir())
    }

    /// One apply run through `writer`, with the last-run record loaded and saved as the daemon
    /// does; the invariants are checked afterwards.
    async fn run_with<W: AllowlistWriter>(&self, writer: &W, stop: &CancellationToken) -> Run {
        let before = self.snapshot();
        let records = RecordStore::new(self.state_dir());
        let previous = records.load();
        let outcome = match run::apply_run(writer, &self.config, previous.as_ref(), stop).await {
            Ok((report, record)) => {
                records.save(&record).unwrap();
                Ok(report)
            }
            Err(err) => Err(err),
        };
        let log = self.sim.request_log()[before.log_len..].to_vec();
        self.check(&before);
        Run { outcome, log }
    }

    async fn run(&self, client: &BunqClient) -> Run {
        self.run_with(client, &CancellationToken::new()).await
    }

    fn check(&self, before: &Snapshot) {
        assert_invariants(&self.sim, before, self.pool, &self.desired, &self.protected);
    }

    /// Runs until the allowlist is the desired state (at most `max_runs`); every run is
    /// checked by [`assert_invariants`]. Returns the runs, first to last.
    async fn converge(&self, client: &BunqClient, max_runs: usize) -> Vec<Run> {
        let mut runs = Vec::new();
        while runs.len() < max_runs {
            runs.push(self.run(client).await);
            if self.converged() {
                return runs;
            }
        }
        panic!(
            "not converged after {max_runs} runs: {:?}\nlast run: {}",
            self.entries(),
            runs.last().map(Run::describe).unwrap_or_default()
        );
    }

    /// [`Bank::converge`] (three runs at most) with `fault` injected first.
    async fn converge_under(&self, client: &BunqClient, fault: Fault) -> Vec<Run> {
        self.sim.inject(fault);
        self.converge(client, 3).await
    }

    /// The ACTIVE set is exactly desired + protected (protected is seeded ACTIVE).
    fn converged(&self) -> bool {
        let active: BTreeSet<String> = self
            .entries()
            .into_iter()
            .filter(|entry| entry.status == IpStatus::Active)
            .map(|entry| entry.ip)
            .collect();
        let wanted: BTreeSet<String> = self
            .desired
            .union(&self.protected)
            .map(Ipv4Addr::to_string)
            .collect();
        active == wanted
    }

    fn status_of(&self, ip: Ipv4Addr) -> Vec<IpStatus> {
        self.entries()
            .into_iter()
            .filter(|entry| entry.ip == ip.to_string())
            .map(|entry| entry.status)
            .collect()
    }

    fn own_entry(&self) -> EntryId {
        let caller = self.sim.caller_ip().to_string();
        self.sim
            .entries(self.own)
            .unwrap()
            .into_iter()
            .find(|entry| entry.ip == caller)
            .expect("device-server made the caller IP ACTIVE on the own credential")
            .id
    }
}

fn config_text(sim: &Simulator, dir: &Path, pool: CredentialId) -> String {
    let key_file = dir.join("api-key");
    std::fs::write(&key_file, "unused: the tests pass the key directly").unwrap();
    let bunq =
        config_text::bunq_section(&sim.base_url(), Some(&key_file), DEVICE, &dir.join("state"));
    format!(
        "{bunq}sync:
  policy: sync
  interval: 30s
  max_changes: 10
credentials:
  - id: {pool}
    name: ci-pool
    ips: [{IN_SYNC}, {TO_ACTIVATE}, {TO_CREATE_A}, {TO_CREATE_B}]
    protected: [{PROTECTED}]
"
    )
}

/// One run as observed: the run's result and every request it sent.
struct Run {
    outcome: Result<RunReport, RunError>,
    log: Vec<LoggedRequest>,
}

fn is_allowlist_write(request: &LoggedRequest) -> bool {
    request.method != Method::GET && request.path.contains("/credential-password-ip/")
}

impl Run {
    fn report(&self) -> &RunReport {
        self.outcome.as_ref().expect("the run produced a plan")
    }

    /// What the executor did in this run.
    fn applied(&self) -> &ApplyReport {
        self.report().applied.as_ref().expect("the run applied")
    }

    fn error(&self) -> &RunError {
        self.outcome.as_ref().expect_err("the run was refused")
    }

    /// Write requests sent (attempts, including retries).
    fn writes(&self) -> usize {
        self.log
            .iter()
            .filter(|request| is_allowlist_write(request))
            .count()
    }

    /// Results with the outcome labelled `label` (`applied`, `failed`, …).
    fn count(&self, label: &str) -> usize {
        let kind = OutcomeKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == label)
            .expect("an outcome label");
        self.applied().count(kind)
    }

    /// The outcome of the action on `ip`.
    fn outcome_of(&self, ip: Ipv4Addr) -> &Outcome {
        &self
            .applied()
            .results
            .iter()
            .find(|result| result.action.change.ip() == ip.to_string())
            .unwrap()
            .outcome
    }

    /// Index in this run's log of the request the fault fired on.
    fn fault_index(&self) -> usize {
        self.log
            .iter()
            .position(|request| request.fault.is_some())
            .expect("the fault fired")
    }

    /// Whether the create stream's next request after the fault re-lists `bank`'s managed
    /// credential: how an ambiguous create is resolved instead of being sent again blindly. The
    /// status changes (PUT) run beside the creates, so they may come in between.
    fn relists_after_fault(&self, bank: &Bank) -> bool {
        self.log[self.fault_index() + 1..]
            .iter()
            .find(|request| request.method != Method::PUT)
            .is_some_and(|next| {
                next.method == Method::GET && next.path.contains(&ip_list_path(bank))
            })
    }

    /// `applied 3, failed 1, skipped 2` or `refused (label): message`.
    fn describe(&self) -> String {
        match &self.outcome {
            Ok(report) => {
                let applied = report.applied.as_ref().unwrap();
                let mut parts = vec![format!("{} applied", applied.count(OutcomeKind::Applied))];
                for kind in [
                    OutcomeKind::Failed,
                    OutcomeKind::Skipped,
                    OutcomeKind::Blocked,
                ] {
                    if applied.count(kind) > 0 {
                        parts.push(format!("{} {}", applied.count(kind), kind.as_str()));
                    }
                }
                if applied.security_failure.is_some() {
                    parts.push("stopped for security".into());
                }
                let writes = self.writes();
                let plural = if writes == 1 { "" } else { "s" };
                format!("{} ({writes} write request{plural})", parts.join(", "))
            }
            Err(err) => format!("refused ({}), {} writes", err.metric_label(), self.writes()),
        }
    }
}

/// `converged in 2 runs (run 1: ...); 0 duplicates, 0 wrongful deactivations`.
fn converged_summary(runs: &[Run]) -> String {
    let first = runs[0].describe();
    let runs_text = if runs.len() == 1 {
        "1 run".to_owned()
    } else {
        format!("{} runs", runs.len())
    };
    format!("converged in {runs_text} (run 1: {first}); 0 duplicates, 0 wrongful deactivations")
}

/// The bank after the client connected (the own credential now has the caller IP).
async fn connected() -> (Bank, BunqClient) {
    let bank = Bank::start().await;
    let client = bank.connect().await;
    (bank, client)
}

/// The request of a run a test's fault fires on.
#[derive(Clone, Copy)]
enum On {
    /// A create on the pool (POST .../ip).
    Create,
    /// The pool's IP listing (GET .../ip?count).
    Listing,
    /// The credentials listing (GET credential-password-ip?count).
    Credentials,
    /// The status change of this IP's seeded entry (PUT .../ip/{id}).
    Entry(Ipv4Addr),
}

impl On {
    /// A fault of `kind` on this request of `bank`'s runs, firing `times` times.
    fn fault(self, bank: &Bank, kind: FaultKind, times: usize) -> Fault {
        let fault = Fault::once(kind).times(times);
        match self {
            On::Create => fault.on(Method::POST, &create_path(bank)),
            On::Listing => fault.on(Method::GET, &ip_list_path(bank)),
            On::Credentials => fault.on(Method::GET, "credential-password-ip?count"),
            On::Entry(ip) => fault.on(Method::PUT, &entry_path(bank, ip)),
        }
    }
}

/// A connected bank with a fault of `kind` on the request `on` (firing `times` times), and its
/// runs until convergence (three at most).
async fn converged_after(kind: FaultKind, on: On, times: usize) -> (Bank, Vec<Run>) {
    let (bank, client) = connected().await;
    let runs = bank
        .converge_under(&client, on.fault(&bank, kind, times))
        .await;
    (bank, runs)
}

/// The runs until convergence after a connection reset `kind` around the first create; checks
/// that the create was not retried blindly: the next request re-listed the credential.
async fn re_listed_after_a_create_with(kind: FaultKind) -> Vec<Run> {
    let (bank, runs) = converged_after(kind, On::Create, 1).await;
    assert!(runs[0].relists_after_fault(&bank));
    runs
}

/// A bank whose client times out after [`SLOW_TIMEOUT`], a response delayed by [`DELAY`] on
/// the request `on`, and its runs until convergence (three at most).
async fn converged_after_a_slow_response(on: On) -> (Bank, Vec<Run>) {
    let bank = Bank::start().await;
    let client = bank.try_connect(SLOW_TIMEOUT).await.unwrap();
    let fault = on.fault(&bank, FaultKind::Delay(DELAY), 1);
    let runs = bank.converge_under(&client, fault).await;
    (bank, runs)
}

fn ip_list_path(bank: &Bank) -> String {
    format!("/credential-password-ip/{}/ip?count", bank.pool)
}

fn create_path(bank: &Bank) -> String {
    format!("/credential-password-ip/{}/ip", bank.pool)
}

fn entry_path(bank: &Bank, ip: Ipv4Addr) -> String {
    format!("/ip/{}", bank.seeded[&ip])
}

// ---------------------------------------------------------------------------------------------
// The table itself.

#[test]
fn every_row_names_a_test_of_its_file() {
    let e2e = std::fs::read_to_string("tests/daemon_e2e.rs").ok();
    let this = include_str!("faults.rs");
    for row in ROWS {
        match row.test.strip_prefix(E2E) {
            Some(name) => {
                // The e2e file is written in parallel; check it once it exists.
                if let Some(e2e) = &e2e {
                    assert!(
                        e2e.contains(&format!("fn {name}(")),
                        "{name} not in daemon_e2e"
                    );
                }
            }
            None => assert!(
                this.contains(&format!("async fn {}(", row.test)),
                "{} is not a test here",
                row.test
            ),
        }
    }
}

#[test]
fn table_marks_rows_without_an_observation() {
    let table = render_table(&BTreeMap::new());
    assert_eq!(table.lines().count(), ROWS.len() + 2);
    assert!(table.contains("NOT OBSERVED"));
    assert!(table.contains("covered in daemon_e2e"));
}

// ---------------------------------------------------------------------------------------------
// HTTP errors.

#[tokio::test]
async fn http_500_on_a_create_fails_it_holds_back_deactivations_and_the_next_run_converges() {
    let (_bank, runs) = converged_after(FaultKind::Status(500), On::Create, 1).await;

    assert_eq!(runs.len(), 2);
    let first = &runs[0];
    assert_eq!(first.count("failed"), 1);
    // A grant failed on the credential: its deactivations wait, so access never shrinks first.
    assert_eq!(first.count("skipped"), 2);
    assert!(matches!(first.outcome_of(STRAY_A), Outcome::Skipped(_)));
    assert!(matches!(first.outcome_of(STRAY_B), Outcome::Skipped(_)));
    record_outcome(converged_summary(&runs) + "; deactivations held back in run 1");
}

/// A create whose answer was unclear but which bunq committed: run 1 re-lists instead of
/// sending it again, counts it as applied, and the next run sees no drift.
async fn committed_create_with_an_unclear_answer(kind: FaultKind) -> Vec<Run> {
    let (bank, client) = connected().await;
    bank.sim
        .inject(Fault::once(kind).on(Method::POST, &create_path(&bank)));

    let mut runs = bank.converge(&client, 1).await;

    let first = &runs[0];
    assert!(first.relists_after_fault(&bank));
    assert_eq!(first.count("applied"), 5);
    assert_eq!(first.writes(), 5, "no create was sent twice");
    runs.push(bank.run(&client).await);
    assert_eq!(runs[1].report().drift_count(), 0);
    assert_eq!(runs[1].writes(), 0);
    runs
}

#[tokio::test]
async fn http_500_after_a_committed_create_is_resolved_by_re_listing_and_never_duplicates() {
    let runs = committed_create_with_an_unclear_answer(FaultKind::StatusAfterApply(500)).await;
    record_outcome(
        converged_summary(&runs[..1]) + "; re-list found the entry, run 2: no writes, no drift",
    );
}

#[tokio::test]
async fn unreadable_200_on_a_create_is_resolved_by_re_listing_and_never_duplicates() {
    let runs = committed_create_with_an_unclear_answer(FaultKind::UnreadableAfterApply).await;
    record_outcome(
        converged_summary(&runs[..1]) + "; re-list found the entry, run 2: no writes, no drift",
    );
}

#[tokio::test]
async fn http_500_on_a_create_that_bunq_commits_late_is_not_reported_as_drift() {
    let (bank, client) = connected().await;
    bank.sim
        .inject(Fault::once(FaultKind::Status(500)).on(Method::POST, &create_path(&bank)));

    let first = bank.run(&client).await;
    let failed: Vec<String> = first
        .applied()
        .results
        .iter()
        .filter(|result| matches!(result.outcome, Outcome::Failed(_)))
        .map(|result| result.action.change.ip())
        .collect();
    assert_eq!(failed.len(), 1);
    // bunq commits the entry after the re-read found nothing.
    bank.sim
        .add_entry(bank.pool, &failed[0], IpStatus::Active)
        .unwrap();
    let second = bank.run(&client).await;

    assert_eq!(second.report().drift_count(), 0);
    assert!(bank.converged());
    let runs = [first, second];
    record_outcome(
        converged_summary(&runs) + "; the late entry is the daemon's own: run 2 reports no drift",
    );
}

#[tokio::test]
async fn http_500_on_a_listing_is_retried_and_the_run_converges() {
    let (_bank, runs) = converged_after(FaultKind::Status(500), On::Listing, 2).await;

    let retried = runs[0].log.iter().filter(|r| r.fault.is_some()).count();
    assert_eq!(retried, 2);
    record_converged(&runs, 1, "2 retries");
}

#[tokio::test]
async fn http_500_on_the_second_page_is_retried_and_nothing_is_duplicated() {
    let bank = Bank::start().await.with_history(250);
    let client = bank.connect().await;
    let fault = Fault::once(FaultKind::Status(500)).on(Method::GET, "older_id");
    let runs = bank.converge_under(&client, fault).await;

    assert!(runs[0].log.iter().any(|r| r.fault.is_some()));
    assert_eq!(runs[0].count("applied"), 5);
    record_converged(&runs, 1, "");
}

#[tokio::test]
async fn maintenance_491_refuses_the_run_without_writes_and_the_next_run_converges() {
    let (_bank, runs) = converged_after(FaultKind::Status(491), On::Credentials, 4).await;

    let err = runs[0].error();
    assert!(err.to_string().contains("maintenance"), "{err}");
    assert_refused_then_converged(
        &runs,
        "server_error",
        "run 1 refused after 4 attempts (server_error), 0 writes",
    );
}

#[tokio::test]
async fn html_503_from_a_proxy_refuses_the_run_with_a_readable_error_and_no_writes() {
    let (_bank, runs) = converged_after(FaultKind::Html503, On::Credentials, 4).await;

    let first = &runs[0];
    let message = first.error().to_string();
    assert_eq!(first.writes(), 0);
    assert!(
        message.contains("HTTP 503") && message.contains("503 Service Temporarily Unavailable"),
        "{message}"
    );
    assert_eq!(runs.len(), 2);
    record_then_converged(
        "run 1 refused (HTTP 503, body quoted as text), 0 writes",
        &runs,
    );
}

#[tokio::test]
async fn html_503_on_a_status_change_is_retried_and_the_run_converges() {
    let (_bank, runs) = converged_after(FaultKind::Html503, On::Entry(STRAY_A), 1).await;

    assert_eq!(runs[0].count("applied"), 5);
    record_converged(&runs, 1, "");
}

// ---------------------------------------------------------------------------------------------
// Connection resets and slow responses: the ambiguous writes.

#[tokio::test]
async fn reset_before_a_create_is_resolved_by_re_listing_and_never_duplicates() {
    let runs = re_listed_after_a_create_with(FaultKind::ResetBeforeApply).await;

    assert_eq!(runs[0].count("failed"), 1);
    record_converged(&runs, 2, "re-list found no entry, run 2 created it");
}

#[tokio::test]
async fn reset_after_a_create_is_resolved_by_re_listing_and_never_duplicates() {
    let runs = re_listed_after_a_create_with(FaultKind::ResetAfterApply).await;

    // The re-list found the entry bunq created: the create counts as applied, not repeated.
    assert_eq!(runs[0].count("applied"), 5);
    record_converged(&runs, 1, "re-list found the created entry");
}

#[tokio::test]
async fn reset_before_a_status_change_is_retried_and_the_run_converges() {
    let (bank, runs) =
        converged_after(FaultKind::ResetBeforeApply, On::Entry(TO_ACTIVATE), 1).await;

    let puts = runs[0]
        .log
        .iter()
        .filter(|r| r.method == Method::PUT && r.path.ends_with(&entry_path(&bank, TO_ACTIVATE)))
        .count();
    assert_eq!(puts, 2);
    record_converged(&runs, 1, "");
}

#[tokio::test]
async fn reset_after_a_status_change_is_retried_idempotently_and_the_run_converges() {
    let (bank, runs) = converged_after(FaultKind::ResetAfterApply, On::Entry(STRAY_A), 1).await;

    assert_eq!(bank.status_of(STRAY_A), vec![IpStatus::Inactive]);
    record_converged(&runs, 1, "");
}

#[tokio::test]
async fn slow_create_beyond_the_timeout_is_resolved_by_re_listing_and_never_duplicates() {
    let (_bank, runs) = converged_after_a_slow_response(On::Create).await;

    // The timed-out create was found by the re-list, not sent again.
    assert_eq!(runs[0].count("applied"), 5);
    assert_eq!(runs[0].count("failed"), 0);
    record_converged(&runs, 1, "timed-out create found by the re-list");
}

#[tokio::test]
async fn slow_status_change_beyond_the_timeout_is_retried_and_the_run_converges() {
    let (_bank, runs) = converged_after_a_slow_response(On::Entry(TO_ACTIVATE)).await;

    assert_eq!(runs[0].count("applied"), 5);
    record_converged(&runs, 1, "the timed-out PUT was retried");
}

// ---------------------------------------------------------------------------------------------
// Rate limits.

#[tokio::test]
async fn rate_limit_burst_on_a_listing_is_ridden_out_by_backoff() {
    let (_bank, runs) = converged_after(FaultKind::Status(429), On::Listing, 3).await;

    let rate_limited = runs[0].log.iter().filter(|r| r.status == Some(429)).count();
    assert_eq!(rate_limited, 3);
    record_converged(&runs, 1, "3 x 429 retried with backoff");
}

#[tokio::test]
async fn rate_limit_on_a_create_is_retried_and_the_run_converges() {
    let (_bank, runs) = converged_after(FaultKind::Status(429), On::Create, 1).await;

    let first = &runs[0];
    let limited = first.fault_index();
    let posts_after = first.log[limited + 1..]
        .iter()
        .filter(|r| r.method == Method::POST)
        .count();
    // The rate-limited create once more, and the other create.
    assert_eq!(posts_after, 2);
    assert_eq!(first.count("failed"), 0);
    record_converged(&runs, 1, "the create was retried after the 429");
}

#[tokio::test(start_paused = true)]
async fn writes_kept_busy_by_another_client_for_10_s_are_waited_out_and_the_run_converges() {
    let bank = Bank::start().await;
    // The client's limiter on, as in production: a 429 is retried after the endpoint's window.
    let mut settings = bank.settings(Duration::from_secs(60));
    settings.transport.rate_limits = RateLimits::bunq();
    let client = BunqClient::connect(settings, bank.api_key.clone(), bank.state_dir())
        .await
        .unwrap();
    let busy = Duration::from_secs(10);
    for method in [Method::POST, Method::PUT] {
        bank.sim.inject(
            Fault::once(FaultKind::Status(429))
                .on(method, "/credential-password-ip/")
                .for_duration(busy),
        );
    }

    let runs = bank.converge(&client, 1).await;

    let rate_limited = runs[0].log.iter().filter(|r| r.status == Some(429)).count();
    assert!(rate_limited >= 2, "{rate_limited} 429s");
    assert_eq!(runs[0].count("failed"), 0);
    assert_eq!(runs[0].count("applied"), 5);
    record_outcome(converged_summary(&runs) + &format!("; {rate_limited} x 429 waited out"));
}

// ---------------------------------------------------------------------------------------------
// Sessions.

#[tokio::test]
async fn sessions_expired_between_runs_are_renewed_without_losing_the_context() {
    let (bank, client) = connected().await;
    let sessions = bank.sim.sessions_created();
    bank.sim.expire_all_sessions();

    let runs = bank.converge(&client, 3).await;

    assert_eq!(bank.sim.sessions_created(), sessions + 1);
    assert!(
        runs[0]
            .log
            .iter()
            .any(|r| r.status == Some(403) && r.method == Method::GET)
    );
    record_converged(&runs, 1, "1 new session, same installation");
}

#[tokio::test]
async fn session_expired_during_a_create_is_renewed_and_the_create_sent_once_more() {
    let (bank, client) = connected().await;
    let sessions = bank.sim.sessions_created();
    let fault = Fault::once(FaultKind::ExpireSession).on(Method::POST, &create_path(&bank));
    let runs = bank.converge_under(&client, fault).await;

    assert_eq!(runs[0].count("applied"), 5);
    assert_eq!(bank.sim.sessions_created(), sessions + 1);
    record_converged(&runs, 1, "1 new session");
}

// ---------------------------------------------------------------------------------------------
// Response signatures: nothing is acted on after a response that does not verify.

/// Nothing new is sent after the bad response: the stream that got it sends no further write,
/// and the other stream (creates beside status changes) at most the one call it already had in
/// flight.
fn assert_no_write_after_fault(run: &Run) {
    let fault = run.fault_index();
    let later: Vec<_> = run.log[fault + 1..]
        .iter()
        .filter(|request| is_allowlist_write(request))
        .collect();
    let faulty = &run.log[fault].method;
    assert!(
        later.len() <= 1 && later.iter().all(|request| request.method != *faulty),
        "writes after the bad signature: {later:?}"
    );
}

#[tokio::test]
async fn garbled_signature_on_a_create_stops_the_run_and_the_next_run_does_not_duplicate() {
    let (_bank, runs) = converged_after(FaultKind::GarbleSignature, On::Create, 1).await;

    let first = &runs[0];
    assert_no_write_after_fault(first);
    let applied = first.applied();
    assert!(applied.security_failure.is_some());
    assert_eq!(first.report().exit_status().code(), 1);
    // bunq did create the entry; run 2 sees it and creates no second one, and does not blame
    // it on someone else: the daemon's own unconfirmed write is not drift.
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1].report().drift_count(), 0);
    record_outcome(
        converged_summary(&runs)
            + "; no write after the bad response in run 1; run 2 reports no drift for it",
    );
}

#[tokio::test]
async fn garbled_signature_on_a_listing_refuses_the_run_without_writes() {
    let (_bank, runs) = converged_after(FaultKind::GarbleSignature, On::Credentials, 1).await;

    // Read after the pool's entries (the plan deactivates, so it needs the own-IP facts), and not
    // retried: the listing was sent once, and nothing after it.
    let paths: Vec<&str> = runs[0].log.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(
        paths[1].contains("credential-password-ip?count"),
        "{paths:?}"
    );
    assert_refused_then_converged(
        &runs,
        "signature",
        "run 1 refused (security error, not retried), 0 writes",
    );
}

#[tokio::test]
async fn garbled_signature_on_the_second_page_refuses_the_run_instead_of_planning_from_page_one() {
    let bank = Bank::start().await.with_history(250);
    let client = bank.connect().await;
    let fault = Fault::once(FaultKind::GarbleSignature).on(Method::GET, "older_id");
    let runs = bank.converge_under(&client, fault).await;

    // Page 1 alone lacks every desired entry: planning from it would create duplicates.
    assert_refused_for_the_signature(&runs);
}

#[tokio::test]
async fn garbled_signature_on_session_renewal_refuses_the_run_and_the_next_run_recovers() {
    let (bank, client) = connected().await;
    bank.sim.expire_all_sessions();
    let fault = Fault::once(FaultKind::GarbleSignature).on(Method::POST, "/session-server");
    let runs = bank.converge_under(&client, fault).await;

    assert_refused_for_the_signature(&runs);
}

#[tokio::test]
async fn dropped_signature_on_a_status_change_stops_the_run_before_any_deactivation() {
    let (_bank, runs) = converged_after(FaultKind::DropSignature, On::Entry(TO_ACTIVATE), 1).await;

    let first = &runs[0];
    assert_no_write_after_fault(first);
    // The activation is the PUT stream's first action: both deactivations after it are
    // skipped. The creates run beside it; those sent before its bad answer came back finish.
    assert!(matches!(first.outcome_of(STRAY_A), Outcome::Skipped(_)));
    assert!(matches!(first.outcome_of(STRAY_B), Outcome::Skipped(_)));
    record_converged(&runs, 2, "no write after the bad response in run 1");
}

#[tokio::test]
async fn dropped_signature_on_a_listing_refuses_the_run_without_writes() {
    let (_bank, runs) = converged_after(FaultKind::DropSignature, On::Listing, 1).await;

    assert_refused_for_the_signature(&runs);
}

// ---------------------------------------------------------------------------------------------
// The state directory.

#[tokio::test]
async fn deleted_state_file_registers_cleanly_without_touching_any_allowlist() {
    let (bank, client) = connected().await;
    bank.run(&client).await;
    drop(client);
    let settled = bank.snapshot();
    let old_installation = settled.installation.clone().unwrap();
    std::fs::remove_file(bank.state_dir().join(CONTEXT_FILE_NAME)).unwrap();
    std::fs::remove_file(bank.state_dir().join("last-run.json")).unwrap();

    let client = bank.connect().await;

    let registration = &bank.sim.request_log()[settled.log_len..];
    let paths: Vec<&str> = registration.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v1/installation",
            "/v1/device-server",
            "/v1/session-server"
        ]
    );
    let new_installation = saved_installation(bank.state_dir()).unwrap();
    assert_ne!(new_installation, old_installation);
    for (credential, entries) in settled.managed.iter().chain(&settled.unmanaged) {
        assert_eq!(&bank.sim.entries(*credential).unwrap(), entries);
    }
    let runs = bank.converge(&client, 2).await;
    assert_eq!(runs[0].writes(), 0);
    record_outcome(
        "clean re-registration (installation, device-server, session), 0 allowlist changes; \
         next run: nothing to do, 0 writes",
    );
}

#[tokio::test]
async fn state_file_deleted_while_running_is_written_again_at_the_next_session_renewal() {
    let (bank, client) = connected().await;
    let installation = saved_installation(bank.state_dir()).unwrap();
    std::fs::remove_file(bank.state_dir().join(CONTEXT_FILE_NAME)).unwrap();
    bank.sim.expire_all_sessions();

    let runs = bank.converge(&client, 2).await;

    assert_eq!(runs.len(), 1);
    assert!(
        runs[0]
            .log
            .iter()
            .any(|r| r.path.ends_with("/session-server"))
    );
    // The client kept its context in memory and saved it with the new session.
    assert_eq!(saved_installation(bank.state_dir()), Some(installation));
    record_outcome(
        converged_summary(&runs)
            + "; the context (same installation) was saved again with the new session",
    );
}

#[tokio::test]
async fn corrupt_state_file_is_a_clear_error_sends_nothing_and_is_left_in_place() {
    let (bank, client) = connected().await;
    drop(client);
    let file = bank.state_dir().join(CONTEXT_FILE_NAME);
    std::fs::write(&file, b"{ this is not json").unwrap();
    let before = bank.snapshot();

    let err = bank.try_connect(Duration::from_secs(10)).await.unwrap_err();

    assert!(matches!(err, BunqError::ContextCorrupt { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&file.display().to_string()), "{message}");
    assert!(message.contains("move it away"), "{message}");
    assert_eq!(bank.sim.request_log().len(), before.log_len);
    assert_eq!(std::fs::read(&file).unwrap(), b"{ this is not json");
    bank.check(&before);
    record_outcome(
        "refused at start: \"state file ... is corrupt ...; move it away to register anew\", \
         0 requests, file left in place",
    );
}

#[tokio::test]
async fn corrupt_last_run_record_only_restarts_drift_reporting() {
    let (bank, client) = connected().await;
    bank.run(&client).await;
    bank.sim
        .set_entry_status(bank.pool, bank.seeded[&STRAY_A], IpStatus::Active)
        .unwrap();
    std::fs::write(bank.state_dir().join("last-run.json"), b"\x00garbage").unwrap();

    let runs = bank.converge(&client, 3).await;

    // Without a readable record the change cannot be told from old state: no drift reported,
    // but it is repaired all the same.
    assert_eq!(runs[0].report().drift_count(), 0);
    assert_eq!(runs[0].count("applied"), 1);
    record_converged(
        &runs,
        1,
        "drift not reported for that run (record unreadable)",
    );
}

// ---------------------------------------------------------------------------------------------
// Bad config: validation comes before any connection, so nothing is sent at all.

/// What a start does before connecting: read and validate the config. Only a valid config
/// leads to a client and a run.
async fn start_with_config(bank: &Bank, text: &str) -> Result<(), config::ConfigError> {
    let config = config::parse(&bank.dir.path().join("config.yaml"), text)?;
    let client = bank.connect().await;
    run::apply_run(&client, &config, None, &CancellationToken::new())
        .await
        .unwrap();
    Ok(())
}

#[tokio::test]
async fn config_with_a_syntax_error_is_refused_before_anything_is_sent() {
    let bank = Bank::start().await;
    let before = bank.snapshot();
    let good = config_text(&bank.sim, bank.dir.path(), bank.pool);
    let broken = good.replace("ips: [", "ips: [[");

    let err = start_with_config(&bank, &broken).await.unwrap_err();

    // `path:line:column: message`
    let message = err.to_string();
    let location = message
        .split_once("config.yaml:")
        .map(|(_, rest)| rest.split(':').take(2).collect::<Vec<_>>())
        .unwrap_or_default();
    assert_eq!(location.len(), 2, "{message}");
    assert!(
        location.iter().all(|part| part.parse::<u32>().is_ok()),
        "{message}"
    );
    assert!(bank.sim.request_log().is_empty());
    bank.check(&before);
    record_outcome("refused with file, line and column; 0 requests");
}

#[tokio::test]
async fn config_with_one_invalid_ip_is_refused_whole_before_anything_is_sent() {
    let bank = Bank::start().await;
    let before = bank.snapshot();
    let good = config_text(&bank.sim, bank.dir.path(), bank.pool);
    let broken = good.replace(&TO_CREATE_B.to_string(), "203.0.113.300");

    let err = start_with_config(&bank, &broken).await.unwrap_err();

    let message = err.to_string();
    assert!(message.contains("203.0.113.300"), "{message}");
    assert!(bank.sim.request_log().is_empty());
    bank.check(&before);
    record_outcome("whole config refused (no partial desired state), 0 requests");
}

// ---------------------------------------------------------------------------------------------
// Shutdown in the middle of an apply.

/// The [`Hook`] whose stop signal (what SIGTERM cancels in the daemon) arrives while the first
/// write is in flight.
struct StopDuringFirstWrite {
    stop: CancellationToken,
}

impl Hook for StopDuringFirstWrite {
    /// Runs a write; 20 ms in (the injected delay holds the response for 100 ms) the stop
    /// signal arrives. Reads pass through.
    async fn around<T: Send>(
        &self,
        method: Method,
        _path: String,
        write: impl std::future::Future<Output = T> + Send,
    ) -> T {
        if method == Method::GET {
            return write.await;
        }
        let stop = self.stop.clone();
        let (result, ()) = tokio::join!(write, async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            stop.cancel();
        });
        result
    }
}

#[tokio::test]
async fn stop_during_apply_finishes_the_write_in_flight_and_skips_the_rest() {
    let (bank, client) = connected().await;
    // The PUT stream's first action is the activation of TO_ACTIVATE (grants before
    // deactivations); its response is held back while the stop arrives.
    bank.sim.inject(
        Fault::once(FaultKind::Delay(Duration::from_millis(100)))
            .on(Method::PUT, &entry_path(&bank, TO_ACTIVATE)),
    );
    let stop = CancellationToken::new();
    let stopping = Hooked {
        client: &client,
        hook: StopDuringFirstWrite { stop: stop.clone() },
    };

    let first = bank.run_with(&stopping, &stop).await;

    assert!(stop.is_cancelled());
    // Two streams run side by side: the activation (PUT) and the first create (POST) were in
    // flight when the stop arrived; both finished, nothing else was sent.
    assert_eq!(first.writes(), 2);
    assert_eq!(first.count("applied"), 2);
    assert_eq!(first.outcome_of(TO_ACTIVATE), &Outcome::Applied);
    assert_eq!(first.count("skipped"), 3);
    assert_eq!(bank.status_of(TO_ACTIVATE), vec![IpStatus::Active]);
    // Grants come first, so the stop left access only grown, never shrunk.
    assert_eq!(bank.status_of(STRAY_A), vec![IpStatus::Active]);
    assert_eq!(bank.status_of(STRAY_B), vec![IpStatus::Active]);
    let runs = bank.converge(&client, 2).await;
    assert_eq!(runs.len(), 1);
    // The saved record matched what bunq held: the next run sees no drift.
    assert_eq!(runs[0].report().drift_count(), 0);
    record_outcome(format!(
        "run 1: {}; the writes in flight (one per stream) completed and were recorded; next \
         run converged with no drift; 0 duplicates",
        first.describe()
    ));
}

// ---------------------------------------------------------------------------------------------
// The daemon's own access taken away.

#[tokio::test]
async fn own_ip_deactivated_out_of_band_is_a_credentials_error_with_no_writes() {
    let (bank, client) = connected().await;
    bank.sim
        .set_entry_status(bank.own, bank.own_entry(), IpStatus::Inactive)
        .unwrap();

    let run = bank.run(&client).await;

    let RunError::Read(err) = run.error() else {
        panic!("{:?}", run.error());
    };
    assert!(err.is_credentials_rejected(), "{err}");
    assert!(err.to_string().contains("Incorrect API key or IP address"));
    assert_eq!(run.writes(), 0);
    // A restart (saved context, session still open) fails the same way, sending only reads.
    drop(client);
    let restarted = bank.connect().await;
    let again = bank.run(&restarted).await;
    assert!(matches!(again.error(), RunError::Read(err) if err.is_credentials_rejected()));
    assert_eq!(again.writes(), 0);
    // With the session gone too, opening a new one is refused the same way.
    bank.sim.expire_all_sessions();
    let renewal = bank.run(&restarted).await;
    assert!(matches!(renewal.error(), RunError::Read(err) if err.is_credentials_rejected()));
    assert!(
        renewal
            .log
            .iter()
            .any(|r| r.path.ends_with("/session-server"))
    );
    assert_eq!(renewal.writes(), 0);
    record_outcome(
        "run refused: HTTP 400 \"User credentials are incorrect. Incorrect API key or IP \
         address.\" (credentials_rejected), 0 writes; restart fails the same way",
    );
}
