//! Harness for the end-to-end tests: a simulated bunq in the test process, the real
//! `bunq-ipsync` binary as a child process, and small helpers to poll its HTTP endpoints, its
//! logs and the simulator until a condition holds.
//!
//! Every child is killed when its [`Daemon`] guard drops, so a failing assertion never leaves a
//! daemon behind. Polls have generous timeouts and no test asserts how long anything took.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bunq_ipsync::bunq::model::{IpStatus, PermittedIp};
use bunq_ipsync::simulator::{
    Fault, FaultKind, LoggedRequest, SeededKey, Simulator, SimulatorOptions,
};
use hyper::Method;

use super::config_text;

/// How long any condition may take before a test gives up (debug builds on a busy machine).
pub const PATIENCE: Duration = Duration::from_secs(90);

/// What the daemon logs once its health listener is bound (`daemon::runtime::serve_health`).
const LISTENER_STARTED: &str = "health and metrics listener started";

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_bunq-ipsync");

/// A port that was free a moment ago (bound to `127.0.0.1:0`, read, released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// A simulated account with one managed credential, a temp dir with the config and state dir,
/// and the port the daemon's health listener gets.
pub struct World {
    /// Holds the config, state dir and sockets; removed on drop.
    pub dir: tempfile::TempDir,
    /// The simulated bunq.
    pub sim: Simulator,
    /// The daemon's API key, user and own credential.
    pub key: SeededKey,
    /// The credential the config manages (not the daemon's own).
    pub managed: u64,
    /// `http.listen` port.
    pub port: u16,
    /// The config file the daemon is started with.
    pub config_path: PathBuf,
    /// `bunq.state_dir`.
    pub state_dir: PathBuf,
}

/// What goes into a generated config: [`ConfigSpec::ips`], then [`ConfigSpec::with`] for each
/// [`Setting`] a test changes (`ConfigSpec::ips(&[A]).with(Setting::RenewBefore("8s"))`), so a
/// test names only what it sets.
#[derive(Clone, Debug)]
pub struct ConfigSpec {
    /// Desired IPs of the managed credential.
    ips: Vec<String>,
    /// `sync.max_changes`.
    max_changes: u32,
    /// `sync.renew_before`, if set.
    renew_before: Option<String>,
    /// `log.format`, if set.
    log_format: Option<String>,
    /// `sync.schedule` (a cron expression) instead of `sync.interval: 10s`.
    schedule: Option<String>,
    /// `bunq.api_key_credential` (the systemd credential name), if set.
    api_key_credential: Option<String>,
    /// `sync.policy` (`sync` otherwise).
    policy: &'static str,
}

