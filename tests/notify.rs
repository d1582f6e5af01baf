//! Notifications (issue 12), end to end: the real binary (`apply`, `plan`, `notify-test`, `run`)
//! against the bunq simulator, with loopback [`Receiver`]s standing in for the webhooks and the
//! heartbeat service. Every URL carries a token, and no output may show it.
//!
//! Waits are bounds ([`Receiver::wait_for`], [`Daemon::wait_metric`]), never timed assertions.

#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use bunq_ipsync::bunq::model::IpStatus::{Active, Inactive};
use bunq_ipsync::simulator::{Fault, FaultKind, Received, Receiver};
use hyper::Method;
use serde_json::Value;

use crate::support::{Account, BIN, ConfigSpec, World, config_text, sim_options};

/// In every webhook and heartbeat path: found in no output, ever.
const TOKEN: &str = "T0KEN-5ecret-abc123";
const A: &str = "203.0.113.1";
const B: &str = "203.0.113.2";
const STRAY: &str = "192.0.2.9";
/// Long enough for any delivery on a busy machine; only a bound.
const WAIT: Duration = Duration::from_secs(90);

/// A JSON webhook and a heartbeat receiver.
struct Receivers {
    hook: Receiver,
    beat: Receiver,
}

impl Receivers {
    async fn start() -> Receivers {
        Receivers {
            hook: Receiver::start().await.unwrap(),
            beat: Receiver::start().await.unwrap(),
        }
    }

    /// Both as a `notify:` section (heartbeat `start` as given).
    fn section(&self, start: bool) -> String {
        format!(
            "notify:\n  webhooks:\n    - url: {}\n      format: json\n  heartbeat:\n    url: {}\n    \
             start: {start}\n  timeout: 2s\n",
            self.hook.url(&format!("/hook/{TOKEN}")),
            self.beat.url(&format!("/ping/{TOKEN}")),
        )
    }
}

/// Runs `bunq-ipsync --config CONFIG ARGS` to its end and checks its output for the token.
async fn run(config: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command.arg("--config").arg(config).args(args);
    for name in [
        "BUNQ_API_KEY",
        "BUNQ_IPSYNC_CONFIG",
        "RUST_LOG",
        "HTTP_PROXY",
        "http_proxy",
    ] {
        command.env_remove(name);
    }
    command.stdin(Stdio::null());
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert_no_token(&String::from_utf8_lossy(&output.stdout));
    assert_no_token(&String::from_utf8_lossy(&output.stderr));
    output
}

