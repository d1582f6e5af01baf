//! How fast the daemon follows a moved DNS name (issue 11's target: a change with TTL ≤ 5 s is
//! applied at bunq within 15 s while `sync.interval` is 5 minutes).
//!
//! The real daemon (`runtime::run`, in process) runs against the built-in bunq simulator with
//! bunq's real rate-limit windows and a loopback nameserver. After the first convergence the
//! name is moved ROUNDS times; each time the bench measures, from the moment the nameserver
//! answers the new address, until bunq shows the new IP ACTIVE and the old one INACTIVE. Printed,
//! never asserted.
//!
//! Run: `cargo bench --bench follow` (about a minute). `BUNQ_IPSYNC_BENCH_ROUNDS` changes the
//! number of moves (default 5), `BUNQ_IPSYNC_BENCH_TTL` the TTL in seconds (default 5).

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bunq_ipsync::bunq::model::IpStatus;
use bunq_ipsync::daemon::runtime::{self, Options};
use bunq_ipsync::simulator::{DnsAnswer, DnsServer, Simulator, SimulatorOptions};

const NAME: &str = "home.example.org";
/// Longest wait for one move before the bench gives up.
const PATIENCE: Duration = Duration::from_secs(120);

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start a runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("follow bench failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bench() -> anyhow::Result<()> {
    let rounds = env_number("BUNQ_IPSYNC_BENCH_ROUNDS", 5);
    let ttl = u32::try_from(env_number("BUNQ_IPSYNC_BENCH_TTL", 5))?;
    let sim = Simulator::start(SimulatorOptions::default()).await?;
    let dns = DnsServer::start().await?;
    let key = sim.create_user_with_api_key();
    let home = sim.add_credential(key.user_id, Some("home-server"), None)?;
    let dir = tempfile::tempdir()?;
    let key_file = dir.path().join("api-key");
    std::fs::write(&key_file, key.api_key.expose())?;
    let config_path = dir.path().join("config.yaml");
    std::fs::write(
        &config_path,
        format!(
            "bunq:\n  environment: sandbox\n  base_url: \"{}\"\n  api_key_file: \"{}\"\n  \
             device_description: bench-follow\n  state_dir: \"{}\"\n\
             sync:\n  policy: sync\n  interval: 5m\n\
             http:\n  listen: 127.0.0.1:0\n\
             credentials:\n  - id: {home}\n    ips:\n      - dns: {NAME}\n\
             sources:\n  dns:\n    nameservers: [\"{}\"]\n",
            sim.base_url(),
            key_file.display(),
            dir.path().join("state").display(),
            dns.address(),
        ),
    )?;
    let address = |round: u64| Ipv4Addr::new(203, 0, 113, 100 + round as u8);
    dns.set(NAME, DnsAnswer::a(&[address(0)], ttl));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let options = Options::embedded(config_path.clone(), listener);
    let shutdown = options.shutdown.clone();
    let daemon = tokio::spawn(runtime::run(options));
    wait_for(&sim, home, address(0), None).await?;

    println!("Following a DNS name: TTL {ttl} s, sync.interval 5m, bunq's real rate limits");
    let mut seconds = Vec::new();
    for round in 1..=rounds {
        let (old, new) = (address(round - 1), address(round));
        dns.set(NAME, DnsAnswer::a(&[new], ttl));
        let moved = Instant::now();
        wait_for(&sim, home, new, Some(old)).await?;
        let took = moved.elapsed().as_secs_f64();
        println!("  move {round}: {old} -> {new} applied in {took:.1} s");
        seconds.push(took);
    }
    shutdown.cancel();
    daemon.await.context("daemon task")??;
    seconds.sort_by(f64::total_cmp);
    println!(
        "moves: {}; min {:.1} s, median {:.1} s, max {:.1} s (target: 15 s)",
        seconds.len(),
        seconds.first().copied().unwrap_or_default(),
        seconds[seconds.len() / 2],
        seconds.last().copied().unwrap_or_default(),
    );
    Ok(())
}

/// Waits until `active` is ACTIVE on `credential` and `retired` (if any) is not.
async fn wait_for(
    sim: &Simulator,
    credential: u64,
    active: Ipv4Addr,
    retired: Option<Ipv4Addr>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let entries = sim.entries(credential)?;
        let is_active = |ip: Ipv4Addr| {
            entries
                .iter()
                .any(|entry| entry.ip == ip.to_string() && entry.status == IpStatus::Active)
        };
        if is_active(active) && retired.is_none_or(|old| !is_active(old)) {
            return Ok(());
        }
        if started.elapsed() > PATIENCE {
            bail!("{active} not ACTIVE (or the old IP still ACTIVE) after {PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
