//! The daemon's building blocks against real OS resources: a loopback HTTP listener, Unix
//! datagram sockets, lock files, process signals, a Kubernetes-style ConfigMap directory and the
//! cron scheduler. Pure logic is tested next to the code; these tests check the wiring.

// clippy's allow-unwrap-in-tests covers #[test] functions only, not the helpers here.
#![allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]

use std::ffi::OsStr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bunq_ipsync::daemon::health::{self, Health};
use bunq_ipsync::daemon::lock::{LockError, StateLock};
use bunq_ipsync::daemon::metrics::{Metrics, RunResult};
use bunq_ipsync::daemon::notify::Notifier;
use bunq_ipsync::daemon::schedule::CronTicker;
use bunq_ipsync::daemon::signals::{SignalEvent, SignalListener};
use bunq_ipsync::daemon::watch::{self, ConfigChanged, WatchSettings};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Upper bound for anything that should happen "soon"; never a timing assertion.
const GENEROUS: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// health listener

struct Listener {
    base: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    client: reqwest::Client,
}

async fn start_listener(health: Arc<Health>, metrics: Arc<Metrics>) -> Listener {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(health::serve(listener, health, metrics, shutdown.clone()));
    let client = bunq_ipsync::tls::client_builder()
        .no_proxy()
        .build()
        .unwrap();
    Listener {
        base,
        shutdown,
        task,
        client,
    }
}

impl Listener {
    async fn get(&self, path: &str) -> (u16, String, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, content_type, response.text().await.unwrap())
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(GENEROUS, self.task)
            .await
            .expect("listener stops after shutdown")
            .unwrap();
    }
}

/// Fresh metrics of version 0.1.0.
fn metrics() -> Arc<Metrics> {
    Arc::new(Metrics::new("0.1.0"))
}

/// What a listener serving `health` (and fresh [`metrics`]) answers to `GET path`: status,
/// content type and body. The listener is stopped again, which must succeed.
async fn answer(health: Arc<Health>, path: &str) -> (u16, String, String) {
    let l = start_listener(health, metrics()).await;
    let answer = l.get(path).await;
    l.stop().await;
    answer
}

fn ready_health() -> Arc<Health> {
    let h = Health::new(Duration::from_secs(60), 3);
    h.beat();
    h.set_config_loaded(true);
    h.set_session_valid_until(Some(chrono::Utc::now() + chrono::Duration::hours(1)));
    Arc::new(h)
}

#[tokio::test]
async fn healthz_is_200_while_heartbeat_is_fresh() {
    assert_eq!(
        answer(ready_health(), "/healthz").await,
        (200, "application/json".into(), r#"{"alive":true}"#.into())
    );
}

#[tokio::test]
async fn healthz_is_503_when_heartbeat_is_stale() {
    let h = Health::new(Duration::from_secs(1), 3);
    let long_ago = tokio::time::Instant::now()
        .checked_sub(Duration::from_secs(5))
        .unwrap();
    h.beat_at(long_ago);
    let (status, _, body) = answer(Arc::new(h), "/healthz").await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        r#"{"alive":false,"reason":"no heartbeat from the run loop for 5s (limit 1s)"}"#
    );
}

#[tokio::test]
async fn healthz_ignores_session_and_failures() {
    let h = Health::new(Duration::from_secs(60), 1);
    h.beat();
    h.record_run_result(false, "bunq unreachable");
    assert_eq!(answer(Arc::new(h), "/healthz").await.0, 200);
}

#[tokio::test]
async fn readyz_is_200_when_ready() {
    assert_eq!(
        answer(ready_health(), "/readyz").await,
        (
            200,
            "application/json".into(),
            r#"{"ready":true,"reasons":[],"warnings":[],"dry_run":false}"#.into()
        )
    );
}

#[tokio::test]
async fn readyz_is_503_with_reasons_before_startup_completes() {
    let h = Arc::new(Health::new(Duration::from_secs(60), 3));
    assert_eq!(
        answer(h, "/readyz").await,
        (
            503,
            "application/json".into(),
            r#"{"ready":false,"reasons":["config not loaded","no bunq session"],"warnings":[],"dry_run":false}"#
                .into()
        )
    );
}

#[tokio::test]
async fn readyz_lists_failures_and_reload_error() {
    let h = ready_health();
    for _ in 0..3 {
        h.record_run_result(false, "bunq returned 503");
    }
    h.set_reload_error(Some("sync.interval: invalid duration".into()));
    let (status, _, body) = answer(h, "/readyz").await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        r#"{"ready":false,"reasons":["last 3 runs failed: bunq returned 503"],"warnings":["config reload failed: sync.interval: invalid duration (running on last good config)"],"dry_run":false}"#
    );
}

