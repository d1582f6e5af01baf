//! The one-shot commands: `validate`, `plan`, `apply`, `export`. Data goes to stdout, logs to
//! stderr.
//!
//! `apply` sends the notifications a daemon run would (`plan` sends none) and waits for their
//! delivery, bounded by `notify.timeout` and the attempts, before it exits.
//!
//! `apply` holds the state directory's lock for its whole run and refuses to start when another
//! process holds it; `plan` and `export` take it when free and otherwise read with the holder's
//! saved session (see [`setup`]).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::bunq::{ApiObserver, BunqClient};
use crate::cli::args::{Cli, ExportArgs, OutputArgs, OutputFormat, ValidateArgs};
use crate::cli::progress::{self, ApplyBar};
use crate::cli::setup;
use crate::config;
use crate::notify::{Notifications, sender::Uncounted};
use crate::reconcile::exit::ExitStatus;
use crate::reconcile::export::{self, ExportedCredential};
use crate::reconcile::record::RecordStore;
use crate::reconcile::{report, run};
use crate::sources::SourceResolver;

/// `validate`: the config parses and validates, and the API key can be read; with `--resolve`,
/// every source resolves too.
pub fn validate(cli: &Cli, args: &ValidateArgs) -> anyhow::Result<ExitStatus> {
    let config = setup::load_config(cli)?;
    config::resolve_api_key(&config)?;
    let ips: usize = config.credentials.iter().map(|spec| spec.ips.len()).sum();
    println!(
        "{}: valid ({} credential(s), {} desired IP(s), {} source(s), policy {})",
        config.source.display(),
        config.credentials.len(),
        ips,
        config.sources().len(),
        config.sync.policy.as_str()
    );
    explain_egress(&config);
    if !args.resolve {
        return Ok(ExitStatus::Success);
    }
    setup::init_logging(cli, Some(&config));
    let resolver = SourceResolver::new(config.sources.clone());
    let resolutions = setup::runtime()?.block_on(resolver.resolve_all(config.sources()));
    let mut failed = 0;
    for (source, result) in &resolutions {
        match result {
            Ok(resolved) => {
                let addresses: Vec<String> =
                    resolved.addresses.iter().map(ToString::to_string).collect();
                let ttl = resolved
                    .ttl
                    .map(|ttl| format!(" (ttl {})", humantime::format_duration(ttl)))
                    .unwrap_or_default();
                println!("{source}: {}{ttl}", addresses.join(", "));
            }
            Err(err) => {
                failed += 1;
                println!("{source}: FAILED: {err}");
            }
        }
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} source(s) failed; a run would hold back the deactivations of the \
             credentials that use them (source-unavailable)",
            resolutions.len()
        );
    }
    Ok(ExitStatus::Success)
}

/// What `bunq.egress_ips` makes the own-ip rule do: it depends on this key more than on any
/// other.
fn explain_egress(config: &config::Config) {
    match &config.bunq.egress_ips {
        Some(egress) => println!(
            "bunq.egress_ips: {} address(es) the daemon may call bunq from; with the registration \
             IP they are never deactivated on the daemon's own credential",
            egress.len()
        ),
        None => println!(
            "bunq.egress_ips: not set, so the daemon's egress is unknown: no IP of its own \
             credential is deactivated (own-ip, egress-unknown); set it to the IPs the daemon \
             calls bunq from"
        ),
    }
}

/// `plan`: reads bunq, prints what an apply would do. Writes nothing to the allowlists, and no
/// drift record (only an apply's writes make one), but with the state directory's lock it
/// registers with bunq when nothing is saved yet.
pub fn plan(cli: &Cli, args: &OutputArgs) -> anyhow::Result<ExitStatus> {
    with_reading_client(cli, async |client, config| {
        let previous = RecordStore::new(&config.bunq.state_dir).load();
        let (report, _) = run::plan_run(client, config, previous.as_ref()).await?;
        let text = match args.output {
            OutputFormat::Text => report::render_text(&report.plan),
            OutputFormat::Json => report::render_json(&report.plan)?,
        };
        std::io::stdout().write_all(text.as_bytes())?;
        Ok(report.exit_status())
    })
}

/// The frame of the commands that only read bunq (`plan`, `export`): the config and logging,
/// the state directory claimed (locked when free, read with the holder's session when not), a
/// client for `read`, and the claim's explanation added to a failure.
fn with_reading_client(
    cli: &Cli,
    read: impl AsyncFnOnce(&BunqClient, &config::Config) -> anyhow::Result<ExitStatus>,
) -> anyhow::Result<ExitStatus> {
    let config = setup::load_config(cli)?;
    setup::init_logging(cli, Some(&config));
    let access = setup::claim_state_dir(&config.bunq.state_dir)?;
    let result = setup::runtime()?.block_on(async {
        let client = setup::connect_with(&config, &access, None).await?;
        read(&client, &config).await
    });
    access.explain(result)
}

