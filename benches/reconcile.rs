//! Runtime benchmarks of the reconcile loop against the built-in bunq simulator, with bunq's real
//! rate-limit windows on both sides (simulator `time_scale: 1.0`; the client's default limits,
//! `RateLimits::bunq()` plus the transport's 250 ms safety margin), each account's client with a
//! limiter of its own (see [`Account::connect`]).
//!
//! Two figures, printed, never asserted:
//!
//! 1. **API calls per steady-state cycle**: a simulated account (C credentials x 20 IPs, C = 5
//!    unless `--credentials` says otherwise) is converged, then N further cycles (`apply_run`, exactly what the daemon runs per tick) are
//!    counted request by request from the simulator's log, against the theoretical minimum.
//! 2. **Time to converge K changes** (K = 10, 50, 200): the wall time of one `apply_run`, as a
//!    ratio to the floor bunq's limits impose on the same requests, and the 429s bunq answered.
//!
//! Run: `cargo bench --bench reconcile` (about 8 minutes; K = 200 dominates).
//! `-- --quick` (or `BUNQ_IPSYNC_BENCH_QUICK=1`) runs only K = 10 and 50; `-- --only calls` or
//! `-- --only converge` runs one part; `BUNQ_IPSYNC_BENCH_CYCLES` changes N (default 20);
//! `-- --credentials 1,5,20` runs the calls part once per listed C (a fresh account each).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bunq_ipsync::bunq::BunqClient;
use bunq_ipsync::bunq::model::{CredentialId, IpStatus};
use bunq_ipsync::bunq::ratelimit::DEFAULT_MARGIN;
use bunq_ipsync::cli::setup;
use bunq_ipsync::config::{self, Config};
use bunq_ipsync::reconcile::apply::OutcomeKind;
use bunq_ipsync::reconcile::bunq_adapter;
use bunq_ipsync::reconcile::record::RunRecord;
use bunq_ipsync::reconcile::run;
use bunq_ipsync::simulator::{LoggedRequest, Simulator, SimulatorOptions};
use tokio_util::sync::CancellationToken;

/// The description the bench's daemon registers its device with (finds its own credential by it).
const DEVICE: &str = "bunq-ipsync-bench";

/// Command-line choices.
struct Options {
    quick: bool,
    calls: bool,
    converge: bool,
    cycles: usize,
    /// The C values of the calls part: how many managed credentials each measured account has.
    credentials: Vec<usize>,
}

