//! `demo`: the real reconcile code against the built-in bunq simulator, no account needed.
//!
//! It seeds a simulated account (credentials with some IPs, some of them drifted), loads the
//! bundled desired state (`examples/demo.yaml`) through the normal config parser, connects with
//! the normal client (installation, device, session, signatures both ways, bunq's rate limits),
//! then shows: the plan, the apply, an out-of-band change being reported and repaired, a DDNS
//! name that moves, fails and comes back (answered by a loopback nameserver the demo runs), a
//! reviewed change applied by its checksum (refused while bunq changed under the review), a
//! final run that has nothing to do, and the notifications a JSON webhook (a loopback receiver
//! the demo runs) got meanwhile. `--follow` then keeps the real daemon running.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::bunq::BunqClient;
use crate::bunq::model::IpStatus;
use crate::cli::args::{Cli, DemoArgs, OutputFormat};
use crate::cli::progress::{self, ApplyBar};
use crate::cli::{oneshot, setup};
use crate::config::{self, Config};
use crate::daemon::notify::Notifier;
use crate::daemon::runtime::{self, Options};
use crate::daemon::watch::WatchSettings;
use crate::notify::{Notifications, sender::Uncounted};
use crate::reconcile::exit::ExitStatus;
use crate::reconcile::saved_plan::{self, PlanGate};
use crate::reconcile::{report, run};
use crate::simulator::{DnsAnswer, DnsServer, Receiver, Simulator, SimulatorOptions};

/// The bundled desired state, with placeholders the demo fills in.
const DEMO_CONFIG: &str = include_str!("../../examples/demo.yaml");

/// The simulated account: which credential is which, and the entry the demo toggles by hand.
struct Seeded {
    /// The demo's webhook receiver's URL, for the config.
    webhook_url: String,
    ci: u64,
    office: u64,
    home: u64,
    drifting_entry: u64,
}

/// The home server's DDNS name, and the addresses its ISP hands out during the demo.
const HOME_NAME: &str = "home.example.org";
const HOME_FIRST: std::net::Ipv4Addr = std::net::Ipv4Addr::new(203, 0, 113, 50);
const HOME_SECOND: std::net::Ipv4Addr = std::net::Ipv4Addr::new(203, 0, 113, 51);

/// Runs the walkthrough; exit 0 when the last run converged.
pub fn run(cli: &Cli, args: &DemoArgs) -> anyhow::Result<ExitStatus> {
    if cli.log_level.is_none() && std::env::var_os("RUST_LOG").is_none() {
        // The walkthrough prints its own story on stdout: keep stderr to warnings, unless the
        // daemon follows, whose run summaries are info lines.
        // Drift is shown in the walkthrough's own words (the DRIFT lines of its tables), not as
        // a log line between them; a wait for bunq's window is said, so it does not look hung.
        logging_quiet(
            cli,
            if args.follow {
                "info"
            } else {
                "warn,drift=off,rate_limit=info"
            },
        );
    } else {
        setup::init_logging(cli, None);
    }
    let bar = ApplyBar::new(progress::mode(OutputFormat::Text, cli.quiet));
    setup::runtime()?.block_on(walkthrough(args, bar))
}

fn logging_quiet(cli: &Cli, level: &str) {
    let format = match cli.log_format {
        Some(crate::cli::args::LogFormatArg::Json) => crate::cli::logging::LogFormat::Json,
        _ => crate::cli::logging::LogFormat::Text,
    };
    crate::cli::logging::init(format, level);
}

async fn walkthrough(args: &DemoArgs, bar: Arc<ApplyBar>) -> anyhow::Result<ExitStatus> {
    let simulator = Simulator::start(SimulatorOptions::default())
        .await
        .context("cannot start the bunq simulator")?;
    let workdir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let dns = DnsServer::start()
        .await
        .context("cannot start the loopback DNS server")?;
    dns.set(HOME_NAME, DnsAnswer::a(&[HOME_FIRST], 60));
    let webhook = Receiver::start()
        .await
        .context("cannot start the loopback webhook receiver")?;
    let key = simulator.create_user_with_api_key();
    let seeded = seed(&simulator, key.user_id, webhook.url("/demo-webhook"))?;
    let config_path = write_config(
        &simulator,
        &dns,
        &seeded,
        key.api_key.expose(),
        workdir.path(),
    )?;
    let config = config::load(&config_path)?;

    say(&format!(
        "bunq simulator on {} (real signatures, sessions and rate limits).\n\
         Desired state: {} (from examples/demo.yaml).",
        simulator.base_url(),
        config_path.display()
    ));

    let observer: Arc<dyn crate::bunq::ApiObserver> = bar.clone();
    let client = setup::connect(&config, Some(observer)).await?;
    let notifications = Notifications::start(
        &config.notify,
        Arc::new(Uncounted),
        crate::clock::system_clock(),
    )?;
    let demo = Demo {
        client: &client,
        config: &config,
        notifications: &notifications,
        bar: &bar,
    };

    say("\n== 1. bunq-ipsync plan: what would change (nothing is written)");
    let (planned, _) = run::plan_run(&client, &config, None).await?;
    print(&report::render_text(&planned.plan));
    say(&format!("exit code {}", planned.exit_status().code()));

    say("\n== 2. bunq-ipsync apply: creates and activations first, then deactivations");
    demo.apply_once().await?;

    say("\n== 3. someone re-enables 192.0.2.99 in the bunq app (out-of-band drift)");
    simulator.set_entry_status(seeded.ci, seeded.drifting_entry, IpStatus::Active)?;
    demo.apply_once().await?;

    dynamic_ip(&demo, &simulator, &dns, &seeded).await?;
    change_control(&demo, &simulator, &seeded).await?;

    let status = converged(&demo, &simulator).await?;
    notifications.finish().await;
    show_notifications(&webhook);

    if args.follow {
        drop(client);
        follow(&config_path).await?;
    }
    simulator.shutdown();
    Ok(status)
}