/// `apply`: one reconcile run, then exit. Refuses to start, before any request to bunq, when
/// another process (the daemon, another apply) holds the state directory: two writers would
/// fight over the allowlists and overwrite each other's bunq context.
pub fn apply(cli: &Cli, args: &OutputArgs) -> anyhow::Result<ExitStatus> {
    let config = setup::load_config(cli)?;
    setup::init_logging(cli, Some(&config));
    let _lock = setup::lock_state_dir(&config.bunq.state_dir)?;
    setup::runtime()?.block_on(async {
        let notifications = Notifications::start(
            &config.notify,
            Arc::new(Uncounted),
            crate::clock::system_clock(),
        )?;
        let bar = ApplyBar::new(progress::mode(args.output, cli.quiet));
        let observer: Arc<dyn ApiObserver> = bar.clone();
        let result = match setup::connect(&config, Some(observer)).await {
            Ok(client) => {
                apply_and_report(&client, &config, args.output, &notifications, &bar).await
            }
            Err(err) => {
                notifications.session_failed("cannot open a bunq session", &format!("{err:#}"));
                Err(err)
            }
        };
        notifications.finish().await;
        result
    })
}

/// One apply run with its drift record: loads the last record, applies, prints what was done in
/// `output` format, saves the new record, and queues the run's `notifications`. `bar` shows the
/// run's progress (when its mode draws one) and is cleared before the report. Shared by `apply`
/// and `demo`.
pub async fn apply_and_report(
    client: &BunqClient,
    config: &config::Config,
    output: OutputFormat,
    notifications: &Notifications,
    bar: &ApplyBar,
) -> anyhow::Result<ExitStatus> {
    let records = RecordStore::new(&config.bunq.state_dir);
    let previous = records.load();
    notifications.run_started();
    let stop = CancellationToken::new();
    let result = run::apply_run_with_progress(client, config, previous.as_ref(), &stop, bar).await;
    bar.finish();
    let (report, record) = match result {
        Ok(done) => done,
        Err(err) => {
            let error = err.to_string();
            notifications.run_failed(&run::new_run_id(), &err.verdict(false, &error), &error);
            return Err(err.into());
        }
    };
    notifications.run_finished(&report, &report.verdict());
    let text = match (output, report.applied.as_ref()) {
        (OutputFormat::Json, Some(applied)) => {
            report::render_apply_json(&report.plan, applied, report.exit_status())?
        }
        (_, Some(applied)) => format!(
            "{}{}",
            report::render_text(&report.plan),
            report::render_apply_text(applied)
        ),
        (_, None) => String::new(),
    };
    // bunq has been written to: print what was done and save the record for the next run's
    // drift report, each even if the other fails.
    let printed = std::io::stdout().write_all(text.as_bytes());
    records.save(&record)?;
    printed?;
    Ok(report.exit_status())
}

/// `export`: the current allowlists as a config file.
pub fn export(cli: &Cli, args: &ExportArgs) -> anyhow::Result<ExitStatus> {
    with_reading_client(cli, async |client, config| {
        let text = export_text(client, config, &args.credentials).await?;
        std::io::stdout().write_all(text.as_bytes())?;
        Ok(ExitStatus::Success)
    })
}

async fn export_text(
    client: &BunqClient,
    config: &config::Config,
    only: &[u64],
) -> anyhow::Result<String> {
    let credentials = client.list_credentials().await?;
    let mut entries = Vec::new();
    for credential in &credentials {
        if only.is_empty() || only.contains(&credential.id) {
            entries.push((credential.id, client.list_ips(credential.id).await?));
        }
    }
    if let Some(missing) = only
        .iter()
        .find(|id| !entries.iter().any(|(found, _)| found == *id))
    {
        anyhow::bail!("credential {missing} is not among this user's credentials");
    }
    let exported: Vec<ExportedCredential<'_>> = entries
        .iter()
        .map(|(id, entries)| ExportedCredential { id: *id, entries })
        .collect();
    let names: BTreeMap<u64, String> = config
        .credentials
        .iter()
        .filter_map(|spec| Some((spec.id, spec.name.clone()?)))
        .collect();
    Ok(export::render_config(&config.bunq, &exported, &names))
}