#[tokio::test]
async fn readyz_stays_200_after_failed_reload() {
    let h = ready_health();
    h.set_reload_error(Some("parse error".into()));
    let (status, _, body) = answer(h, "/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        r#"{"ready":true,"reasons":[],"warnings":["config reload failed: parse error (running on last good config)"],"dry_run":false}"#
    );
}

#[tokio::test]
async fn metrics_endpoint_serves_openmetrics_text() {
    let metrics = metrics();
    metrics.record_run(
        RunResult::Converged,
        Duration::from_millis(200),
        std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    );
    let l = start_listener(ready_health(), Arc::clone(&metrics)).await;
    let (status, content_type, body) = l.get("/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(body.contains("\nbunq_ipsync_build_info{version=\"0.1.0\"} 1\n"));
    assert!(body.contains("\nbunq_ipsync_runs_total{result=\"converged\"} 1\n"));
    assert!(body.contains("\nbunq_ipsync_last_run_success_timestamp_seconds 1700000000.0\n"));
    assert!(body.ends_with("# EOF\n"));
    l.stop().await;
}

#[tokio::test]
async fn unknown_path_is_404() {
    assert_eq!(answer(ready_health(), "/admin").await.0, 404);
}

#[tokio::test]
async fn listener_stops_accepting_after_shutdown() {
    let l = start_listener(ready_health(), metrics()).await;
    let base = l.base.clone();
    let client = l.client.clone();
    assert_eq!(l.get("/healthz").await.0, 200);
    l.stop().await;
    let after = client.get(format!("{base}/healthz")).send().await;
    assert!(after.is_err(), "request after shutdown got {after:?}");
}

// ---------------------------------------------------------------------------------------------
// systemd notifications

fn bind_notify_socket(dir: &Path) -> (UnixDatagram, std::path::PathBuf) {
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(GENEROUS)).unwrap();
    (socket, path)
}

fn receive(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

#[test]
fn notifier_sends_ready_status_watchdog_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, path) = bind_notify_socket(dir.path());
    let n = Notifier::to_socket(path.as_os_str());
    n.ready().unwrap();
    assert_eq!(receive(&socket), "READY=1\n");
    n.status("converged: 0 changes\nsecond line").unwrap();
    assert_eq!(
        receive(&socket),
        "STATUS=converged: 0 changes second line\n"
    );
    n.watchdog().unwrap();
    assert_eq!(receive(&socket), "WATCHDOG=1\n");
    n.stopping().unwrap();
    assert_eq!(receive(&socket), "STOPPING=1\n");
}

#[test]
fn notifier_reloading_carries_current_monotonic_usec() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, path) = bind_notify_socket(dir.path());
    let n = Notifier::to_socket(path.as_os_str());
    let before = monotonic_usec();
    n.reloading().unwrap();
    let after = monotonic_usec();
    let message = receive(&socket);
    let usec: i128 = message
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("unexpected message {message:?}"))
        .parse()
        .unwrap();
    assert!(
        before <= usec && usec <= after,
        "{before} <= {usec} <= {after}"
    );
}

fn monotonic_usec() -> i128 {
    match sd_notify::NotifyState::monotonic_usec_now().unwrap() {
        sd_notify::NotifyState::MonotonicUsec(usec) => usec,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn notifier_reaches_abstract_socket() {
    let name = format!("bunq-ipsync-test-{}", uuid::Uuid::new_v4());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&addr).unwrap();
    socket.set_read_timeout(Some(GENEROUS)).unwrap();
    let n = Notifier::to_socket(OsStr::new(&format!("@{name}")));
    n.ready().unwrap();
    assert_eq!(receive(&socket), "READY=1\n");
}

/// Set to the helper's name in the child [`run_helper_test`] starts: an ignored helper test does
/// its work only there, never when someone runs the ignored tests by hand.
const HELPER_CHILD_ENV: &str = "BUNQ_IPSYNC_TEST_HELPER_CHILD";

/// Whether this process is the child [`run_helper_test`] started for `helper`.
fn is_helper_child(helper: &str) -> bool {
    std::env::var_os(HELPER_CHILD_ENV).is_some_and(|name| name == helper)
}

/// Runs the ignored helper test `helper` of this module in a child process of this test binary,
/// with `env` set and `remove` unset, so the test process's own environment and signal handling
/// are never touched.
fn run_helper_test(helper: &str, env: &[(&str, &OsStr)], remove: &[&str]) -> std::process::Output {
    // The helper's name in the one integration crate: `daemon_parts::helper`, not `helper`.
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, module)| module);
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command.env(HELPER_CHILD_ENV, helper);
    command.args([
        "--exact",
        &format!("{module}::{helper}"),
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (name, value) in env {
        command.env(name, value);
    }
    for name in remove {
        command.env_remove(name);
    }
    command.output().unwrap()
}

/// Runs in a child process started by `notifier_from_env_uses_notify_socket_and_watchdog`, so the
/// test process's own environment is never modified.
#[test]
#[ignore = "helper: run as a subprocess by notifier_from_env_uses_notify_socket_and_watchdog"]
fn notify_child_process() {
    if !is_helper_child("notify_child_process") {
        return;
    }
    let n = Notifier::from_env();
    assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(2)));
    n.ready().unwrap();
}

