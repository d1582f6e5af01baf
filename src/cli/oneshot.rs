//! The one-shot commands: `plan`, `apply`, `export` (`validate` has its own module). Data goes to stdout, logs to
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

use anyhow::Context as _;

use tokio_util::sync::CancellationToken;

use crate::bunq::{ApiObserver, BunqClient};
use crate::cli::args::{ApplyArgs, Cli, ExportArgs, OutputFormat, PlanArgs, PlanGateArgs};
use crate::cli::progress::{self, ApplyBar};
use crate::cli::setup;
use crate::config;
use crate::notify::{Notifications, sender::Uncounted};
use crate::reconcile::exit::ExitStatus;
use crate::reconcile::export::{self, ExportedCredential};
use crate::reconcile::record::RecordStore;
use crate::reconcile::saved_plan::{self, PlanGate, SavedPlan};
use crate::reconcile::{report, run};

/// `plan`: reads bunq, prints what an apply would do. Writes nothing to the allowlists, and no
/// drift record (only an apply's writes make one), but with the state directory's lock it
/// registers with bunq when nothing is saved yet. With `--out` it also saves the plan for
/// `apply --plan`.
pub fn plan(cli: &Cli, args: &PlanArgs) -> anyhow::Result<ExitStatus> {
    with_reading_client(cli, async |client, config| {
        let previous = RecordStore::new(&config.bunq.state_dir).load();
        let (report, observation) = run::plan_run(client, config, previous.as_ref()).await?;
        if let Some(out) = &args.out {
            save_plan(out, config, &report.plan, &observation)?;
        }
        let text = match args.output.output {
            OutputFormat::Text => report::render_text(&report.plan),
            OutputFormat::Json => report::render_json(&report.plan)?,
        };
        std::io::stdout().write_all(text.as_bytes())?;
        Ok(report.exit_status())
    })
}

/// Writes `plan`, computed from `observation`, to `out` as a saved plan (atomically).
fn save_plan(
    out: &std::path::Path,
    config: &config::Config,
    plan: &crate::reconcile::plan::Plan,
    observation: &run::Observation,
) -> anyhow::Result<()> {
    let saved = SavedPlan::new(
        plan,
        saved_plan::observed_entries(&observation.entries),
        config_fingerprint(config)?,
        chrono::Utc::now(),
        serde_json::to_value(report::PlanDocument::from(plan))?,
    );
    crate::atomic_file::write(out, saved.render()?.as_bytes())
        .with_context(|| format!("cannot write the plan to {}", out.display()))?;
    tracing::info!(path = %out.display(), checksum = %saved.checksum, "plan saved");
    Ok(())
}

/// The fingerprint of the config file as it is on disk now.
fn config_fingerprint(config: &config::Config) -> anyhow::Result<String> {
    let bytes = std::fs::read(&config.source)
        .with_context(|| format!("cannot read {}", config.source.display()))?;
    Ok(saved_plan::config_fingerprint(&bytes))
}

/// The gate `apply --plan` / `--checksum` asked for, read before anything reaches bunq: a bad
/// file or checksum fails the command with nothing changed.
fn plan_gate(args: &PlanGateArgs, config: &config::Config) -> anyhow::Result<Option<PlanGate>> {
    if let Some(sum) = &args.checksum {
        return Ok(Some(PlanGate::checksum(sum)?));
    }
    let Some(path) = &args.plan else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the plan {}", path.display()))?;
    let saved = SavedPlan::parse(&text).with_context(|| path.display().to_string())?;
    Ok(Some(PlanGate::saved(
        saved,
        *args.max_age,
        config_fingerprint(config)?,
    )))
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
/// fight over the allowlists and overwrite each other's bunq context. The one-run overrides
/// (`--max-changes`, `--credential`) are checked against the config before that, too.
pub fn apply(cli: &Cli, args: &ApplyArgs) -> anyhow::Result<ExitStatus> {
    let overrides = args.overrides.to_overrides();
    let config = overrides.apply_to(setup::load_config(cli)?)?;
    setup::init_logging(cli, Some(&config));
    let gate = plan_gate(&args.gate, &config)?;
    let _lock = setup::lock_state_dir(&config.bunq.state_dir)?;
    setup::runtime()?.block_on(async {
        let notifications = Notifications::start(
            &config.notify,
            Arc::new(Uncounted),
            crate::clock::system_clock(),
        )?;
        let output = args.output.output;
        let bar = ApplyBar::new(progress::mode(output, cli.quiet));
        let observer: Arc<dyn ApiObserver> = bar.clone();
        let result = match setup::connect(&config, Some(observer)).await {
            Ok(client) => {
                let how = ApplyHow {
                    output,
                    gate: gate.as_ref(),
                    narrowed: overrides.narrows(),
                    bar: &bar,
                };
                apply_and_report(&client, &config, &notifications, how).await
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

/// How `apply` reports and what it may write.
pub struct ApplyHow<'a> {
    /// The output format.
    pub output: OutputFormat,
    /// The reviewed plan the run must match (`--plan`, `--checksum`).
    pub gate: Option<&'a PlanGate>,
    /// `config` holds only some of the configured credentials (`apply --credential`), so the
    /// saved record keeps the last one's states of the others.
    pub narrowed: bool,
    /// The progress bar (drawn or not, as its mode says).
    pub bar: &'a ApplyBar,
}

/// One apply run with its drift record: loads the last record, applies, prints what was done in
/// `how.output` format, saves the new record, and queues the run's `notifications`. With a
/// `gate` it writes only if the reviewed plan still holds; `bar` shows the run's progress (when
/// its mode draws one) and is cleared before the report. Shared by `apply` and `demo`.
pub async fn apply_and_report(
    client: &BunqClient,
    config: &config::Config,
    notifications: &Notifications,
    how: ApplyHow<'_>,
) -> anyhow::Result<ExitStatus> {
    let ApplyHow {
        output,
        gate,
        narrowed,
        bar,
    } = how;
    let records = RecordStore::new(&config.bunq.state_dir);
    let previous = records.load();
    notifications.run_started();
    let stop = CancellationToken::new();
    let result = match gate {
        Some(gate) => {
            let gate = (gate, chrono::Utc::now());
            run::apply_run_gated(client, config, previous.as_ref(), &stop, gate, bar).await
        }
        None => run::apply_run_with_progress(client, config, previous.as_ref(), &stop, bar).await,
    };
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
    let record = if narrowed {
        record.carrying_over(previous.as_ref())
    } else {
        record
    };
    records.save(&record)?;
    printed?;
    Ok(report.exit_status())
}

/// `export`: the current allowlists as a config file.
pub fn export(cli: &Cli, args: &ExportArgs) -> anyhow::Result<ExitStatus> {
    with_reading_client(cli, async |client, config| {
        let text = export_text(client, config, args).await?;
        std::io::stdout().write_all(text.as_bytes())?;
        Ok(ExitStatus::Success)
    })
}

async fn export_text(
    client: &BunqClient,
    config: &config::Config,
    args: &ExportArgs,
) -> anyhow::Result<String> {
    let only = &args.credentials;
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
    Ok(export::render_config(
        &config.bunq,
        &exported,
        &names,
        args.policy.policy(),
    ))
}
