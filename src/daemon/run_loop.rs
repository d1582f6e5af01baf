//! The run loop: one task owns the config, the bunq client and the schedule, runs reconciles
//! inline (so runs never overlap), reloads the config, and accounts for each run in the
//! metrics, `/readyz` and `STATUS=`.
//!
//! Under `run --dry-run` every run goes through the read-only bunq port ([`ReadOnlyBunq`]) to
//! [`run::plan_run`], which takes a reader only: the write path cannot be reached. Such a run
//! keeps its drift record in memory and saves none (it wrote nothing).

mod key_swap;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::bunq::BunqClient;
use crate::clock::WallClock;
use crate::config::{self, Config};
use crate::daemon::connect::{HEARTBEAT_PERIOD, explain};
use crate::daemon::error::DaemonError;
use crate::daemon::follow::{Following, SourceEvent};
use crate::daemon::health::Health;
use crate::daemon::metrics::{Metrics, RunResult};
use crate::daemon::notify::Notifier;
use crate::daemon::observer::Observer;
use crate::daemon::renew::RenewTrigger;
use crate::daemon::rotate::{self, KeyRotation};
use crate::daemon::schedule::{self, Backoff, CronTicker, RandomJitter, Scheduler, Trigger};
use crate::daemon::tasks::{Reload, Renewal};
use crate::daemon::watch::{ConfigChanged, Fingerprint};
use crate::notify::Notifications;
use crate::reconcile::apply::ApplyReport;
use crate::reconcile::bunq_adapter::ReadOnlyBunq;
use crate::reconcile::record::{RecordStore, RunRecord};
use crate::reconcile::run::{self, RunError, RunReport};
use crate::reconcile::verdict::Verdict;
use crate::sources::Resolutions;

/// Reads and validates the config file; also returns the fingerprint of the exact bytes parsed,
/// so the watcher reports only real changes.
pub fn read_config(path: &Path) -> Result<(Config, Fingerprint), config::ConfigError> {
    // One read: the fingerprint must be of the very bytes parsed, or a swap between two reads
    // would pair the old config with the new content and the watcher would never reload it.
    let text = config::read(path)?;
    let config = config::parse(path, &text)?;
    Ok((config, Fingerprint::of_bytes(text.as_bytes())))
}
/// The schedule for `config`: interval with jitter, or cron ticks (with the ticker to stop).
pub(super) async fn build_scheduler(
    config: &Config,
) -> Result<(Scheduler, Option<CronTicker>), DaemonError> {
    let backoff = Backoff::new(
        Duration::from_secs(5),
        config.sync.interval.max(Duration::from_secs(5)),
    );
    match &config.sync.schedule {
        Some(cron) => {
            let (ticker, ticks) = CronTicker::start(cron.expression()).await?;
            let fallback = schedule::cron_fallback(config.sync.interval, cron);
            Ok((
                Scheduler::on_ticks(ticks, fallback).with_backoff(backoff),
                Some(ticker),
            ))
        }
        None => Ok((
            Scheduler::every(config.sync.interval)
                .with_jitter(config.sync.jitter, RandomJitter::new())
                .with_backoff(backoff),
            None,
        )),
    }
}

/// Stops a cron ticker, if the schedule had one.
pub(super) async fn stop_cron(cron: Option<CronTicker>) {
    if let Some(cron) = cron
        && let Err(err) = cron.shutdown().await
    {
        tracing::warn!(error = %err, "cron scheduler did not stop cleanly");
    }
}

