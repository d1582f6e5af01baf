//! Whole scenarios of the real bunq client against the simulator on loopback.
//!
//! Every test drives [`BunqClient`] end to end (registration, sessions, signatures, retries,
//! rate limits, the state file) and asserts on what the simulated bunq saw (its request log and
//! its allowlists), not only on what the client returned. The simulator is an independent
//! implementation of bunq's rules, so these tests catch client bugs a mock would mirror.
//!
//! Time: the tests run on tokio's paused clock. The simulator measures rate-limit windows and
//! session lifetimes on tokio time, and the client is given a wall clock that follows tokio time,
//! so 30 s session-server windows and session lifetimes pass instantly and deterministically.
//! (One test runs in real time with both sides' windows scaled to 1/100, because paused time
//! hides request latency.)
//!
//! Tests marked `#[ignore = "bug: ..."]` show a client bug; run them with `-- --ignored`.

// The whole file is test code: helpers outside #[test] fns panic to report failure too.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bunq_ipsync::bunq::client::REREGISTRATION_INTERVAL;
use bunq_ipsync::bunq::context::{
    CONTEXT_FILE_NAME, Context, ContextStore, DeviceContext, InstallationContext, SessionContext,
    api_key_fingerprint,
};
use bunq_ipsync::bunq::model::{EntryRef, IpStatus, PermittedIp};
use bunq_ipsync::bunq::session::WallClock;
use bunq_ipsync::bunq::{
    ApiObserver, BaseUrl, BunqClient, BunqError, ClientSettings, FinishedRequest, RateLimiter,
    RateLimits, RetryPolicy, TransportSettings,
};
use bunq_ipsync::secret::Secret;
use bunq_ipsync::simulator::{
    DEFAULT_CALLER_IP, Fault, FaultKind, LoggedRequest, SeededKey, Simulator, SimulatorOptions,
    UserKind,
};
use chrono::Utc;
use reqwest::Method;

use crate::support::{client_key, server_key};

// ---------------------------------------------------------------------------------------------
// Helpers.

const DEVICE: &str = "bunq-ipsync scenario test";

const INSTALLATION_OK: &str = "POST /installation 200";
const DEVICE_OK: &str = "POST /device-server 200";
const SESSION_OK: &str = "POST /session-server 200";
const LIST_IPS_OK: &str = "GET /user/*/credential-password-ip/*/ip 200";
const LIST_IPS_REJECTED: &str = "GET /user/*/credential-password-ip/*/ip 403";
/// A listing met by a dead installation: rejected, the session refused, one new registration,
/// the listing again.
const REREGISTERED_LISTING: [&str; 6] = [
    LIST_IPS_REJECTED,
    SESSION_REJECTED,
    INSTALLATION_OK,
    DEVICE_OK,
    SESSION_OK,
    LIST_IPS_OK,
];

/// bunq as documented: rate limits on, one-week sessions, 403 for a dead session.
fn sim_options() -> SimulatorOptions {
    SimulatorOptions {
        server_key: Some(server_key().clone()),
        ..SimulatorOptions::default()
    }
}

/// A wall clock that follows tokio's (paused) clock, so `tokio::time::advance` moves the
/// client's idea of session expiry exactly as it moves the simulator's.
fn tokio_wall_clock() -> WallClock {
    let origin = tokio::time::Instant::now();
    let wall = Utc::now();
    Arc::new(move || wall + chrono::Duration::from_std(origin.elapsed()).unwrap())
}

/// A simulator with one user and API key, and a state directory for the client.
struct Scenario {
    sim: Simulator,
    key: SeededKey,
    state_dir: PathBuf,
    /// One clock for every client of the scenario, so a restart sees the time that passed.
    clock: WallClock,
    dir: tempfile::TempDir,
}

impl Scenario {
    async fn start() -> Self {
        Scenario::with(sim_options()).await
    }

    async fn with(options: SimulatorOptions) -> Self {
        let sim = Simulator::start(options).await.unwrap();
        let key = sim.create_user_with_api_key();
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        Scenario {
            sim,
            key,
            state_dir,
            clock: tokio_wall_clock(),
            dir,
        }
    }

    /// A scenario whose bunq sessions last `secs` seconds.
    async fn with_session_timeout(secs: u64) -> Self {
        Scenario::with(SimulatorOptions {
            session_timeout_secs: secs,
            ..sim_options()
        })
        .await
    }

    fn base_url(&self) -> BaseUrl {
        BaseUrl::parse(&self.sim.base_url()).unwrap()
    }

    fn state_file(&self) -> PathBuf {
        self.state_dir.join(CONTEXT_FILE_NAME)
    }

    /// bunq's limits on the client too, short backoffs, a clock on tokio time.
    fn settings(&self) -> ClientSettings {
        let mut settings = ClientSettings::new(self.base_url(), DEVICE);
        settings.transport = TransportSettings {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(20),
            retry: RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(40),
            },
            rate_limits: RateLimits::bunq(),
        };
        settings.clock = Arc::clone(&self.clock);
        settings
    }

    /// Saves a context that holds only the suite's client key (what a fresh start writes
    /// before its installation call), unless a state file exists already.
    fn seed_client_key(&self) {
        if self.state_file().exists() {
            return;
        }
        let store = ContextStore::open(&self.state_dir).unwrap();
        let context = Context::new(&self.base_url(), &self.key.api_key, client_key()).unwrap();
        store.save(&context).unwrap();
    }

    async fn try_connect(&self, settings: ClientSettings) -> Result<BunqClient, BunqError> {
        self.seed_client_key();
        BunqClient::connect(settings, self.key.api_key.clone(), &self.state_dir).await
    }

    async fn connect(&self) -> BunqClient {
        self.try_connect(self.settings()).await.unwrap()
    }

    /// Connects with a [`Recorder`] as the client's observer: what the metrics hooks see.
    async fn observed(&self) -> (BunqClient, Arc<Recorder>) {
        let recorder = Arc::new(Recorder {
            state_file: Some(self.state_file()),
            ..Recorder::default()
        });
        let mut settings = self.settings();
        settings.observer = Some(recorder.clone());
        (self.try_connect(settings).await.unwrap(), recorder)
    }

    /// Connects and forgets the registration requests, so tests see only their own.
    async fn connected(&self) -> BunqClient {
        let client = self.connect().await;
        self.sim.clear_request_log();
        client
    }

    /// The request log as `METHOD /path/with/*/for/ids STATUS` lines (`reset` for no answer).
    /// 20-minute sessions and a client that renews 5 minutes before expiry: the session is due
    /// after 15 minutes.
    async fn renewing() -> (Scenario, ClientSettings) {
        let s = Scenario::with_session_timeout(1200).await;
        let mut settings = s.settings();
        settings.renew_before = Duration::from_secs(300);
        (s, settings)
    }

    /// The saved context.
    fn saved(&self) -> Context {
        ContextStore::open(&self.state_dir)
            .unwrap()
            .load()
            .unwrap()
            .unwrap()
    }

    /// Saves `context` as the state file.
    fn save(&self, context: &Context) {
        ContextStore::open(&self.state_dir)
            .unwrap()
            .save(context)
            .unwrap();
    }

    /// Connects from the state dir as it is (a fresh one gets a new client key).
    async fn connect_fresh(&self) -> BunqClient {
        BunqClient::connect(self.settings(), self.key.api_key.clone(), &self.state_dir)
            .await
            .unwrap()
    }

    fn inject(&self, fault: Fault) {
        self.sim.inject(fault);
    }

    /// Creates [`NEW_IP`], ACTIVE, on the key's own credential.
    async fn create_new_ip(&self, client: &BunqClient) -> Result<u64, BunqError> {
        client
            .create_ip(self.key.credential_id, NEW_IP, IpStatus::Active)
            .await
    }

    /// [`Scenario::create_new_ip`] with a fault of `kind` on the create: the error it fails with.
    async fn failed_create(&self, client: &BunqClient, kind: FaultKind) -> BunqError {
        self.inject(Fault::once(kind).on(Method::POST, ENTRIES_PATH));
        self.create_new_ip(client).await.unwrap_err()
    }

    /// Once the client's retry windows have passed: fails unless bunq saw exactly `logged` and
    /// holds [`NEW_IP`] once (the client did not send the create a second time).
    async fn assert_create_sent_once(&self, logged: &str) {
        let_retries_pass().await;
        self.assert_log(&[logged]);
        assert_eq!(self.new_ip_entries(), 1, "the create was not repeated");
    }

    /// `client` listing the key's own credential's IPs `n` times at once: each call's result.
    async fn concurrent_lists(
        &self,
        client: &Arc<BunqClient>,
        n: usize,
    ) -> Vec<Result<Vec<PermittedIp>, BunqError>> {
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..n {
            let client = Arc::clone(client);
            let credential = self.key.credential_id;
            calls.spawn(async move { client.list_ips(credential).await });
        }
        calls.join_all().await
    }

    /// How many entries for [`NEW_IP`] the key's own credential holds.
    fn new_ip_entries(&self) -> usize {
        entries_for(self, self.key.credential_id, &NEW_IP.to_string())
    }

    /// Seeds `count` entries `10.{block}.x.y` on `credential`, the `i`th with `status(i)`.
    fn add_entries(
        &self,
        credential: u64,
        block: u8,
        count: u32,
        status: impl Fn(u32) -> IpStatus,
    ) {
        for i in 0..count {
            let ip = Ipv4Addr::new(10, block, (i / 256) as u8, (i % 256) as u8).to_string();
            self.sim.add_entry(credential, &ip, status(i)).unwrap();
        }
    }

    /// A scenario with a client [`Scenario::connected`].
    async fn connected_start() -> (Scenario, BunqClient) {
        let s = Scenario::start().await;
        let client = s.connected().await;
        (s, client)
    }

    /// The state file's bytes.
    fn state_bytes(&self) -> Vec<u8> {
        fs::read(self.state_file()).unwrap()
    }

    /// The request log is exactly `expected` ([`line`]s).
    fn assert_log(&self, expected: &[&str]) {
        assert_eq!(self.log(), expected);
    }

    fn log(&self) -> Vec<String> {
        self.sim.request_log().iter().map(line).collect()
    }
}