/// `--credentials 1,5,20`: a comma-separated list of positive whole numbers.
fn credential_counts(value: Option<&str>) -> anyhow::Result<Vec<usize>> {
    let value = value.context("--credentials takes a list such as 1,5,20")?;
    value
        .split(',')
        .map(|part| match part.trim().parse::<usize>() {
            Ok(count) if (1..=250).contains(&count) => Ok(count),
            _ => bail!("--credentials takes whole numbers from 1 to 250, not {part:?}"),
        })
        .collect()
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        quick: std::env::var_os("BUNQ_IPSYNC_BENCH_QUICK").is_some_and(|value| value != "0"),
        calls: true,
        converge: true,
        cycles: match std::env::var("BUNQ_IPSYNC_BENCH_CYCLES") {
            Ok(value) => value
                .parse()
                .context("BUNQ_IPSYNC_BENCH_CYCLES must be a whole number")?,
            Err(_) => 20,
        },
        credentials: vec![5],
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--only" => match args.next().as_deref() {
                Some("calls") => options.converge = false,
                Some("converge") => options.calls = false,
                other => bail!("--only takes `calls` or `converge`, not {other:?}"),
            },
            "--credentials" => options.credentials = credential_counts(args.next().as_deref())?,
            // cargo bench passes `--bench`; a name filter may follow. Neither means anything here.
            _ => {}
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    match main_inner() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn main_inner() -> anyhow::Result<()> {
    let options = options()?;
    // The same runtime shape as the daemon (`setup::runtime`: 2 worker threads).
    let runtime = setup::runtime()?;
    println!(
        "bunq-ipsync runtime benchmarks: simulator with bunq's real rate-limit windows \
         (time_scale 1.0), client limits RateLimits::bunq() + {} ms margin.",
        DEFAULT_MARGIN.as_millis()
    );
    if options.calls {
        for &credentials in &options.credentials {
            runtime.block_on(steady_state_calls(credentials, options.cycles))?;
        }
    }
    if options.converge {
        let ks: &[usize] = if options.quick {
            &[10, 50]
        } else {
            &[10, 50, 200]
        };
        runtime.block_on(converge_all(ks))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Seeding

/// One managed credential: what the simulator holds before the run, and what the config wants.
struct CredentialSeed {
    /// Entries planted before the run.
    existing: Vec<(Ipv4Addr, IpStatus)>,
    /// The `ips` of the config.
    desired: Vec<Ipv4Addr>,
}

/// A bench account: a simulator, the daemon's config for it, and the temp dir holding both.
struct Account {
    simulator: Simulator,
    config: Config,
    _dir: tempfile::TempDir,
}

impl Account {
    /// The daemon's client for this account ([`setup::connect`]'s settings and limits), with a
    /// rate limiter of its own. The daemon's process limiter would carry the previous row's
    /// last windows into this row (another simulated bank, a fresh set of windows there): a
    /// row after a write-heavy one would then start by waiting up to a window out (2.3 s at
    /// creates K = 200 after K = 50), time that is no part of its own convergence.
    async fn connect(&self) -> anyhow::Result<BunqClient> {
        let mut settings = bunq_adapter::client_settings(&self.config, None)?;
        settings.rate_limiter = None;
        let api_key = config::resolve_api_key(&self.config)?;
        Ok(BunqClient::connect(settings, api_key, &self.config.bunq.state_dir).await?)
    }
}

/// `10.{credential}.{n / 256}.{n % 256}`: distinct addresses per credential.
fn address(credential: usize, n: usize) -> Ipv4Addr {
    let credential = u8::try_from(credential).unwrap_or(u8::MAX);
    let high = u8::try_from(n / 256).unwrap_or(u8::MAX);
    let low = u8::try_from(n % 256).unwrap_or(u8::MAX);
    Ipv4Addr::new(10, credential, high, low)
}

async fn account(seeds: &[CredentialSeed], max_changes: usize) -> anyhow::Result<Account> {
    let simulator = Simulator::start(SimulatorOptions::default())
        .await
        .context("cannot start the simulator")?;
    let key = simulator.create_user_with_api_key();
    let dir = tempfile::tempdir()?;
    let mut ids: Vec<CredentialId> = Vec::new();
    for (index, seed) in seeds.iter().enumerate() {
        let id = simulator.add_credential(
            key.user_id,
            Some(&format!("other-key-{index}")),
            Some(Ipv4Addr::new(192, 0, 2, 1)),
        )?;
        for (ip, status) in &seed.existing {
            simulator.add_entry(id, &ip.to_string(), status.clone())?;
        }
        ids.push(id);
    }
    let path = write_config(
        &simulator,
        key.api_key.expose(),
        dir.path(),
        seeds,
        &ids,
        max_changes,
    )?;
    let config = config::load(&path)?;
    Ok(Account {
        simulator,
        config,
        _dir: dir,
    })
}

fn write_config(
    simulator: &Simulator,
    api_key: &str,
    dir: &Path,
    seeds: &[CredentialSeed],
    ids: &[CredentialId],
    max_changes: usize,
) -> anyhow::Result<PathBuf> {
    let key_file = dir.join("api-key");
    std::fs::write(&key_file, api_key)?;
    let mut text = format!(
        "bunq:\n  environment: sandbox\n  base_url: \"{}\"\n  api_key_file: \"{}\"\n  \
         device_description: {DEVICE}\n  state_dir: \"{}\"\n\
         sync:\n  policy: sync\n  interval: 5m\n  max_changes: {max_changes}\n\
         log:\n  level: warn\n\
         credentials:\n",
        simulator.base_url(),
        key_file.display(),
        dir.join("state").display()
    );
    for (seed, id) in seeds.iter().zip(ids) {
        text.push_str(&format!("  - id: {id}\n    ips:\n"));
        for ip in &seed.desired {
            text.push_str(&format!("      - {ip}\n"));
        }
    }
    let path = dir.join("config.yaml");
    std::fs::write(&path, text)?;
    Ok(path)
}

// ---------------------------------------------------------------------------------------------
// Request log analysis

/// `GET /user/{user}/credential-password-ip/{cred}/ip`: method plus route pattern, the key bunq
/// counts rate limits by.
fn endpoint(request: &LoggedRequest) -> String {
    let path = request.path.split('?').next().unwrap_or_default();
    let path = path.strip_prefix("/v1").unwrap_or(path);
    let mut pattern = String::new();
    let mut previous = "";
    for segment in path.split('/').filter(|segment| !segment.is_empty()) {
        pattern.push('/');
        if segment.bytes().all(|byte| byte.is_ascii_digit()) {
            pattern.push_str(match previous {
                "user" => "{user}",
                "credential-password-ip" => "{cred}",
                "ip" => "{entry}",
                _ => "{id}",
            });
        } else {
            pattern.push_str(segment);
        }
        previous = segment;
    }
    format!("{} {pattern}", request.method)
}

fn is_session_call(endpoint: &str) -> bool {
    ["/installation", "/device-server", "/session-server"]
        .iter()
        .any(|session| endpoint.ends_with(session))
}

fn count_429(log: &[LoggedRequest]) -> usize {
    log.iter()
        .filter(|request| request.status == Some(429))
        .count()
}

/// bunq's documented calls per window for an endpoint (GET 3, PUT 2, POST and DELETE 5 per
/// 3 s). session-server (1 per 30 s) never occurs inside a run, so it is not modelled.
fn bunq_limit(endpoint: &str) -> usize {
    if endpoint.starts_with("GET ") {
        3
    } else if endpoint.starts_with("PUT ") {
        2
    } else {
        5
    }
}

/// The earliest time the last of `requests` can be sent by a client that sends them one after
/// another, in this order, with zero latency, honouring sliding windows of `base` (3 s for bunq)
/// per endpoint. This is the floor bunq's limits impose on exactly this sequence of requests.
fn sequential_floor(requests: &[String], base: Duration) -> Duration {
    let mut sent: HashMap<&str, VecDeque<Duration>> = HashMap::new();
    let mut now = Duration::ZERO;
    for endpoint in requests {
        let limit = bunq_limit(endpoint);
        let window = base;
        let history = sent.entry(endpoint.as_str()).or_default();
        if history.len() >= limit {
            let oldest = history[history.len() - limit];
            now = now.max(oldest + window);
        }
        history.push_back(now);
    }
    now
}

/// The floor for a client that reads everything first and then writes, but sends to different
/// endpoints in parallel: reads' slowest endpoint, then the writes' slowest endpoint.
fn parallel_floor(requests: &[String], base: Duration) -> Duration {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for endpoint in requests {
        *counts.entry(endpoint.as_str()).or_default() += 1;
    }
    let mut reads = Duration::ZERO;
    let mut writes = Duration::ZERO;
    for (endpoint, count) in counts {
        let limit = bunq_limit(endpoint);
        let windows = u32::try_from(count.div_ceil(limit).saturating_sub(1)).unwrap_or(u32::MAX);
        let floor = base * windows;
        if endpoint.starts_with("GET ") {
            reads = reads.max(floor);
        } else {
            writes = writes.max(floor);
        }
    }
    reads + writes
}

// ---------------------------------------------------------------------------------------------
// 1. API calls per steady-state cycle

async fn steady_state_calls(credentials: usize, cycles: usize) -> anyhow::Result<()> {
    const IPS: usize = 20;
    println!(
        "\n## 1. API calls per steady-state cycle ({credentials} credentials x {IPS} IPs, \
         N = {cycles} cycles after convergence)\n"
    );
    // Each credential starts with drift of every kind: 15 of its 20 IPs ACTIVE, 3 INACTIVE,
    // 2 absent, and 2 ACTIVE IPs that are not wanted.
    let seeds: Vec<CredentialSeed> = (0..credentials)
        .map(|c| {
            let desired: Vec<Ipv4Addr> = (0..IPS).map(|n| address(c, n)).collect();
            let mut existing: Vec<(Ipv4Addr, IpStatus)> = (0..15)
                .map(|n| (address(c, n), IpStatus::Active))
                .chain((15..18).map(|n| (address(c, n), IpStatus::Inactive)))
                .collect();
            existing.push((address(c, 100), IpStatus::Active));
            existing.push((address(c, 101), IpStatus::Active));
            CredentialSeed { existing, desired }
        })
        .collect();
    // 7 changes per credential; the limit must not hold any of them back.
    let account = account(&seeds, credentials * IPS).await?;
    let client = account.connect().await?;
    let setup_log = account.simulator.request_log();
    let stop = CancellationToken::new();

    // Converge (7 changes per credential), then confirm a run has nothing left to do.
    let started = Instant::now();
    let (report, mut record) = run::apply_run(&client, &account.config, None, &stop).await?;
    let applied = report
        .applied
        .as_ref()
        .map_or(0, |applied| applied.count(OutcomeKind::Applied));
    println!(
        "Convergence run: {applied} changes applied in {:.1} s.",
        started.elapsed().as_secs_f64()
    );
    let (check, _) = run::plan_run(&client, &account.config, Some(&record)).await?;
    if !check.plan.actions().is_empty() {
        bail!(
            "the account did not converge: {} actions left",
            check.plan.actions().len()
        );
    }
    account.simulator.clear_request_log();

    let mut per_cycle: Vec<BTreeMap<String, usize>> = Vec::new();
    let mut all_statuses: BTreeMap<String, usize> = BTreeMap::new();
    let mut durations = Vec::new();
    for _ in 0..cycles {
        let started = Instant::now();
        let previous: Option<&RunRecord> = Some(&record);
        let (report, next) = run::apply_run(&client, &account.config, previous, &stop).await?;
        durations.push(started.elapsed());
        if !report.plan.actions().is_empty() {
            bail!("a steady-state cycle planned changes");
        }
        record = next;
        let log = account.simulator.request_log();
        account.simulator.clear_request_log();
        let mut counts = BTreeMap::new();
        for request in &log {
            *counts.entry(endpoint(request)).or_default() += 1;
            let status = request
                .status
                .map_or_else(|| "reset".to_owned(), |status| status.to_string());
            *all_statuses.entry(status).or_default() += 1;
        }
        per_cycle.push(counts);
    }

    let mut endpoints: Vec<String> = per_cycle
        .iter()
        .flat_map(|counts| counts.keys().cloned())
        .collect();
    endpoints.sort();
    endpoints.dedup();
    let minimum = |endpoint: &str| -> usize {
        if endpoint == "GET /user/{user}/credential-password-ip/{cred}/ip" {
            credentials
        } else {
            0
        }
    };
    for required in [
        "GET /user/{user}/credential-password-ip",
        "GET /user/{user}/credential-password-ip/{cred}/ip",
    ] {
        if !endpoints.iter().any(|seen| seen == required) {
            endpoints.push(required.to_owned());
        }
    }
    println!(
        "| endpoint | minimum | min/cycle | mean/cycle | max/cycle | total ({cycles} cycles) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mut total_per_cycle = Vec::new();
    for endpoint in &endpoints {
        let counts: Vec<usize> = per_cycle
            .iter()
            .map(|counts| counts.get(endpoint).copied().unwrap_or(0))
            .collect();
        let total: usize = counts.iter().sum();
        println!(
            "| `{endpoint}` | {} | {} | {:.2} | {} | {total} |",
            minimum(endpoint),
            counts.iter().min().copied().unwrap_or(0),
            mean(&counts),
            counts.iter().max().copied().unwrap_or(0),
        );
    }
    for counts in &per_cycle {
        total_per_cycle.push(counts.values().sum::<usize>());
    }
    let writes: usize = per_cycle
        .iter()
        .flat_map(|counts| counts.iter())
        .filter(|(endpoint, _)| !endpoint.starts_with("GET "))
        .map(|(_, count)| count)
        .sum();
    let session_calls: usize = per_cycle
        .iter()
        .flat_map(|counts| counts.iter())
        .filter(|(endpoint, _)| is_session_call(endpoint))
        .map(|(_, count)| count)
        .sum();
    println!(
        "| **all** | {} | {} | {:.2} | {} | {} |",
        credentials,
        total_per_cycle.iter().min().copied().unwrap_or(0),
        mean(&total_per_cycle),
        total_per_cycle.iter().max().copied().unwrap_or(0),
        total_per_cycle.iter().sum::<usize>()
    );
    println!();
    println!(
        "Minimum per cycle: 1 entry listing per configured credential ({credentials}); the \
         credentials listing (the own-IP facts) only when a deactivation is planned, so 0 here; \
         0 writes; 0 session calls. Every list fits one page (count=200)."
    );
    println!("Writes in {cycles} steady-state cycles: {writes}; session calls: {session_calls}.");
    println!("Response statuses in those cycles: {all_statuses:?}.");
    let listings: usize = per_cycle
        .iter()
        .filter_map(|counts| counts.get("GET /user/{user}/credential-password-ip"))
        .sum();
    println!(
        "Summary, C = {credentials}: GETs per cycle min {} / mean {:.2} / max {} (target: exactly \
         {credentials}); credentials listings {listings}; writes {writes}; 429s {}.",
        total_per_cycle.iter().min().copied().unwrap_or(0),
        mean(&total_per_cycle),
        total_per_cycle.iter().max().copied().unwrap_or(0),
        all_statuses.get("429").copied().unwrap_or(0),
    );
    let secs: Vec<f64> = durations.iter().map(Duration::as_secs_f64).collect();
    let floor = sequential_floor(&per_cycle_sequence(credentials), Duration::from_secs(3));
    println!(
        "Cycle wall time: min {:.2} s, mean {:.2} s, max {:.2} s (bunq's floor for {credentials} \
         GETs when the windows start empty: {:.1} s; back-to-back cycles also wait for the previous \
         cycle's window).",
        secs.iter().copied().fold(f64::INFINITY, f64::min),
        secs.iter().sum::<f64>() / secs.len().max(1) as f64,
        secs.iter().copied().fold(0.0, f64::max),
        floor.as_secs_f64()
    );
    let setup_counts = setup_log
        .iter()
        .fold(BTreeMap::new(), |mut counts, request| {
            *counts.entry(endpoint(request)).or_insert(0usize) += 1;
            counts
        });
    println!("One-time connect calls before the first run (not per cycle): {setup_counts:?}.");
    drop(client);
    account.simulator.shutdown();
    Ok(())
}

/// The requests of a steady-state cycle: one entry listing per credential, nothing else.
fn per_cycle_sequence(credentials: usize) -> Vec<String> {
    std::iter::repeat_n(
        "GET /user/{user}/credential-password-ip/{cred}/ip".to_owned(),
        credentials,
    )
    .collect()
}

fn mean(values: &[usize]) -> f64 {
    values.iter().sum::<usize>() as f64 / values.len().max(1) as f64
}

// ---------------------------------------------------------------------------------------------
// 2. Time to converge K changes

/// Which changes a scenario asks for.
#[derive(Clone, Copy)]
enum Mix {
    /// K absent IPs on one credential: K creates (POST, 5 per 3 s).
    Creates,
    /// Over 4 credentials: K/2 creates, K/4 activations of INACTIVE entries, the rest
    /// deactivations of unwanted ACTIVE entries (PUT, 2 per 3 s).
    Mixed,
}

impl Mix {
    fn name(self) -> &'static str {
        match self {
            Mix::Creates => "creates",
            Mix::Mixed => "mixed",
        }
    }

    fn seeds(self, k: usize) -> Vec<CredentialSeed> {
        match self {
            Mix::Creates => vec![CredentialSeed {
                existing: (0..5).map(|n| (address(0, n), IpStatus::Active)).collect(),
                desired: (0..5 + k).map(|n| address(0, n)).collect(),
            }],
            Mix::Mixed => {
                let creates = k / 2;
                let activations = k / 4;
                let mut seeds: Vec<CredentialSeed> = (0..4)
                    .map(|c| CredentialSeed {
                        existing: (0..5).map(|n| (address(c, n), IpStatus::Active)).collect(),
                        desired: (0..5).map(|n| address(c, n)).collect(),
                    })
                    .collect();
                for change in 0..k {
                    let seed = &mut seeds[change % 4];
                    let ip = address(change % 4, 1000 + change);
                    if change < creates {
                        seed.desired.push(ip);
                    } else if change < creates + activations {
                        seed.existing.push((ip, IpStatus::Inactive));
                        seed.desired.push(ip);
                    } else {
                        seed.existing.push((ip, IpStatus::Active));
                    }
                }
                seeds
            }
        }
    }
}

/// The figures of one convergence.
struct Converged {
    mix: Mix,
    k: usize,
    wall: Duration,
    counts: BTreeMap<String, usize>,
    bunq_floor: Duration,
    margin_floor: Duration,
    parallel_floor: Duration,
    rejected: usize,
    applied: usize,
    left: usize,
}

async fn converge_all(ks: &[usize]) -> anyhow::Result<()> {
    println!("\n## 2. Time to converge K changes (one `apply_run`, max_changes = K)\n");
    let mut results = Vec::new();
    for mix in [Mix::Creates, Mix::Mixed] {
        for &k in ks {
            let result = converge(mix, k).await?;
            println!(
                "  done: {} K={} in {:.1} s",
                result.mix.name(),
                result.k,
                result.wall.as_secs_f64()
            );
            results.push(result);
        }
    }
    println!();
    println!(
        "| mix | K | writes (POST/PUT) | reads (GET) | wall time | bunq floor (sequential) | ratio | \
         floor with 250 ms margin | ratio | parallel floor | ratio | 429s | applied | left after |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for result in &results {
        let by_method = |method: &str| -> usize {
            result
                .counts
                .iter()
                .filter(|(endpoint, _)| endpoint.starts_with(method))
                .map(|(_, count)| count)
                .sum()
        };
        println!(
            "| {} | {} | {}/{} | {} | {:.2} s | {:.2} s | {} | {:.2} s | {} | {:.2} s | {} | {} | {} | {} |",
            result.mix.name(),
            result.k,
            by_method("POST "),
            by_method("PUT "),
            by_method("GET "),
            result.wall.as_secs_f64(),
            result.bunq_floor.as_secs_f64(),
            ratio(result.wall, result.bunq_floor),
            result.margin_floor.as_secs_f64(),
            ratio(result.wall, result.margin_floor),
            result.parallel_floor.as_secs_f64(),
            ratio(result.wall, result.parallel_floor),
            result.rejected,
            result.applied,
            result.left,
        );
    }
    Ok(())
}

fn ratio(wall: Duration, floor: Duration) -> String {
    if floor.is_zero() {
        "n/a".to_owned()
    } else {
        format!("{:.3}", wall.as_secs_f64() / floor.as_secs_f64())
    }
}

async fn converge(mix: Mix, k: usize) -> anyhow::Result<Converged> {
    let account = account(&mix.seeds(k), k).await?;
    let client = account.connect().await?;
    // The session calls of connect use other endpoints (their own windows); start the log clean.
    account.simulator.clear_request_log();
    let stop = CancellationToken::new();

    let started = Instant::now();
    let (report, record) = run::apply_run(&client, &account.config, None, &stop).await?;
    let wall = started.elapsed();

    let log = account.simulator.request_log();
    let applied = report
        .applied
        .as_ref()
        .map_or(0, |applied| applied.count(OutcomeKind::Applied));
    let planned = report.plan.actions().len();
    if planned != k {
        bail!(
            "{} K={k}: the plan has {planned} actions, expected {k}",
            mix.name()
        );
    }
    let (check, _) = run::plan_run(&client, &account.config, Some(&record)).await?;
    let left = check.plan.actions().len();

    let admitted: Vec<String> = log
        .iter()
        .filter(|request| request.status != Some(429))
        .map(endpoint)
        .collect();
    let mut counts = BTreeMap::new();
    for endpoint in &admitted {
        *counts.entry(endpoint.clone()).or_default() += 1;
    }
    let three = Duration::from_secs(3);
    let result = Converged {
        mix,
        k,
        wall,
        bunq_floor: sequential_floor(&admitted, three),
        margin_floor: sequential_floor(&admitted, three + DEFAULT_MARGIN),
        parallel_floor: parallel_floor(&admitted, three),
        counts,
        rejected: count_429(&log),
        applied,
        left,
    };
    drop(client);
    account.simulator.shutdown();
    Ok(result)
}
