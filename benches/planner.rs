//! Planner benchmark: time and memory to plan 100 000 desired entries over 100 credentials, and
//! to render that plan as text and JSON. Prints figures (see BENCHMARKS.md); asserts nothing.
//!
//! Run: `cargo bench --bench planner`.
//!
//! The actual state is a realistic mix per credential (1 000 desired IPs each):
//! 70 % in sync, 10 % in sync with an older INACTIVE entry of the same IP, 10 % missing (create),
//! 10 % INACTIVE (activate), plus 100 undesired ACTIVE entries (10 of them protected) and 100
//! undesired INACTIVE entries (history). Every tenth credential is `additive`. The previous run's
//! states differ in 1 % of the IPs (drift). The daemon's own IP is on the first credential.

use std::alloc::System;
use std::collections::BTreeSet;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bunq_ipsync::bunq::model::{IpStatus, PermittedIp};
use bunq_ipsync::config::Policy;
use bunq_ipsync::reconcile::plan::{
    CredentialState, IpStates, OwnAccess, PlanInput, ip_states, plan,
};
use bunq_ipsync::reconcile::report::{render_json, render_text};
use peakmem_alloc::{INSTRUMENTED_SYSTEM, PeakMemAlloc, PeakMemAllocTrait};

/// Every heap allocation of this binary goes through the counting wrapper around `System`.
#[global_allocator]
static ALLOCATOR: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

const CREDENTIALS: u32 = 100;
const DESIRED_PER_CREDENTIAL: u32 = 1_000;
const EXTRA_ACTIVE_PER_CREDENTIAL: u32 = 100;
const EXTRA_INACTIVE_PER_CREDENTIAL: u32 = 100;
const PLAN_RUNS: usize = 11;
const RENDER_RUNS: usize = 5;

/// The data one credential's [`CredentialState`] borrows.
struct Credential {
    id: u64,
    name: String,
    policy: Policy,
    desired: BTreeSet<Ipv4Addr>,
    protected: BTreeSet<Ipv4Addr>,
    actual: Vec<PermittedIp>,
    previous: IpStates,
}

fn entry(id: &mut u64, ip: Ipv4Addr, status: IpStatus) -> PermittedIp {
    *id += 1;
    PermittedIp {
        created: Some("2026-01-01 00:00:00.000000".to_owned()),
        updated: Some("2026-01-01 00:00:00.000000".to_owned()),
        ..PermittedIp::new(*id, ip.to_string(), status)
    }
}

fn credential(index: u32) -> Credential {
    let mut next_id = u64::from(index) * 1_000_000;
    let mut desired = BTreeSet::new();
    let mut actual = Vec::new();
    for i in 0..DESIRED_PER_CREDENTIAL {
        let ip = Ipv4Addr::from((10 << 24) | (index << 16) | i);
        desired.insert(ip);
        match i % 10 {
            0..=6 => actual.push(entry(&mut next_id, ip, IpStatus::Active)),
            7 => {}
            8 => actual.push(entry(&mut next_id, ip, IpStatus::Inactive)),
            _ => {
                actual.push(entry(&mut next_id, ip, IpStatus::Inactive));
                actual.push(entry(&mut next_id, ip, IpStatus::Active));
            }
        }
    }
    let mut protected = BTreeSet::new();
    for j in 0..EXTRA_ACTIVE_PER_CREDENTIAL {
        let ip = Ipv4Addr::from((172 << 24) | (index << 16) | j);
        if j < 10 {
            protected.insert(ip);
        }
        actual.push(entry(&mut next_id, ip, IpStatus::Active));
    }
    for j in 0..EXTRA_INACTIVE_PER_CREDENTIAL {
        let ip = Ipv4Addr::from((192 << 24) | (index << 16) | j);
        actual.push(entry(&mut next_id, ip, IpStatus::Inactive));
    }
    // bunq lists newest first.
    actual.reverse();
    let mut previous = ip_states(&actual);
    let drifted: Vec<String> = previous.keys().step_by(100).cloned().collect();
    for ip in drifted {
        previous.remove(&ip);
    }
    Credential {
        id: 10_000 + u64::from(index),
        name: format!("credential-{index}"),
        policy: if index % 10 == 9 {
            Policy::Additive
        } else {
            Policy::Sync
        },
        desired,
        protected,
        actual,
        previous,
    }
}

