//! Soak: many reconcile cycles of the real client and the real reconcile run against the
//! simulator, with random faults and random out-of-band drift, checking the invariants after
//! every cycle and memory at the end. Ignored by default; run it with
//!
//! ```text
//! cargo test --release --test integration soak:: -- --ignored --nocapture
//! ```
//!
//! `SOAK_SEED` (decimal) replays a run; `SOAK_CYCLES` changes the number of cycles (500) and
//! `SOAK_FAULT_RATE` the fault probability per call (0.02), for harsher runs.
//!
//! * Faults: before each bunq call of a run (list credentials, list IPs, create, status change)
//!   the call is hit by a random fault with probability 2 % (every [`FaultKind`]: 500, 491, 429,
//!   an HTML 503, resets before and after the write, a response slower than the timeout, a
//!   garbled or missing signature, the session ended early), injected on exactly that call's
//!   method and path. Besides, 1 % of cycles end every session between runs.
//! * Drift: before each cycle, with probability 50 %, one to three changes as a person in the
//!   bunq app would make them: an entry toggled, or a stray ACTIVE entry added for an IP
//!   without one (from a pool of 30 addresses per credential, so allowlists stay bounded).
//!   Protected IPs and the daemon's own credential are never touched (turning off your own
//!   break-glass address is not a fault of the daemon).
//! * Rate limits: real ones, accelerated. The simulator runs at `time_scale` 0.01 and enforces
//!   bunq's windows scaled to it (GET 3 per 30 ms, PUT 2 per 30 ms, session-server 1 per
//!   300 ms); the client's limiter uses the same windows and its default margin, both scaled
//!   by 0.01. 429s the simulator sends on its own (not injected) are counted and printed.
//! * After every cycle the shared invariant checker runs on both managed credentials, and every
//!   drift the daemon reports must be a change the soak made out of band (never the daemon's
//!   own write, even one whose answer was lost or untrustworthy).
//! * After the cycles, one fault-free convergence; then the allowlists must be the desired
//!   state exactly, with no duplicate entry.
//! * Memory: VmRSS at the start, after the warm-up (50 cycles) and at the end. The simulator
//!   lives in the same process and keeps every request id it has seen (bunq refuses reuse), so
//!   a little growth is the simulator's; the bound asserted is loose (8 MiB over the warm-up
//!   figure) and the figures are printed.

// The whole file is test code: helpers outside `#[test]` fns may panic to report failure too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bunq_ipsync::bunq::model::{CredentialId, IpStatus, PermittedIp};
use bunq_ipsync::bunq::ratelimit::DEFAULT_MARGIN;
use bunq_ipsync::bunq::{
    BaseUrl, BunqClient, ClientSettings, RateLimits, RetryPolicy, TransportSettings,
};
use bunq_ipsync::config::{self, Config};
use bunq_ipsync::reconcile::plan::PlanOutcome;
use bunq_ipsync::reconcile::record::RecordStore;
use bunq_ipsync::reconcile::run;
use bunq_ipsync::secret::Secret;
use bunq_ipsync::simulator::{Fault, FaultKind, Simulator, SimulatorOptions};
use hyper::Method;
use tokio_util::sync::CancellationToken;

use crate::invariants::{Snapshot, assert_invariants};
use crate::support::bank::{Hook, Hooked, active_ips};
use crate::support::config_text;

const DEFAULT_SEED: u64 = 20_261_121;
const DEFAULT_CYCLES: usize = 500;
const WARM_UP: usize = 50;
const DEFAULT_FAULT_RATE: f64 = 0.02;
const DRIFT_RATE: f64 = 0.50;
/// At most this many drift events in one cycle.
const MAX_DRIFT_EVENTS: usize = 3;
const EXPIRE_SESSIONS_RATE: f64 = 0.01;
const TIME_SCALE: f64 = 0.01;
/// The client's request timeout, and a delay well beyond it.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(300);
const SLOW: Duration = Duration::from_secs(1);
/// RSS growth after the warm-up that fails the soak.
const MAX_GROWTH_KIB: u64 = 8 * 1024;
const DEVICE: &str = "bunq-ipsync-soak";

/// splitmix64: small, seedable, good enough to pick faults.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

fn fault_kinds() -> Vec<(&'static str, FaultKind)> {
    vec![
        ("500", FaultKind::Status(500)),
        ("491", FaultKind::Status(491)),
        ("429", FaultKind::Status(429)),
        ("html-503", FaultKind::Html503),
        ("reset-before", FaultKind::ResetBeforeApply),
        ("reset-after", FaultKind::ResetAfterApply),
        ("slow", FaultKind::Delay(SLOW)),
        ("garble-signature", FaultKind::GarbleSignature),
        ("drop-signature", FaultKind::DropSignature),
        ("expire-session", FaultKind::ExpireSession),
    ]
}