fn line(request: &LoggedRequest) -> String {
    let path = request.path.split('?').next().unwrap_or_default();
    let path = path.strip_prefix("/v1").unwrap_or(path);
    let pattern: Vec<&str> = path
        .split('/')
        .map(|segment| {
            if segment.parse::<u64>().is_ok() {
                "*"
            } else {
                segment
            }
        })
        .collect();
    let status = request
        .status
        .map_or_else(|| "reset".to_owned(), |status| status.to_string());
    format!("{} {} {}", request.method, pattern.join("/"), status)
}

/// Two minutes of (paused) time: any retry the client had scheduled is sent by then.
async fn let_retries_pass() {
    tokio::time::sleep(Duration::from_secs(120)).await;
}

fn count(log: &[String], wanted: &str) -> usize {
    log.iter().filter(|line| line.as_str() == wanted).count()
}

/// How many times the simulator holds an entry for `ip` on `credential`.
fn entries_for(s: &Scenario, credential: u64, ip: &str) -> usize {
    s.sim
        .entries(credential)
        .unwrap()
        .iter()
        .filter(|entry| entry.ip == ip)
        .count()
}

/// Matches the entry list and create (`.../ip`) and an entry (`.../ip/{id}`) in fault filters,
/// but not the credential paths.
const ENTRIES_PATH: &str = "/ip";
const NEW_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 50);

/// Records every observer event as text.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
    retry_delays: Mutex<Vec<Duration>>,
    /// The state file, read at every `session_created`: what it held when the session was
    /// announced.
    state_file: Option<PathBuf>,
    saved_at_announcement: Mutex<Vec<Option<String>>>,
}

impl Recorder {
    fn push(&self, event: String) {
        self.events.lock().unwrap().push(event);
    }

    fn starting_with(&self, prefix: &str) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|event| event.starts_with(prefix))
            .cloned()
            .collect()
    }
}

