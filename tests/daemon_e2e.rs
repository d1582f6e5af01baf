//! End-to-end tests of `bunq-ipsync run`: the real binary, started as a child process, against
//! the bunq simulator hosted by the test process on loopback.
//!
//! Each test has its own simulator, temp dir (config, state dir, notify socket) and health port,
//! so they run in parallel. Conditions are polled with generous timeouts; nothing asserts how
//! long anything took. Runs are triggered by SIGHUP or config changes where possible; the tests
//! that need the schedule or a session to age use the smallest settings the config allows.
//!
//! Most of a test's time is waiting (two tests wait out bunq's 30 s session windows), so the
//! file finishes in about the longest test's time given enough test threads:
//! `cargo test --test integration daemon_e2e:: -- --test-threads=16`.

// clippy's allow-unwrap-in-tests covers #[test] functions only, not the helpers here.
#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

use std::path::PathBuf;
use std::time::Duration;

use crate::support::{ConfigSpec, Daemon, NotifySocket, Setting, World, metric_value, sim_options};
use bunq_ipsync::bunq::model::IpStatus::{Active, Inactive};
use bunq_ipsync::reconcile::record::RecordStore;
use bunq_ipsync::simulator::{Fault, FaultKind, SimulatorOptions};
use hyper::Method;

mod key_rotation;

const A: &str = "203.0.113.1";
const B: &str = "203.0.113.2";
const C: &str = "203.0.113.3";
const STRAY: &str = "192.0.2.9";

fn sorted(ips: &[&str]) -> Vec<String> {
    let mut ips: Vec<String> = ips.iter().map(|ip| (*ip).to_owned()).collect();
    ips.sort();
    ips
}

/// Waits until exactly `want` is ACTIVE on the managed credential.
async fn wait_active(world: &World, daemon: &Daemon, want: &[&str]) {
    let want = sorted(want);
    daemon
        .eventually(&format!("ACTIVE = {want:?}"), async || {
            (world.active_ips() == want).then_some(())
        })
        .await;
}

async fn metric(daemon: &Daemon, series: &str) -> f64 {
    daemon
        .metric(series)
        .await
        .unwrap_or_else(|| panic!("no series {series} in /metrics"))
}

async fn readyz(daemon: &Daemon) -> (u16, serde_json::Value) {
    let (status, body) = daemon.get("/readyz").await.expect("/readyz answers");
    let json = serde_json::from_str(&body).unwrap_or_else(|err| panic!("{err}: {body}"));
    (status, json)
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|item| item.as_str().expect("a string").to_owned())
        .collect()
}

/// Polls until `/readyz` is 503 with a reason quoting bunq's refusal ("Incorrect API key or IP
/// address") and `also` holds for its JSON; then its reasons.
async fn refusal_reasons(
    daemon: &Daemon,
    also: impl Fn(&serde_json::Value) -> bool,
) -> Vec<String> {
    daemon
        .eventually("/readyz 503 naming the refusal", async || {
            let (status, body) = daemon.get("/readyz").await?;
            let json: serde_json::Value = serde_json::from_str(&body).ok()?;
            let reasons = strings(&json["reasons"]);
            (status == 503
                && also(&json)
                && reasons
                    .iter()
                    .any(|r| r.contains("Incorrect API key or IP address")))
            .then_some(reasons)
        })
        .await
}

/// A daemon at rest: A is ACTIVE and wanted, and the first run has succeeded.
async fn settled_on_a() -> (World, Daemon) {
    let (world, daemon) = World::running(&[(A, Active)], &ConfigSpec::ips(&[A])).await;
    daemon.wait_settled().await;
    (world, daemon)
}

/// A daemon that reads its API key only from the systemd credential `bunq-api-key` (no
/// `BUNQ_API_KEY`), started on a bank without entries and waited for until [`A`] is ACTIVE;
/// with the credential file.
async fn running_on_a_key_credential() -> (World, Daemon, PathBuf) {
    let spec = ConfigSpec::ips(&[A]).with(Setting::ApiKeyCredential("bunq-api-key"));
    let world = World::configured(&[], &spec).await;
    let (daemon, key_file) = world.spawn_with_key_credential("bunq-api-key");
    wait_active(&world, &daemon, &[A]).await;
    (world, daemon, key_file)
}

async fn stop(mut daemon: Daemon) -> Daemon {
    daemon.stop_cleanly().await;
    daemon
}

// 1. Convergence

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_at_start_and_the_schedule_repairs_out_of_band_changes() {
    let world = World::configured(
        &[(A, Active), (B, Inactive), (STRAY, Active)],
        &ConfigSpec::ips(&[A, B, C]),
    )
    .await;
    let daemon = world.spawn(&[], &[]);

    wait_active(&world, &daemon, &[A, B, C]).await;
    let entries = world.managed_entries();
    assert_eq!(entries[STRAY].status, Inactive);

    // Someone toggles two entries in the app; no signal is sent: the next scheduled run
    // (sync.interval 10s) repairs both.
    world
        .sim
        .set_entry_status(world.managed, entries[C].id, Inactive)
        .unwrap();
    world
        .sim
        .set_entry_status(world.managed, entries[STRAY].id, Active)
        .unwrap();
    wait_active(&world, &daemon, &[A, B, C]).await;
    let repaired = world.managed_entries();
    assert_eq!(repaired.len(), 4, "no new entries: {repaired:?}");
    assert_eq!(repaired[C].id, entries[C].id, "the old entry is reused");
    assert_eq!(repaired[STRAY].status, Inactive);
    stop(daemon).await;
}

// 2. SIGHUP