#[test]
fn notifier_from_env_uses_notify_socket_and_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, path) = bind_notify_socket(dir.path());
    let output = run_helper_test(
        "notify_child_process",
        &[
            ("NOTIFY_SOCKET", path.as_os_str()),
            ("WATCHDOG_USEC", OsStr::new("4000000")),
        ],
        &["WATCHDOG_PID"],
    );
    assert!(output.status.success(), "{output:?}");
    assert_eq!(receive(&socket), "READY=1\n");
}

// ---------------------------------------------------------------------------------------------
// single-writer lock

#[test]
fn second_lock_on_same_state_dir_is_refused_naming_dir_and_pid() {
    let dir = tempfile::tempdir().unwrap();
    let _first = StateLock::acquire(dir.path()).unwrap();
    let err = StateLock::acquire(dir.path()).unwrap_err();
    match &err {
        LockError::Held { state_dir, holder } => {
            assert_eq!(state_dir, dir.path());
            assert_eq!(*holder, Some(std::process::id()));
        }
        other => panic!("expected Held, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&format!("(pid {})", std::process::id())),
        "{message}"
    );
}

#[test]
fn lock_is_free_again_after_drop() {
    let dir = tempfile::tempdir().unwrap();
    let first = StateLock::acquire(dir.path()).unwrap();
    drop(first);
    StateLock::acquire(dir.path()).unwrap();
}

#[test]
fn locks_on_different_state_dirs_are_independent() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let _a = StateLock::acquire(a.path()).unwrap();
    StateLock::acquire(b.path()).unwrap();
}

