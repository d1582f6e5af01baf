//! A bunq simulator in its own process, for measuring the daemon alone
//! (`scripts/bench-daemon.sh`): `bunq-ipsync run` then talks to it over loopback, so the
//! daemon's RSS does not include the simulator.
//!
//! Usage: `sim_server DIR [INTERVAL]`. Starts the simulator on 127.0.0.1 (bunq's real rate-limit
//! windows), seeds a user whose account has 5 other credentials x 20 IPs (with some drift for
//! the first run to repair), writes `DIR/config.yaml` (interval `INTERVAL`, default 10s; the
//! health/metrics listener on 127.0.0.1:0), prints the config path on one line, and serves until
//! killed.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::Context as _;
use bunq_ipsync::bunq::model::IpStatus;
use bunq_ipsync::simulator::{Simulator, SimulatorOptions};

const CREDENTIALS: u8 = 5;
const IPS: u8 = 20;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().context("usage: sim_server DIR [INTERVAL]")?);
    let interval = args.next().unwrap_or_else(|| "10s".to_owned());
    std::fs::create_dir_all(&dir)?;

    let simulator = Simulator::start(SimulatorOptions::default()).await?;
    let key = simulator.create_user_with_api_key();
    let mut credentials = String::new();
    for c in 0..CREDENTIALS {
        let id = simulator.add_credential(
            key.user_id,
            Some(&format!("other-key-{c}")),
            Some(Ipv4Addr::new(192, 0, 2, 1)),
        )?;
        writeln!(credentials, "  - id: {id}\n    ips:")?;
        for n in 0..IPS {
            let ip = Ipv4Addr::new(10, c, 0, n);
            writeln!(credentials, "      - {ip}")?;
            // 15 ACTIVE, 3 INACTIVE, 2 absent: 5 changes per credential on the first run.
            match n {
                0..15 => simulator.add_entry(id, &ip.to_string(), IpStatus::Active)?,
                15..18 => simulator.add_entry(id, &ip.to_string(), IpStatus::Inactive)?,
                _ => continue,
            };
        }
    }

    let key_file = dir.join("api-key");
    std::fs::write(&key_file, key.api_key.expose())?;
    let config = format!(
        "bunq:\n  environment: sandbox\n  base_url: \"{}\"\n  api_key_file: \"{}\"\n  \
         device_description: bunq-ipsync-bench\n  state_dir: \"{}\"\n\
         sync:\n  policy: sync\n  interval: {interval}\n  max_changes: 50\n\
         http:\n  listen: 127.0.0.1:0\n\
         log:\n  level: info\n\
         credentials:\n{credentials}",
        simulator.base_url(),
        key_file.display(),
        dir.join("state").display(),
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, config)?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", path.display())?;
    stdout.flush()?;

    std::future::pending::<()>().await;
    Ok(())
}