/// One setting a test changes from the defaults of [`ConfigSpec::ips`].
#[derive(Clone, Copy, Debug)]
pub enum Setting {
    /// One more `ips` item, as written (tests break a config with an item that is no IP).
    PlusIp(&'static str),
    /// `sync.max_changes` (50 otherwise).
    MaxChanges(u32),
    /// `sync.renew_before`.
    RenewBefore(&'static str),
    /// A `log:` section with this `format` (level `info`).
    LogFormat(&'static str),
    /// `sync.schedule` (a cron expression) instead of `sync.interval: 10s`.
    Schedule(&'static str),
    /// `bunq.api_key_credential` (the systemd credential name).
    ApiKeyCredential(&'static str),
    /// `sync.policy` (`sync` otherwise).
    Policy(&'static str),
}

impl ConfigSpec {
    /// A config that wants exactly `ips` on the managed credential.
    pub fn ips(ips: &[&str]) -> ConfigSpec {
        ConfigSpec {
            ips: ips.iter().map(|ip| (*ip).to_owned()).collect(),
            max_changes: 50,
            renew_before: None,
            log_format: None,
            schedule: None,
            api_key_credential: None,
            policy: "sync",
        }
    }

    /// This config with `setting` changed.
    pub fn with(mut self, setting: Setting) -> ConfigSpec {
        let text = |value: &str| Some(value.to_owned());
        match setting {
            Setting::PlusIp(item) => self.ips.push(item.to_owned()),
            Setting::MaxChanges(max) => self.max_changes = max,
            Setting::RenewBefore(value) => self.renew_before = text(value),
            Setting::LogFormat(format) => self.log_format = text(format),
            Setting::Schedule(cron) => self.schedule = text(cron),
            Setting::ApiKeyCredential(name) => self.api_key_credential = text(name),
            Setting::Policy(policy) => self.policy = policy,
        }
        self
    }
}

impl World {
    /// A simulator with `options`, a user with an API key, a managed credential holding
    /// `seed` entries, and a config (not yet written).
    pub async fn start(options: SimulatorOptions, seed: &[(&str, IpStatus)]) -> World {
        let sim = Simulator::start(options).await.expect("simulator starts");
        let key = sim.create_user_with_api_key();
        let managed = sim
            .add_credential(
                key.user_id,
                Some("managed"),
                Some("203.0.113.200".parse().unwrap()),
            )
            .expect("managed credential");
        for (ip, status) in seed {
            sim.add_entry(managed, ip, status.clone())
                .expect("seed entry");
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("config.yaml");
        let state_dir = dir.path().join("state");
        World {
            sim,
            key,
            managed,
            port: free_port(),
            config_path,
            state_dir,
            dir,
        }
    }

    /// [`World::start`] with the tests' [`sim_options`](super::sim_options), and the config for
    /// `spec` written: the setup of most end-to-end tests.
    pub async fn configured(seed: &[(&str, IpStatus)], spec: &ConfigSpec) -> World {
        let world = World::start(super::sim_options(), seed).await;
        world.write_config(spec);
        world
    }

    /// Every create (`POST .../ip`) of the next `times` is answered `delay` late, so a run is
    /// still applying while a test signals or watches the daemon.
    pub fn delay_creates(&self, delay: Duration, times: usize) {
        self.sim.inject(
            Fault::once(FaultKind::Delay(delay))
                .on(Method::POST, "/ip")
                .times(times),
        );
    }

    /// The config text for `spec`, listening on `port`.
    pub fn config_text(&self, spec: &ConfigSpec, port: u16) -> String {
        let ips = spec
            .ips
            .iter()
            .map(|ip| format!("      - \"{ip}\"\n"))
            .collect::<String>();
        let renew = spec
            .renew_before
            .as_ref()
            .map(|value| format!("  renew_before: {value}\n"))
            .unwrap_or_default();
        let log = spec
            .log_format
            .as_ref()
            .map(|format| format!("log:\n  format: {format}\n  level: info\n"))
            .unwrap_or_default();
        let timing = match &spec.schedule {
            Some(cron) => format!("  schedule: \"{cron}\"\n"),
            None => "  interval: 10s\n".to_owned(),
        };
        let credential = spec
            .api_key_credential
            .as_ref()
            .map(|name| format!("  api_key_credential: {name}\n"))
            .unwrap_or_default();
        format!(
            "{bunq}{credential}\
             sync:\n  policy: {policy}\n{timing}  max_changes: {max}\n{renew}\
             http:\n  listen: 127.0.0.1:{port}\n\
             {log}\
             credentials:\n  - id: {cred}\n    name: managed\n    ips:\n{ips}",
            bunq = config_text::bunq_section(
                &self.sim.base_url(),
                None,
                "e2e-daemon",
                &self.state_dir
            ),
            max = spec.max_changes,
            policy = spec.policy,
            cred = self.managed,
        )
    }

    /// Writes the config for `spec` to [`World::config_path`] (atomically, like an editor).
    pub fn write_config(&self, spec: &ConfigSpec) {
        write_atomically(&self.config_path, &self.config_text(spec, self.port));
    }

    /// [`World::configured`], with the daemon started on it ([`World::spawn`] without extra
    /// environment or arguments).
    pub async fn running(seed: &[(&str, IpStatus)], spec: &ConfigSpec) -> (World, Daemon) {
        let world = World::configured(seed, spec).await;
        let daemon = world.spawn(&[], &[]);
        (world, daemon)
    }

    /// Starts the daemon on [`World::config_path`] with the API key in `BUNQ_API_KEY`.
    pub fn spawn(&self, extra_env: &[(&str, String)], extra_args: &[&str]) -> Daemon {
        self.spawn_with_config(&self.config_path, extra_env, extra_args)
    }

    /// Starts the daemon on `config`.
    pub fn spawn_with_config(
        &self,
        config: &Path,
        extra_env: &[(&str, String)],
        extra_args: &[&str],
    ) -> Daemon {
        let mut env = vec![("BUNQ_API_KEY", self.key.api_key.expose().to_owned())];
        env.extend(extra_env.iter().cloned());
        Daemon::spawn(config, &env, extra_args, self.port)
    }

    /// Starts the daemon with the API key only in the systemd credential `name` (a fresh
    /// `CREDENTIALS_DIRECTORY`, no `BUNQ_API_KEY`); returns it and the credential file.
    pub fn spawn_with_key_credential(&self, name: &str) -> (Daemon, PathBuf) {
        let credentials = self.dir.path().join("credentials");
        std::fs::create_dir(&credentials).unwrap();
        let key_file = credentials.join(name);
        write_atomically(&key_file, &format!("{}\n", self.key.api_key.expose()));
        let env = [("CREDENTIALS_DIRECTORY", credentials.display().to_string())];
        let daemon = Daemon::spawn(&self.config_path, &env, &[], self.port);
        (daemon, key_file)
    }

    /// Runs `bunq-ipsync ARGS --config CONFIG` to its end (a one-shot command beside or after
    /// the daemon) with the API key in `BUNQ_API_KEY`.
    pub async fn command(&self, args: &[&str]) -> std::process::Output {
        let mut command = Command::new(BIN);
        command.args(args).arg("--config").arg(&self.config_path);
        for name in SCRUBBED_ENV {
            command.env_remove(name);
        }
        command
            .env("BUNQ_API_KEY", self.key.api_key.expose())
            .stdin(Stdio::null());
        tokio::task::spawn_blocking(move || command.output().expect("run bunq-ipsync"))
            .await
            .expect("command thread")
    }

    /// The managed credential's entries, by IP (a duplicate IP fails the test).
    pub fn managed_entries(&self) -> BTreeMap<String, PermittedIp> {
        entries_by_ip(&self.sim.entries(self.managed).expect("entries"))
    }

    /// The managed credential's ACTIVE IPs.
    pub fn active_ips(&self) -> Vec<String> {
        super::bank::active_ips(&self.sim, self.managed)
    }

    /// The requests bunq saw that change something.
    pub fn writes(&self) -> Vec<LoggedRequest> {
        write_requests(&self.sim.request_log())
    }
}

/// `log`'s POST and PUT requests.
pub fn write_requests(log: &[LoggedRequest]) -> Vec<LoggedRequest> {
    log.iter()
        .filter(|request| request.method == "POST" || request.method == "PUT")
        .filter(|request| request.path.contains("/ip"))
        .cloned()
        .collect()
}

/// Entries keyed by IP; panics on a duplicate (the daemon must never create one).
pub fn entries_by_ip(entries: &[PermittedIp]) -> BTreeMap<String, PermittedIp> {
    let mut by_ip = BTreeMap::new();
    for entry in entries {
        let previous = by_ip.insert(entry.ip.clone(), entry.clone());
        assert!(
            previous.is_none(),
            "duplicate entries for {}: {entries:?}",
            entry.ip
        );
    }
    by_ip
}

/// Writes `content` to a temp file next to `path` and renames it over `path`.
pub fn write_atomically(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).expect("write config");
    std::fs::rename(&tmp, path).expect("rename config");
}

/// Text captured from a child's stream, line by line.
type Captured = Arc<Mutex<Vec<String>>>;

fn capture(stream: impl Read + Send + 'static) -> Captured {
    let lines: Captured = Arc::default();
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            match line {
                Ok(line) => sink.lock().unwrap().push(line),
                Err(_) => break,
            }
        }
    });
    lines
}

/// The daemon child process; killed on drop if still running.
pub struct Daemon {
    /// Behind a lock so that a poll, which only reads the daemon, can still see it exit.
    child: Mutex<Child>,
    /// Its health listener port.
    pub port: u16,
    stderr: Captured,
    stdout: Captured,
}

/// Environment variables the tests never inherit: they would change what the daemon does.
const SCRUBBED_ENV: &[&str] = &[
    "RUST_LOG",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "BUNQ_API_KEY",
    "BUNQ_IPSYNC_CONFIG",
    "CREDENTIALS_DIRECTORY",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

impl Daemon {
    /// `bunq-ipsync run --config CONFIG [extra_args]` with `env`: global flags (`--log-format`)
    /// and `run`'s own (`--dry-run`) alike.
    pub fn spawn(config: &Path, env: &[(&str, String)], extra_args: &[&str], port: u16) -> Daemon {
        let mut command = Command::new(BIN);
        command
            .arg("run")
            .arg("--config")
            .arg(config)
            .args(extra_args);
        for name in SCRUBBED_ENV {
            command.env_remove(name);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn bunq-ipsync");
        let stderr = capture(child.stderr.take().expect("stderr"));
        let stdout = capture(child.stdout.take().expect("stdout"));
        Daemon {
            child: Mutex::new(child),
            port,
            stderr,
            stdout,
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// Sends `signal` (`HUP`, `TERM`, ...) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// The exit status, if it has exited.
    pub fn exited(&self) -> Option<ExitStatus> {
        // `Child` keeps the status once reaped, so asking again is cheap and stays true.
        self.child.lock().unwrap().try_wait().expect("try_wait")
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                // Let the capture threads drain the pipes.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return status;
            }
            if started.elapsed() > PATIENCE {
                panic!("daemon did not exit\n{}", self.stderr());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Everything it wrote to stderr so far.
    /// SIGTERM, and the graceful exit it must cause (status 0; stderr shown otherwise).
    pub async fn stop_cleanly(&mut self) {
        self.signal("TERM");
        let status = self.wait_exit().await;
        assert_eq!(status.code(), Some(0), "{}", self.stderr());
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// stderr, line by line.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Everything it wrote to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    /// `GET path` on the health listener: status and body, or `None` when nothing answers.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.port, path).await
    }

    /// The `/metrics` text (waits until the listener answers).
    pub async fn metrics(&self) -> String {
        let port = self.port;
        self.eventually("/metrics answers", async || {
            http_get(port, "/metrics")
                .await
                .filter(|(status, _)| *status == 200)
                .map(|(_, body)| body)
        })
        .await
    }

    /// One series' value from `/metrics`.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        metric_value(&self.metrics().await, series)
    }

    /// Polls `check` until it returns `Some`; fails the test (with the daemon's stderr) after
    /// [`PATIENCE`], or at once if the daemon exits meanwhile.
    pub async fn eventually<T>(&self, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
        let started = Instant::now();
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if let Some(status) = self.exited() {
                // The pipes may still hold the last lines: let them drain, then look once more.
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Some(value) = check().await {
                    return value;
                }
                panic!(
                    "the daemon exited ({status}) while waiting for: {what}\n--- daemon stderr ---\n{}",
                    self.stderr()
                );
            }
            if started.elapsed() > PATIENCE {
                panic!(
                    "timed out waiting for: {what}\n--- daemon stderr ---\n{}",
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `/readyz` answers 200.
    ///
    /// The port was only free a moment before the daemon started ([`free_port`]), so first this
    /// daemon's own log must say its listener is bound: until then another test's daemon could
    /// hold the port and answer for it.
    pub async fn wait_ready(&self) {
        self.eventually("its health listener is bound", async || {
            self.stderr().contains(LISTENER_STARTED).then_some(())
        })
        .await;
        let port = self.port;
        self.eventually("/readyz is 200", async || {
            http_get(port, "/readyz")
                .await
                .filter(|(status, _)| *status == 200)
        })
        .await;
    }

    /// Waits until `/readyz` answers 200 and the first run has succeeded: a daemon at rest.
    pub async fn wait_settled(&self) {
        self.wait_ready().await;
        self.wait_runs(1.0).await;
    }

    /// Waits until the `/metrics` `series` (name with labels) reaches `at_least`.
    pub async fn wait_metric(&self, what: &str, series: &str, at_least: f64) {
        let port = self.port;
        self.eventually(what, async || {
            let (_, text) = http_get(port, "/metrics").await?;
            (metric_value(&text, series)? >= at_least).then_some(())
        })
        .await;
    }

    /// Waits until at least `count` runs ended with any result other than `failed`.
    pub async fn wait_runs(&self, count: f64) {
        let port = self.port;
        self.eventually(&format!("{count} successful runs"), async || {
            let (_, text) = http_get(port, "/metrics").await?;
            let done = ["converged", "changes_applied"]
                .iter()
                .filter_map(|result| {
                    metric_value(
                        &text,
                        &format!("bunq_ipsync_runs_total{{result=\"{result}\"}}"),
                    )
                })
                .sum::<f64>();
            (done >= count).then_some(())
        })
        .await;
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let child = self
            .child
            .get_mut()
            .unwrap_or_else(|poison| poison.into_inner());
        if !matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A minimal HTTP/1.1 GET against 127.0.0.1:`port`.
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8(response).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .ok()
        .flatten()
}

/// The value of the exact `series` (name with labels) in a Prometheus text exposition.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        let value = rest.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// A Unix datagram socket standing in for systemd's notify socket.
pub struct NotifySocket {
    /// The socket path for `NOTIFY_SOCKET`.
    pub path: PathBuf,
    messages: Captured,
}

impl NotifySocket {
    /// Binds `dir/notify.sock` and collects every datagram in a thread.
    pub fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        let messages: Captured = Arc::default();
        let sink = Arc::clone(&messages);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
        NotifySocket { path, messages }
    }

    /// Every datagram received so far, in order.
    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }
}
