//! What a user could feel of the build settings: RSA-2048 signing and verifying (every request
//! is signed, every response verified) and one signed request's round trip through the real
//! client against the simulator on loopback. Printed, never asserted.
//!
//! Run: `cargo bench --bench latency` (about 10 s). The bench profile inherits the release
//! profile, so these are the figures of the shipped binary's code generation; BENCHMARKS.md
//! compares them before and after a change of `[profile.release]`.
//!
//! Rate limits are off on both sides for the round trips, so the figure is the request's own
//! cost (TLS aside: the simulator speaks plain HTTP on loopback), not bunq's windows.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bunq_ipsync::bunq::crypto::PrivateKey;
use bunq_ipsync::bunq::endpoint::BaseUrl;
use bunq_ipsync::bunq::ratelimit::RateLimits;
use bunq_ipsync::bunq::{BunqClient, ClientSettings};
use bunq_ipsync::cli::setup;
use bunq_ipsync::simulator::{Simulator, SimulatorOptions};

/// Samples per figure.
const SAMPLES: usize = 200;

/// A `POST /ip` body of the size the daemon sends most.
const SMALL_BODY: &[u8] = br#"{"ip":"203.0.113.10","status":"ACTIVE"}"#;

fn main() -> anyhow::Result<()> {
    println!("bunq-ipsync latency benchmark: {SAMPLES} samples per row, median and p90.");
    println!();
    println!("| operation | median | p90 |");
    println!("|---|---:|---:|");
    let key = PrivateKey::generate().context("cannot generate a key")?;
    let public = key.public_key();
    let large_body = vec![b'x'; 4096];
    row("RSA-2048 sign, 40-byte body", || {
        std::hint::black_box(key.sign(SMALL_BODY));
    });
    row("RSA-2048 sign, 4 KiB body", || {
        std::hint::black_box(key.sign(&large_body));
    });
    let signature = key.sign(SMALL_BODY);
    row("RSA-2048 verify, 40-byte body", || {
        std::hint::black_box(public.verify(SMALL_BODY, &signature).is_ok());
    });
    setup::runtime()?.block_on(round_trips())
}

/// One row: `SAMPLES` timed calls of `operation`.
fn row(name: &str, mut operation: impl FnMut()) {
    let times: Vec<Duration> = (0..SAMPLES)
        .map(|_| {
            let started = Instant::now();
            operation();
            started.elapsed()
        })
        .collect();
    print_row(name, times);
}

fn print_row(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let median = times[times.len() / 2];
    let p90 = times[times.len() * 9 / 10];
    println!("| {name} | {median:.2?} | {p90:.2?} |");
}

/// Signed GETs of one credential's list through [`BunqClient`]: signing, the HTTP exchange,
/// the simulator's own signing, and the client's verification.
async fn round_trips() -> anyhow::Result<()> {
    let simulator = Simulator::start(SimulatorOptions {
        rate_limits: false,
        ..SimulatorOptions::default()
    })
    .await?;
    let seeded = simulator.create_user_with_api_key();
    let credential = simulator.add_credential(
        seeded.user_id,
        Some("bench"),
        Some(Ipv4Addr::new(192, 0, 2, 1)),
    )?;
    let state = tempfile::tempdir()?;
    let base_url = BaseUrl::parse(&simulator.base_url()).context("simulator URL")?;
    let mut settings = ClientSettings::new(base_url, "bunq-ipsync-latency-bench");
    settings.transport.rate_limits = RateLimits::disabled();
    let client = BunqClient::connect(settings, seeded.api_key, state.path())
        .await
        .context("cannot connect to the simulator")?;
    let mut times = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let started = Instant::now();
        let entries = client.list_ips(credential).await?;
        times.push(started.elapsed());
        std::hint::black_box(entries);
    }
    print_row("signed GET /ip round trip (client + simulator)", times);
    Ok(())
}