/// The [`Hook`] that injects a random fault on exactly the request each call is about to send.
struct Chaos<'a> {
    sim: &'a Simulator,
    rng: &'a Mutex<Rng>,
    fault_rate: f64,
    kinds: Vec<(&'static str, FaultKind)>,
    calls: Mutex<usize>,
    injected: Mutex<BTreeMap<&'static str, usize>>,
}

impl Chaos<'_> {
    fn maybe_fault(&self, method: Method, path: String) {
        *self.calls.lock().unwrap() += 1;
        let mut rng = self.rng.lock().unwrap();
        if !rng.chance(self.fault_rate) {
            return;
        }
        let (name, kind) = self.kinds[rng.below(self.kinds.len())].clone();
        *self.injected.lock().unwrap().entry(name).or_default() += 1;
        self.sim.inject(Fault::once(kind).on(method, &path));
    }
}

impl Hook for Chaos<'_> {
    async fn around<T: Send>(
        &self,
        method: Method,
        path: String,
        call: impl Future<Output = T> + Send,
    ) -> T {
        self.maybe_fault(method, path);
        call.await
    }
}

/// One managed credential and what it should hold.
struct Managed {
    id: CredentialId,
    desired: BTreeSet<Ipv4Addr>,
    protected: BTreeSet<Ipv4Addr>,
    /// `sync` (ACTIVE set = desired + protected) or `additive` (desired ⊆ ACTIVE).
    sync: bool,
}

impl Managed {
    fn converged(&self, sim: &Simulator) -> bool {
        let active: BTreeSet<String> = active_ips(sim, self.id).into_iter().collect();
        let desired: BTreeSet<String> = self.desired.iter().map(Ipv4Addr::to_string).collect();
        if self.sync {
            let protected = self.protected.iter().map(Ipv4Addr::to_string);
            active == desired.into_iter().chain(protected).collect()
        } else {
            desired.is_subset(&active)
        }
    }
}

fn ip(last: u8, third: u8) -> Ipv4Addr {
    Ipv4Addr::new(203, 0, third, last)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn settings(sim: &Simulator) -> ClientSettings {
    let mut settings = ClientSettings::new(BaseUrl::parse(&sim.base_url()).unwrap(), DEVICE);
    settings.transport = TransportSettings {
        connect_timeout: Duration::from_secs(5),
        request_timeout: REQUEST_TIMEOUT,
        // The default policy, scaled like the windows.
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(80),
        },
        rate_limits: RateLimits::bunq()
            .with_windows_scaled(TIME_SCALE)
            .with_margin(DEFAULT_MARGIN.mul_f64(TIME_SCALE)),
    };
    settings
}