#[test]
fn missing_state_dir_is_an_io_error_naming_the_lock_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent");
    let err = StateLock::acquire(&missing).unwrap_err();
    assert!(matches!(err, LockError::Io { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&missing.join("bunq-ipsync.lock").display().to_string()),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// signals

#[tokio::test]
async fn sighup_arrives_as_reload() {
    let (_listener, mut events) = SignalListener::start().unwrap();
    signal_hook::low_level::raise(signal_hook::consts::SIGHUP).unwrap();
    let event = tokio::time::timeout(GENEROUS, events.recv()).await.unwrap();
    assert_eq!(event, Some(SignalEvent::Reload));
}

/// Runs in a child process started by `second_sigterm_exits_at_once_with_143`: the first SIGTERM
/// must arrive as `Shutdown`, the second must end the process from the signal thread.
#[test]
#[ignore = "helper: run as a subprocess by second_sigterm_exits_at_once_with_143"]
fn signal_child_process() {
    if !is_helper_child("signal_child_process") {
        return;
    }
    let (_listener, mut events) = SignalListener::start().unwrap();
    signal_hook::low_level::raise(signal_hook::consts::SIGTERM).unwrap();
    assert_eq!(events.blocking_recv(), Some(SignalEvent::Shutdown));
    println!("first SIGTERM forwarded as Shutdown");
    signal_hook::low_level::raise(signal_hook::consts::SIGTERM).unwrap();
    // The signal thread exits the process; reaching the end of this wait means it did not.
    std::thread::sleep(GENEROUS);
    panic!("process still alive after the second SIGTERM");
}

#[test]
fn second_sigterm_exits_at_once_with_143() {
    let output = run_helper_test("signal_child_process", &[], &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("first SIGTERM forwarded as Shutdown"),
        "child stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(143), "{output:?}");
}

// ---------------------------------------------------------------------------------------------
// config watch (Kubernetes ConfigMap layout)

/// A ConfigMap volume as the kubelet lays it out: `..<timestamp>/config.yaml`,
/// `..data -> ..<timestamp>`, `config.yaml -> ..data/config.yaml`.
struct ConfigMapDir {
    dir: tempfile::TempDir,
    generation: u32,
}

impl ConfigMapDir {
    fn new(content: &str) -> ConfigMapDir {
        let dir = tempfile::tempdir().unwrap();
        let mut cm = ConfigMapDir { dir, generation: 0 };
        let data = cm.write_generation(content);
        std::os::unix::fs::symlink(&data, cm.dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/config.yaml", cm.config_path()).unwrap();
        cm
    }

    fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("config.yaml")
    }

    fn write_generation(&mut self, content: &str) -> String {
        self.generation += 1;
        let name = format!("..2026_11_21_09_00_{:02}.{:09}", self.generation, 42);
        let data = self.dir.path().join(&name);
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("config.yaml"), content).unwrap();
        name
    }

    /// The kubelet's atomic update: new timestamped dir, `..data_tmp` symlink renamed over
    /// `..data`, old dir removed.
    fn swap(&mut self, content: &str) {
        let old = std::fs::read_link(self.dir.path().join("..data")).unwrap();
        let new = self.write_generation(content);
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&new, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
        std::fs::remove_dir_all(self.dir.path().join(old)).unwrap();
    }
}

fn start_watch(
    path: std::path::PathBuf,
    baseline: &str,
) -> (mpsc::Receiver<ConfigChanged>, CancellationToken) {
    let (tx, rx) = mpsc::channel(1);
    let shutdown = CancellationToken::new();
    let settings = WatchSettings {
        poll_interval: Duration::from_millis(20),
        debounce: Duration::from_millis(60),
    };
    tokio::spawn(watch::watch_config(
        path,
        Some(watch::Fingerprint::of_bytes(baseline.as_bytes())),
        settings,
        tx,
        shutdown.clone(),
    ));
    (rx, shutdown)
}

/// A ConfigMap directory holding `content`, watched with `content` as the baseline.
fn watched_configmap(
    content: &str,
) -> (
    ConfigMapDir,
    mpsc::Receiver<ConfigChanged>,
    CancellationToken,
) {
    let cm = ConfigMapDir::new(content);
    let (changes, shutdown) = start_watch(cm.config_path(), content);
    (cm, changes, shutdown)
}

/// Fails unless the watcher reports a change within [`GENEROUS`].
async fn expect_change(changes: &mut mpsc::Receiver<ConfigChanged>) {
    let event = tokio::time::timeout(GENEROUS, changes.recv())
        .await
        .unwrap();
    assert_eq!(event, Some(ConfigChanged));
}

#[tokio::test]
async fn configmap_symlink_swap_triggers_change() {
    let (mut cm, mut changes, shutdown) = watched_configmap("sync:\n  interval: 5m\n");
    cm.swap("sync:\n  interval: 10m\n");
    expect_change(&mut changes).await;
    shutdown.cancel();
}

#[tokio::test]
async fn second_configmap_swap_is_seen_too() {
    let (mut cm, mut changes, shutdown) = watched_configmap("a: 1\n");
    cm.swap("a: 2\n");
    expect_change(&mut changes).await;
    cm.swap("a: 3\n");
    expect_change(&mut changes).await;
    shutdown.cancel();
}

#[tokio::test]
async fn config_differing_from_baseline_at_start_triggers_change() {
    let cm = ConfigMapDir::new("a: 2\n");
    let (mut changes, shutdown) = start_watch(cm.config_path(), "a: 1\n");
    expect_change(&mut changes).await;
    shutdown.cancel();
}

#[tokio::test]
async fn plain_file_rewrite_triggers_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, "a: 1\n").unwrap();
    let (mut changes, shutdown) = start_watch(path.clone(), "a: 1\n");
    std::fs::write(&path, "a: 2\n").unwrap();
    expect_change(&mut changes).await;
    shutdown.cancel();
}

// ---------------------------------------------------------------------------------------------
// cron ticker

#[tokio::test]
async fn cron_ticker_sends_ticks() {
    let (ticker, mut ticks) = CronTicker::start("* * * * * *").await.unwrap();
    let tick = tokio::time::timeout(GENEROUS, ticks.recv()).await.unwrap();
    assert_eq!(tick, Some(()));
    ticker.shutdown().await.unwrap();
}

#[tokio::test]
async fn cron_ticker_rejects_invalid_expression() {
    let err = CronTicker::start("every five minutes").await.unwrap_err();
    assert!(err.to_string().contains("invalid cron expression"), "{err}");
}