/// Fails unless every field of every log line has a value and none is Rust `Debug` text.
#[track_caller]
fn assert_plain_fields(log: &str) {
    for line in log.lines() {
        for debug in ["Some(", "None", "{ ", "[\""] {
            assert!(!line.contains(debug), "Debug text {debug:?} in: {line}");
        }
        assert!(
            !line.split_whitespace().any(|word| word.ends_with('=')),
            "an empty field in: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_logged_with_what_started_them_in_plain_fields() {
    let (world, daemon) = settled_on_a().await;
    let runs_with = |trigger: &'static str| {
        let daemon = &daemon;
        async move {
            daemon
                .eventually(trigger, async || {
                    daemon.stderr().contains(trigger).then_some(())
                })
                .await
        }
    };
    // An edit of the file (the watcher, no signal), then SIGHUP on the unchanged file.
    world.write_config(&ConfigSpec::ips(&[A, B]));
    wait_active(&world, &daemon, &[A, B]).await;
    runs_with("trigger=config-changed").await;
    daemon.signal("HUP");
    runs_with("trigger=reload").await;

    let log = daemon.stderr();
    assert_eq!(log.matches("trigger=startup").count(), 1, "{log}");
    assert!(log.contains("listen=127.0.0.1:"), "{log}");
    assert!(log.contains("device_id="), "{log}");
    let audit = log
        .lines()
        .find(|line| line.contains("change applied"))
        .unwrap_or_else(|| panic!("no audit line for the create: {log}"));
    assert!(!audit.contains("detail"), "{audit}");
    // Durations in seconds with milliseconds, not Debug text such as `2.345678901s` or `150µs`.
    let durations: Vec<&str> = log
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("duration="))
        .collect();
    assert_eq!(durations.len(), 3, "one per run: {log}");
    for duration in durations {
        let seconds = duration
            .strip_suffix('s')
            .unwrap_or_else(|| panic!("{duration}"));
        let (_, millis) = seconds
            .split_once('.')
            .unwrap_or_else(|| panic!("{duration}"));
        assert!(
            millis.len() == 3 && seconds.replace('.', "").bytes().all(|b| b.is_ascii_digit()),
            "{duration}"
        );
    }
    assert_plain_fields(&log);
    stop(daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rereads_the_config_and_applies_a_good_new_one() {
    let (world, daemon) = settled_on_a().await;
    let success = r#"bunq_ipsync_config_reloads_total{result="success"}"#;
    assert_eq!(metric(&daemon, success).await, 1.0);

    // An unchanged file: only SIGHUP (never the file watcher) reloads it.
    daemon.signal("HUP");
    daemon
        .eventually("a reload from SIGHUP alone", async || {
            (daemon.metric(success).await? >= 2.0).then_some(())
        })
        .await;

    // New IPs apply at once; a setting read only at start is named in a warning.
    let spec = ConfigSpec::ips(&[A, B]).with(Setting::RenewBefore("30m"));
    world.write_config(&spec);
    daemon.signal("HUP");
    wait_active(&world, &daemon, &[A, B]).await;
    assert!(metric(&daemon, success).await >= 3.0);
    let stderr = daemon.stderr();
    assert!(
        stderr.contains("take effect after a restart") && stderr.contains("sync.renew_before"),
        "{stderr}"
    );
    assert_eq!(
        metric(&daemon, "bunq_ipsync_config_last_reload_successful").await,
        1.0
    );
    stop(daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_bad_config_keeps_the_old_one_and_writes_nothing() {
    let (world, daemon) =
        World::running(&[(A, Active), (STRAY, Inactive)], &ConfigSpec::ips(&[A])).await;
    daemon.wait_settled().await;
    let requests_before = world.sim.request_log().len();

    // Wants a new IP and reactivation of STRAY, but one value is invalid: nothing may be
    // written from it.
    let bad = ConfigSpec::ips(&[A, B, STRAY]).with(Setting::PlusIp("not-an-ip"));
    crate::support::write_atomically(&world.config_path, &world.config_text(&bad, world.port));
    daemon.signal("HUP");

    let failure = r#"bunq_ipsync_config_reloads_total{result="failure"}"#;
    daemon
        .eventually("a failed reload in the metrics", async || {
            (daemon.metric(failure).await? >= 1.0).then_some(())
        })
        .await;
    assert_eq!(
        metric(&daemon, "bunq_ipsync_config_last_reload_successful").await,
        0.0
    );
    let (status, body) = readyz(&daemon).await;
    assert_eq!(status, 200, "still ready on the last good config: {body}");
    let warnings = strings(&body["warnings"]);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("config reload failed") && w.contains("not-an-ip")),
        "{body}"
    );

    // The next scheduled run still happens, on the old config.
    let runs = metric(&daemon, r#"bunq_ipsync_runs_total{result="converged"}"#).await;
    daemon
        .eventually("a scheduled run after the failed reload", async || {
            let now = daemon
                .metric(r#"bunq_ipsync_runs_total{result="converged"}"#)
                .await?;
            (now > runs).then_some(())
        })
        .await;
    let after = &world.sim.request_log()[requests_before..];
    assert!(
        crate::support::write_requests(after).is_empty(),
        "writes after the bad reload: {after:?}"
    );
    assert_eq!(world.active_ips(), sorted(&[A]));
    assert!(daemon.stderr().contains("config reload failed"));
    stop(daemon).await;
}

// 3. Kubernetes ConfigMap swap

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_data_symlink_swap_reloads_without_a_signal() {
    use std::os::unix::fs::symlink;
    let world = World::start(sim_options(), &[(A, Active)]).await;
    let mount = world.dir.path().join("configmap");
    std::fs::create_dir(&mount).unwrap();
    let generation = |name: &str, spec: &ConfigSpec| {
        let dir = mount.join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("config.yaml"), world.config_text(spec, world.port)).unwrap();
    };
    let first = "..2026_11_21_09_00_00.000000001";
    generation(first, &ConfigSpec::ips(&[A]));
    symlink(first, mount.join("..data")).unwrap();
    symlink("..data/config.yaml", mount.join("config.yaml")).unwrap();

    let daemon = world.spawn_with_config(&mount.join("config.yaml"), &[], &[]);
    daemon.wait_settled().await;

    // What the kubelet does: new timestamped dir, new `..data_tmp` link, rename over `..data`,
    // remove the old dir. `config.yaml` itself is never touched.
    let second = "..2026_11_21_09_05_00.000000002";
    generation(second, &ConfigSpec::ips(&[A, C]));
    symlink(second, mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    std::fs::remove_dir_all(mount.join(first)).unwrap();

    wait_active(&world, &daemon, &[A, C]).await;
    assert_eq!(
        metric(
            &daemon,
            r#"bunq_ipsync_config_reloads_total{result="success"}"#
        )
        .await,
        2.0,
        "one reload for one swap"
    );
    stop(daemon).await;
}

// 4. SIGTERM during an apply

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_apply_exits_zero_without_half_applied_state() {
    let wanted: Vec<String> = (10..18).map(|last| format!("203.0.113.{last}")).collect();
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let world = World::configured(&[], &ConfigSpec::ips(&wanted)).await;
    // Every create is applied at once but answered late, so the apply takes many seconds.
    world.delay_creates(Duration::from_millis(1500), 3);
    let mut daemon = world.spawn(&[], &[]);
    daemon
        .eventually("the apply under way", async || {
            (world.managed_entries().len() >= 2).then_some(())
        })
        .await;

    daemon.signal("TERM");
    let status = daemon.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{}", daemon.stderr());
    let entries = world.managed_entries(); // panics on a duplicate
    assert!(
        entries.len() < wanted.len(),
        "the rest of the plan was skipped: {entries:?}"
    );
    for entry in entries.values() {
        assert_eq!(entry.status, Active, "{entry:?}");
        assert!(wanted.contains(&entry.ip.as_str()), "{entry:?}");
    }
    let creates = crate::support::write_requests(&world.sim.request_log()).len();
    assert_eq!(creates, entries.len(), "every write sent has landed once");
    // The interrupted run's record was persisted: exactly what it created, ACTIVE.
    let record = RecordStore::new(&world.state_dir)
        .load()
        .expect("the last-run record is saved on shutdown");
    let recorded = &record.credentials[&world.managed];
    assert_eq!(
        recorded.keys().cloned().collect::<Vec<_>>(),
        entries.keys().cloned().collect::<Vec<_>>()
    );
    assert!(
        recorded.values().all(|status| *status == Active),
        "{recorded:?}"
    );

    // A second start on the same state converges.
    let again = world.spawn(&[], &[]);
    wait_active(&world, &again, &wanted).await;
    assert_eq!(world.managed_entries().len(), wanted.len());
    stop(again).await;
}

// 5. Session renewal

/// A world whose sessions last 40 s (real time: time_scale 1, so the reported timeout is the
/// real one), configured to want A and to renew 8 s ahead, after session-server's 30 s "recent
/// session" window.
async fn renewing_world() -> World {
    let options = SimulatorOptions {
        session_timeout_secs: 40,
        ..sim_options()
    };
    let world = World::start(options, &[(A, Active)]).await;
    world.write_config(&ConfigSpec::ips(&[A]).with(Setting::RenewBefore("8s")));
    world
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bunq_session_is_renewed_before_expiry_without_a_failed_run() {
    let world = renewing_world().await;
    let daemon = world.spawn(&[], &[]);
    daemon.wait_ready().await;
    let first_expiry = metric(&daemon, "bunq_ipsync_session_expiry_timestamp_seconds").await;
    assert!(first_expiry > 0.0);
    assert_eq!(world.sim.sessions_created(), 1);

    daemon
        .eventually("a renewed session", async || {
            let renewed = daemon
                .metric(r#"bunq_ipsync_session_renewals_total{result="success"}"#)
                .await?;
            (renewed >= 1.0 && world.sim.sessions_created() >= 2).then_some(())
        })
        .await;
    let expiry = metric(&daemon, "bunq_ipsync_session_expiry_timestamp_seconds").await;
    assert!(expiry > first_expiry, "{expiry} > {first_expiry}");
    // A renewal the client skipped (session younger than 30 s) is not counted: every counted
    // success opened a session at bunq.
    let renewals = metric(
        &daemon,
        r#"bunq_ipsync_session_renewals_total{result="success"}"#,
    )
    .await;
    let opened_since_start = world.sim.sessions_created() as f64 - 1.0;
    assert!(
        renewals <= opened_since_start,
        "{renewals} renewals counted, {opened_since_start} opened"
    );
    assert_eq!(
        metric(&daemon, r#"bunq_ipsync_runs_total{result="failed"}"#).await,
        0.0
    );
    let rejected: Vec<_> = world
        .sim
        .request_log()
        .into_iter()
        .filter(|request| matches!(request.status, Some(401 | 403)))
        .collect();
    assert!(
        rejected.is_empty(),
        "no request hit an expired session: {rejected:?}"
    );
    assert_eq!(readyz(&daemon).await.0, 200);
    stop(daemon).await;
}

// 6. Health, readiness, metrics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_readyz_and_metrics_describe_a_running_daemon() {
    let (world, daemon) = World::running(&[(STRAY, Active)], &ConfigSpec::ips(&[A])).await;
    wait_active(&world, &daemon, &[A]).await;
    daemon.wait_runs(1.0).await;

    let (status, body) = daemon.get("/healthz").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = readyz(&daemon).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert!(strings(&body["reasons"]).is_empty());

    let text = daemon.metrics().await;
    let value = |series: &str| {
        metric_value(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert_eq!(
        value(r#"bunq_ipsync_runs_total{result="changes_applied"}"#),
        1.0
    );
    assert_eq!(value(r#"bunq_ipsync_runs_total{result="failed"}"#), 0.0);
    assert_eq!(
        value(r#"bunq_ipsync_changes_total{action="create",outcome="applied"}"#),
        1.0
    );
    assert_eq!(
        value(r#"bunq_ipsync_changes_total{action="deactivate",outcome="applied"}"#),
        1.0
    );
    assert!(
        value(
            r#"bunq_ipsync_api_requests_total{endpoint="/user/{user}/credential-password-ip",method="GET",status="200"}"#
        ) >= 1.0
    );
    assert!(
        value(
            r#"bunq_ipsync_api_requests_total{endpoint="/session-server",method="POST",status="200"}"#
        ) >= 1.0
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(value("bunq_ipsync_session_expiry_timestamp_seconds") > now);
    assert!(value("bunq_ipsync_last_run_success_timestamp_seconds") > 0.0);
    assert!(value("bunq_ipsync_run_duration_seconds_count") >= 1.0);
    assert_eq!(
        value(&format!(
            r#"bunq_ipsync_build_info{{version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    assert!(text.trim_end().ends_with("# EOF"));
    stop(daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_with_reasons_while_bunq_refuses_the_daemon_and_it_stays_up() {
    let world = World::start(sim_options(), &[]).await;
    // The daemon's own credential only allows another IP: bunq answers
    // "Incorrect API key or IP address" to the daemon's registration.
    let allowed = "203.0.113.50";
    world
        .sim
        .add_entry(world.key.credential_id, allowed, Active)
        .unwrap();
    world.write_config(&ConfigSpec::ips(&[A]));
    let daemon = world.spawn(&[], &[]);

    let reasons = refusal_reasons(&daemon, |json| json["ready"] == false).await;
    assert!(
        reasons.iter().any(|r| r.contains("no bunq session")),
        "{reasons:?}"
    );
    let (status, _) = daemon.get("/healthz").await.unwrap();
    assert_eq!(status, 200, "the loop is alive even though bunq refuses it");
    assert!(daemon.exited().is_none(), "no crash: {}", daemon.stderr());

    // The operator re-activates the daemon's IP: it connects and converges by itself.
    world.sim.set_caller_ip(allowed.parse().unwrap());
    daemon.wait_ready().await;
    wait_active(&world, &daemon, &[A]).await;
    stop(daemon).await;
}

// 7. Single writer

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_instance_on_the_same_state_dir_refuses_to_start() {
    let world = World::configured(&[(A, Active)], &ConfigSpec::ips(&[A])).await;
    let first = world.spawn(&[], &[]);
    first.wait_ready().await;

    // Same state dir, its own port (so the lock, not the port, is what stops it).
    let other_port = crate::support::free_port();
    let other_config = world.dir.path().join("second.yaml");
    std::fs::write(
        &other_config,
        world.config_text(&ConfigSpec::ips(&[A]), other_port),
    )
    .unwrap();
    let mut second = Daemon::spawn(
        &other_config,
        &[("BUNQ_API_KEY", world.key.api_key.expose().to_owned())],
        &[],
        other_port,
    );
    let status = second.wait_exit().await;
    assert_eq!(status.code(), Some(1));
    let stderr = second.stderr();
    assert!(
        stderr.contains("another bunq-ipsync instance is already running on state directory")
            && stderr.contains(&world.state_dir.display().to_string())
            && stderr.contains(&format!("pid {}", first.pid())),
        "{stderr}"
    );
    assert!(first.exited().is_none());
    assert_eq!(first.get("/healthz").await.unwrap().0, 200);
    stop(first).await;
}

// 8. systemd notifications

fn notify_lines(messages: &[String]) -> Vec<String> {
    messages
        .iter()
        .flat_map(|message| message.lines().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_socket_gets_ready_status_reloading_and_stopping() {
    let world = World::configured(&[], &ConfigSpec::ips(&[A])).await;
    let socket = NotifySocket::bind(world.dir.path());
    let mut daemon = world.spawn(&[("NOTIFY_SOCKET", socket.path.display().to_string())], &[]);

    daemon
        .eventually("READY=1 and the first run's STATUS=", async || {
            let lines = notify_lines(&socket.messages());
            let ready = lines.iter().position(|l| l == "READY=1")?;
            lines[ready..]
                .iter()
                .any(|l| l.starts_with("STATUS=changes applied: 1 applied"))
                .then_some(())
        })
        .await;

    let mark = socket.messages().len();
    let before = monotonic_usec();
    daemon.signal("HUP");
    let reload = daemon
        .eventually("RELOADING=1, READY=1, STATUS= after SIGHUP", async || {
            let messages = socket.messages()[mark..].to_vec();
            let reloading = messages
                .iter()
                .position(|m| m.starts_with("RELOADING=1\n"))?;
            let ready = messages[reloading..]
                .iter()
                .position(|m| m == "READY=1\n")?;
            messages[reloading + ready..]
                .iter()
                .any(|m| m.starts_with("STATUS=converged"))
                .then(|| messages[reloading].clone())
        })
        .await;
    let usec: i128 = reload
        .lines()
        .find_map(|line| line.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reload:?}"))
        .parse()
        .unwrap();
    assert!(before <= usec && usec <= monotonic_usec(), "{reload:?}");

    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit().await.code(), Some(0));
    let tail = notify_lines(&socket.messages()[mark..]);
    assert!(tail.contains(&"STOPPING=1".to_owned()), "{tail:?}");
}

fn monotonic_usec() -> i128 {
    match sd_notify::NotifyState::monotonic_usec_now().unwrap() {
        sd_notify::NotifyState::MonotonicUsec(usec) => usec,
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_pings_arrive_when_watchdog_usec_is_set() {
    let world = World::configured(&[(A, Active)], &ConfigSpec::ips(&[A])).await;
    let socket = NotifySocket::bind(world.dir.path());
    let daemon = world.spawn(
        &[
            ("NOTIFY_SOCKET", socket.path.display().to_string()),
            ("WATCHDOG_USEC", "1000000".into()),
        ],
        &[],
    );
    daemon
        .eventually("two WATCHDOG=1 after READY=1", async || {
            let lines = notify_lines(&socket.messages());
            let ready = lines.iter().position(|l| l == "READY=1")?;
            (lines[ready..].iter().filter(|l| *l == "WATCHDOG=1").count() >= 2).then_some(())
        })
        .await;
    stop(daemon).await;
}

// 9. Logs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_run_ids_and_never_the_api_key() {
    let world = World::configured(&[(STRAY, Active)], &ConfigSpec::ips(&[A])).await;
    let daemon = world.spawn(&[], &["--log-format", "json"]);
    wait_active(&world, &daemon, &[A]).await;
    daemon.wait_runs(1.0).await;
    daemon.signal("HUP");
    daemon.wait_runs(2.0).await;
    let daemon = stop(daemon).await;

    let lines = daemon.stderr_lines();
    assert!(!lines.is_empty());
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
            assert!(value.is_object(), "{line}");
            value
        })
        .collect();
    // Every run's summary line carries its run id, and the two runs have different ids.
    let summaries: Vec<&str> = events
        .iter()
        .filter(|event| {
            let message = event["message"].as_str().unwrap_or_default();
            message.starts_with("changes applied") || message.starts_with("converged")
        })
        .map(|event| {
            event["run_id"]
                .as_str()
                .unwrap_or_else(|| panic!("run summary without run_id: {event}"))
        })
        .collect();
    assert!(summaries.len() >= 2, "{lines:#?}");
    assert_ne!(summaries[0], summaries[1]);
    // The changes of a run are logged with the same id.
    assert!(
        events
            .iter()
            .filter(|event| event["run_id"] == summaries[0])
            .count()
            >= 2,
        "{lines:#?}"
    );
    let key = world.key.api_key.expose();
    assert!(!daemon.stderr().contains(key));
    assert!(!daemon.stdout().contains(key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_never_contain_the_api_key_or_bunq_tokens() {
    // The config key this time, not the flag.
    let spec = ConfigSpec::ips(&[A]).with(Setting::LogFormat("json"));
    let world = World::configured(&[(STRAY, Active)], &spec).await;
    let daemon = world.spawn(&[("RUST_LOG", "trace".into())], &[]);
    wait_active(&world, &daemon, &[A]).await;
    daemon.wait_runs(1.0).await;
    let daemon = stop(daemon).await;

    let context: serde_json::Value = serde_json::from_slice(
        &std::fs::read(world.state_dir.join("bunq-context.json")).expect("context file"),
    )
    .unwrap();
    let mut secrets = vec![world.key.api_key.expose().to_owned()];
    for token in [
        &context["installation"]["token"],
        &context["session"]["token"],
    ] {
        secrets.push(token.as_str().expect("a token in the context").to_owned());
    }
    let (stderr, stdout) = (daemon.stderr(), daemon.stdout());
    assert!(stderr.lines().count() > 20, "trace logging is on: {stderr}");
    for line in stderr.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
        assert!(event.is_object(), "{line}");
    }
    for secret in &secrets {
        assert!(!stderr.contains(secret.as_str()), "a secret in stderr");
        assert!(!stdout.contains(secret.as_str()), "a secret in stdout");
    }
}

// Scheduling, failures and recovery beyond the brief's list

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_schedule_ticks_drive_the_runs() {
    // Every second; the interval fallback is then 5 min, so only cron ticks can make these runs.
    let spec = ConfigSpec::ips(&[A]).with(Setting::Schedule("* * * * * *"));
    let (_world, daemon) = World::running(&[(A, Active)], &spec).await;
    daemon.wait_ready().await;
    daemon.wait_runs(4.0).await;
    assert_eq!(
        metric(&daemon, r#"bunq_ipsync_runs_total{result="failed"}"#).await,
        0.0
    );
    assert!(
        daemon.stderr().contains("trigger=cron"),
        "{}",
        daemon.stderr()
    );
    // SIGINT (Ctrl-C) stops it like SIGTERM.
    let mut daemon = daemon;
    daemon.signal("INT");
    assert_eq!(
        daemon.wait_exit().await.code(),
        Some(0),
        "{}",
        daemon.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_run_is_retried_and_the_daemon_stays_up() {
    let world = World::configured(&[], &ConfigSpec::ips(&[A])).await;
    // bunq answers 500 to every attempt of the first run's first read.
    world.sim.inject(
        Fault::once(FaultKind::Status(500))
            .on(Method::GET, "credential-password-ip")
            .times(4),
    );
    let daemon = world.spawn(&[], &[]);
    daemon
        .wait_metric(
            "a failed run",
            r#"bunq_ipsync_runs_total{result="failed"}"#,
            1.0,
        )
        .await;
    wait_active(&world, &daemon, &[A]).await;
    daemon.wait_runs(1.0).await;
    assert!(daemon.exited().is_none());
    assert_eq!(
        readyz(&daemon).await.0,
        200,
        "one failure is not a readiness problem"
    );
    assert!(
        daemon.stderr().contains("run failed"),
        "the failure is logged: {}",
        daemon.stderr()
    );
    stop(daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bunq_ending_the_session_early_is_recovered_without_a_failed_run() {
    let (world, daemon) = World::running(&[(A, Active)], &ConfigSpec::ips(&[A, B])).await;
    wait_active(&world, &daemon, &[A, B]).await;
    daemon.wait_runs(1.0).await;
    assert_eq!(world.sim.sessions_created(), 1);

    // The client waits out session-server's 1-per-30 s window before opening the replacement.
    world.sim.expire_all_sessions();
    let entries = world.managed_entries();
    world
        .sim
        .set_entry_status(world.managed, entries[B].id, Inactive)
        .unwrap();
    daemon.signal("HUP");
    wait_active(&world, &daemon, &[A, B]).await;
    daemon.wait_runs(2.0).await;
    assert!(world.sim.sessions_created() >= 2);
    assert_eq!(
        metric(&daemon, r#"bunq_ipsync_runs_total{result="failed"}"#).await,
        0.0
    );
    assert_eq!(readyz(&daemon).await.0, 200);
    stop(daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_sigterm_exits_at_once_with_143() {
    let world = World::configured(&[], &ConfigSpec::ips(&[A, B, C])).await;
    world.delay_creates(Duration::from_secs(20), 1);
    let mut daemon = world.spawn(&[], &[]);
    daemon
        .eventually("a create in flight", async || {
            (!world.managed_entries().is_empty()).then_some(())
        })
        .await;
    daemon.signal("TERM");
    daemon
        .eventually("the first SIGTERM handled", async || {
            daemon.stderr().contains("shutdown requested").then_some(())
        })
        .await;
    // The daemon is waiting for the held-back answer; the operator insists.
    daemon.signal("TERM");
    let status = daemon.wait_exit().await;
    assert_eq!(status.code(), Some(143), "{}", daemon.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_is_read_from_the_systemd_credentials_directory() {
    let (_world, daemon, _) = running_on_a_key_credential().await;
    stop(daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_over_max_changes_is_blocked_counted_by_rule_and_writes_nothing() {
    let spec = ConfigSpec::ips(&[A, B, C]).with(Setting::MaxChanges(1));
    let (world, daemon) = World::running(&[(A, Active)], &spec).await;
    daemon
        .wait_metric(
            "a blocked run",
            r#"bunq_ipsync_runs_total{result="blocked"}"#,
            1.0,
        )
        .await;
    assert!(
        metric(
            &daemon,
            r#"bunq_ipsync_changes_blocked_total{reason="max-changes"}"#
        )
        .await
            >= 2.0
    );
    assert!(world.writes().is_empty(), "{:?}", world.writes());
    assert_eq!(world.active_ips(), sorted(&[A]));
    stop(daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverting_a_bad_config_file_clears_the_reload_warning() {
    let good = ConfigSpec::ips(&[A]);
    let (world, daemon) = World::running(&[(A, Active)], &good).await;
    daemon.wait_settled().await;

    // An edit with a typo (picked up by the file watcher, no signal)...
    let bad = good.clone().with(Setting::PlusIp("not-an-ip"));
    crate::support::write_atomically(&world.config_path, &world.config_text(&bad, world.port));
    daemon
        .eventually("the reload warning", async || {
            let (_, body) = daemon.get("/readyz").await?;
            body.contains("config reload failed").then_some(())
        })
        .await;

    // ...is reverted to exactly the running config: the warning must go away.
    world.write_config(&good);
    daemon
        .eventually("the reload warning cleared", async || {
            let (status, body) = daemon.get("/readyz").await?;
            let json: serde_json::Value = serde_json::from_str(&body).ok()?;
            (status == 200 && strings(&json["warnings"]).is_empty()).then_some(())
        })
        .await;
    assert_eq!(
        metric(&daemon, "bunq_ipsync_config_last_reload_successful").await,
        1.0
    );
    stop(daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_keeps_pinging_during_a_long_apply() {
    let world = World::configured(&[], &ConfigSpec::ips(&[A, B, C])).await;
    // Each create is answered 1.5 s late: the first run takes about 4.5 s, several watchdog
    // periods (WATCHDOG_USEC 1 s: a ping every 0.5 s).
    world.delay_creates(Duration::from_millis(1500), 3);
    let socket = NotifySocket::bind(world.dir.path());
    let daemon = world.spawn(
        &[
            ("NOTIFY_SOCKET", socket.path.display().to_string()),
            ("WATCHDOG_USEC", "1000000".into()),
        ],
        &[],
    );
    let lines = daemon
        .eventually("the first run's STATUS=", async || {
            let lines = notify_lines(&socket.messages());
            lines
                .iter()
                .any(|l| l.starts_with("STATUS=changes applied"))
                .then_some(lines)
        })
        .await;
    let ready = lines.iter().position(|l| l == "READY=1").unwrap();
    let done = lines
        .iter()
        .position(|l| l.starts_with("STATUS=changes applied"))
        .unwrap();
    let pings = lines[ready..done]
        .iter()
        .filter(|l| *l == "WATCHDOG=1")
        .count();
    // systemd would kill a daemon that stays silent for WATCHDOG_USEC while it applies.
    assert!(pings >= 3, "pings during the apply: {lines:?}");
    stop(daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_bunq_refuses_the_daemon_exits_zero() {
    let world = World::start(sim_options(), &[]).await;
    world
        .sim
        .add_entry(world.key.credential_id, "203.0.113.50", Active)
        .unwrap();
    world.write_config(&ConfigSpec::ips(&[A]));
    let daemon = world.spawn(&[], &[]);
    daemon
        .eventually("the refusal reported", async || {
            let (status, body) = daemon.get("/readyz").await?;
            (status == 503 && body.contains("Incorrect API key or IP address")).then_some(())
        })
        .await;
    stop(daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_switches_to_a_new_schedule() {
    let (world, daemon) = settled_on_a().await;

    // From every 10 s to a cron schedule every second: runs come faster than the old interval
    // could make them.
    let spec = ConfigSpec::ips(&[A]).with(Setting::Schedule("* * * * * *"));
    world.write_config(&spec);
    daemon.signal("HUP");
    let runs = |text: &str| {
        metric_value(text, r#"bunq_ipsync_runs_total{result="converged"}"#).unwrap_or(0.0)
    };
    let after_reload = daemon
        .eventually("the reload's run", async || {
            let text = daemon.metrics().await;
            let reloads = metric_value(
                &text,
                r#"bunq_ipsync_config_reloads_total{result="success"}"#,
            )?;
            (reloads >= 2.0).then(|| runs(&text))
        })
        .await;
    daemon
        .eventually("three runs on the new schedule", async || {
            (daemon.stderr().matches("trigger=cron").count() >= 3).then_some(())
        })
        .await;
    assert!(
        daemon
            .metric(r#"bunq_ipsync_runs_total{result="converged"}"#)
            .await
            .unwrap()
            >= after_reload + 3.0
    );
    // One run at start, one for the reload; the new scheduler does not add a second one.
    let log = daemon.stderr();
    assert_eq!(log.matches("trigger=startup").count(), 1, "{log}");
    assert_eq!(log.matches("trigger=reload").count(), 1, "{log}");
    stop(daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_changes_under_bunq_rate_limits_converge_without_a_429() {
    let options = SimulatorOptions {
        rate_limits: true,
        ..sim_options()
    };
    let strays = ["192.0.2.1", "192.0.2.2", "192.0.2.3"];
    let seed: Vec<_> = strays.iter().map(|ip| (*ip, Active)).collect();
    let world = World::start(options, &seed).await;
    let wanted: Vec<String> = (10..22).map(|last| format!("203.0.113.{last}")).collect();
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    world.write_config(&ConfigSpec::ips(&wanted));
    let daemon = world.spawn(&[], &[]);
    wait_active(&world, &daemon, &wanted).await;
    // Two more runs right away: their reads share the windows with the apply's.
    daemon.signal("HUP");
    daemon.signal("HUP");
    daemon.wait_runs(3.0).await;

    let throttled: Vec<_> = world
        .sim
        .request_log()
        .into_iter()
        .filter(|request| request.status == Some(429))
        .collect();
    assert!(throttled.is_empty(), "{throttled:?}");
    assert_eq!(
        metric(&daemon, "bunq_ipsync_api_throttled_total").await,
        0.0
    );
    assert_eq!(
        metric(&daemon, r#"bunq_ipsync_runs_total{result="failed"}"#).await,
        0.0
    );
    assert_eq!(world.managed_entries().len(), wanted.len() + strays.len());
    stop(daemon).await;
}

// Start-up errors: exit 1 at once with a message that says what to fix.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_at_start_exits_1_naming_the_problem() {
    let spec = ConfigSpec::ips(&[A]).with(Setting::PlusIp("not-an-ip"));
    let (world, mut daemon) = World::running(&[], &spec).await;
    assert_eq!(daemon.wait_exit().await.code(), Some(1));
    let stderr = daemon.stderr();
    assert!(
        stderr.contains("credentials[0].ips[1]") && stderr.contains("not-an-ip"),
        "{stderr}"
    );
    assert!(world.sim.request_log().is_empty(), "bunq was never called");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_api_key_at_start_exits_1() {
    let world = World::configured(&[], &ConfigSpec::ips(&[A])).await;
    let mut daemon = Daemon::spawn(&world.config_path, &[], &[], world.port);
    assert_eq!(daemon.wait_exit().await.code(), Some(1));
    assert!(
        daemon.stderr().contains("BUNQ_API_KEY"),
        "{}",
        daemon.stderr()
    );
    assert!(world.sim.request_log().is_empty(), "bunq was never called");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_health_port_exits_1_naming_http_listen() {
    let world = World::start(sim_options(), &[]).await;
    let taken = std::net::TcpListener::bind(("127.0.0.1", world.port)).unwrap();
    world.write_config(&ConfigSpec::ips(&[A]));
    let mut daemon = world.spawn(&[], &[]);
    assert_eq!(daemon.wait_exit().await.code(), Some(1));
    let stderr = daemon.stderr();
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{}", world.port))
            && stderr.contains("http.listen"),
        "{stderr}"
    );
    drop(taken);
}

/// The harness's own guard: a port picked free can be taken by another test's daemon before
/// this one binds it. Whatever answers there, `wait_ready` waits for this daemon's listener, and
/// gives up as soon as the daemon has exited instead of after the whole patience.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "the daemon exited")]
async fn wait_ready_does_not_take_another_listeners_answer_for_this_daemons() {
    let world = World::start(sim_options(), &[]).await;
    let impostor = std::net::TcpListener::bind(("127.0.0.1", world.port)).unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut stream in impostor.incoming().flatten() {
            let _ = stream.read(&mut [0; 1024]);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
        }
    });
    world.write_config(&ConfigSpec::ips(&[A]));
    let daemon = world.spawn(&[], &[]);
    daemon.wait_ready().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_ip_deactivated_out_of_band_makes_not_ready_until_reactivated() {
    let (world, daemon) = settled_on_a().await;
    let caller = world.sim.caller_ip().to_string();
    let own = world
        .sim
        .entries(world.key.credential_id)
        .unwrap()
        .into_iter()
        .find(|entry| entry.ip == caller)
        .expect("device registration made the daemon's IP active");

    // Someone deactivates the daemon's own IP in the app: bunq refuses every call.
    world
        .sim
        .set_entry_status(world.key.credential_id, own.id, Inactive)
        .unwrap();
    daemon.signal("HUP");
    let reasons = refusal_reasons(&daemon, |_| true).await;
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("re-activate it in the bunq app")),
        "the reason says what to do: {reasons:?}"
    );
    assert_eq!(daemon.get("/healthz").await.unwrap().0, 200);

    world
        .sim
        .set_entry_status(world.key.credential_id, own.id, Active)
        .unwrap();
    daemon.signal("HUP");
    daemon.wait_ready().await;
    assert_eq!(world.active_ips(), sorted(&[A]));
    stop(daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bunq_session_renewal_in_flight_at_sigterm_is_finished_and_saved() {
    let world = renewing_world().await;
    let mut daemon = world.spawn(&[], &[]);
    daemon.wait_ready().await;
    let context_file = world.state_dir.join("bunq-context.json");
    // Seen to fail once each in two loaded full runs (load 4-5 on 2 cores) with no session
    // token in the file: the message names what the file held instead (keys only, never a
    // token) and what the daemon logged, so the next failure can be diagnosed.
    let saved_session = |daemon: &Daemon| {
        let context: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&context_file).unwrap()).unwrap();
        match context["session"]["token"].as_str() {
            Some(token) => token.to_owned(),
            None => {
                let keys: Vec<&String> = context
                    .as_object()
                    .map(|object| object.keys().collect())
                    .unwrap_or_default();
                panic!(
                    "no session token saved; the context holds {keys:?}, session = {}\n{}",
                    if context["session"].is_null() {
                        "null"
                    } else {
                        "present"
                    },
                    daemon.stderr()
                )
            }
        }
    };
    let first = saved_session(&daemon);
    // The renewal's session-server call is applied at once and answered 3 s later.
    world.sim.inject(
        Fault::once(FaultKind::Delay(Duration::from_secs(3))).on(Method::POST, "/session-server"),
    );
    daemon
        .eventually("the renewal in flight", async || {
            (world.sim.sessions_created() >= 2).then_some(())
        })
        .await;
    daemon.stop_cleanly().await;
    // The session bunq opened is the one saved for the next start.
    assert_ne!(saved_session(&daemon), first, "{}", daemon.stderr());
}

// Dynamic sources: a moved DNS name is followed between runs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_dns_name_is_applied_long_before_the_interval_and_a_failed_lookup_changes_nothing()
{
    use bunq_ipsync::simulator::{DnsAnswer, DnsServer};
    let world = World::start(sim_options(), &[]).await;
    let dns = DnsServer::start().await.unwrap();
    let (first, second) = ("203.0.113.61", "203.0.113.62");
    dns.set(
        "home.example.org",
        DnsAnswer::a(&[first.parse().unwrap()], 2),
    );
    // Interval 5 minutes: only following the name can apply a move within the test's patience.
    let text = world
        .config_text(&ConfigSpec::ips(&[A]), world.port)
        .replace("  interval: 10s\n", "  interval: 5m\n")
        + &format!(
            "      - dns: home.example.org\nsources:\n  dns:\n    nameservers: [{}]\n    \
             timeout: 500ms\n  min_refresh: 1s\n",
            dns.address()
        );
    std::fs::write(&world.config_path, text).unwrap();
    let daemon = world.spawn(&[], &[]);
    daemon.wait_ready().await;
    wait_active(&world, &daemon, &[A, first]).await;

    world.sim.clear_request_log();
    dns.set(
        "home.example.org",
        DnsAnswer::a(&[second.parse().unwrap()], 2),
    );
    wait_active(&world, &daemon, &[A, second]).await;
    let writes: Vec<Method> = world.writes().iter().map(|w| w.method.clone()).collect();
    assert_eq!(
        writes,
        vec![Method::POST, Method::PUT],
        "grant before deactivation"
    );

    world.sim.clear_request_log();
    dns.set("home.example.org", DnsAnswer::NxDomain);
    let failures = r#"bunq_ipsync_source_failures_total{kind="dns",reason="nxdomain"}"#;
    daemon
        .eventually("the failed lookup counted", async || {
            (daemon.metric(failures).await? >= 1.0).then_some(())
        })
        .await;
    let (status, body) = daemon.get("/readyz").await.unwrap();
    assert_eq!(status, 200, "still ready: {body}");
    assert!(
        body.contains("source dns:home.example.org failed"),
        "{body}"
    );
    assert!(
        world.writes().is_empty(),
        "a failed re-resolution starts no run"
    );
    assert_eq!(world.active_ips(), vec![A.to_owned(), second.to_owned()]);
    stop(daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_names_another_source_follows_the_new_one() {
    use bunq_ipsync::simulator::{DnsAnswer, DnsServer};
    let world = World::start(sim_options(), &[]).await;
    let dns = DnsServer::start().await.unwrap();
    dns.set(
        "old.example.org",
        DnsAnswer::a(&["203.0.113.71".parse().unwrap()], 2),
    );
    dns.set(
        "new.example.org",
        DnsAnswer::a(&["203.0.113.72".parse().unwrap()], 2),
    );
    let config_for = |name: &str| {
        world
            .config_text(&ConfigSpec::ips(&[A]), world.port)
            .replace("  interval: 10s\n", "  interval: 5m\n")
            + &format!(
                "      - dns: {name}\nsources:\n  dns:\n    nameservers: [{}]\n    \
                 timeout: 500ms\n  min_refresh: 1s\n",
                dns.address()
            )
    };
    std::fs::write(&world.config_path, config_for("old.example.org")).unwrap();
    let daemon = world.spawn(&[], &[]);
    daemon.wait_ready().await;
    wait_active(&world, &daemon, &[A, "203.0.113.71"]).await;
    dns.set("old.example.org", DnsAnswer::NxDomain);
    daemon
        .eventually("the old name's failure in /readyz", async || {
            let (_, body) = daemon.get("/readyz").await?;
            body.contains("source dns:old.example.org failed")
                .then_some(())
        })
        .await;

    // The config now names another source: the reload applies it, and the follower follows it
    // (not the old name) from then on.
    std::fs::write(&world.config_path, config_for("new.example.org")).unwrap();
    daemon.signal("HUP");
    wait_active(&world, &daemon, &[A, "203.0.113.72"]).await;
    dns.set(
        "new.example.org",
        DnsAnswer::a(&["203.0.113.73".parse().unwrap()], 2),
    );
    wait_active(&world, &daemon, &[A, "203.0.113.73"]).await;
    let asked = dns.queries("old.example.org");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        dns.queries("old.example.org"),
        asked,
        "the old name is no longer followed"
    );
    let (_, body) = daemon.get("/readyz").await.unwrap();
    assert!(
        !body.contains("old.example.org"),
        "a source the config no longer names leaves no warning: {body}"
    );
    stop(daemon).await;
}

// Change control: policy observe, run --dry-run

/// The `bunq_ipsync_pending_changes` series of the managed credential.
fn pending_series(world: &World) -> String {
    format!(
        r#"bunq_ipsync_pending_changes{{credential="{}"}}"#,
        world.managed
    )
}

/// Someone deactivates A and adds STRAY in the app, then two runs (SIGHUP each) follow the one
/// at start: what an observing or dry-run daemon is tested on. Returns with three runs done.
async fn change_out_of_band_and_run_twice(world: &World, daemon: &Daemon) {
    let a = world.managed_entries()[A].id;
    world
        .sim
        .set_entry_status(world.managed, a, Inactive)
        .unwrap();
    world.sim.add_entry(world.managed, STRAY, Active).unwrap();
    for runs in [2.0, 3.0] {
        daemon.signal("HUP");
        daemon.wait_runs(runs).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observe_credential_changed_out_of_band_is_reported_as_pending_and_never_written() {
    let spec = ConfigSpec::ips(&[A]).with(Setting::Policy("observe"));
    let (world, daemon) = World::running(&[(A, Active)], &spec).await;
    daemon.wait_settled().await;
    assert_eq!(metric(&daemon, &pending_series(&world)).await, 0.0);

    change_out_of_band_and_run_twice(&world, &daemon).await;

    assert!(world.writes().is_empty(), "{:?}", world.writes());
    assert_eq!(world.active_ips(), sorted(&[STRAY]));
    assert_eq!(metric(&daemon, &pending_series(&world)).await, 2.0);
    let observed = r#"bunq_ipsync_changes_total{action="deactivate",outcome="observe"}"#;
    assert!(metric(&daemon, observed).await >= 2.0);
    let (status, body) = readyz(&daemon).await;
    assert_eq!(
        (status, &body["ready"]),
        (200, &serde_json::json!(true)),
        "{body}"
    );
    let stderr = daemon.stderr();
    assert!(
        stderr.contains("changes pending (policy observe, not written)"),
        "{stderr}"
    );
    assert!(stderr.contains("drift"), "the change is reported: {stderr}");
    stop(daemon).await;

    // `apply` on the same config: still nothing written, exit 2 while changes are pending...
    let apply = world.command(&["apply"]).await;
    assert_eq!(apply.status.code(), Some(2), "{apply:?}");
    assert!(world.writes().is_empty(), "{:?}", world.writes());
    // ...and 0 once the config wants what bunq holds.
    world.write_config(&ConfigSpec::ips(&[STRAY]).with(Setting::Policy("observe")));
    let apply = world.command(&["apply"]).await;
    assert_eq!(apply.status.code(), Some(0), "{apply:?}");
    assert!(world.writes().is_empty(), "{:?}", world.writes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_daemon_never_writes_pending_changes_over_two_runs_and_says_so_everywhere() {
    let world = World::configured(&[(A, Active)], &ConfigSpec::ips(&[A])).await;
    let socket = NotifySocket::bind(world.dir.path());
    let notify = [("NOTIFY_SOCKET", socket.path.display().to_string())];
    let daemon = world.spawn(&notify, &["--dry-run"]);
    daemon.wait_settled().await;
    assert_eq!(metric(&daemon, "bunq_ipsync_dry_run").await, 1.0);
    assert_eq!(metric(&daemon, &pending_series(&world)).await, 0.0);

    change_out_of_band_and_run_twice(&world, &daemon).await;

    assert!(world.writes().is_empty(), "{:?}", world.writes());
    assert_eq!(world.active_ips(), sorted(&[STRAY]));
    assert_eq!(metric(&daemon, &pending_series(&world)).await, 2.0);
    let (status, body) = readyz(&daemon).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dry_run"], true, "{body}");
    assert!(
        strings(&body["warnings"])
            .iter()
            .any(|warning| warning.starts_with("dry run:")),
        "{body}"
    );
    let stderr = daemon.stderr();
    assert!(
        stderr.contains("dry run (run --dry-run)"),
        "logged at start: {stderr}"
    );
    let lines = notify_lines(&socket.messages());
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("STATUS=dry run: every run plans")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|line| line.starts_with(
            "STATUS=dry run, nothing written: Plan: 0 to create, 1 to activate, 1 to deactivate"
        )),
        "each run's status says so: {lines:?}"
    );
    stop(daemon).await;
    assert!(
        RecordStore::new(&world.state_dir).load().is_none(),
        "a dry run saves no drift record"
    );

    // The same config without --dry-run repairs what the dry runs only reported.
    let daemon = world.spawn(&[], &[]);
    wait_active(&world, &daemon, &[A]).await;
    assert_eq!(metric(&daemon, "bunq_ipsync_dry_run").await, 0.0);
    stop(daemon).await;
}
