//! The command-line contract, checked on the built binary: subcommands, exit codes (0 ok, 1
//! error, 2 changes pending, 3 blocked), data on stdout, logs on stderr, and never a secret in
//! either.
//!
//! Each test starts the bunq simulator in its own tokio runtime, writes a config pointing at it
//! and runs `bunq-ipsync --config ...` as a subprocess. The simulator's rate limits are off here:
//! the binary's limiter uses bunq's real windows and starts afresh in every process, so the
//! few calls each command makes never wait; rate limiting is covered by
//! `tests/reconcile_scenarios.rs`. Every command run through [`Env::run`] is checked for the API
//! key, the tokens and the private key in its output.

// Helpers outside #[test] functions panic to fail the test, like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bunq_ipsync::bunq::model::{CredentialId, IpStatus};
use bunq_ipsync::bunq::{ContextStore, PrivateKey};
use bunq_ipsync::daemon::lock::StateLock;
use bunq_ipsync::simulator::{DEFAULT_CALLER_IP, Fault, FaultKind, LoggedRequest};
use chrono::{DateTime, Utc};
use hyper::Method;
use serde_json::Value;

use crate::support::{
    Account, ONE_OF_EACH_ENTRIES, ONE_OF_EACH_WANTED, config_text, server_key, sim_options,
};

mod saved_plans;

const BIN: &str = env!("CARGO_BIN_EXE_bunq-ipsync");
/// A command that runs longer than this is killed and the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
const SUBCOMMANDS: [&str; 12] = [
    "run",
    "plan",
    "apply",
    "validate",
    "export",
    "status",
    "notify-test",
    "demo",
    "sandbox-user",
    "import-sdk-context",
    "completion",
    "man",
];

/// What a finished command left.
#[derive(Debug)]
struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Output {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("stdout is not JSON ({err}):\n{}", self.stdout))
    }
}

/// Runs the binary with a clean environment for everything bunq-ipsync reads.
fn run_binary(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("BUNQ_API_KEY")
        .env_remove("BUNQ_IPSYNC_CONFIG")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).unwrap();
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("bunq-ipsync {args:?} ran longer than {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        code: status.code().expect("exited, not killed by a signal"),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

crate::support::account_harness!(
    /// The shared [`Account`] (simulator, user and key, directory for config, key file and
    /// state) with the CLI's config and runner on top.
    Env
);

impl Env {
    async fn start() -> Env {
        Env(Account::start(sim_options()).await)
    }

    /// The `bunq:` section pointing at the simulator, then `sync:` and `credentials:`.
    fn config_text(&self, policy: &str, max_changes: usize, credentials: &str) -> String {
        self.0
            .config_text("ipsync-cli-test", "", policy, max_changes, credentials)
    }

    /// A config managing `credential` with `ips` under `policy`.
    fn config(
        &self,
        policy: &str,
        max_changes: usize,
        credential: CredentialId,
        ips: &[&str],
    ) -> PathBuf {
        let credentials = config_text::credential_item(credential, "ci", ips);
        self.write(
            "config.yaml",
            &self.config_text(policy, max_changes, &credentials),
        )
    }

    /// A started [`Env`] with a "ci" credential holding `entries` and `config.yaml` syncing `ips`
    /// onto it (`max_changes: 10`): the setup most commands are tested on.
    async fn with_ci(entries: &[(&str, IpStatus)], ips: &[&str]) -> (Env, CredentialId, PathBuf) {
        let env = Env::start().await;
        let ci = env.credential_with(entries);
        let config = env.config("sync", 10, ci, ips);
        (env, ci, config)
    }

    /// [`Env::with_ci`] where the credential already holds exactly the one IP the config wants
    /// (203.0.113.10, ACTIVE): every command finds nothing to do.
    async fn in_sync() -> (Env, CredentialId, PathBuf) {
        Env::with_ci(&[("203.0.113.10", IpStatus::Active)], &["203.0.113.10"]).await
    }

    /// [`Env::with_ci`] with an empty credential and a config wanting 203.0.113.10: one create.
    async fn wanting_one() -> (Env, CredentialId, PathBuf) {
        Env::with_ci(&[], &["203.0.113.10"]).await
    }

    /// [`Env::with_ci`] where the credential holds 192.0.2.1 ACTIVE and the config wants
    /// 203.0.113.10 instead: one create and one deactivation.
    async fn replacing_one() -> (Env, CredentialId, PathBuf) {
        Env::with_ci(&[("192.0.2.1", IpStatus::Active)], &["203.0.113.10"]).await
    }

    /// An empty "ci" credential and a config wanting two IPs on it under `max_changes: 1`: the
    /// max-changes rule blocks every run.
    async fn over_max_changes() -> (Env, CredentialId, PathBuf) {
        let env = Env::start().await;
        let ci = env.credential_with(&[]);
        let config = env.config("sync", 1, ci, &["203.0.113.10", "203.0.113.11"]);
        (env, ci, config)
    }

    /// [`Env::run_exits`] of `command --output json`, its stdout parsed as the one JSON document.
    async fn run_json(&self, config: &Path, command: &str, code: i32) -> Value {
        self.run_exits(config, &[command, "--output", "json"], code)
            .await
            .json()
    }

    /// [`Env::run_exits`], failing with the output unless stdout also contains `text`: the
    /// command's exit code and the line that says why.
    async fn run_saying(&self, config: &Path, args: &[&str], code: i32, text: &str) -> Output {
        let out = self.run_exits(config, args, code).await;
        assert_stdout_has(&out, text);
        out
    }

    /// [`Env::run`], failing with the output unless the command exits with `code`.
    async fn run_exits(&self, config: &Path, args: &[&str], code: i32) -> Output {
        let out = self.run(config, args).await;
        assert_eq!(out.code, code, "{args:?}: {}", show(&out));
        out
    }

    /// Runs `bunq-ipsync --config CONFIG ARGS` and checks that no secret reached its output.
    async fn run(&self, config: &Path, args: &[&str]) -> Output {
        self.run_with_env(config, args, &[]).await
    }

    async fn run_with_env(&self, config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut full: Vec<String> = vec!["--config".into(), config.display().to_string()];
        full.extend(args.iter().map(|arg| (*arg).to_owned()));
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let output = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = full.iter().map(String::as_str).collect();
            let env: Vec<(&str, &str)> =
                env.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            run_binary(&args, &env)
        })
        .await
        .unwrap();
        self.assert_no_secret(&output);
        output
    }

    /// The API key, and whatever secrets the state file holds by now.
    fn secrets(&self) -> Vec<String> {
        let mut secrets = vec![self.key.api_key.expose().to_owned()];
        if !self.state_dir().exists() {
            return secrets;
        }
        let Some(context) = ContextStore::open(&self.state_dir())
            .unwrap()
            .load()
            .unwrap()
        else {
            return secrets;
        };
        // A long line from the middle of the PEM: any print of the key would contain it.
        let pem = context.client_private_key.expose();
        secrets.push(pem.lines().nth(2).unwrap().to_owned());
        if let Some(installation) = &context.installation {
            secrets.push(installation.token.expose().to_owned());
        }
        if let Some(session) = &context.session {
            secrets.push(session.token.expose().to_owned());
        }
        secrets
    }

    fn assert_no_secret(&self, output: &Output) {
        for secret in self.secrets() {
            assert!(secret.len() >= 16, "a secret this short proves nothing");
            assert!(
                !output.stdout.contains(&secret),
                "secret on stdout:\n{}",
                output.stdout
            );
            assert!(
                !output.stderr.contains(&secret),
                "secret on stderr:\n{}",
                output.stderr
            );
        }
    }

    /// Allowlist writes the simulator saw (registration calls are not allowlist writes).
    fn allowlist_writes(&self) -> Vec<LoggedRequest> {
        self.sim
            .request_log()
            .into_iter()
            .filter(|request| request.method != Method::GET && request.path.contains("/ip"))
            .collect()
    }

    /// Runs `args`, which must exit 3 on the `max-changes` rule and write nothing.
    async fn assert_blocked_by_max_changes(&self, config: &Path, args: &[&str]) {
        self.run_saying(config, args, 3, "BLOCKED [max-changes]")
            .await;
        self.assert_no_allowlist_write();
    }

    /// Fails unless the simulator saw no allowlist write.
    fn assert_no_allowlist_write(&self) {
        let writes = self.allowlist_writes();
        assert!(writes.is_empty(), "{writes:?}");
    }

    /// Takes the state-directory lock from the test process, as a running daemon holds it. The
    /// commands under test run as child processes, so their `flock` conflicts with this one.
    fn hold_state_dir(&self) -> StateLock {
        ContextStore::open(&self.state_dir()).unwrap();
        StateLock::acquire(&self.state_dir()).unwrap()
    }

    /// [`Env::hold_state_dir`], noting the state files and the sessions bunq opened so far: what
    /// a command that must change nothing is checked against while the daemon holds the dir.
    fn hold_as_daemon(&self) -> Held {
        Held {
            _lock: self.hold_state_dir(),
            files: self.state_files(),
            sessions: self.sim.sessions_created(),
        }
    }

    /// [`Env::hold_as_daemon`] with bunq's request log cleared, so that
    /// [`Env::assert_no_request`] and the log speak only of what the next command sends.
    fn hold_as_daemon_and_clear_log(&self) -> Held {
        let held = self.hold_as_daemon();
        self.sim.clear_request_log();
        held
    }

    /// Fails unless every state file is byte-identical to when `held` was taken.
    fn assert_files_untouched(&self, held: &Held) {
        assert_eq!(self.state_files(), held.files, "every file byte-identical");
    }

    /// Fails if a registration call reached bunq or a session was opened since `held` was
    /// taken.
    fn assert_registered_nothing(&self, held: &Held) {
        assert_eq!(self.registration_calls(), vec![]);
        assert_eq!(
            self.sim.sessions_created(),
            held.sessions,
            "no session opened"
        );
    }

    /// Fails if bunq saw any request since the log was last cleared.
    fn assert_no_request(&self) {
        assert_eq!(self.sim.request_log(), vec![], "no request to bunq");
    }

    /// Every file in the state directory with its bytes, to prove a command changed none.
    fn state_files(&self) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(self.state_dir())
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let name = entry.file_name().to_string_lossy().into_owned();
                (name, std::fs::read(entry.path()).unwrap())
            })
            .collect()
    }

    /// Rewrites the saved session's expiry, as if it had been opened earlier.
    fn set_saved_session_expiry(&self, expires_at: DateTime<Utc>) {
        let store = ContextStore::open(&self.state_dir()).unwrap();
        let mut context = store.load().unwrap().unwrap();
        context.session.as_mut().unwrap().expires_at = expires_at;
        store.save(&context).unwrap();
    }

    /// The installation, device-server and session-server calls the simulator saw.
    fn registration_calls(&self) -> Vec<LoggedRequest> {
        self.sim
            .request_log()
            .into_iter()
            .filter(|request| {
                ["/installation", "/device-server", "/session-server"]
                    .iter()
                    .any(|path| request.path.contains(path))
            })
            .collect()
    }

    fn active(&self, credential: CredentialId) -> Vec<String> {
        crate::support::bank::active_ips(&self.sim, credential)
    }
}