impl ApiObserver for Recorder {
    fn request_finished(&self, request: &FinishedRequest<'_>) {
        let FinishedRequest { method, status, .. } = request;
        self.push(format!("request {method} {status:?}"));
    }
    fn rate_limited(&self, route_pattern: &str) {
        self.push(format!("rate_limited {route_pattern}"));
    }
    fn throttled(&self, route_pattern: &str, _waited: Duration) {
        self.push(format!("throttled {route_pattern}"));
    }
    fn retrying(&self, route_pattern: &str, attempt: u32, delay: Duration) {
        self.retry_delays.lock().unwrap().push(delay);
        self.push(format!("retrying {route_pattern} {attempt}"));
    }
    fn signature_rejected(&self, route_pattern: &str) {
        self.push(format!("signature_rejected {route_pattern}"));
    }
    fn session_created(&self, _expires_at: chrono::DateTime<Utc>) {
        self.push("session_created".to_owned());
        if let Some(file) = &self.state_file {
            let context: serde_json::Value =
                serde_json::from_slice(&fs::read(file).unwrap()).unwrap();
            let token = context["session"]["token"].as_str().map(str::to_owned);
            self.saved_at_announcement.lock().unwrap().push(token);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Context creation and reuse.

#[tokio::test(start_paused = true)]
async fn fresh_state_dir_registers_installation_device_and_session_once_in_that_order() {
    let s = Scenario::start().await;
    let client = s.connect_fresh().await;
    s.assert_log(&[INSTALLATION_OK, DEVICE_OK, SESSION_OK]);
    assert_eq!(s.sim.sessions_created(), 1);
    assert_eq!(client.user_id(), s.key.user_id);
    let credential = s.sim.credential(s.key.credential_id).unwrap();
    let device = credential.permitted_device.unwrap();
    assert_eq!(device.description.as_deref(), Some(DEVICE));
}

#[tokio::test(start_paused = true)]
async fn fresh_state_file_is_0600_in_a_0700_dir_and_holds_the_tokens_but_not_the_api_key() {
    let s = Scenario::start().await;
    s.connect_fresh().await;

    let dir_mode = fs::metadata(&s.state_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "state dir mode {dir_mode:o}");
    let file_mode = fs::metadata(s.state_file()).unwrap().permissions().mode() & 0o777;
    assert_eq!(file_mode, 0o600, "state file mode {file_mode:o}");
    let names: Vec<_> = fs::read_dir(&s.state_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![CONTEXT_FILE_NAME], "no temp files left behind");

    let text = fs::read_to_string(s.state_file()).unwrap();
    assert!(
        !text.contains(s.key.api_key.expose()),
        "the API key must not be stored"
    );
    let context = s.saved();
    assert_eq!(
        context.api_key_fingerprint,
        api_key_fingerprint(&s.key.api_key)
    );
    let installation = context.installation.unwrap();
    let session = context.session.unwrap();
    assert!(text.contains(installation.token.expose()));
    assert!(text.contains(session.token.expose()));
    assert_eq!(session.user_id, s.key.user_id);
    assert_eq!(
        installation.server_public_key,
        s.sim.server_public_key().to_pem()
    );
    assert!(context.device.is_some());
}

#[tokio::test(start_paused = true)]
async fn configured_permitted_ips_are_allowed_at_registration_beside_the_caller() {
    let s = Scenario::start().await;
    let mut settings = s.settings();
    settings.permitted_ips = Some(vec!["192.0.2.77".to_owned()]);
    s.try_connect(settings).await.unwrap();
    let active: HashSet<_> = s
        .sim
        .entries(s.key.credential_id)
        .unwrap()
        .into_iter()
        .filter(|entry| entry.status == IpStatus::Active)
        .map(|entry| entry.ip)
        .collect();
    assert_eq!(
        active,
        HashSet::from([DEFAULT_CALLER_IP.to_string(), "192.0.2.77".to_owned()])
    );
}

#[tokio::test(start_paused = true)]
async fn restart_with_the_saved_context_makes_no_setup_calls() {
    let s = Scenario::start().await;
    drop(s.connected().await);

    let client = s.connect().await;
    assert!(s.log().is_empty(), "restart sent {:?}", s.log());
    let ips = client.list_ips(s.key.credential_id).await.unwrap();
    s.assert_log(&[LIST_IPS_OK]);
    assert_eq!(s.sim.sessions_created(), 1);
    assert_eq!(ips.len(), 1);
    assert_eq!(ips[0].ip, DEFAULT_CALLER_IP.to_string());
    assert_eq!(ips[0].status, IpStatus::Active);
}

#[tokio::test(start_paused = true)]
async fn restart_after_the_saved_session_expired_opens_only_a_new_session() {
    let s = Scenario::with_session_timeout(3600).await;
    drop(s.connected().await);
    tokio::time::advance(Duration::from_secs(3601)).await;

    let client = s.connect().await;
    s.assert_log(&[SESSION_OK]);
    client.list_ips(s.key.credential_id).await.unwrap();
    s.assert_log(&[SESSION_OK, LIST_IPS_OK]);
    assert_eq!(s.sim.sessions_created(), 2);
}

// ---------------------------------------------------------------------------------------------
// 2. Sessions.

#[tokio::test(start_paused = true)]
async fn session_due_within_renew_before_is_renewed_before_the_next_call() {
    let (s, settings) = Scenario::renewing().await;
    let client = s.try_connect(settings).await.unwrap();
    s.sim.clear_request_log();
    let first_expiry = client.session_expires_at();

    // 890 s in, the session is good for 310 s more: no renewal.
    tokio::time::advance(Duration::from_secs(890)).await;
    client.list_ips(s.key.credential_id).await.unwrap();
    s.assert_log(&[LIST_IPS_OK]);

    // 910 s in, 290 s remain (< renew_before): a new session first, and no rejection.
    tokio::time::advance(Duration::from_secs(20)).await;
    client.list_ips(s.key.credential_id).await.unwrap();
    s.assert_log(&[LIST_IPS_OK, SESSION_OK, LIST_IPS_OK]);
    assert_eq!(s.sim.sessions_created(), 2);
    assert!(client.session_expires_at() > first_expiry);
}

#[tokio::test(start_paused = true)]
async fn session_ended_early_by_bunq_is_replaced_once_and_the_call_succeeds() {
    let (s, client) = Scenario::connected_start().await;
    s.sim.expire_all_sessions();
    let ips = client.list_ips(s.key.credential_id).await.unwrap();
    assert_eq!(ips.len(), 1);
    s.assert_log(&[LIST_IPS_REJECTED, SESSION_OK, LIST_IPS_OK]);
    assert_eq!(s.sim.sessions_created(), 2);
}

#[tokio::test(start_paused = true)]
async fn second_session_rejection_in_a_row_is_returned_not_retried_again() {
    let (s, client) = Scenario::connected_start().await;
    s.inject(
        Fault::once(FaultKind::ExpireSession)
            .on(Method::GET, ENTRIES_PATH)
            .times(2),
    );
    let err = client.list_ips(s.key.credential_id).await.unwrap_err();
    assert!(err.is_session_rejected(), "{err}");
    // Nothing more is sent later either: no loop in the background.
    let_retries_pass().await;
    s.assert_log(&[LIST_IPS_REJECTED, SESSION_OK, LIST_IPS_REJECTED]);
    assert_eq!(s.sim.sessions_created(), 2);
}

#[tokio::test(start_paused = true)]
async fn concurrent_calls_rejected_after_an_early_expiry_share_one_new_session() {
    let s = Scenario::start().await;
    let client = Arc::new(s.connected().await);
    s.sim.expire_all_sessions();
    for result in s.concurrent_lists(&client, 5).await {
        assert_eq!(result.unwrap().len(), 1);
    }
    let log = s.log();
    assert_eq!(count(&log, SESSION_OK), 1, "{log:?}");
    assert_eq!(count(&log, LIST_IPS_OK), 5, "{log:?}");
    assert_eq!(s.sim.sessions_created(), 2);
}

#[tokio::test(start_paused = true)]
async fn early_expiry_answered_with_401_is_recovered_from_the_same_way() {
    let s = Scenario::with(SimulatorOptions {
        expired_session_status: 401,
        ..sim_options()
    })
    .await;
    let client = s.connected().await;
    s.sim.expire_all_sessions();
    client.list_ips(s.key.credential_id).await.unwrap();
    s.assert_log(&[
        "GET /user/*/credential-password-ip/*/ip 401",
        SESSION_OK,
        LIST_IPS_OK,
    ]);
}

#[tokio::test(start_paused = true)]
async fn session_rejection_on_a_create_is_retried_once_and_creates_one_entry() {
    // bunq refused the request, so sending it again with a new session cannot duplicate it.
    let (s, client) = Scenario::connected_start().await;
    s.inject(Fault::once(FaultKind::ExpireSession).on(Method::POST, ENTRIES_PATH));
    s.create_new_ip(&client).await.unwrap();
    s.assert_log(&[
        "POST /user/*/credential-password-ip/*/ip 403",
        SESSION_OK,
        "POST /user/*/credential-password-ip/*/ip 200",
    ]);
    assert_eq!(s.new_ip_entries(), 1);
}

#[tokio::test(start_paused = true)]
async fn concurrent_calls_at_renewal_time_open_one_session() {
    let (s, settings) = Scenario::renewing().await;
    let client = Arc::new(s.try_connect(settings).await.unwrap());
    s.sim.clear_request_log();
    tokio::time::advance(Duration::from_secs(910)).await;

    for result in s.concurrent_lists(&client, 5).await {
        result.unwrap();
    }
    let log = s.log();
    assert_eq!(log[0], SESSION_OK, "{log:?}");
    assert_eq!(count(&log, SESSION_OK), 1, "{log:?}");
    assert_eq!(count(&log, LIST_IPS_OK), 5, "{log:?}");
    assert_eq!(log.len(), 6, "no rejection: {log:?}");
}

#[tokio::test(start_paused = true)]
async fn renew_session_keeps_a_session_younger_than_30_s_and_replaces_an_older_one() {
    let (s, client) = Scenario::connected_start().await;
    let first = client.session_expires_at();
    let saved_token = || s.saved().session.unwrap().token;
    let first_token = saved_token();

    assert_eq!(client.renew_session().await.unwrap(), first);
    assert!(s.log().is_empty(), "{:?}", s.log());

    tokio::time::advance(Duration::from_secs(31)).await;
    let renewed = client.renew_session().await.unwrap();
    s.assert_log(&[SESSION_OK]);
    assert!(renewed > first);
    assert_eq!(client.session_expires_at(), renewed);
    assert_ne!(saved_token(), first_token, "the new session is saved");

    // A restart picks up the renewed session: no setup calls.
    drop(client);
    s.sim.clear_request_log();
    let restarted = s.connect().await;
    restarted.list_ips(s.key.credential_id).await.unwrap();
    s.assert_log(&[LIST_IPS_OK]);
}

#[tokio::test(start_paused = true)]
async fn ensure_session_makes_no_call_while_the_session_is_fresh() {
    let (s, client) = Scenario::connected_start().await;
    let expiry = client.ensure_session().await.unwrap();
    assert_eq!(expiry, client.session_expires_at());
    assert!(s.log().is_empty(), "{:?}", s.log());
}

#[tokio::test(start_paused = true)]
async fn business_account_sessions_work_like_personal_ones() {
    let s = Scenario::with(SimulatorOptions {
        user_kind: UserKind::Company,
        ..sim_options()
    })
    .await;
    let client = s.connect().await;
    assert_eq!(client.user_id(), s.key.user_id);
    client.list_ips(s.key.credential_id).await.unwrap();
    assert_eq!(s.sim.sessions_created(), 1);
}

// ---------------------------------------------------------------------------------------------
// 3. Pagination.

#[tokio::test(start_paused = true)]
async fn list_of_450_entries_returns_every_entry_over_three_pages_of_200() {
    let s = Scenario::start().await;
    let credential = s.sim.add_credential(s.key.user_id, None, None).unwrap();
    s.add_entries(credential, 1, 450, |i| {
        if i % 3 == 0 {
            IpStatus::Inactive
        } else {
            IpStatus::Active
        }
    });
    let client = s.connected().await;

    let listed = client.list_ips(credential).await.unwrap();
    assert_eq!(listed.len(), 450);
    let ids: HashSet<_> = listed.iter().map(|entry| entry.id).collect();
    assert_eq!(ids.len(), 450, "ids must be distinct");
    let got: HashSet<_> = listed
        .iter()
        .map(|entry| (entry.id, entry.ip.clone(), entry.status.clone()))
        .collect();
    let want: HashSet<_> = s
        .sim
        .entries(credential)
        .unwrap()
        .into_iter()
        .map(|entry| (entry.id, entry.ip, entry.status))
        .collect();
    assert_eq!(got, want);

    let pages = s.sim.request_log();
    assert_eq!(pages.len(), 3, "{:?}", s.log());
    for page in &pages {
        assert_eq!(line(page), LIST_IPS_OK);
        assert!(page.path.contains("count=200"), "{}", page.path);
    }
    assert!(!pages[0].path.contains("older_id"), "{}", pages[0].path);
    assert!(pages[1].path.contains("older_id="), "{}", pages[1].path);
    assert!(pages[2].path.contains("older_id="), "{}", pages[2].path);
}

/// A credential with 450 entries (the list takes three pages), a connected client, and a fault
/// of `kind` on the first request for a later page.
async fn three_pages_with_a_later_page_under(kind: FaultKind) -> (Scenario, u64, BunqClient) {
    let s = Scenario::start().await;
    let credential = s.sim.add_credential(s.key.user_id, None, None).unwrap();
    s.add_entries(credential, 3, 450, |_| IpStatus::Active);
    let client = s.connected().await;
    s.inject(Fault::once(kind).on(Method::GET, "older_id="));
    (s, credential, client)
}

#[tokio::test(start_paused = true)]
async fn session_rejected_on_a_later_page_is_replaced_and_the_list_completes() {
    let (s, credential, client) =
        three_pages_with_a_later_page_under(FaultKind::ExpireSession).await;
    let listed = client.list_ips(credential).await.unwrap();
    let ids: HashSet<_> = listed.iter().map(|entry| entry.id).collect();
    assert_eq!(ids.len(), 450);
    s.assert_log(&[
        LIST_IPS_OK,
        LIST_IPS_REJECTED,
        SESSION_OK,
        LIST_IPS_OK,
        LIST_IPS_OK,
    ]);
}

#[tokio::test(start_paused = true)]
async fn garbled_signature_on_a_later_page_fails_the_whole_list() {
    // A partial list would make the reconciler act on a wrong picture.
    let (s, credential, client) =
        three_pages_with_a_later_page_under(FaultKind::GarbleSignature).await;
    let err = client.list_ips(credential).await.unwrap_err();
    assert!(err.is_security(), "{err}");
    s.assert_log(&[LIST_IPS_OK, LIST_IPS_OK]);
}

#[tokio::test(start_paused = true)]
async fn list_of_exactly_200_or_no_entries_is_complete() {
    let s = Scenario::start().await;
    let full = s.sim.add_credential(s.key.user_id, None, None).unwrap();
    s.add_entries(full, 2, 200, |_| IpStatus::Active);
    let empty = s.sim.add_credential(s.key.user_id, None, None).unwrap();
    let client = s.connected().await;
    assert_eq!(client.list_ips(full).await.unwrap().len(), 200);
    assert!(client.list_ips(empty).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn list_credentials_shows_every_credential_and_our_device_description() {
    let s = Scenario::start().await;
    let other = s
        .sim
        .add_credential(s.key.user_id, Some("someone else"), None)
        .unwrap();
    let client = s.connected().await;
    let credentials = client.list_credentials().await.unwrap();
    let ids: HashSet<_> = credentials.iter().map(|found| found.id).collect();
    assert_eq!(ids, HashSet::from([s.key.credential_id, other]));
    let ours: Vec<_> = credentials
        .iter()
        .filter(|found| {
            found
                .permitted_device
                .as_ref()
                .and_then(|device| device.description.as_deref())
                == client.device_description().as_deref()
        })
        .collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0].id, s.key.credential_id);
    s.assert_log(&["GET /user/*/credential-password-ip 200"]);
}

#[tokio::test(start_paused = true)]
async fn single_credential_and_entry_reads_match_the_lists() {
    let (s, client) = Scenario::connected_start().await;
    let entry = client
        .create_ip(s.key.credential_id, NEW_IP, IpStatus::Inactive)
        .await
        .unwrap();
    let read = client.get_ip(s.key.credential_id, entry).await.unwrap();
    assert_eq!(
        (read.id, read.ip.as_str(), &read.status),
        (entry, NEW_IP.to_string().as_str(), &IpStatus::Inactive)
    );
    let listed = client.list_ips(s.key.credential_id).await.unwrap();
    assert!(listed.contains(&read), "{listed:?}");
    let credential = client.get_credential(s.key.credential_id).await.unwrap();
    assert_eq!(credential, s.sim.credential(s.key.credential_id).unwrap());
}

#[tokio::test(start_paused = true)]
async fn list_of_a_credential_that_is_not_ours_is_a_404_not_an_empty_list() {
    let s = Scenario::start().await;
    let stranger = s.sim.create_user_with_api_key();
    let client = s.connected().await;
    let err = client.list_ips(stranger.credential_id).await.unwrap_err();
    assert!(matches!(err, BunqError::Api { status: 404, .. }), "{err}");
    s.assert_log(&["GET /user/*/credential-password-ip/*/ip 404"]);
}

// ---------------------------------------------------------------------------------------------
// 4. Rate limits.

async fn burst_of_lists(
    s: &Scenario,
    client: BunqClient,
    calls: usize,
) -> Vec<Result<(), BunqError>> {
    let client = Arc::new(client);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..calls {
        let client = Arc::clone(&client);
        let credential = s.key.credential_id;
        set.spawn(async move { client.list_ips(credential).await.map(|_| ()) });
    }
    let mut results = Vec::new();
    while let Some(result) = set.join_next().await {
        results.push(result.unwrap());
    }
    results
}

#[tokio::test(start_paused = true)]
async fn burst_of_30_lists_with_the_client_limiter_on_never_meets_a_429() {
    let (s, client) = Scenario::connected_start().await;
    let results = burst_of_lists(&s, client, 30).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let log = s.log();
    assert_eq!(count(&log, LIST_IPS_OK), 30, "{log:?}");
    assert_eq!(log.len(), 30, "no 429 and no retry: {log:?}");
}

/// Real time (not paused): bunq's windows scaled to 1/100 on both sides, so request latency is
/// no longer zero. The simulator counts a request when it arrives; the client's limiter holds a
/// slot while its request is in flight and counts the window from the response, so a request
/// that arrived late in one window still keeps the next one out until a window after it.
#[tokio::test]
async fn burst_of_30_lists_in_scaled_real_time_with_the_client_limiter_on_never_meets_a_429() {
    let s = Scenario::with(SimulatorOptions {
        time_scale: 0.01,
        ..sim_options()
    })
    .await;
    let mut settings = s.settings();
    settings.transport.rate_limits = RateLimits::bunq().with_windows_scaled(0.01);
    settings.transport.retry = RetryPolicy::never();
    let client = s.try_connect(settings).await.unwrap();
    s.sim.clear_request_log();

    let results = burst_of_lists(&s, client, 30).await;
    let log = s.log();
    assert_eq!(count(&log, LIST_IPS_OK), 30, "{log:?}");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

#[tokio::test(start_paused = true)]
async fn burst_of_30_lists_without_the_client_limiter_meets_429s() {
    // The control for the test above: the simulator does enforce the limits.
    let s = Scenario::start().await;
    let mut settings = s.settings();
    settings.transport.rate_limits = RateLimits::disabled();
    settings.transport.retry = RetryPolicy::never();
    let client = s.try_connect(settings).await.unwrap();
    s.sim.clear_request_log();

    let results = burst_of_lists(&s, client, 30).await;
    let log = s.log();
    let rejected = count(&log, "GET /user/*/credential-password-ip/*/ip 429");
    assert!(rejected > 0, "{log:?}");
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(failed.len(), rejected);
    for err in failed {
        assert!(matches!(err, BunqError::Api { status: 429, .. }), "{err}");
    }
}

#[tokio::test(start_paused = true)]
async fn forced_429s_are_retried_until_the_list_succeeds() {
    let (s, client) = Scenario::connected_start().await;
    s.inject(
        Fault::once(FaultKind::Status(429))
            .on(Method::GET, ENTRIES_PATH)
            .times(3),
    );
    let ips = client.list_ips(s.key.credential_id).await.unwrap();
    assert_eq!(ips.len(), 1);
    let limited = "GET /user/*/credential-password-ip/*/ip 429";
    s.assert_log(&[limited, limited, limited, LIST_IPS_OK]);
}

#[tokio::test(start_paused = true)]
async fn two_clients_on_one_ip_recover_from_each_others_429s() {
    // The daemon and a one-off CLI run share the host's IP, but not a limiter.
    let s = Scenario::start().await;
    let daemon = s.connected().await;
    let other_dir = s.dir.path().join("cli-state");
    let cli_context = Context::new(&s.base_url(), &s.key.api_key, client_key()).unwrap();
    ContextStore::open(&other_dir)
        .unwrap()
        .save(&cli_context)
        .unwrap();
    tokio::time::advance(Duration::from_secs(30)).await;
    let cli = BunqClient::connect(s.settings(), s.key.api_key.clone(), &other_dir)
        .await
        .unwrap();
    s.sim.clear_request_log();

    let daemon_burst = burst_of_lists(&s, daemon, 6);
    let cli_burst = burst_of_lists(&s, cli, 6);
    let (daemon_results, cli_results) = tokio::join!(daemon_burst, cli_burst);
    for result in daemon_results.iter().chain(&cli_results) {
        assert!(result.is_ok(), "{result:?}");
    }
    let log = s.log();
    assert!(
        count(&log, "GET /user/*/credential-password-ip/*/ip 429") > 0,
        "the clients did collide: {log:?}"
    );
    assert_eq!(count(&log, LIST_IPS_OK), 12, "{log:?}");
}

/// Two clients of one process, each registering in a state directory of its own, one after
/// the other (like `demo`'s walkthrough and then its daemon, or the daemon's connection
/// attempts): both session-server calls count against one window at bunq.
async fn two_registrations_in_a_row(
    s: &Scenario,
    limiter: Option<Arc<RateLimiter>>,
) -> Vec<String> {
    let mut settings = s.settings();
    settings.rate_limiter = limiter.clone();
    s.try_connect(settings).await.unwrap();
    let mut settings = s.settings();
    settings.rate_limiter = limiter;
    let other_dir = s.dir.path().join("other-state");
    let _ = BunqClient::connect(settings, s.key.api_key.clone(), &other_dir).await;
    s.log()
}

#[tokio::test(start_paused = true)]
async fn clients_sharing_the_process_limiter_keep_session_servers_30_s_window_between_them() {
    let s = Scenario::start().await;
    let shared = Arc::new(RateLimiter::new(RateLimits::bunq()));
    let log = two_registrations_in_a_row(&s, Some(shared)).await;
    assert_eq!(count(&log, SESSION_OK), 2, "{log:?}");
    assert_eq!(count(&log, "POST /session-server 429"), 0, "{log:?}");
}

#[tokio::test(start_paused = true)]
async fn clients_with_a_limiter_each_meet_session_servers_429() {
    // What every connection attempt of the daemon did before issue 9: the limit held per
    // client only, and bunq saw session-server twice within its window.
    let s = Scenario::start().await;
    let log = two_registrations_in_a_row(&s, None).await;
    assert!(count(&log, "POST /session-server 429") > 0, "{log:?}");
}

#[tokio::test(start_paused = true)]
async fn default_transport_settings_run_a_reconcile_like_sequence_without_a_429() {
    let s = Scenario::start().await;
    let mut settings = s.settings();
    settings.transport = TransportSettings::default();
    let client = s.try_connect(settings).await.unwrap();
    let credential = s.key.credential_id;

    client.list_credentials().await.unwrap();
    client.list_ips(credential).await.unwrap();
    let mut created = Vec::new();
    for last in 1..=6 {
        let ip = Ipv4Addr::new(192, 0, 2, last);
        created.push(
            client
                .create_ip(credential, ip, IpStatus::Active)
                .await
                .unwrap(),
        );
    }
    for entry in &created[..3] {
        client
            .update_ip_status(EntryRef::new(credential, *entry), IpStatus::Inactive)
            .await
            .unwrap();
    }
    let listed = client.list_ips(credential).await.unwrap();
    assert_eq!(listed.len(), 7);
    assert_eq!(
        listed
            .iter()
            .filter(|entry| entry.status == IpStatus::Inactive)
            .count(),
        3
    );
    let log = s.log();
    assert!(
        log.iter().all(|line| line.ends_with(" 200")),
        "every request answered 200: {log:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Response signatures.

async fn tampered_list_is_refused_and_nothing_follows(kind: FaultKind) {
    let (s, client) = Scenario::connected_start().await;
    let before = s.sim.entries(s.key.credential_id).unwrap();
    s.inject(Fault::once(kind).on(Method::GET, ENTRIES_PATH));

    let err = client.list_ips(s.key.credential_id).await.unwrap_err();
    assert!(err.is_security(), "{err}");
    assert!(!err.is_transient());
    // The client takes no further action on its own, now or later.
    let_retries_pass().await;
    assert_eq!(s.log(), vec![LIST_IPS_OK], "one request, never retried");
    assert_eq!(s.sim.entries(s.key.credential_id).unwrap(), before);
}

#[tokio::test(start_paused = true)]
async fn garbled_signature_on_a_list_is_a_security_error_and_nothing_follows() {
    tampered_list_is_refused_and_nothing_follows(FaultKind::GarbleSignature).await;
}

#[tokio::test(start_paused = true)]
async fn missing_signature_on_a_list_is_a_security_error_and_nothing_follows() {
    tampered_list_is_refused_and_nothing_follows(FaultKind::DropSignature).await;
}

#[tokio::test(start_paused = true)]
async fn garbled_signature_on_a_create_is_a_security_error_and_the_post_is_not_repeated() {
    let (s, client) = Scenario::connected_start().await;
    let err = s.failed_create(&client, FaultKind::GarbleSignature).await;
    assert!(err.is_security(), "{err}");
    // bunq applied it; the client did not add a second one.
    s.assert_create_sent_once("POST /user/*/credential-password-ip/*/ip 200")
        .await;
}

#[tokio::test(start_paused = true)]
async fn unsigned_session_server_answer_is_refused_and_its_token_never_used() {
    let (s, client) = Scenario::connected_start().await;
    let saved = s.state_bytes();
    s.inject(Fault::once(FaultKind::DropSignature).on(Method::POST, "/session-server"));
    s.sim.expire_all_sessions();

    let err = client.list_ips(s.key.credential_id).await.unwrap_err();
    assert!(err.is_security(), "{err}");
    let_retries_pass().await;
    s.assert_log(&[LIST_IPS_REJECTED, SESSION_OK]);
    assert_eq!(
        s.state_bytes(),
        saved,
        "the unverified session is not saved"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Ambiguous and failed writes, transient failures.

#[tokio::test(start_paused = true)]
async fn reset_after_a_create_is_a_transport_error_and_the_post_is_not_retried() {
    let (s, client) = Scenario::connected_start().await;
    let err = s.failed_create(&client, FaultKind::ResetAfterApply).await;
    assert!(matches!(err, BunqError::Transport { .. }), "{err}");
    s.assert_create_sent_once("POST /user/*/credential-password-ip/*/ip reset")
        .await;
}

#[tokio::test(start_paused = true)]
async fn timed_out_create_is_not_retried_and_bunq_holds_the_entry_once() {
    let (s, client) = Scenario::connected_start().await;
    // The simulator applies the create at once and answers after 60 s; the client gives up at 20 s.
    let err = s
        .failed_create(&client, FaultKind::Delay(Duration::from_secs(60)))
        .await;
    assert!(
        matches!(err, BunqError::Transport { timeout: true, .. }),
        "{err}"
    );
    let_retries_pass().await;
    let posts = s
        .sim
        .request_log()
        .into_iter()
        .filter(|request| request.method == Method::POST)
        .count();
    assert!(posts <= 1, "{:?}", s.log());
    assert_eq!(s.new_ip_entries(), 1);
}

#[tokio::test(start_paused = true)]
async fn timed_out_list_is_retried_and_succeeds() {
    let (s, client) = Scenario::connected_start().await;
    s.inject(Fault::once(FaultKind::Delay(Duration::from_secs(60))).on(Method::GET, ENTRIES_PATH));
    let ips = client.list_ips(s.key.credential_id).await.unwrap();
    assert_eq!(ips.len(), 1);
    let undisturbed = s
        .sim
        .request_log()
        .into_iter()
        .filter(|request| request.fault.is_none())
        .map(|request| line(&request))
        .collect::<Vec<_>>();
    assert_eq!(undisturbed, vec![LIST_IPS_OK]);
}

#[tokio::test(start_paused = true)]
async fn writes_after_a_reset_connection_go_through_on_a_fresh_one() {
    // A pooled connection bunq closed must not turn the next (unretried) create into a
    // spurious network error.
    let (s, client) = Scenario::connected_start().await;
    s.inject(Fault::once(FaultKind::ResetAfterApply).on(Method::POST, ENTRIES_PATH));
    s.create_new_ip(&client).await.unwrap_err();
    for last in 1..=4 {
        let ip = Ipv4Addr::new(192, 0, 2, last);
        client
            .create_ip(s.key.credential_id, ip, IpStatus::Active)
            .await
            .unwrap();
    }
    s.inject(Fault::once(FaultKind::ResetBeforeApply).on(Method::GET, ENTRIES_PATH));
    client.list_ips(s.key.credential_id).await.unwrap();
    let ip = Ipv4Addr::new(192, 0, 2, 5);
    client
        .create_ip(s.key.credential_id, ip, IpStatus::Active)
        .await
        .unwrap();
    assert_eq!(s.sim.entries(s.key.credential_id).unwrap().len(), 7);
}

#[tokio::test(start_paused = true)]
async fn server_errors_on_a_list_are_retried_with_backoff_until_it_succeeds() {
    let s = Scenario::start().await;
    let (client, recorder) = s.observed().await;
    s.sim.clear_request_log();
    for kind in [
        FaultKind::Status(500),
        FaultKind::Status(491),
        FaultKind::Html503,
    ] {
        s.inject(Fault::once(kind).on(Method::GET, ENTRIES_PATH));
    }
    let ips = client.list_ips(s.key.credential_id).await.unwrap();
    assert_eq!(ips.len(), 1);
    s.assert_log(&[
        "GET /user/*/credential-password-ip/*/ip 500",
        "GET /user/*/credential-password-ip/*/ip 491",
        "GET /user/*/credential-password-ip/*/ip 503",
        LIST_IPS_OK,
    ]);
    let ids: HashSet<_> = s
        .sim
        .request_log()
        .into_iter()
        .map(|request| request.request_id.unwrap())
        .collect();
    assert_eq!(ids.len(), 4, "a fresh request id per attempt");
    // Backoff doubles from 10 ms (capped at 40 ms), each delay jittered within [ceiling/2, ceiling].
    let delays = recorder.retry_delays.lock().unwrap().clone();
    let ceilings = [10, 20, 40].map(Duration::from_millis);
    assert_eq!(delays.len(), 3, "{delays:?}");
    for (delay, ceiling) in delays.iter().zip(ceilings) {
        assert!(*delay >= ceiling / 2 && *delay <= ceiling, "{delays:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn connection_reset_on_a_list_is_retried_until_it_succeeds() {
    let (s, client) = Scenario::connected_start().await;
    s.inject(Fault::once(FaultKind::ResetBeforeApply).on(Method::GET, ENTRIES_PATH));
    client.list_ips(s.key.credential_id).await.unwrap();
    s.assert_log(&["GET /user/*/credential-password-ip/*/ip reset", LIST_IPS_OK]);
}

#[tokio::test(start_paused = true)]
async fn server_error_on_a_status_update_is_retried_until_it_succeeds() {
    let (s, client) = Scenario::connected_start().await;
    let entry = s
        .sim
        .add_entry(s.key.credential_id, "192.0.2.10", IpStatus::Active)
        .unwrap();
    s.inject(Fault::once(FaultKind::Status(500)).on(Method::PUT, ENTRIES_PATH));
    let id = client
        .update_ip_status(
            EntryRef::new(s.key.credential_id, entry),
            IpStatus::Inactive,
        )
        .await
        .unwrap();
    assert_eq!(id, entry);
    s.assert_log(&[
        "PUT /user/*/credential-password-ip/*/ip/* 500",
        "PUT /user/*/credential-password-ip/*/ip/* 200",
    ]);
    let stored = s.sim.entries(s.key.credential_id).unwrap();
    let stored = stored.iter().find(|found| found.id == entry).unwrap();
    assert_eq!(stored.status, IpStatus::Inactive);
}

#[tokio::test(start_paused = true)]
async fn server_errors_on_a_create_are_returned_without_a_retry() {
    let (s, client) = Scenario::connected_start().await;
    for (kind, status) in [
        (FaultKind::Status(500), 500),
        (FaultKind::Status(491), 491),
        (FaultKind::Html503, 503),
    ] {
        s.sim.clear_request_log();
        s.inject(Fault::once(kind).on(Method::POST, ENTRIES_PATH));
        let err = s.create_new_ip(&client).await.unwrap_err();
        assert!(
            matches!(err, BunqError::Api { status: got, .. } if got == status),
            "{err}"
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
        s.assert_log(&[format!("POST /user/*/credential-password-ip/*/ip {status}").as_str()]);
    }
    assert_eq!(s.new_ip_entries(), 0);
}

// ---------------------------------------------------------------------------------------------
// 7. IP enforcement.

#[tokio::test(start_paused = true)]
async fn deactivating_the_callers_own_ip_locks_the_client_out_with_credentials_rejected() {
    let (s, client) = Scenario::connected_start().await;
    let own = client.list_ips(s.key.credential_id).await.unwrap();
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].ip, DEFAULT_CALLER_IP.to_string());
    client
        .update_ip_status(
            EntryRef::new(s.key.credential_id, own[0].id),
            IpStatus::Inactive,
        )
        .await
        .unwrap();
    s.sim.clear_request_log();

    let err = client.list_ips(s.key.credential_id).await.unwrap_err();
    assert!(err.is_credentials_rejected(), "{err}");
    assert!(!err.is_transient());
    assert!(
        err.to_string().contains("Incorrect API key or IP address"),
        "{err}"
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        s.log(),
        vec!["GET /user/*/credential-password-ip/*/ip 400"],
        "neither retried nor answered with a new session"
    );
}

#[tokio::test(start_paused = true)]
async fn restart_from_an_ip_not_on_the_allowlist_fails_with_credentials_rejected_and_keeps_the_context()
 {
    let s = Scenario::with_session_timeout(3600).await;
    drop(s.connected().await);
    let saved = s.state_bytes();
    // The saved session has expired and the host now has another public IP.
    tokio::time::advance(Duration::from_secs(3601)).await;
    s.sim.set_caller_ip(Ipv4Addr::new(203, 0, 113, 99));

    let err = s.try_connect(s.settings()).await.unwrap_err();
    assert!(err.is_credentials_rejected(), "{err}");
    assert_eq!(
        s.log(),
        vec!["POST /session-server 400"],
        "no re-registration, no retry"
    );
    assert_eq!(s.state_bytes(), saved, "context kept");
}

#[tokio::test(start_paused = true)]
async fn client_debug_output_holds_no_secret() {
    let (s, client) = Scenario::connected_start().await;
    let context = s.saved();
    let debug = format!("{client:?} {:?} {context:?}", s.settings());
    for secret in [
        s.key.api_key.expose(),
        context.session.as_ref().unwrap().token.expose(),
        context.installation.as_ref().unwrap().token.expose(),
        context.client_private_key.expose(),
    ] {
        assert!(!debug.contains(secret), "{debug}");
    }
}

// ---------------------------------------------------------------------------------------------
// 8. The state file between runs.

#[tokio::test(start_paused = true)]
async fn lax_state_dir_and_file_are_tightened_on_restart() {
    let s = Scenario::start().await;
    drop(s.connected().await);
    fs::set_permissions(&s.state_dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(s.state_file(), fs::Permissions::from_mode(0o644)).unwrap();

    s.connect().await;
    let dir_mode = fs::metadata(&s.state_dir).unwrap().permissions().mode() & 0o777;
    let file_mode = fs::metadata(s.state_file()).unwrap().permissions().mode() & 0o777;
    assert_eq!((dir_mode, file_mode), (0o700, 0o600));
    assert!(s.log().is_empty(), "still reused: {:?}", s.log());
}

#[tokio::test(start_paused = true)]
async fn corrupt_state_file_is_an_error_naming_the_file_and_nothing_is_sent() {
    let s = Scenario::start().await;
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&s.state_dir)
        .unwrap();
    let garbage = b"{\"format_version\": 1, \"base_url\": ";
    fs::write(s.state_file(), garbage).unwrap();
    fs::set_permissions(s.state_file(), fs::Permissions::from_mode(0o600)).unwrap();

    let err = BunqClient::connect(s.settings(), s.key.api_key.clone(), &s.state_dir)
        .await
        .unwrap_err();
    assert!(matches!(err, BunqError::ContextCorrupt { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&s.state_file().display().to_string()),
        "{err}"
    );
    assert!(s.log().is_empty(), "{:?}", s.log());
    assert_eq!(s.state_bytes(), garbage, "left in place");
}

#[tokio::test(start_paused = true)]
async fn state_file_from_a_newer_format_is_refused_and_left_in_place() {
    let s = Scenario::start().await;
    drop(s.connected().await);
    let mut value: serde_json::Value = serde_json::from_slice(&s.state_bytes()).unwrap();
    value["format_version"] = serde_json::json!(99);
    let newer = serde_json::to_vec(&value).unwrap();
    fs::write(s.state_file(), &newer).unwrap();

    let err = s.try_connect(s.settings()).await.unwrap_err();
    assert!(
        matches!(err, BunqError::ContextVersion { found: 99, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&s.state_file().display().to_string()),
        "{err}"
    );
    assert!(s.log().is_empty(), "{:?}", s.log());
    assert_eq!(s.state_bytes(), newer);
}

#[tokio::test(start_paused = true)]
async fn state_file_of_another_api_key_leads_to_a_clean_new_registration() {
    let s = Scenario::start().await;
    drop(s.connected().await);
    let other = s.sim.create_user_with_api_key();
    // A new process does not know when the last one opened a session; bunq's 1-per-30-s
    // session-server window is per IP, so the next start comes after it.
    tokio::time::advance(Duration::from_secs(30)).await;

    let client = BunqClient::connect(s.settings(), other.api_key.clone(), &s.state_dir)
        .await
        .unwrap();
    s.assert_log(&[INSTALLATION_OK, DEVICE_OK, SESSION_OK]);
    assert_eq!(client.user_id(), other.user_id);
    client.list_ips(other.credential_id).await.unwrap();
    let context = s.saved();
    assert_eq!(
        context.api_key_fingerprint,
        api_key_fingerprint(&other.api_key)
    );
}

#[tokio::test(start_paused = true)]
async fn saved_installation_unknown_to_bunq_is_replaced_by_one_fresh_registration() {
    let s = Scenario::start().await;
    let mut context = Context::new(&s.base_url(), &s.key.api_key, client_key()).unwrap();
    context.installation = Some(InstallationContext {
        token: Secret::new("installation-token-bunq-never-issued"),
        server_public_key: s.sim.server_public_key().to_pem(),
    });
    context.device = Some(DeviceContext {
        id: Some(1),
        description: Some(DEVICE.to_owned()),
    });
    s.save(&context);

    let client = s.connect().await;
    s.assert_log(&[
        "POST /session-server 403",
        INSTALLATION_OK,
        DEVICE_OK,
        SESSION_OK,
    ]);
    client.list_ips(s.key.credential_id).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn registration_that_failed_at_device_server_resumes_there_without_a_new_installation() {
    let s = Scenario::start().await;
    s.inject(Fault::once(FaultKind::Status(400)).on(Method::POST, "/device-server"));
    let err = s.try_connect(s.settings()).await.unwrap_err();
    assert!(matches!(err, BunqError::Api { status: 400, .. }), "{err}");
    s.assert_log(&[INSTALLATION_OK, "POST /device-server 400"]);
    s.sim.clear_request_log();

    s.connect().await;
    s.assert_log(&[DEVICE_OK, SESSION_OK]);
}

const DEAD_INSTALLATION_TOKEN: &str = "installation-token-bunq-forgot";
const DEAD_SESSION_TOKEN: &str = "session-token-bunq-forgot";
const SESSION_REJECTED: &str = "POST /session-server 403";

/// Saves a context whose installation and session bunq does not know (a sandbox reset, a revoked
/// device), with a session that has six days left by the client's clock.
fn save_dead_context(s: &Scenario) {
    let mut context = Context::new(&s.base_url(), &s.key.api_key, client_key()).unwrap();
    context.installation = Some(InstallationContext {
        token: Secret::new(DEAD_INSTALLATION_TOKEN),
        server_public_key: s.sim.server_public_key().to_pem(),
    });
    context.device = Some(DeviceContext {
        id: Some(1),
        description: Some(DEVICE.to_owned()),
    });
    context.session = Some(SessionContext {
        token: Secret::new(DEAD_SESSION_TOKEN),
        id: Some(2),
        user_id: s.key.user_id,
        expires_at: (s.clock)() + chrono::Duration::days(6),
        session_timeout_secs: Some(604_800),
    });
    s.save(&context);
}

fn saved_context(s: &Scenario) -> Context {
    ContextStore::open(&s.state_dir)
        .unwrap()
        .load_matching(&s.base_url(), &s.key.api_key)
        .unwrap()
        .unwrap()
}

/// A client that met a dead installation and registered anew in its first call.
async fn client_that_registered_anew(s: &Scenario) -> BunqClient {
    save_dead_context(s);
    let client = s.connect().await;
    client.list_ips(s.key.credential_id).await.unwrap();
    s.sim.clear_request_log();
    client
}

/// A [`client_that_registered_anew`] whose new installation bunq forgets again `elapsed` after
/// that registration.
async fn installation_forgotten_again_after(elapsed: Duration) -> (Scenario, BunqClient) {
    let s = Scenario::start().await;
    let client = client_that_registered_anew(&s).await;
    tokio::time::advance(elapsed).await;
    s.sim.forget_installations();
    (s, client)
}

/// bunq forgot the installation and its sessions (a sandbox reset, a revoked device), but the
/// saved session has not expired by the client's clock. `connect` sends nothing (the session
/// looks fresh); the first call meets "Insufficient authentication", and opening a new session
/// with the saved installation token is refused the same way. That run may fail, but the next
/// start must not be stuck on the same dead context.
#[tokio::test(start_paused = true)]
async fn dead_installation_with_a_fresh_looking_session_recovers_at_the_next_start() {
    let s = Scenario::start().await;
    save_dead_context(&s);

    let client = s.connect().await;
    let first_run = client.list_ips(s.key.credential_id).await;
    drop(client);
    tokio::time::advance(Duration::from_secs(60)).await;

    let restarted = s.connect().await;
    let second_run = restarted.list_ips(s.key.credential_id).await;
    assert!(
        first_run.is_ok() || second_run.is_ok(),
        "stuck: {first_run:?} then {second_run:?}; log {:?}",
        s.log()
    );
}

#[tokio::test(start_paused = true)]
async fn dead_installation_met_by_a_call_is_registered_anew_within_that_call() {
    let s = Scenario::start().await;
    save_dead_context(&s);
    let client = s.connect().await;
    assert!(s.log().is_empty(), "the saved session looked fresh");

    let ips = client.list_ips(s.key.credential_id).await.unwrap();
    assert_eq!(ips.len(), 1);
    assert_eq!(s.log(), REREGISTERED_LISTING);
}

#[tokio::test(start_paused = true)]
async fn registration_made_by_a_running_client_is_saved_and_reused_at_the_next_start() {
    let s = Scenario::start().await;
    drop(client_that_registered_anew(&s).await);
    let saved = saved_context(&s);
    let installation = saved.installation.expect("an installation is saved");
    assert_ne!(installation.token.expose(), DEAD_INSTALLATION_TOKEN);
    let session = saved.session.expect("a session is saved");
    assert_ne!(session.token.expose(), DEAD_SESSION_TOKEN);

    let restarted = s.connect().await;
    restarted.list_ips(s.key.credential_id).await.unwrap();
    s.assert_log(&[LIST_IPS_OK]);
}

#[tokio::test(start_paused = true)]
async fn installation_forgotten_again_within_the_interval_fails_without_registering() {
    let (s, client) = installation_forgotten_again_after(Duration::from_secs(60)).await;

    let err = client.list_ips(s.key.credential_id).await.unwrap_err();
    assert!(err.is_registration_deferred(), "{err}");
    assert!(err.to_string().contains("registered anew"), "{err}");
    let again = client.list_ips(s.key.credential_id).await.unwrap_err();
    assert!(again.is_registration_deferred(), "{again}");
    assert_eq!(
        s.log(),
        vec![LIST_IPS_REJECTED, SESSION_REJECTED],
        "one attempt to open a session, then nothing until the interval has passed"
    );
}

#[tokio::test(start_paused = true)]
async fn installation_forgotten_again_is_dropped_from_the_state_file_so_the_next_start_registers() {
    let (s, client) = installation_forgotten_again_after(Duration::from_secs(60)).await;
    client.list_ips(s.key.credential_id).await.unwrap_err();
    drop(client);
    let saved = saved_context(&s);
    assert!(saved.installation.is_none() && saved.session.is_none());
    // Issue 9: the bound holds across restarts, so a restart registers only once the interval
    // since the last registration has passed (before, any restart registered at once).
    tokio::time::advance(REREGISTRATION_INTERVAL).await;
    s.sim.clear_request_log();

    let restarted = s.connect().await;
    restarted.list_ips(s.key.credential_id).await.unwrap();
    s.assert_log(&[INSTALLATION_OK, DEVICE_OK, SESSION_OK, LIST_IPS_OK]);
}

#[tokio::test(start_paused = true)]
async fn installation_forgotten_again_and_a_restart_within_the_interval_make_no_registration_call()
{
    let (s, client) = installation_forgotten_again_after(Duration::from_secs(60)).await;
    client.list_ips(s.key.credential_id).await.unwrap_err();
    drop(client);
    tokio::time::advance(Duration::from_secs(600)).await;
    s.sim.clear_request_log();

    let err = s.try_connect(s.settings()).await.unwrap_err();
    assert!(err.is_registration_deferred(), "{err}");
    assert!(s.log().is_empty(), "nothing sent: {:?}", s.log());
}

#[tokio::test(start_paused = true)]
async fn installation_forgotten_again_after_the_interval_is_registered_anew_again() {
    let (s, client) = installation_forgotten_again_after(REREGISTRATION_INTERVAL).await;

    client.list_ips(s.key.credential_id).await.unwrap();
    assert_eq!(s.log(), REREGISTERED_LISTING);
}

#[tokio::test(start_paused = true)]
async fn failed_registration_after_a_dead_installation_is_not_repeated_and_resumes_at_the_next_start()
 {
    let s = Scenario::start().await;
    save_dead_context(&s);
    let client = s.connect().await;
    s.inject(Fault::once(FaultKind::Status(400)).on(Method::POST, "/device-server"));

    let err = client.list_ips(s.key.credential_id).await.unwrap_err();
    assert!(matches!(err, BunqError::Api { status: 400, .. }), "{err}");
    client.list_ips(s.key.credential_id).await.unwrap_err();
    assert_eq!(
        s.log(),
        vec![
            LIST_IPS_REJECTED,
            SESSION_REJECTED,
            INSTALLATION_OK,
            "POST /device-server 400"
        ],
        "no second registration in the same process"
    );
    drop(client);
    tokio::time::advance(Duration::from_secs(30)).await;
    s.sim.clear_request_log();

    let restarted = s.connect().await;
    restarted.list_ips(s.key.credential_id).await.unwrap();
    assert_eq!(
        s.log(),
        vec![DEVICE_OK, SESSION_OK, LIST_IPS_OK],
        "the next start resumes at device-server with the new installation"
    );
}

/// A scenario whose sessions live 5 minutes, so a restart 10 minutes later finds its saved
/// session expired and must open one with the saved installation.
async fn short_session_scenario() -> Scenario {
    Scenario::with_session_timeout(300).await
}

/// A [`short_session_scenario`] that registered once, then bunq forgot the installation and
/// 10 minutes passed (the saved session is expired too): what a restart finds.
async fn restarted_after_bunq_forgot_the_installation() -> Scenario {
    let s = short_session_scenario().await;
    drop(s.connect().await);
    s.sim.forget_installations();
    tokio::time::advance(Duration::from_secs(600)).await;
    s
}

#[tokio::test(start_paused = true)]
async fn restart_within_the_interval_after_a_registration_makes_no_installation_or_device_call() {
    // bunq keeps rejecting the installation: a daemon restarted by systemd (or crash-looping)
    // must not leave a new device at bunq on every start.
    let s = restarted_after_bunq_forgot_the_installation().await;
    s.sim.clear_request_log();

    let err = s.try_connect(s.settings()).await.unwrap_err();
    assert_eq!(
        s.log(),
        vec![SESSION_REJECTED],
        "one session-server attempt with the saved installation, no registration"
    );
    assert!(err.is_registration_deferred(), "{err}");
    assert!(err.to_string().contains("registered anew"), "{err}");
    assert!(
        saved_context(&s).installation.is_some(),
        "the saved installation is kept, so the next attempt tries session-server again"
    );
}

#[tokio::test(start_paused = true)]
async fn restart_after_the_interval_registers_once_more_when_bunq_rejects_the_saved_installation() {
    let s = restarted_after_bunq_forgot_the_installation().await;
    s.try_connect(s.settings()).await.unwrap_err();
    tokio::time::advance(REREGISTRATION_INTERVAL).await;
    s.sim.clear_request_log();

    let client = s.connect().await;
    s.assert_log(&[SESSION_REJECTED, INSTALLATION_OK, DEVICE_OK, SESSION_OK]);
    client.list_ips(s.key.credential_id).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn credentials_rejected_by_session_server_in_a_running_client_keep_the_installation() {
    // bunq refuses the key from this IP: a new installation cannot fix that, and device-server
    // must not be called behind the operator's back.
    let (s, client) = Scenario::connected_start().await;
    let saved = s.state_bytes();
    s.sim.set_caller_ip(Ipv4Addr::new(203, 0, 113, 99));
    s.sim.expire_all_sessions();
    tokio::time::advance(Duration::from_secs(30)).await;

    let err = client.list_ips(s.key.credential_id).await.unwrap_err();
    assert!(err.is_credentials_rejected(), "{err}");
    assert_eq!(
        s.log(),
        vec![LIST_IPS_REJECTED, "POST /session-server 400"],
        "no registration"
    );
    assert_eq!(s.state_bytes(), saved, "context kept");
}

// ---------------------------------------------------------------------------------------------
// 9. What the metrics hooks see.

/// Health turns ready when a session is announced; a test (or an operator) reading the state
/// file then must find that session saved, at registration and at renewal alike.
#[tokio::test(start_paused = true)]
async fn a_new_session_is_saved_before_it_is_announced() {
    let s = Scenario::start().await;
    let (client, recorder) = s.observed().await;
    s.sim.expire_all_sessions();
    client.list_ips(s.key.credential_id).await.unwrap();

    let seen = recorder.saved_at_announcement.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "registration and renewal: {seen:?}");
    assert!(seen.iter().all(Option::is_some), "{seen:?}");
    assert_ne!(seen[0], seen[1], "the renewal announced its own session");
    let saved = s
        .saved()
        .session
        .map(|session| session.token.expose().to_owned());
    assert_eq!(seen[1], saved);
}

#[tokio::test(start_paused = true)]
async fn observer_events_match_what_bunq_saw() {
    let s = Scenario::start().await;
    let (client, recorder) = s.observed().await;
    let pattern = "/user/{user}/credential-password-ip/{cred}/ip";

    s.inject(Fault::once(FaultKind::Status(429)).on(Method::GET, ENTRIES_PATH));
    client.list_ips(s.key.credential_id).await.unwrap();
    s.sim.expire_all_sessions();
    client.list_ips(s.key.credential_id).await.unwrap();
    s.inject(Fault::once(FaultKind::GarbleSignature).on(Method::GET, ENTRIES_PATH));
    client.list_ips(s.key.credential_id).await.unwrap_err();

    let seen: Vec<String> = s
        .sim
        .request_log()
        .iter()
        .map(|request| format!("request {} {:?}", request.method, request.status))
        .collect();
    assert_eq!(recorder.starting_with("request "), seen);
    assert_eq!(
        recorder.starting_with("rate_limited"),
        vec![format!("rate_limited {pattern}")]
    );
    assert_eq!(
        recorder.starting_with("retrying"),
        vec![format!("retrying {pattern} 1")]
    );
    assert_eq!(
        recorder.starting_with("signature_rejected"),
        vec![format!("signature_rejected {pattern}")]
    );
    assert_eq!(recorder.starting_with("session_created").len(), 2);
    assert!(
        recorder
            .starting_with("throttled")
            .contains(&"throttled /session-server".to_owned()),
        "the renewal waited for the session-server window"
    );
}

// ---------------------------------------------------------------------------------------------
// Read-only clients: a state directory another process (the daemon) holds.

#[tokio::test(start_paused = true)]
async fn read_only_client_uses_the_saved_session_to_its_end_and_never_renews_registers_or_saves() {
    let (s, settings) = Scenario::renewing().await;
    drop(s.try_connect(settings.clone()).await.unwrap());
    s.sim.clear_request_log();
    let saved = s.state_bytes();
    let credential = s.key.credential_id;
    let read_only =
        || BunqClient::connect_read_only(settings.clone(), s.key.api_key.clone(), &s.state_dir);

    let client = read_only().await.unwrap();
    assert!(client.is_read_only());
    assert!(s.log().is_empty(), "connecting sent {:?}", s.log());
    // 1000 s in, 200 s remain (< renew_before): a writer would renew first, a reader does not.
    tokio::time::advance(Duration::from_secs(1000)).await;
    client.list_ips(credential).await.unwrap();
    s.assert_log(&[LIST_IPS_OK]);
    client.ensure_session().await.unwrap();
    let renewal = client.renew_session().await.unwrap_err();
    assert!(renewal.to_string().contains("read-only"), "{renewal}");
    assert_eq!(s.log(), vec![LIST_IPS_OK], "no session-server call");

    // bunq ends the session early: the call fails instead of opening a new session.
    s.sim.expire_all_sessions();
    let rejected = client.list_ips(credential).await.unwrap_err();
    assert!(
        rejected.to_string().contains("rejected the saved session"),
        "{rejected}"
    );
    s.assert_log(&[LIST_IPS_OK, LIST_IPS_REJECTED]);

    // Expired by the clock: calls and new read-only clients fail without a request.
    tokio::time::advance(Duration::from_secs(300)).await;
    s.sim.clear_request_log();
    assert!(client.list_ips(credential).await.is_err());
    let expired = read_only().await.unwrap_err();
    assert!(expired.to_string().contains("expired"), "{expired}");
    assert!(s.log().is_empty(), "sent {:?}", s.log());
    assert_eq!(s.sim.sessions_created(), 1);
    assert_eq!(s.state_bytes(), saved, "state file untouched");
}

#[tokio::test(start_paused = true)]
async fn read_only_client_on_an_empty_state_dir_fails_without_registering() {
    let s = Scenario::start().await;
    let err = BunqClient::connect_read_only(s.settings(), s.key.api_key.clone(), &s.state_dir)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no saved bunq context"), "{err}");
    assert!(s.log().is_empty(), "sent {:?}", s.log());
    assert!(!s.state_file().exists());
}