/// The loop's state.
pub(super) struct Daemon {
    /// The config file, re-read on reload.
    pub(super) config_path: PathBuf,
    /// The running config (the last good one).
    pub(super) config: Config,
    /// The bytes the running config was parsed from, so the watcher's wake-ups for unchanged
    /// content are no reload.
    pub(super) fingerprint: Fingerprint,
    /// The last reload failed: the file on disk is not the running config, even if it later
    /// changes back to the running config's bytes.
    pub(super) reload_failed: bool,
    /// The one client, shared with the renewal task.
    pub(super) client: Arc<BunqClient>,
    /// Run accounting.
    pub(super) metrics: Arc<Metrics>,
    /// Readiness reasons and the heartbeat.
    pub(super) health: Arc<Health>,
    /// Publishes the session's expiry, as every other path that learns it does.
    pub(super) observer: Arc<Observer>,
    /// Stamps the metrics' timestamps (the daemon's one clock).
    pub(super) clock: WallClock,
    /// systemd notifications.
    pub(super) notifier: Notifier,
    /// Webhooks and the heartbeat (not systemd's: that is `notifier`).
    pub(super) notifications: Notifications,
    /// Where the last run's record is saved.
    pub(super) records: RecordStore,
    /// The last run's record, for drift reports.
    pub(super) last_record: Option<RunRecord>,
    /// When the next run is due.
    pub(super) scheduler: Scheduler,
    /// The cron ticker behind `scheduler`, if the schedule is a cron expression.
    pub(super) cron: Option<CronTicker>,
    /// Asks the renewal task for a new session when bunq rejects the current one.
    pub(super) renew_trigger: RenewTrigger,
    /// Follows the config's DNS, file and URL sources between runs.
    pub(super) following: Following,
    /// The running client's session renewal; `None` only while a key rotation swaps clients
    /// and after shutdown.
    pub(super) renewal: Option<Renewal>,
    /// Switching to a new API key without a restart.
    pub(super) rotation: KeyRotation,
    /// Cancelled to stop the loop (and the run in progress).
    pub(super) shutdown: CancellationToken,
    /// `run --dry-run`: plan and report every run, write nothing.
    pub(super) dry_run: bool,
}