fn write_config(
    sim: &Simulator,
    dir: &std::path::Path,
    pool: &Managed,
    office: &Managed,
) -> Config {
    let list = |ips: &BTreeSet<Ipv4Addr>| {
        ips.iter()
            .map(Ipv4Addr::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let key_file = dir.join("api-key");
    std::fs::write(&key_file, "unused: the soak passes the key directly").unwrap();
    let bunq =
        config_text::bunq_section(&sim.base_url(), Some(&key_file), DEVICE, &dir.join("state"));
    let text = format!(
        "{bunq}sync:
  policy: sync
  interval: 30s
  max_changes: 20
credentials:
  - id: {pool_id}
    name: ci-pool
    ips: [{pool_ips}]
    protected: [{pool_protected}]
  - id: {office_id}
    name: office
    policy: additive
    ips: [{office_ips}]
",
        pool_id = pool.id,
        pool_ips = list(&pool.desired),
        pool_protected = list(&pool.protected),
        office_id = office.id,
        office_ips = list(&office.desired),
    );
    config::parse(&dir.join("config.yaml"), &text).unwrap()
}

/// Counters for the report.
#[derive(Default)]
struct Tally {
    runs_converged: usize,
    runs_with_failures: usize,
    runs_refused: usize,
    requests: usize,
    faults_fired: usize,
    unprovoked_429: usize,
    drift: BTreeMap<&'static str, usize>,
    sessions_expired: usize,
    drift_reported: usize,
    max_entries: usize,
}

/// One out-of-band change, as someone in the bunq app would make it; returns the credential
/// and IP changed.
fn drift(
    sim: &Simulator,
    rng: &mut Rng,
    managed: &[&Managed],
    strays: &[Ipv4Addr],
    tally: &mut Tally,
) -> (CredentialId, String) {
    let target = managed[rng.below(managed.len())];
    let entries = sim.entries(target.id).unwrap();
    if rng.chance(0.5) {
        let free: Vec<&Ipv4Addr> = strays
            .iter()
            .filter(|ip| !entries.iter().any(|entry| entry.ip == ip.to_string()))
            .collect();
        if !free.is_empty() {
            let ip = free[rng.below(free.len())];
            sim.add_entry(target.id, &ip.to_string(), IpStatus::Active)
                .unwrap();
            *tally.drift.entry("stray ACTIVE entry added").or_default() += 1;
            return (target.id, ip.to_string());
        }
    }
    let toggleable: Vec<&PermittedIp> = entries
        .iter()
        .filter(|entry| !target.protected.iter().any(|ip| ip.to_string() == entry.ip))
        .collect();
    let entry = toggleable[rng.below(toggleable.len())];
    let (status, name) = match entry.status {
        IpStatus::Active => (IpStatus::Inactive, "entry deactivated"),
        _ => (IpStatus::Active, "entry activated"),
    };
    sim.set_entry_status(target.id, entry.id, status).unwrap();
    *tally.drift.entry(name).or_default() += 1;
    (target.id, entry.ip.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: 500 cycles; run with --release -- --ignored --nocapture"]
async fn soak_many_cycles_with_random_faults_and_drift_keeps_every_invariant() {
    let seed: u64 = env_or("SOAK_SEED", DEFAULT_SEED);
    let cycles: usize = env_or("SOAK_CYCLES", DEFAULT_CYCLES);
    let fault_rate: f64 = env_or("SOAK_FAULT_RATE", DEFAULT_FAULT_RATE);
    println!(
        "soak: seed {seed} (replay with SOAK_SEED={seed}), {cycles} cycles, fault rate {fault_rate}"
    );
    let started = Instant::now();
    let rss_start = rss_kib();

    let sim = Simulator::start(SimulatorOptions {
        time_scale: TIME_SCALE,
        rate_limits: true,
        ..SimulatorOptions::default()
    })
    .await
    .unwrap();
    let key = sim.create_user_with_api_key();
    let pool = Managed {
        id: sim
            .add_credential(key.user_id, Some("ci-pool"), Some(ip(10, 113)))
            .unwrap(),
        desired: (10..18).map(|last| ip(last, 113)).collect(),
        protected: [Ipv4Addr::new(192, 0, 2, 1)].into(),
        sync: true,
    };
    let office = Managed {
        id: sim
            .add_credential(key.user_id, Some("office"), Some(ip(20, 100)))
            .unwrap(),
        desired: [ip(20, 100), ip(21, 100)].into(),
        protected: BTreeSet::new(),
        sync: false,
    };
    for (last, status) in [
        (10, IpStatus::Active),
        (11, IpStatus::Inactive),
        (12, IpStatus::Active),
    ] {
        sim.add_entry(pool.id, &ip(last, 113).to_string(), status)
            .unwrap();
    }
    sim.add_entry(pool.id, "192.0.2.1", IpStatus::Active)
        .unwrap();
    sim.add_entry(pool.id, "192.0.2.50", IpStatus::Active)
        .unwrap();
    sim.add_entry(office.id, &ip(20, 100).to_string(), IpStatus::Active)
        .unwrap();
    let strays: Vec<Ipv4Addr> = (100..130)
        .map(|last| Ipv4Addr::new(192, 0, 2, last))
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), &pool, &office);
    let state_dir = config.bunq.state_dir.clone();
    let client = BunqClient::connect(
        settings(&sim),
        Secret::new(key.api_key.expose()),
        &state_dir,
    )
    .await
    .unwrap();
    let records = RecordStore::new(&state_dir);
    // What the invariants compare a run with: both managed credentials, the own one, the state.
    let snapshot = || {
        Snapshot::take(
            &sim,
            &[pool.id, office.id],
            &[key.credential_id],
            &state_dir,
        )
    };
    let rng = Mutex::new(Rng(seed));
    let chaos = Hooked {
        client: &client,
        hook: Chaos {
            sim: &sim,
            rng: &rng,
            fault_rate,
            kinds: fault_kinds(),
            calls: Mutex::new(0),
            injected: Mutex::new(BTreeMap::new()),
        },
    };
    let managed = [&pool, &office];
    let mut tally = Tally::default();
    // IPs changed out of band since the last saved record, per credential.
    let mut touched: BTreeMap<CredentialId, BTreeSet<String>> = BTreeMap::new();
    let mut rss_warm = rss_start;

    for cycle in 1..=cycles {
        {
            let mut rng = rng.lock().unwrap();
            if rng.chance(DRIFT_RATE) {
                for _ in 0..=rng.below(MAX_DRIFT_EVENTS) {
                    let (credential, ip) = drift(&sim, &mut rng, &managed, &strays, &mut tally);
                    touched.entry(credential).or_default().insert(ip);
                }
            }
            if rng.chance(EXPIRE_SESSIONS_RATE) {
                sim.expire_all_sessions();
                tally.sessions_expired += 1;
            }
        }
        sim.clear_request_log();
        let before = snapshot();
        let previous = records.load();
        match run::apply_run(
            &chaos,
            &config,
            previous.as_ref(),
            &CancellationToken::new(),
        )
        .await
        {
            Ok((report, record)) => {
                records.save(&record).unwrap();
                // Drift reported is drift made: never the daemon's own writes.
                for plan in &report.plan.credentials {
                    for reported in &plan.drift {
                        let made = touched
                            .get(&plan.credential)
                            .is_some_and(|ips| ips.contains(&reported.ip));
                        assert!(
                            made,
                            "cycle {cycle}: drift reported for {} on {} that nobody made: {reported:?}",
                            reported.ip, plan.credential
                        );
                        tally.drift_reported += 1;
                    }
                }
                touched.clear();
                if report.exit_status().code() == 0 {
                    tally.runs_converged += 1;
                } else {
                    tally.runs_with_failures += 1;
                }
            }
            Err(_) => tally.runs_refused += 1,
        }
        for target in managed {
            let entries =
                assert_invariants(&sim, &before, target.id, &target.desired, &target.protected);
            tally.max_entries = tally.max_entries.max(entries);
        }
        let log = sim.request_log();
        tally.requests += log.len();
        tally.faults_fired += log.iter().filter(|r| r.fault.is_some()).count();
        for limited in log
            .iter()
            .filter(|r| r.status == Some(429) && r.fault.is_none())
        {
            tally.unprovoked_429 += 1;
            println!(
                "soak: cycle {cycle}: the simulator rate-limited {} {}",
                limited.method, limited.path
            );
        }
        if cycle == WARM_UP {
            rss_warm = rss_kib();
        }
        if cycle % 100 == 0 {
            println!(
                "soak: cycle {cycle}, {} requests so far, RSS {} KiB",
                tally.requests,
                rss_kib()
            );
        }
    }

    // Let any delayed response go out, then run without faults until a run finds nothing to
    // do (at least one run).
    tokio::time::sleep(SLOW).await;
    sim.clear_request_log();
    let mut final_runs = 0;
    loop {
        final_runs += 1;
        assert!(final_runs <= 5, "no fault-free convergence after 5 runs");
        let before = snapshot();
        let previous = records.load();
        let (report, record) = run::apply_run(
            &client,
            &config,
            previous.as_ref(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        records.save(&record).unwrap();
        for target in managed {
            assert_invariants(&sim, &before, target.id, &target.desired, &target.protected);
        }
        if report.plan.outcome() == PlanOutcome::NothingToDo {
            break;
        }
    }
    let leftover_faults = sim
        .request_log()
        .iter()
        .filter(|r| r.fault.is_some())
        .count();
    let rss_end = rss_kib();

    let injected = chaos.hook.injected.lock().unwrap().clone();
    let injected_total: usize = injected.values().sum();
    let calls = *chaos.hook.calls.lock().unwrap();
    println!(
        "soak: seed {seed}, {cycles} cycles in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "soak: runs: {} converged, {} with failed actions, {} refused",
        tally.runs_converged, tally.runs_with_failures, tally.runs_refused
    );
    println!(
        "soak: faults: {injected_total} injected on {calls} bunq calls ({:.2} %), {} seen in the \
         request log (a slow request the client gave up on is not logged), {} fired during the \
         final convergence; by kind {injected:?}",
        100.0 * injected_total as f64 / calls.max(1) as f64,
        tally.faults_fired,
        leftover_faults,
    );
    println!(
        "soak: drift made: {:?}; drift reported by the daemon: {} (each one made); sessions \
         ended by the server {} times",
        tally.drift, tally.drift_reported, tally.sessions_expired
    );
    println!(
        "soak: {} requests, {} rate-limited by the simulator without injection; largest \
         allowlist {} entries; fault-free runs at the end: {final_runs} (the last had nothing to do)",
        tally.requests, tally.unprovoked_429, tally.max_entries
    );
    println!(
        "soak: VmRSS start {rss_start} KiB, after {WARM_UP} cycles {rss_warm} KiB, end {rss_end} \
         KiB ({:+} KiB since warm-up)",
        rss_end as i64 - rss_warm as i64
    );

    for target in managed {
        assert!(
            target.converged(&sim),
            "credential {} not converged",
            target.id
        );
    }
    assert!(
        rss_end <= rss_warm + MAX_GROWTH_KIB,
        "RSS grew by {} KiB after the warm-up",
        rss_end - rss_warm
    );
}