/// Fails with [`show`] unless stdout contains `text`.
#[track_caller]
fn assert_stdout_has(out: &Output, text: &str) {
    assert!(out.stdout.contains(text), "{}", show(out));
}

/// Fails with [`show`] unless stderr contains `text`.
#[track_caller]
fn assert_stderr_has(out: &Output, text: &str) {
    assert!(out.stderr.contains(text), "{}", show(out));
}

/// Fails with [`show`] if stdout contains `text`.
#[track_caller]
fn assert_stdout_lacks(out: &Output, text: &str) {
    assert!(!out.stdout.contains(text), "{}", show(out));
}

/// Fails with [`show`] unless stdout is empty (nothing but data goes there, and there is none).
#[track_caller]
fn assert_stdout_empty(out: &Output) {
    assert!(out.stdout.is_empty(), "{}", show(out));
}

/// The state directory held as a running daemon holds it ([`Env::hold_as_daemon`]), with its files
/// and bunq's session count as they were then. Dropping it releases the lock.
struct Held {
    _lock: StateLock,
    files: BTreeMap<String, Vec<u8>>,
    sessions: usize,
}

/// Stdout/stderr in a failure message.
fn show(output: &Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}--- stderr\n{}",
        output.code, output.stdout, output.stderr
    )
}

// ---------------------------------------------------------------------------------------------
// validate

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_accepts_a_good_config_and_writes_nothing() {
    let (env, _, config) = Env::with_ci(&[], &["203.0.113.10", "198.51.100.0/30"]).await;
    let out = env.run_saying(&config, &["validate"], 0, "valid").await;
    assert_stdout_has(&out, "5 desired IP(s)"); // CIDR expanded
    assert!(
        !env.state_dir().exists(),
        "validate created the state directory"
    );
    assert!(env.sim.request_log().is_empty(), "validate contacted bunq");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_explains_what_bunq_egress_ips_does_set_or_not() {
    let env = Env::start().await;
    let ci = env.credential_with(&[]);
    let unset = env.config("sync", 10, ci, &["203.0.113.10"]);
    let out = env.run_exits(&unset, &["validate"], 0).await;
    assert_stdout_has(
        &out,
        "bunq.egress_ips: not set, so the daemon's egress is unknown",
    );

    let text = std::fs::read_to_string(&unset).unwrap().replace(
        "  state_dir:",
        "  egress_ips: [192.0.2.7, 198.51.100.0/30]\n  state_dir:",
    );
    let set = env.write("config.yaml", &text);
    env.run_saying(&set, &["validate"], 0, "bunq.egress_ips: 5 address(es)")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_resolve_prints_what_every_source_yields_and_fails_on_a_failed_source() {
    use bunq_ipsync::simulator::{DnsAnswer, DnsServer};
    let env = Env::start().await;
    let ci = env.credential_with(&[]);
    let dns = DnsServer::start().await.unwrap();
    dns.set(
        "home.example.org",
        DnsAnswer::a(&["203.0.113.20".parse().unwrap()], 30),
    );
    let nat = env.write("nat.txt", "# egress\n198.51.100.7\n");
    let items = [
        "203.0.113.10".to_owned(),
        "dns: home.example.org".to_owned(),
        format!("file: {}", nat.display()),
    ];
    let items: Vec<&str> = items.iter().map(String::as_str).collect();
    let text = std::fs::read_to_string(env.config("sync", 10, ci, &items)).unwrap()
        + &format!("sources:\n  dns:\n    nameservers: [{}]\n", dns.address());
    let config = env.write("config.yaml", &text);

    env.run_saying(&config, &["validate"], 0, "2 source(s)")
        .await;
    assert_eq!(
        dns.queries("home.example.org"),
        0,
        "validate alone resolves nothing"
    );

    let out = env
        .run_saying(
            &config,
            &["validate", "--resolve"],
            0,
            "dns:home.example.org: 203.0.113.20 (ttl 30s)",
        )
        .await;
    assert_stdout_has(&out, &format!("file:{}: 198.51.100.7", nat.display()));

    dns.set("home.example.org", DnsAnswer::NxDomain);
    let out = env
        .run_saying(
            &config,
            &["validate", "--resolve"],
            1,
            "dns:home.example.org: FAILED: NXDOMAIN",
        )
        .await;
    assert_stderr_has(&out, "1 of 2 source(s) failed");
    assert!(env.sim.request_log().is_empty(), "validate contacted bunq");
}

/// The stderr line `error: FILE:LINE:COL: FIELD: MESSAGE` for a config issue.
fn config_issue_line<'a>(out: &'a Output, file: &Path, field: &str) -> &'a str {
    let prefix = format!("{}:", file.display());
    out.stderr
        .lines()
        .map(|line| line.strip_prefix("error: ").unwrap_or(line))
        .find(|line| line.starts_with(&prefix) && line.contains(&format!(": {field}: ")))
        .unwrap_or_else(|| panic!("no {field} issue: {}", show(out)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_rejects_ipv6_with_file_line_column_and_field() {
    let (env, _, config) = Env::with_ci(&[], &["203.0.113.10", "2001:db8::1"]).await;
    let out = env.run_exits(&config, &["validate"], 1).await;
    assert_stdout_empty(&out);
    let line = config_issue_line(&out, &config, "credentials[0].ips[1]");
    // bunq: 6 lines, sync: 3, credentials: 1, then id, name, ips:, first IP; the IPv6 value is
    // on line 15 after `      - `.
    let expected = format!("{}:15:9: credentials[0].ips[1]: ", config.display());
    assert!(line.starts_with(&expected), "{line}");
    assert!(
        line.contains("IPv6") && line.contains("IPv4 only"),
        "{line}"
    );
    assert!(!env.state_dir().exists());

    // Every command refuses the invalid config before touching bunq or the state directory.
    for command in ["plan", "apply", "export", "status", "run"] {
        let out = env.run(&config, &[command]).await;
        assert_eq!(out.code, 1, "{command}: {}", show(&out));
        assert!(out.stderr.contains("IPv6"), "{command}: {}", show(&out));
    }
    assert!(!env.state_dir().exists());
    assert!(
        env.sim.request_log().is_empty(),
        "{:?}",
        env.sim.request_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_rejects_a_missing_policy_and_an_unknown_key() {
    let env = Env::start().await;
    let ci = env.credential_with(&[]);
    let text = env
        .config_text(
            "sync",
            10,
            &format!("  - id: {ci}\n    ips: [203.0.113.10]\n"),
        )
        .replace("  policy: sync\n", "");
    let config = env.write("config.yaml", &text);
    let out = env.run_exits(&config, &["validate"], 1).await;
    let line = config_issue_line(&out, &config, "sync.policy");
    assert!(line.contains("required"), "{line}");
    assert!(!env.state_dir().exists());

    let typo = env.write(
        "typo.yaml",
        &env.config_text(
            "sync",
            10,
            &format!("  - id: {ci}\n    ipz: [203.0.113.10]\n"),
        ),
    );
    let out = env.run_exits(&typo, &["validate"], 1).await;
    let prefix = format!("{}:", typo.display());
    let line = out
        .stderr
        .lines()
        .find(|line| line.contains(&prefix) && line.contains("ipz"))
        .unwrap_or_else(|| panic!("unknown key not named: {}", show(&out)));
    // bunq: 6 lines, sync: 3, credentials: 1, id: 1, then the typo on line 12.
    assert!(line.contains(&format!("{}:12:", typo.display())), "{line}");
    assert!(!env.state_dir().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_fails_when_the_api_key_file_is_unreadable() {
    let (env, _, config) = Env::wanting_one().await;
    std::fs::remove_file(env.key_file()).unwrap();
    let out = env.run_exits(&config, &["validate"], 1).await;
    assert_stderr_has(&out, "api_key_file");
    assert_stderr_has(&out, &env.key_file().display().to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_config_file_exits_1_naming_it() {
    let env = Env::start().await;
    let missing = env.dir.path().join("nope.yaml");
    let out = env.run_exits(&missing, &["plan"], 1).await;
    assert_stderr_has(&out, "nope.yaml");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_up_error_with_json_logs_is_one_json_object_on_stderr() {
    let env = Env::start().await;
    let missing = env.dir.path().join("nope.yaml");
    let out = env
        .run_exits(&missing, &["--log-format", "json", "plan"], 1)
        .await;
    let line: serde_json::Value = serde_json::from_str(out.stderr.trim()).expect("one JSON object");
    assert_eq!(line["level"], "ERROR");
    assert!(
        line["message"].as_str().unwrap().contains("nope.yaml"),
        "{line}"
    );
}

// ---------------------------------------------------------------------------------------------
// plan

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_exits_2_with_a_table_on_stdout_and_writes_nothing() {
    let (env, ci, config) = Env::with_ci(&ONE_OF_EACH_ENTRIES, &ONE_OF_EACH_WANTED).await;
    let out = env
        .run_saying(&config, &["plan"], 2, "CURRENT → WANTED")
        .await;
    assert!(
        !out.stderr.contains("own credential is unknown"),
        "the daemon found its own credential: {}",
        show(&out)
    );
    for row in ["203.0.113.11", "203.0.113.12", "192.0.2.1"] {
        assert!(out.stdout.contains(row), "{row} missing: {}", show(&out));
    }
    assert_stdout_has(
        &out,
        "Plan: 1 to create, 1 to activate, 1 to deactivate, 0 blocked",
    );
    env.assert_no_allowlist_write();
    assert_eq!(env.active(ci), vec!["192.0.2.1".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_exits_0_when_converged() {
    let (env, _, config) = Env::in_sync().await;
    env.run_saying(&config, &["plan"], 0, "in sync").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_exits_3_when_max_changes_blocks_the_run_and_still_prints_the_plan() {
    let (env, _, config) = Env::over_max_changes().await;
    let out = env
        .run_saying(&config, &["plan"], 3, "BLOCKED [max-changes]")
        .await;
    assert!(
        out.stdout.contains("203.0.113.10") && out.stdout.contains("203.0.113.11"),
        "full plan: {}",
        show(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_exits_3_naming_the_fix_when_the_own_credential_is_not_found() {
    let (env, ci, config) = Env::replacing_one().await;
    let first = env.run(&config, &["plan"]).await;
    assert_eq!(
        first.code,
        2,
        "registers and finds its credential: {}",
        show(&first)
    );
    // Renamed in the app: no credential shows the daemon's description any more.
    env.sim
        .set_permitted_device(env.key.credential_id, Some("renamed"), None)
        .unwrap();

    let out = env
        .run_exits(&config, &["plan", "--output", "json"], 3)
        .await;
    let doc = out.json();
    assert_eq!(doc["outcome"], "blocked");
    assert_eq!(
        doc["summary"]["blocking_rules"],
        serde_json::json!(["own-ip"])
    );
    let credential = &doc["credentials"][0];
    assert_eq!(credential["actions"][0]["action"], "create", "{doc}");
    let blocked = &credential["blocked"][0];
    assert_eq!(blocked["ip"], "192.0.2.1", "{doc}");
    assert_eq!(blocked["rule"], "own-ip");
    assert_eq!(blocked["block_reason"], "own-credential-unknown");
    let fix = blocked["block_reason_text"].as_str().unwrap();
    assert!(fix.contains("set bunq.device_description"), "{fix}");
    assert_stderr_has(&out, "own credential is unknown");

    env.run_saying(
        &config,
        &["plan"],
        3,
        "BLOCKED [own-ip] deactivate 192.0.2.1",
    )
    .await;
    assert_eq!(env.active(ci), vec!["192.0.2.1".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_json_is_one_document_with_the_documented_fields() {
    let (env, ci, config) = Env::replacing_one().await;
    let doc = env.run_json(&config, "plan", 2).await;
    assert_eq!(doc["format_version"], 1);
    assert_eq!(doc["outcome"], "changes_pending");
    assert_eq!(doc["exit_code"], 2);
    assert_eq!(doc["max_changes"], 10);
    assert!(doc["run_blocked"].is_null());
    let summary = &doc["summary"];
    for (field, value) in [
        ("create", 1),
        ("activate", 0),
        ("deactivate", 1),
        ("blocked", 0),
    ] {
        assert_eq!(summary[field], value, "summary.{field}: {doc}");
    }
    for field in ["kept", "in_sync", "drift", "blocking_rules"] {
        assert!(!summary[field].is_null(), "summary.{field} missing: {doc}");
    }
    let credential = &doc["credentials"][0];
    assert_eq!(credential["id"], ci);
    assert_eq!(credential["name"], "ci");
    assert_eq!(credential["policy"], "sync");
    let actions = credential["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 2);
    assert_eq!(actions[0]["action"], "create");
    assert_eq!(actions[0]["ip"], "203.0.113.10");
    assert!(actions[0]["entry"].is_null());
    assert!(actions[0]["current"].is_null());
    assert_eq!(actions[0]["wanted"], "ACTIVE");
    assert_eq!(actions[0]["reason"], "desired-missing");
    assert_eq!(actions[1]["action"], "deactivate");
    assert_eq!(actions[1]["current"], "ACTIVE");
    assert_eq!(actions[1]["wanted"], "INACTIVE");
    assert_eq!(actions[1]["reason"], "not-desired");
    for field in ["blocked", "kept", "in_sync", "drift"] {
        assert!(credential[field].is_array(), "{field}: {doc}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_reports_an_unknown_credential_as_an_error() {
    let env = Env::start().await;
    let config = env.config("sync", 10, 999_999, &["203.0.113.10"]);
    let out = env.run_exits(&config, &["plan"], 1).await;
    assert_stderr_has(&out, "999999");
    assert_stdout_empty(&out);
}

// ---------------------------------------------------------------------------------------------
// apply

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_converges_and_exits_0_then_plan_exits_0() {
    let (env, ci, config) = Env::with_ci(&ONE_OF_EACH_ENTRIES, &ONE_OF_EACH_WANTED).await;
    env.run_saying(&config, &["apply"], 0, "Apply: 3 applied, 0 failed")
        .await;
    assert_eq!(env.active(ci), vec!["203.0.113.11", "203.0.113.12"]);

    env.sim.clear_request_log();
    env.run_exits(&config, &["apply"], 0).await;
    env.assert_no_allowlist_write();
    env.run_exits(&config, &["plan"], 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_exits_3_when_blocked_and_writes_nothing() {
    let (env, ci, config) = Env::over_max_changes().await;
    env.assert_blocked_by_max_changes(&config, &["apply"]).await;
    assert!(env.active(ci).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_exit_code_prefers_error_over_blocked() {
    let env = Env::start().await;
    let own = env.key.credential_id;
    // On the daemon's own credential: the own IP would be deactivated (blocked by own-ip) and
    // the create is refused by bunq (an error).
    let config = env.config("sync", 10, own, &["203.0.113.10"]);
    let first = env.run(&config, &["plan"]).await;
    assert_eq!(first.code, 3, "own-ip blocks: {}", show(&first));
    env.sim
        .inject(Fault::once(FaultKind::Status(400)).on(Method::POST, "/ip"));
    env.run_exits(&config, &["apply"], 1).await;
    assert_eq!(env.active(own), vec![DEFAULT_CALLER_IP.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_json_is_one_document_with_plan_and_results() {
    let (env, ci, config) = Env::wanting_one().await;
    let doc = env.run_json(&config, "apply", 0).await;
    assert_eq!(doc["exit_code"], 0, "the apply's own exit code: {doc}");
    assert_eq!(doc["plan"]["exit_code"], 2, "what plan said before: {doc}");
    assert_eq!(doc["plan"]["format_version"], 1);
    let results = doc["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["credential"], ci);
    assert_eq!(results[0]["action"], "create");
    assert_eq!(results[0]["ip"], "203.0.113.10");
    assert_eq!(results[0]["outcome"], "applied");
    assert!(results[0]["entry"].is_u64());
    assert!(doc["security_failure"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_can_come_from_bunq_api_key() {
    let (env, _, config) = Env::in_sync().await;
    std::fs::remove_file(env.key_file()).unwrap();
    let key = env.key.api_key.expose().to_owned();
    let out = env
        .run_with_env(&config, &["plan"], &[("BUNQ_API_KEY", &key)])
        .await;
    assert_eq!(out.code, 0, "{}", show(&out));
}

// ---------------------------------------------------------------------------------------------
// export, status

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_prints_a_config_that_validates_and_plans_nothing() {
    let env = Env::start().await;
    let ci = env.credential_with(&[
        ("203.0.113.10", IpStatus::Active),
        ("203.0.113.11", IpStatus::Inactive),
    ]);
    let unused = env.credential_with(&[("198.51.100.30", IpStatus::Inactive)]);
    let config = env.config("sync", 10, ci, &["203.0.113.10"]);
    let out = env
        .run_saying(&config, &["export"], 0, "policy: additive")
        .await;
    assert_stdout_has(&out, "- 203.0.113.10");
    assert_stdout_has(&out, &format!("id: {ci}"));
    assert_stdout_has(&out, &format!("id: {unused}"));
    assert_stdout_has(&out, "allow_empty: true");
    let own = format!("id: {}", env.key.credential_id);
    assert_stdout_has(&out, &own);

    let exported = env.write("exported.yaml", &out.stdout);
    env.run_exits(&exported, &["validate"], 0).await;
    env.sim.clear_request_log();
    let plan = env.run(&exported, &["plan"]).await;
    assert_eq!(
        plan.code,
        0,
        "the exported state is the current state: {}",
        show(&plan)
    );

    // Switched to sync deliberately, it still describes exactly what bunq holds.
    let sync = env.write(
        "sync.yaml",
        &out.stdout.replace("policy: additive", "policy: sync"),
    );
    env.run_exits(&sync, &["plan"], 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_context_without_secrets() {
    let (env, _, config) = Env::wanting_one().await;
    env.run_saying(&config, &["status"], 0, "none yet").await;
    assert!(
        !env.state_dir().exists(),
        "status created the state directory"
    );

    env.run_exits(&config, &["plan"], 2).await;
    let out = env
        .run_saying(&config, &["status"], 0, "matches the configured API key")
        .await;
    assert_stdout_has(&out, "ipsync-cli-test"); // device
    assert_stdout_has(&out, &format!("user id:         {}", env.key.user_id));
    assert_stdout_has(&out, "valid for");
    // Env::run checked the tokens and key from the state file; make sure there were some.
    assert_eq!(
        env.secrets().len(),
        4,
        "API key, private key, installation and session token"
    );
}

// ---------------------------------------------------------------------------------------------
// Flags, help, streams

#[test]
fn help_on_every_subcommand_exits_0() {
    let top = run_binary(&["--help"], &[]);
    assert_eq!(top.code, 0, "{}", show(&top));
    for subcommand in SUBCOMMANDS {
        assert!(
            top.stdout.contains(subcommand),
            "{subcommand} not listed: {}",
            show(&top)
        );
        let out = run_binary(&[subcommand, "--help"], &[]);
        assert_eq!(out.code, 0, "{subcommand} --help: {}", show(&out));
        assert!(
            out.stdout.contains("Usage:"),
            "{subcommand}: {}",
            show(&out)
        );
        let out = run_binary(&["help", subcommand], &[]);
        assert_eq!(out.code, 0, "help {subcommand}: {}", show(&out));
    }
    let version = run_binary(&["--version"], &[]);
    assert_eq!(version.code, 0, "{}", show(&version));
}

#[test]
fn usage_errors_exit_1_not_2() {
    for args in [
        &["plan", "--bogus"][..],
        &["--bogus", "validate"],
        &["frobnicate"],
        &["plan", "--output", "yaml"],
        &[],
    ] {
        let out = run_binary(args, &[]);
        assert_eq!(out.code, 1, "{args:?}: {}", show(&out));
        assert!(out.stdout.is_empty(), "{args:?}: {}", show(&out));
        assert!(!out.stderr.is_empty(), "{args:?}: {}", show(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_go_to_stderr_and_data_to_stdout() {
    let (env, _, config) = Env::wanting_one().await;
    let out = env
        .run(
            &config,
            &["--log-format", "json", "plan", "--output", "json"],
        )
        .await;
    assert_eq!(out.code, 2, "{}", show(&out));
    out.json();
    let logs: Vec<Value> = out
        .stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not a log line: {line}")))
        .collect();
    assert!(
        !logs.is_empty(),
        "the first run logs its registration: {}",
        show(&out)
    );
    assert!(
        logs.iter().all(|log| log["level"].is_string()),
        "{}",
        show(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_path_comes_from_the_flag_else_bunq_ipsync_config() {
    let env = Env::start().await;
    let ci = env.credential_with(&[]);
    let good = env.config("sync", 10, ci, &["203.0.113.10"]);
    let missing = env.dir.path().join("missing.yaml");
    let good_text = good.display().to_string();
    let missing_text = missing.display().to_string();

    let from_env = run_binary(&["validate"], &[("BUNQ_IPSYNC_CONFIG", &good_text)]);
    assert_eq!(from_env.code, 0, "{}", show(&from_env));
    assert_stdout_has(&from_env, &good_text);

    let flag_wins = run_binary(
        &["validate", "--config", &good_text],
        &[("BUNQ_IPSYNC_CONFIG", &missing_text)],
    );
    assert_eq!(flag_wins.code, 0, "{}", show(&flag_wins));

    env.assert_no_secret(&from_env);
    env.assert_no_secret(&flag_wins);
    let env_missing = run_binary(&["validate"], &[("BUNQ_IPSYNC_CONFIG", &missing_text)]);
    assert_eq!(env_missing.code, 1, "{}", show(&env_missing));
    assert_stderr_has(&env_missing, "missing.yaml");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_rejects_empty_ips_unless_allow_empty() {
    let env = Env::start().await;
    let ci = env.credential_with(&[]);
    let empty = env.write(
        "empty.yaml",
        &env.config_text("sync", 10, &format!("  - id: {ci}\n    ips: []\n")),
    );
    let out = env.run_exits(&empty, &["validate"], 1).await;
    let line = config_issue_line(&out, &empty, "credentials[0].ips");
    assert!(line.contains("allow_empty: true"), "{line}");

    let allowed = env.write(
        "allowed.yaml",
        &env.config_text(
            "sync",
            10,
            &format!("  - id: {ci}\n    ips: []\n    allow_empty: true\n"),
        ),
    );
    env.run_exits(&allowed, &["validate"], 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_user_prints_only_the_new_key_on_stdout() {
    let env = Env::start().await;
    let url = env.sim.base_url();
    let out =
        tokio::task::spawn_blocking(move || run_binary(&["sandbox-user", "--base-url", &url], &[]))
            .await
            .unwrap();
    assert_eq!(out.code, 0, "{}", show(&out));
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "only the key: {}", show(&out));
    assert!(lines[0].starts_with("sandbox_"), "{}", show(&out));
    assert_stderr_has(&out, "api_key_file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_prints_what_it_did_even_when_the_run_record_cannot_be_saved() {
    let (env, ci, config) = Env::wanting_one().await;
    // A directory where the record file belongs: the save fails after bunq was written.
    std::fs::create_dir_all(env.state_dir().join("last-run.json")).unwrap();
    let out = env.run_exits(&config, &["apply"], 1).await;
    assert_stderr_has(&out, "last-run.json");
    assert_eq!(env.active(ci), vec!["203.0.113.10"]);
    assert!(
        out.stdout.contains("Apply: 1 applied"),
        "the operator must see what was written: {}",
        show(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_reuse_the_saved_session_and_reopen_one_bunq_ended() {
    let (env, _, config) = Env::in_sync().await;
    env.run_exits(&config, &["plan"], 0).await;
    assert_eq!(env.sim.sessions_created(), 1);

    env.sim.clear_request_log();
    env.run_exits(&config, &["plan"], 0).await;
    assert_eq!(
        env.sim.sessions_created(),
        1,
        "the saved session was reused"
    );
    assert!(
        env.sim
            .request_log()
            .iter()
            .all(|r| r.method == Method::GET),
        "no registration call: {:?}",
        env.sim.request_log()
    );

    env.sim.expire_all_sessions();
    env.run_exits(&config, &["plan"], 0).await;
    assert_eq!(env.sim.sessions_created(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_reports_drift_since_the_last_apply_and_apply_repairs_it() {
    let (env, ci, config) = Env::wanting_one().await;
    env.run_exits(&config, &["apply"], 0).await;
    let entry = env.sim.entries(ci).unwrap()[0].id;
    env.sim
        .set_entry_status(ci, entry, IpStatus::Inactive)
        .unwrap();

    let plan = env.run_exits(&config, &["plan"], 2).await;
    assert_stdout_has(
        &plan,
        "DRIFT 203.0.113.10: ACTIVE → INACTIVE since the last run",
    );
    assert!(
        plan.stderr.contains("drift"),
        "drift is logged: {}",
        show(&plan)
    );
    let json = env.run(&config, &["plan", "--output", "json"]).await.json();
    assert_eq!(json["summary"]["drift"], 1);
    assert_eq!(json["credentials"][0]["drift"][0]["before"], "ACTIVE");
    assert_eq!(json["credentials"][0]["drift"][0]["now"], "INACTIVE");

    env.run_exits(&config, &["apply"], 0).await;
    assert_eq!(env.active(ci), vec!["203.0.113.10"]);
    let after = env.run_exits(&config, &["plan"], 0).await;
    assert_stdout_lacks(&after, "DRIFT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_credential_limits_the_output_and_an_unknown_id_exits_1() {
    let env = Env::start().await;
    let ci = env.credential_with(&[("203.0.113.10", IpStatus::Active)]);
    let other = env.credential_with(&[("198.51.100.30", IpStatus::Active)]);
    let config = env.config("sync", 10, ci, &["203.0.113.10"]);
    let ci_text = ci.to_string();
    let out = env
        .run_exits(&config, &["export", "--credential", &ci_text], 0)
        .await;
    assert_stdout_has(&out, &format!("id: {ci}"));
    assert_stdout_lacks(&out, &format!("id: {other}"));
    assert_stdout_lacks(&out, "198.51.100.30");

    let out = env
        .run_exits(&config, &["export", "--credential", "999999"], 1)
        .await;
    assert_stdout_empty(&out);
    assert_stderr_has(&out, "999999");
}

/// A `bunq.conf` as the official SDK saves it, for `key`, without a session.
fn sdk_conf(api_key: &str) -> String {
    let client = PrivateKey::generate().unwrap();
    serde_json::json!({
        "api_key": api_key,
        "environment_type": "SANDBOX",
        "installation_context": {
            "private_key_client": client.to_pkcs8_pem().unwrap().as_str(),
            "public_key_server": server_key().public_key().to_pem(),
            "token": "sdk-installation-token-0123456789abcdef",
        },
    })
    .to_string()
}

impl Env {
    /// `bunq.conf` as the official SDK saves it for this API key (its path, as text), and
    /// `sandbox.yaml`: `config` without its `base_url`, so it points at the public sandbox the
    /// file was saved for.
    fn sdk_files(&self, config: &Path) -> (String, PathBuf) {
        let conf = self.write("bunq.conf", &sdk_conf(self.key.api_key.expose()));
        let text = std::fs::read_to_string(config).unwrap();
        let base_url = format!("  base_url: {}\n", self.sim.base_url());
        assert!(text.contains(&base_url));
        let sandbox = self.write("sandbox.yaml", &text.replace(&base_url, ""));
        (conf.display().to_string(), sandbox)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_sdk_context_adopts_a_matching_file_once_and_never_prints_its_secrets() {
    let (env, _, simulator) = Env::wanting_one().await;
    let (conf_text, sandbox) = env.sdk_files(&simulator);

    // Saved for the public sandbox: a config pointing elsewhere refuses it.
    let out = env
        .run_exits(&simulator, &["import-sdk-context", &conf_text], 1)
        .await;
    assert_stderr_has(&out, "was saved for");
    assert!(!env.state_dir().exists(), "nothing written on refusal");

    env.run_exits(&sandbox, &["import-sdk-context", &conf_text], 0)
        .await;
    assert!(env.state_dir().join("bunq-context.json").exists());
    // Env::run checked the imported private key and token against every output from here on.
    assert_eq!(
        env.secrets().len(),
        3,
        "API key, private key, installation token"
    );
    env.run_saying(&sandbox, &["status"], 0, "installation:    registered")
        .await;

    let again = env.run(&sandbox, &["import-sdk-context", &conf_text]).await;
    assert_eq!(
        again.code,
        1,
        "an existing context is not replaced: {}",
        show(&again)
    );
    assert_stderr_has(&again, "--force");
    env.run_exits(&sandbox, &["import-sdk-context", "--force", &conf_text], 0)
        .await;

    let other_key = env.write(
        "other.conf",
        &sdk_conf("sandbox_another_key_0123456789abcdef"),
    );
    let other_text = other_key.display().to_string();
    let out = env
        .run(&sandbox, &["import-sdk-context", "--force", &other_text])
        .await;
    assert_eq!(
        out.code,
        1,
        "another API key's file is refused: {}",
        show(&out)
    );
    assert!(
        !out.stderr.contains("sandbox_another_key"),
        "{}",
        show(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// One writer per state directory

/// The message a read-only command gives when the daemon's saved session does not work.
const DAEMON_HOLDS: &str = "the daemon holds state directory";

/// How a command names the holder of the state-directory lock this test process took.
fn holder() -> String {
    format!("pid {}", std::process::id())
}

impl Env {
    /// [`Env::run_exits`] with exit 1 and [`DAEMON_HOLDS`] on stderr: a reader that cannot use
    /// the daemon's saved session while the daemon holds the state directory.
    async fn run_refused_while_held(&self, config: &Path, args: &[&str]) -> Output {
        let out = self.run_exits(config, args, 1).await;
        assert_stderr_has(&out, DAEMON_HOLDS);
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_refuses_when_the_daemon_holds_the_state_dir() {
    let (env, ci, config) = Env::replacing_one().await;
    env.run_exits(&config, &["plan"], 2).await;

    let held = env.hold_as_daemon_and_clear_log();
    let out = env.run_exits(&config, &["apply"], 1).await;
    let state_dir = env.state_dir().display().to_string();
    assert_stderr_has(&out, &state_dir);
    assert_stderr_has(&out, &holder());
    assert_stdout_empty(&out);
    env.assert_no_request();
    assert_eq!(env.active(ci), vec!["192.0.2.1"]);
    env.assert_files_untouched(&held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_and_export_while_the_state_dir_is_held_use_the_saved_session_as_is_and_change_no_file()
 {
    let (env, ci, config) = Env::wanting_one().await;
    env.run_exits(&config, &["apply"], 0).await;
    assert!(env.state_dir().join("last-run.json").exists());
    // Drift since the last run: a writer would report it and save a new record; a reader must
    // report it and save nothing.
    let entry = env.sim.entries(ci).unwrap()[0].id;
    env.sim
        .set_entry_status(ci, entry, IpStatus::Inactive)
        .unwrap();
    // Due for renewal (less than renew_before left) but still valid: a writer would renew it.
    env.set_saved_session_expiry(Utc::now() + chrono::Duration::minutes(5));

    let held = env.hold_as_daemon_and_clear_log();
    let plan = env.run_exits(&config, &["plan"], 2).await;
    assert_stdout_has(
        &plan,
        "DRIFT 203.0.113.10: ACTIVE → INACTIVE since the last run",
    );
    env.run_saying(&config, &["export"], 0, &format!("id: {ci}"))
        .await;

    let log = env.sim.request_log();
    assert!(!log.is_empty(), "the reads went to bunq");
    assert!(
        log.iter().all(|request| request.method == Method::GET),
        "reads only: {log:?}"
    );
    env.assert_registered_nothing(&held);
    env.assert_files_untouched(&held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_and_export_while_the_state_dir_is_held_exit_1_naming_the_daemon_when_bunq_rejects_the_saved_session()
 {
    let (env, _, config) = Env::in_sync().await;
    env.run_exits(&config, &["plan"], 0).await;
    env.sim.expire_all_sessions();

    let held = env.hold_as_daemon_and_clear_log();
    let state_dir = env.state_dir().display().to_string();
    for command in ["plan", "export"] {
        let out = env.run_refused_while_held(&config, &[command]).await;
        assert!(out.stderr.contains(&state_dir), "{command}: {}", show(&out));
        assert!(out.stdout.is_empty(), "{command}: {}", show(&out));
    }
    env.assert_registered_nothing(&held);
    env.assert_files_untouched(&held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_while_the_state_dir_is_held_exits_1_without_a_request_when_no_usable_session_is_saved()
 {
    let (env, _, config) = Env::in_sync().await;

    // Nothing saved yet: a reader must not register.
    let held = env.hold_as_daemon();
    env.run_refused_while_held(&config, &["plan"]).await;
    env.assert_no_request();
    env.assert_files_untouched(&held);
    drop(held);

    // A saved session that has expired: a reader must not renew it.
    env.run_exits(&config, &["plan"], 0).await;
    env.set_saved_session_expiry(Utc::now() - chrono::Duration::minutes(1));
    let held = env.hold_as_daemon_and_clear_log();
    let out = env.run_refused_while_held(&config, &["plan"]).await;
    assert_stderr_has(&out, "expired");
    env.assert_no_request();
    env.assert_files_untouched(&held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_while_the_state_dir_is_held_names_the_holder_and_exits_1_when_the_saved_session_expired()
 {
    let (env, _, config) = Env::wanting_one().await;
    env.run_exits(&config, &["plan"], 2).await;

    let held = env.hold_as_daemon_and_clear_log();
    let out = env.run_saying(&config, &["status"], 0, &holder()).await;
    assert_stdout_has(&out, "valid for");
    env.assert_files_untouched(&held);
    drop(held);

    env.set_saved_session_expiry(Utc::now() - chrono::Duration::minutes(1));
    let held = env.hold_as_daemon();
    let out = env.run_refused_while_held(&config, &["status"]).await;
    assert_stdout_has(&out, "expired");
    env.assert_files_untouched(&held);
    env.assert_no_request();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_export_and_status_take_the_state_dir_lock_when_it_is_free() {
    let (env, _, config) = Env::in_sync().await;
    let lock_file = env.state_dir().join("bunq-ipsync.lock");
    for command in ["plan", "export", "status"] {
        if lock_file.exists() {
            std::fs::remove_file(&lock_file).unwrap();
        }
        let out = env.run(&config, &[command]).await;
        assert_eq!(out.code, 0, "{command}: {}", show(&out));
        assert!(lock_file.exists(), "{command} took no lock");
        // Released on exit: the daemon can start right after.
        drop(env.hold_state_dir());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_sdk_context_refuses_when_the_daemon_holds_the_state_dir() {
    let (env, _, simulator) = Env::wanting_one().await;
    let (conf_text, sandbox) = env.sdk_files(&simulator);

    let held = env.hold_as_daemon();
    let out = env
        .run_exits(&sandbox, &["import-sdk-context", "--force", &conf_text], 1)
        .await;
    assert_stderr_has(&out, &holder());
    env.assert_files_untouched(&held);
}

// ---------------------------------------------------------------------------------------------
// change control: policy observe, one-run overrides

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_on_an_observe_credential_writes_nothing_and_exits_2_then_0_when_nothing_is_pending()
{
    let env = Env::start().await;
    let ci = env.credential_with(&[("192.0.2.1", IpStatus::Active)]);
    let config = env.config("observe", 10, ci, &["203.0.113.10"]);
    env.run_saying(&config, &["plan"], 2, "none → ACTIVE (observe)")
        .await;
    let out = env
        .run_saying(&config, &["apply"], 2, "2 observe only (not written)")
        .await;
    assert_stdout_has(
        &out,
        &format!("observe  credential {ci} create 203.0.113.10"),
    );
    assert_stdout_has(
        &out,
        "Apply: 0 applied, 0 failed, 0 skipped, 0 blocked, 2 observe",
    );
    let doc = env.run_json(&config, "apply", 2).await;
    let outcomes: Vec<&Value> = doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| &result["outcome"])
        .collect();
    assert_eq!(outcomes, ["observe", "observe"], "{doc}");
    assert_eq!(doc["plan"]["credentials"][0]["policy"], "observe");
    assert_eq!(doc["plan"]["credentials"][0]["actions"][0]["observe"], true);
    env.assert_no_allowlist_write();
    assert_eq!(env.active(ci), vec!["192.0.2.1"]);

    let watching = env.config("observe", 10, ci, &["192.0.2.1"]);
    env.run_exits(&watching, &["apply"], 0).await;
    env.assert_no_allowlist_write();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_max_changes_overrides_the_limit_for_one_run_only() {
    let (env, ci, config) = Env::over_max_changes().await;
    // The config's limit is 1 and the run needs 2: still blocked at 1, through at 2.
    env.assert_blocked_by_max_changes(&config, &["apply", "--max-changes", "1"])
        .await;
    env.run_exits(&config, &["plan"], 3).await;
    env.run_saying(
        &config,
        &["apply", "--max-changes", "2"],
        0,
        "Apply: 2 applied",
    )
    .await;
    assert_eq!(env.active(ci), vec!["203.0.113.10", "203.0.113.11"]);

    // Lowered below what a run needs, it blocks a run the config would let through.
    let (env, ci, config) = Env::with_ci(&[], &["203.0.113.10", "203.0.113.11"]).await;
    env.assert_blocked_by_max_changes(&config, &["apply", "--max-changes", "1"])
        .await;
    assert!(env.active(ci).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_credential_writes_only_that_credential_and_an_unknown_id_exits_1() {
    let env = Env::start().await;
    let ci = env.credential_with(&[]);
    let other = env.credential_with(&[]);
    let credentials = [
        config_text::credential_item(ci, "ci", &["203.0.113.10"]),
        config_text::credential_item(other, "other", &["203.0.113.20"]),
    ]
    .concat();
    let config = env.write("config.yaml", &env.config_text("sync", 10, &credentials));

    env.sim.clear_request_log();
    let out = env
        .run_exits(&config, &["apply", "--credential", "999999"], 1)
        .await;
    assert_stderr_has(
        &out,
        "--credential 999999 is not a credential of the config",
    );
    assert_stdout_empty(&out);
    env.assert_no_request();

    let ci_text = ci.to_string();
    env.run_saying(
        &config,
        &["apply", "--credential", &ci_text],
        0,
        "Apply: 1 applied",
    )
    .await;
    assert_eq!(env.active(ci), vec!["203.0.113.10"]);
    assert!(env.active(other).is_empty(), "not named, not written");
    let plan = env.run_exits(&config, &["plan"], 2).await;
    assert_stdout_has(&plan, "203.0.113.20");

    // A narrowed run keeps the drift record of the credentials it did not read.
    env.run_exits(&config, &["apply"], 0).await;
    env.sim
        .add_entry(other, "192.0.2.77", IpStatus::Active)
        .unwrap();
    env.run_exits(&config, &["apply", "--credential", &ci_text], 0)
        .await;
    assert_eq!(env.active(other), vec!["192.0.2.77", "203.0.113.20"]);
    let plan = env.run_exits(&config, &["plan"], 2).await;
    assert_stdout_has(&plan, "DRIFT 192.0.2.77: none → ACTIVE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_policy_observe_prints_a_config_that_plans_nothing_under_observe() {
    let (env, ci, config) = Env::in_sync().await;
    let out = env
        .run_saying(
            &config,
            &["export", "--policy", "observe"],
            0,
            "policy: observe",
        )
        .await;
    assert_stdout_lacks(&out, "policy: additive");
    let exported = env.write("exported.yaml", &out.stdout);
    let plan = env.run_exits(&exported, &["plan"], 0).await;
    assert_stdout_has(&plan, &format!("Credential {ci}"));
    assert_stdout_has(&plan, "policy observe");
}
/// `status` and `validate` for scripts, and where the log format and level come from.
mod scripting;

/// `completion`, `man` and `--version`.
mod tools;

/// `apply` on a fresh account (so that it has a change to log) with colour forced onto the pipe
/// and `NO_COLOR` set to `no_color`.
async fn apply_with_forced_colour(no_color: &str) -> Output {
    let (env, _, config) = Env::wanting_one().await;
    let output = env
        .run_with_env(
            &config,
            &["apply"],
            &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", no_color)],
        )
        .await;
    assert_eq!(output.code, 0, "{}", show(&output));
    output
}

#[tokio::test]
async fn no_color_keeps_ansi_escapes_out_of_the_log_lines_even_when_colour_is_forced() {
    // The control: colour forced onto the pipe does reach the log lines (an empty NO_COLOR
    // counts as unset), so the check below would see escapes if NO_COLOR were ignored.
    let coloured = apply_with_forced_colour("").await;
    assert!(coloured.stderr.contains('\u{1b}'), "{}", show(&coloured));

    let plain = apply_with_forced_colour("1").await;
    assert!(!plain.stderr.is_empty(), "the run logged: {}", show(&plain));
    assert!(!plain.stderr.contains('\u{1b}'), "{}", show(&plain));
    assert!(!plain.stdout.contains('\u{1b}'), "{}", show(&plain));
}