fn input(credentials: &[Credential]) -> PlanInput<'_> {
    let own = credentials
        .first()
        .and_then(|first| first.desired.first().map(|ip| (first.id, *ip)));
    PlanInput {
        credentials: credentials
            .iter()
            .map(|credential| CredentialState {
                id: credential.id,
                name: Some(&credential.name),
                policy: credential.policy,
                desired: &credential.desired,
                protected: &credential.protected,
                actual: &credential.actual,
                previous: Some(&credential.previous),
                sources: None,
            })
            .collect(),
        max_changes: usize::MAX,
        own_access: own
            .map(|(credential, ip)| OwnAccess { credential, ip })
            .into_iter()
            .collect(),
        own_credential_known: true,
        egress_ips: None,
        sources: Vec::new(),
    }
}

/// Median, min and max of durations.
fn stats(mut times: Vec<Duration>) -> (Duration, Duration, Duration) {
    times.sort();
    let median = times[times.len() / 2];
    (median, times[0], times[times.len() - 1])
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1_000.0)
}

fn mib(bytes: usize) -> String {
    format!(
        "{:.1} MiB ({bytes} bytes)",
        bytes as f64 / (1024.0 * 1024.0)
    )
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it, and
    // a debug build of the full benchmark would only slow the test run down.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("planner benchmark: skipped (run it with `cargo bench --bench planner`)");
        return;
    }
    ALLOCATOR.reset_peak_memory();
    let credentials: Vec<Credential> = (0..CREDENTIALS).map(credential).collect();
    let input_bytes = ALLOCATOR.get_peak_memory();
    let input = input(&credentials);
    let desired: usize = credentials.iter().map(|c| c.desired.len()).sum();
    let entries: usize = credentials.iter().map(|c| c.actual.len()).sum();

    // One warm-up run, then timed runs; each run's peak heap is measured from a reset.
    let warm = plan(black_box(&input));
    let summary = warm.summary();
    drop(warm);
    let mut times = Vec::with_capacity(PLAN_RUNS);
    let mut peaks = Vec::with_capacity(PLAN_RUNS);
    for _ in 0..PLAN_RUNS {
        ALLOCATOR.reset_peak_memory();
        let start = Instant::now();
        let result = plan(black_box(&input));
        times.push(start.elapsed());
        peaks.push(ALLOCATOR.get_peak_memory());
        drop(black_box(result));
    }
    let (median, min, max) = stats(times);
    peaks.sort_unstable();

    let result = plan(&input);
    let mut text_times = Vec::with_capacity(RENDER_RUNS);
    let mut json_times = Vec::with_capacity(RENDER_RUNS);
    let mut text_len = 0;
    let mut json_len = 0;
    for _ in 0..RENDER_RUNS {
        let start = Instant::now();
        let text = render_text(black_box(&result));
        text_times.push(start.elapsed());
        text_len = text.len();
        let start = Instant::now();
        let json = render_json(black_box(&result));
        json_times.push(start.elapsed());
        json_len = json.map_or(0, |json| json.len());
    }
    let (text_median, _, _) = stats(text_times);
    let (json_median, _, _) = stats(json_times);

    println!("planner benchmark");
    println!(
        "input: {CREDENTIALS} credentials, {desired} desired IPs, {entries} actual entries, \
         input heap {}",
        mib(input_bytes)
    );
    println!(
        "plan: create {}, activate {}, deactivate {}, blocked {}, kept {}, in sync {}, drift {}",
        summary.create,
        summary.activate,
        summary.deactivate,
        summary.blocked,
        summary.kept,
        summary.in_sync,
        summary.drift
    );
    println!(
        "plan() wall time: median {} (min {}, max {}, {PLAN_RUNS} runs)",
        ms(median),
        ms(min),
        ms(max)
    );
    println!(
        "plan() peak heap above the input: {} (median of {PLAN_RUNS} runs; max {})",
        mib(peaks[peaks.len() / 2]),
        mib(peaks[peaks.len() - 1])
    );
    println!(
        "render_text: median {} ({RENDER_RUNS} runs), {text_len} bytes",
        ms(text_median)
    );
    println!(
        "render_json: median {} ({RENDER_RUNS} runs), {json_len} bytes",
        ms(json_median)
    );
}