/// What the walkthrough's runs share: the client, the config and the notifications.
struct Demo<'a> {
    client: &'a BunqClient,
    config: &'a Config,
    notifications: &'a Notifications,
    /// The progress bar of each apply (on a terminal).
    bar: &'a ApplyBar,
}

impl Demo<'_> {
    /// `bunq-ipsync apply`, as the command runs it, with its exit code.
    async fn apply_once(&self) -> anyhow::Result<ExitStatus> {
        self.apply(None).await
    }

    /// `bunq-ipsync apply --checksum SUM`: an error (nothing written) when the plan is stale.
    async fn apply_gated(&self, gate: &PlanGate) -> anyhow::Result<ExitStatus> {
        self.apply(Some(gate)).await
    }

    async fn apply(&self, gate: Option<&PlanGate>) -> anyhow::Result<ExitStatus> {
        let how = oneshot::ApplyHow {
            output: OutputFormat::Text,
            gate,
            narrowed: false,
            bar: self.bar,
        };
        let status =
            oneshot::apply_and_report(self.client, self.config, self.notifications, how).await?;
        say(&format!("exit code {}", status.code()));
        Ok(status)
    }
}

/// Step 8: a run with nothing to do, and how many requests (and writes) bunq saw for it.
async fn converged(demo: &Demo<'_>, simulator: &Simulator) -> anyhow::Result<ExitStatus> {
    say("\n== 8. apply again: converged, so no writes");
    simulator.clear_request_log();
    let status = demo.apply_once().await?;
    let writes = simulator
        .request_log()
        .iter()
        .filter(|request| request.method != "GET")
        .count();
    say(&format!(
        "bunq saw {} request(s), {} of them writes.",
        simulator.request_log().len(),
        writes
    ));
    Ok(status)
}

/// Change control: the plan's checksum is reviewed, `apply --checksum` writes only that plan,
/// and refuses (writing nothing) once bunq changed under the review.
async fn change_control(
    demo: &Demo<'_>,
    simulator: &Simulator,
    seeded: &Seeded,
) -> anyhow::Result<()> {
    say(
        "\n== 7. change control: 192.0.2.99 is re-enabled again; the plan is reviewed by its \
         checksum (plan --output json | jq .checksum), then applied with apply --checksum",
    );
    simulator.set_entry_status(seeded.ci, seeded.drifting_entry, IpStatus::Active)?;
    let (reviewed, _) = run::plan_run(demo.client, demo.config, None).await?;
    print(&report::render_text(&reviewed.plan));
    let sum = saved_plan::checksum(&reviewed.plan);
    say(&format!("reviewed checksum {sum}"));
    say("meanwhile someone adds 192.0.2.55 to ci-runners by hand: the reviewed plan is stale");
    simulator.add_entry(seeded.ci, "192.0.2.55", IpStatus::Active)?;
    let gate = PlanGate::checksum(&sum)?;
    match demo.apply_gated(&gate).await {
        Ok(status) => anyhow::bail!("a stale checksum was applied (exit {})", status.code()),
        Err(err) => say(&format!(
            "apply --checksum {sum}: {err:#}\nexit code 1, nothing written"
        )),
    }
    let (again, _) = run::plan_run(demo.client, demo.config, None).await?;
    let sum = saved_plan::checksum(&again.plan);
    say(&format!("reviewed again: checksum {sum}"));
    demo.apply_gated(&PlanGate::checksum(&sum)?).await?;
    Ok(())
}

/// Every message the webhook received, one line each: event and summary.
fn show_notifications(webhook: &Receiver) {
    let received = webhook.received();
    say(&format!(
        "\nThe JSON webhook (notify.webhooks, a loopback receiver here) got {} message(s), at \
         most one per kind per run:",
        received.len()
    ));
    for message in received.iter().map(|request| request.json()) {
        let text = |key: &str| message[key].as_str().unwrap_or_default().to_owned();
        // A summary's first line: a stale plan's lists its actions below.
        let summary = text("summary");
        let first = summary.lines().next().unwrap_or_default();
        say(&format!("  {:<9} {first}", text("event")));
    }
}