fn assert_no_token(text: &str) {
    assert!(!text.contains(TOKEN), "the URL token leaked:\n{text}");
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn show(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The `event` of every JSON message, in arrival order.
fn events(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|request| request.json()["event"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// The message of kind `event` (exactly one).
fn message(received: &[Received], event: &str) -> Value {
    let found: Vec<Value> = received
        .iter()
        .map(Received::json)
        .filter(|json| json["event"] == event)
        .collect();
    assert_eq!(found.len(), 1, "one {event} message: {received:#?}");
    found.into_iter().next().unwrap()
}

fn paths(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|request| request.path.clone())
        .collect()
}

/// Runs `apply` on `config` and checks that it exits with `code`.
async fn apply_exits(config: &Path, code: i32) -> Output {
    let out = run(config, &["apply"]).await;
    assert_eq!(out.status.code(), Some(code), "{}", show(&out));
    out
}

/// An account with a managed credential (not the daemon's own) holding `B` inactive and `STRAY`
/// active, a config wanting `A` and `B` on it with `max_changes`, and `notify`.
struct OneShot {
    account: Account,
    credential: u64,
    stray_entry: u64,
}

impl OneShot {
    async fn start() -> OneShot {
        let account = Account::start(sim_options()).await;
        let credential = account.credential_with(&[(B, Inactive)]);
        let stray_entry = account.sim.add_entry(credential, STRAY, Active).unwrap();
        OneShot {
            account,
            credential,
            stray_entry,
        }
    }

    /// A started account with a JSON webhook and a heartbeat receiver, and its config (with
    /// `max_changes`, heartbeat `start`).
    async fn with_receivers(max_changes: usize, start: bool) -> (OneShot, Receivers, PathBuf) {
        let world = OneShot::start().await;
        let receivers = Receivers::start().await;
        let config = world.config(max_changes, &receivers.section(start));
        (world, receivers, config)
    }

    fn config(&self, max_changes: usize, notify: &str) -> PathBuf {
        let credentials = config_text::credential_item(self.credential, "ci", &[A, B]);
        let text = self
            .account
            .config_text("notify-test", "", "sync", max_changes, &credentials);
        self.account
            .write("config.yaml", &format!("{text}{notify}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_sends_one_applied_message_with_every_action_and_pings_the_heartbeat() {
    let (world, Receivers { hook, beat }, config) = OneShot::with_receivers(10, true).await;

    apply_exits(&config, 0).await;
    // apply waited for delivery before it exited: everything is there already.
    let received = hook.received();
    assert_eq!(
        events(&received),
        ["applied"],
        "one message per kind per run"
    );
    let request = &received[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, format!("/hook/{TOKEN}"));
    assert_eq!(request.headers["content-type"], "application/json");
    let applied = request.json();
    assert_eq!(applied["format_version"], 1);
    assert_eq!(applied["error"], Value::Null);
    assert!(applied["run_id"].as_str().is_some_and(|id| !id.is_empty()));
    let credential = &applied["credentials"][0];
    assert_eq!(credential["id"], world.credential);
    assert_eq!(credential["name"], "ci");
    let actions: Vec<(String, String, String)> = credential["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|action| {
            let text = |key: &str| action[key].as_str().unwrap().to_owned();
            (text("action"), text("ip"), text("outcome"))
        })
        .collect();
    let expected = [("create", A), ("activate", B), ("deactivate", STRAY)]
        .map(|(action, ip)| (action.to_owned(), ip.to_owned(), "applied".to_owned()));
    assert_eq!(actions, expected);
    assert_eq!(
        credential["actions"][2]["entry"], world.stray_entry,
        "the entry written"
    );
    assert_eq!(
        paths(&beat.received()),
        [format!("/ping/{TOKEN}/start"), format!("/ping/{TOKEN}")]
    );
    assert!(beat.received().iter().all(|ping| ping.method == "GET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_sends_nothing() {
    let (_world, Receivers { hook, beat }, config) = OneShot::with_receivers(10, true).await;

    let out = run(&config, &["plan"]).await;

    assert_eq!(
        out.status.code(),
        Some(2),
        "changes pending: {}",
        show(&out)
    );
    assert_eq!(hook.received(), []);
    assert_eq!(beat.received(), []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_band_change_is_reported_as_drift() {
    let (world, Receivers { hook, beat: _beat }, config) = OneShot::with_receivers(10, false).await;
    assert_eq!(run(&config, &["apply"]).await.status.code(), Some(0));
    // Someone re-activates the retired entry in the app.
    world
        .account
        .sim
        .set_entry_status(world.credential, world.stray_entry, Active)
        .unwrap();

    apply_exits(&config, 0).await;
    let received = hook.received();
    assert_eq!(events(&received), ["applied", "applied", "drift"]);
    let drift = message(&received[1..], "drift");
    assert_eq!(
        drift["credentials"][0]["drift"][0],
        serde_json::json!({"ip": STRAY, "before": "INACTIVE", "now": "ACTIVE"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_run_names_the_rule_and_pings_fail() {
    // Three changes against a limit of one: the whole run is held back.
    let (_world, Receivers { hook, beat }, config) = OneShot::with_receivers(1, false).await;

    apply_exits(&config, 3).await;
    let received = hook.received();
    assert_eq!(events(&received), ["blocked"]);
    let blocked = &received[0].json()["credentials"][0]["blocked"];
    let rules: Vec<&str> = blocked
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["max-changes"; 3], "{blocked}");
    assert_eq!(blocked[0]["ip"], A);
    assert_eq!(paths(&beat.received()), [format!("/ping/{TOKEN}/fail")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_absent_receiver_changes_nothing_about_the_apply() {
    let (world, Receivers { hook, beat }, config) = OneShot::with_receivers(10, false).await;
    hook.answer(500);
    beat.close();

    let out = apply_exits(&config, 0).await;
    assert_eq!(
        world.account.sim.entries(world.credential).unwrap().len(),
        3
    );
    assert_eq!(
        hook.received().len(),
        3,
        "three attempts, then given up: {:#?}",
        hook.received()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("notification not delivered"))
        .collect();
    assert_eq!(warnings.len(), 2, "once per target: {stderr}");
    assert!(
        warnings.iter().any(|line| line.contains("HTTP 500")),
        "{stderr}"
    );
    assert!(
        warnings
            .iter()
            .all(|line| line.contains("http://127.0.0.1:")),
        "names scheme and host: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_test_exits_0_when_every_target_took_it_and_1_otherwise() {
    let (world, Receivers { hook, beat }, config) = OneShot::with_receivers(10, false).await;

    let out = run(&config, &["notify-test"]).await;

    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let webhook_line = format!(
        "webhook 0 (http://127.0.0.1:{}/…): ok",
        hook.url("").rsplit(':').next().unwrap()
    );
    assert!(stdout(&out).contains(&webhook_line), "{}", show(&out));
    assert!(
        stdout(&out).contains("heartbeat (http://127.0.0.1:"),
        "{}",
        show(&out)
    );
    assert_eq!(events(&hook.received()), ["test"]);
    assert_eq!(paths(&beat.received()), [format!("/ping/{TOKEN}")]);
    assert!(
        world.account.sim.request_log().is_empty(),
        "bunq is not asked"
    );

    beat.answer(500);
    let out = run(&config, &["notify-test"]).await;

    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout(&out).contains(": ok\n"),
        "the webhook still took it: {}",
        show(&out)
    );
    assert!(stdout(&out).contains("/…): HTTP 500"), "{}", show(&out));
}

/// The daemon's config for `world` wanting `ips`, with `notify` appended.
fn write_daemon_config(world: &World, ips: &[&str], notify: &str) {
    let text = world.config_text(&ConfigSpec::ips(ips), world.port);
    crate::support::write_atomically(&world.config_path, &format!("{text}{notify}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_reports_failed_once_while_bunq_fails_then_recovered_and_counts_deliveries() {
    let world = World::start(sim_options(), &[(STRAY, Active)]).await;
    let receivers = Receivers::start().await;
    write_daemon_config(&world, &[A], &receivers.section(true));
    let Receivers { hook, beat } = receivers;
    let daemon = world.spawn(&[], &[]);
    daemon.wait_runs(1.0).await;
    assert_eq!(events(&hook.wait_for(1, WAIT).await), ["applied"]);

    // bunq answers 500 to every listing until two runs have failed (runs are retried with
    // backoff), then recovers.
    world.sim.inject(
        Fault::once(FaultKind::Status(500))
            .on(Method::GET, "credential-password-ip")
            .for_duration(Duration::from_secs(600)),
    );
    let failed = r#"bunq_ipsync_runs_total{result="failed"}"#;
    daemon.wait_metric("two failed runs", failed, 2.0).await;
    world.sim.clear_faults();
    let received = hook.wait_for(3, WAIT).await;
    assert_eq!(
        events(&received),
        ["applied", "failed", "recovered"],
        "failed once however many runs failed, recovered once"
    );
    let failure = message(&received, "failed");
    assert!(
        failure["error"].as_str().unwrap().contains("500"),
        "{failure}"
    );
    assert!(paths(&beat.received()).contains(&format!("/ping/{TOKEN}/fail")));
    assert_eq!(beat.received()[0].path, format!("/ping/{TOKEN}/start"));

    // The receiver answers before the sender counts the delivery: wait for the count.
    let delivered = r#"bunq_ipsync_notifications_total{target="0",result="delivered"}"#;
    daemon.wait_metric("three deliveries", delivered, 3.0).await;
    let metrics = daemon.metrics().await;
    assert_no_token(&metrics);
    assert_eq!(
        crate::support::metric_value(
            &metrics,
            r#"bunq_ipsync_notifications_total{target="heartbeat",result="dropped"}"#
        ),
        Some(0.0),
        "every target's series exists from the start"
    );
    assert_no_token(&daemon.get("/readyz").await.unwrap().1);
    assert_no_token(&daemon.stderr());
    assert_no_token(&daemon.stdout());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reload_is_config_rejected_and_a_dead_receiver_is_counted_not_fatal() {
    let world = World::start(sim_options(), &[]).await;
    let receivers = Receivers::start().await;
    receivers.beat.close();
    write_daemon_config(&world, &[A], &receivers.section(false));
    let Receivers { hook, beat: _beat } = receivers;
    let mut daemon = world.spawn(&[], &[]);
    daemon.wait_runs(1.0).await;
    assert_eq!(
        world.active_ips(),
        [A],
        "the run is not held up by the dead heartbeat"
    );

    std::fs::write(&world.config_path, "sync:\n  policy: sometimes\n").unwrap();
    daemon.signal("HUP");
    let received = hook.wait_for(2, WAIT).await;
    assert_eq!(events(&received), ["applied", "config_rejected"]);
    let rejected = message(&received, "config_rejected");
    assert!(
        rejected["error"].as_str().unwrap().contains("sync.policy"),
        "{rejected}"
    );

    let failed = r#"bunq_ipsync_notifications_total{target="heartbeat",result="failed"}"#;
    daemon
        .wait_metric("the dead heartbeat is counted", failed, 1.0)
        .await;
    assert_no_token(&daemon.metrics().await);
    daemon.stop_cleanly().await;
    assert_no_token(&daemon.stderr());
}