impl Daemon {
    /// Selects over shutdown, reloads, API key changes, the heartbeat and the schedule until
    /// shutdown. SIGHUP checks the API key before it reloads the config.
    pub(super) async fn run_loop(
        &mut self,
        mut reloads: mpsc::Receiver<Reload>,
        mut changes: mpsc::Receiver<ConfigChanged>,
        mut key_changes: mpsc::Receiver<ConfigChanged>,
    ) {
        let mut heartbeat = tokio::time::interval(HEARTBEAT_PERIOD);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                Some(_) = reloads.recv() => {
                    self.check_api_key().await;
                    self.reload(true).await;
                }
                Some(ConfigChanged) = changes.recv() => self.reload(false).await,
                Some(ConfigChanged) = key_changes.recv() => self.check_api_key().await,
                () = rotate::retry_timer(self.rotation.retry_at()),
                    if self.rotation.retry_at().is_some() => self.check_api_key().await,
                _ = heartbeat.tick() => self.health.beat(),
                Some(event) = self.following.next() => self.source_event(event).await,
                trigger = self.scheduler.next_run() => self.reconcile(trigger).await,
            }
        }
    }

    /// Re-reads the config. On success switches to it and reconciles at once; on failure keeps
    /// running on the last good config and says so in the logs, metrics and `/readyz`.
    async fn reload(&mut self, forced: bool) {
        // Unchanged content is no reason to reload, unless a failed reload is still reported:
        // a file reverted to the running config must clear that warning.
        if !forced
            && !self.reload_failed
            && Fingerprint::of_file(&self.config_path) == self.fingerprint
        {
            return;
        }
        let _ = self.notifier.reloading();
        match read_config(&self.config_path) {
            Ok((config, fingerprint)) => {
                self.warn_about_restart_only_changes(&config);
                let schedule_changed = config.sync.interval != self.config.sync.interval
                    || config.sync.schedule != self.config.sync.schedule
                    || config.sync.jitter != self.config.sync.jitter;
                self.config = config;
                self.notifications.set_config(&self.config.notify);
                self.fingerprint = fingerprint;
                self.reload_failed = false;
                self.metrics.record_config_reload(true, self.now());
                self.health.set_reload_error(None);
                tracing::info!(config = %self.config_path.display(), "config reloaded; reconciling now");
                if schedule_changed {
                    self.replace_scheduler().await;
                }
                self.following.restart(&self.config);
                let _ = self.notifier.ready();
                self.reconcile(if forced {
                    Trigger::Reload
                } else {
                    Trigger::ConfigChanged
                })
                .await;
            }
            Err(err) => {
                self.reload_failed = true;
                self.metrics.record_config_reload(false, self.now());
                let message = err.to_string();
                for line in message.lines() {
                    tracing::error!(error = %line, "config reload failed; still running on the last good config");
                }
                self.health
                    .set_reload_error(Some(message.lines().next().unwrap_or_default().to_string()));
                self.notifications.config_rejected(&message);
                let _ = self.notifier.ready();
                let _ = self
                    .notifier
                    .status("config reload failed; running on the last good config");
            }
        }
    }

    /// Names the changed settings the running daemon cannot switch to (they were read once, at
    /// start), so the operator knows a restart is needed.
    fn warn_about_restart_only_changes(&self, new: &Config) {
        let old = &self.config;
        let changes = [
            (
                old.bunq.environment != new.bunq.environment
                    || old.bunq.base_url != new.bunq.base_url,
                "bunq.environment/base_url",
            ),
            (old.bunq.state_dir != new.bunq.state_dir, "bunq.state_dir"),
            (
                old.bunq.device_description != new.bunq.device_description,
                "bunq.device_description",
            ),
            (
                old.bunq.api_key_file != new.bunq.api_key_file
                    || old.bunq.api_key_credential != new.bunq.api_key_credential,
                "bunq.api_key_file/api_key_credential",
            ),
            (
                old.bunq.permitted_ips != new.bunq.permitted_ips,
                "bunq.permitted_ips",
            ),
            (
                old.sync.renew_before != new.sync.renew_before,
                "sync.renew_before",
            ),
            (old.http.listen != new.http.listen, "http.listen"),
            (
                old.log.format != new.log.format || old.log.level != new.log.level,
                "log.format/level",
            ),
        ];
        let changed: Vec<&str> = changes
            .iter()
            .filter(|(changed, _)| *changed)
            .map(|(_, key)| *key)
            .collect();
        if !changed.is_empty() {
            tracing::warn!(
                changed = %changed.join(", "),
                "these settings take effect after a restart; the running connection, session \
                 renewal, listener and logging keep their old values"
            );
        }
    }

    async fn replace_scheduler(&mut self) {
        match build_scheduler(&self.config).await {
            Ok((mut scheduler, cron)) => {
                // A fresh scheduler hands out a startup run first (at once); the reload
                // reconciles right after this anyway, so consume it instead of running twice.
                let _ = scheduler.next_run().await;
                stop_cron(self.cron.take()).await;
                self.scheduler = scheduler;
                self.cron = cron;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot apply the new schedule; keeping the old one")
            }
        }
    }

    /// One reconcile run, with its metrics, readiness, status and scheduling consequences.
    async fn reconcile(&mut self, trigger: Trigger) {
        let started = tokio::time::Instant::now();
        self.metrics.record_run_started(self.now());
        self.notifications.run_started();
        let stop = self.shutdown.child_token();
        let previous = self.last_record.as_ref();
        let result = run_once(&self.client, &self.config, previous, self.dry_run, &stop).await;
        let elapsed = started.elapsed();
        // The summary line carries the run's id, so it can be joined with the run's drift and
        // audit lines. A run that failed before it planned has logged nothing under an id yet:
        // it gets one of its own.
        let (run_id, verdict) = match result {
            Ok((report, record)) => {
                self.health.set_access_refused(None);
                self.health.set_registration_deferred(None);
                if self.dry_run {
                    // Nothing was written, and no file is either: the record lives in memory.
                } else if let Err(err) = self.records.save(&record) {
                    tracing::warn!(run_id = %report.run_id, error = %err, "cannot save the last-run record; drift reports may repeat");
                }
                self.last_record = Some(record);
                self.metrics.record_report(&report);
                self.account_sources(&report.resolutions);
                let verdict = report.verdict();
                self.notifications.run_finished(&report, &verdict);
                (report.run_id.clone(), verdict)
            }
            Err(err) => {
                let (run_id, verdict) = (run::new_run_id(), self.failed_run(&err));
                self.notifications
                    .run_failed(&run_id, &verdict, &err.to_string());
                (run_id, verdict)
            }
        };
        let message = &verdict.summary;
        self.metrics.record_run(verdict.result, elapsed, self.now());
        self.health
            .record_run_result(verdict.result != RunResult::Failed, message);
        self.observer
            .session_valid_until(self.client.session_expires_at());
        self.scheduler.run_finished(verdict.outcome);
        let _ = self.notifier.status(message);
        match verdict.result {
            RunResult::Failed => {
                tracing::error!(%run_id, %trigger, duration = %crate::clock::log_seconds(elapsed), "{message}")
            }
            RunResult::Blocked => {
                tracing::warn!(%run_id, %trigger, duration = %crate::clock::log_seconds(elapsed), "{message}")
            }
            _ => {
                tracing::info!(%run_id, %trigger, duration = %crate::clock::log_seconds(elapsed), "{message}")
            }
        }
    }

    fn failed_run(&self, err: &RunError) -> Verdict {
        let (transient, text) = match err {
            RunError::Read(bunq) => {
                if bunq.is_session_rejected() {
                    self.renew_trigger.renew_now();
                }
                if bunq.is_credentials_rejected() {
                    self.health.set_access_refused(Some(explain(bunq)));
                }
                if bunq.is_registration_deferred() {
                    self.health.set_registration_deferred(Some(explain(bunq)));
                }
                (
                    bunq.is_transient() || bunq.is_session_rejected(),
                    explain(bunq),
                )
            }
            RunError::UnknownCredential { .. } | RunError::Stale(_) => (false, err.to_string()),
        };
        err.verdict(transient, &text)
    }

    /// What the follower saw: a change starts a run at once (runs never overlap: this loop runs
    /// them one at a time); a failure or a recovery is reported without a run.
    async fn source_event(&mut self, event: SourceEvent) {
        match event {
            SourceEvent::Changed(_) => self.reconcile(Trigger::SourceChanged).await,
            SourceEvent::Failed(source, error) => {
                self.metrics
                    .record_source_failure(source.kind(), error.reason());
                self.health
                    .set_source_error(&source.to_string(), Some(error.to_string()));
            }
            SourceEvent::Recovered(source) => {
                self.health.set_source_error(&source.to_string(), None)
            }
        }
    }

    /// A run's resolutions: the follower compares against them, `/readyz` warns about the
    /// failed ones, the failure counter counts them.
    fn account_sources(&self, resolutions: &Resolutions) {
        self.following.last_used.record(resolutions);
        let mut errors = std::collections::BTreeMap::new();
        for (source, result) in resolutions {
            if let Err(error) = result {
                self.metrics
                    .record_source_failure(source.kind(), error.reason());
                errors.insert(source.to_string(), error.to_string());
            }
        }
        self.health.replace_source_errors(errors);
    }

    /// The daemon's clock, as the metrics take it.
    fn now(&self) -> SystemTime {
        SystemTime::from((self.clock)())
    }
}

/// One run through the port the mode allows: the writer, or under `--dry-run` the read-only
/// port, whose plan-only run leaves the states it observed as its record. (Free of the loop's
/// state, which is not `Sync`, so the run's future only borrows what it reads.)
async fn run_once(
    client: &BunqClient,
    config: &Config,
    previous: Option<&RunRecord>,
    dry_run: bool,
    stop: &CancellationToken,
) -> Result<(RunReport, RunRecord), RunError> {
    if dry_run {
        let (report, observation) = run::plan_run(&ReadOnlyBunq(client), config, previous).await?;
        let record = run::record_after(&observation, &ApplyReport::default());
        return Ok((report, record));
    }
    run::apply_run(client, config, previous, stop).await
}