/// Steps 4 to 6: the home server's DDNS name moves, then fails to resolve, then comes back.
async fn dynamic_ip(
    demo: &Demo<'_>,
    simulator: &Simulator,
    dns: &DnsServer,
    seeded: &Seeded,
) -> anyhow::Result<()> {
    say(&format!(
        "\n== 4. the home server's ISP hands out a new address: {HOME_NAME} now resolves to \
         {HOME_SECOND}; the new IP is granted before the old one is retired"
    ));
    dns.set(HOME_NAME, DnsAnswer::a(&[HOME_SECOND], 60));
    demo.apply_once().await?;

    say(&format!(
        "\n== 5. someone adds 192.0.2.77 to home-server by hand, and {HOME_NAME} fails to \
         resolve (NXDOMAIN): nothing is deactivated on that credential"
    ));
    simulator.add_entry(seeded.home, "192.0.2.77", IpStatus::Active)?;
    dns.set(HOME_NAME, DnsAnswer::NxDomain);
    demo.apply_once().await?;

    say(&format!(
        "\n== 6. {HOME_NAME} resolves again: the hand-made entry is retired"
    ));
    dns.set(HOME_NAME, DnsAnswer::a(&[HOME_SECOND], 60));
    demo.apply_once().await?;
    Ok(())
}

/// A credential for CI runners with drift of every kind, and an office credential under
/// `additive` with an extra IP someone added by hand.
fn seed(simulator: &Simulator, user: u64, webhook_url: String) -> anyhow::Result<Seeded> {
    let ci =
        simulator.add_credential(user, Some("ci-runner-pool"), Some("203.0.113.10".parse()?))?;
    simulator.add_entry(ci, "203.0.113.10", IpStatus::Active)?;
    simulator.add_entry(ci, "203.0.113.11", IpStatus::Inactive)?;
    simulator.add_entry(ci, "192.0.2.1", IpStatus::Active)?;
    let drifting_entry = simulator.add_entry(ci, "192.0.2.99", IpStatus::Active)?;
    let office =
        simulator.add_credential(user, Some("office-laptops"), Some("198.51.100.20".parse()?))?;
    simulator.add_entry(office, "198.51.100.21", IpStatus::Active)?;
    let home = simulator.add_credential(user, Some("home-server"), None)?;
    Ok(Seeded {
        webhook_url,
        ci,
        office,
        home,
        drifting_entry,
    })
}

fn write_config(
    simulator: &Simulator,
    dns: &DnsServer,
    seeded: &Seeded,
    api_key: &str,
    dir: &Path,
) -> anyhow::Result<std::path::PathBuf> {
    let key_file = dir.join("api-key");
    crate::atomic_file::write(&key_file, api_key.as_bytes())?;
    let text = DEMO_CONFIG
        .replace("{{BASE_URL}}", &simulator.base_url())
        .replace("{{API_KEY_FILE}}", &key_file.display().to_string())
        .replace("{{STATE_DIR}}", &dir.join("state").display().to_string())
        .replace("{{CI_CREDENTIAL}}", &seeded.ci.to_string())
        .replace("{{OFFICE_CREDENTIAL}}", &seeded.office.to_string())
        .replace("{{HOME_CREDENTIAL}}", &seeded.home.to_string())
        .replace("{{NAMESERVER}}", &dns.address().to_string())
        .replace("{{WEBHOOK_URL}}", &seeded.webhook_url);
    let path = dir.join("config.yaml");
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Keeps the real daemon running against the simulator until Ctrl-C.
async fn follow(config_path: &Path) -> anyhow::Result<()> {
    say("\n== 5. the daemon (`bunq-ipsync run`) keeps it converged; Ctrl-C stops it");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    say(&format!(
        "health and metrics: http://{}/healthz /readyz /metrics",
        listener.local_addr()?
    ));
    // The daemon's client shares the process's rate limiter with the walkthrough's, so its first
    // requests wait for the windows the walkthrough's last ones still occupy at bunq (here: the
    // simulator).
    runtime::run(Options {
        config_path: config_path.to_path_buf(),
        loaded: None,
        shutdown: CancellationToken::new(),
        notifier: Notifier::disabled(),
        handle_signals: true,
        listener: Some(listener),
        watch: WatchSettings::default(),
        clock: crate::clock::system_clock(),
        dry_run: false,
        rate_limiter: None,
    })
    .await?;
    Ok(())
}

fn say(text: &str) {
    print(&format!("{text}\n"));
}

fn print(text: &str) {
    let _ = std::io::stdout().write_all(text.as_bytes());
}
