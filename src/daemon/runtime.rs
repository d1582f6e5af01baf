//! The daemon's main loop: `bunq-ipsync run`.
//!
//! One task owns the config, the bunq client and the schedule, and runs reconciles inline, so
//! runs never overlap. Around it:
//!
//! * the health/metrics listener (its own task, reads shared [`Health`] and [`Metrics`]);
//! * the session renewal task, independent of sync cycles;
//! * the config watcher (Kubernetes `..data` swaps) and SIGHUP, both leading to the same reload;
//! * a signal forwarder, so SIGTERM cancels at once even while a run is applying (the write in
//!   flight finishes, the rest of the plan is skipped, the loop exits 0);
//! * systemd notifications (`READY=1`, `RELOADING=1`, `STATUS=`, `WATCHDOG=1`, `STOPPING=1`).
//!
//! API errors never end the process: a failed run is retried with backoff, a failed connection
//! is retried until shutdown, and the reasons show in `/readyz` and the metrics.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::bunq::{ApiObserver, BunqClient, BunqError, RateLimiter};
use crate::config::{self, Config};
use crate::daemon::health::{self, Health};
use crate::daemon::lock::{LockError, StateLock};
use crate::daemon::metrics::{Metrics, RunResult};
use crate::daemon::notify::Notifier;
use crate::daemon::renew::{self, RenewTrigger, RenewalPolicy};
use crate::daemon::schedule::{
    self, Backoff, CronTicker, JitterSource, RandomJitter, Scheduler, Trigger,
};
use crate::daemon::signals::{SignalEvent, SignalListener};
use crate::daemon::watch::{self, ConfigChanged, Fingerprint, WatchSettings};
use crate::reconcile::bunq_adapter::client_settings;
use crate::reconcile::record::{RecordStore, RunRecord};
use crate::reconcile::run::{self, RunError};
use crate::reconcile::verdict::Verdict;

/// How long the loop may go without a heartbeat before `/healthz` fails.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(120);
/// The idle loop beats this often, so `/healthz` and the watchdog see it alive between runs.
const HEARTBEAT_PERIOD: Duration = Duration::from_secs(10);
/// How long shutdown waits for a session renewal in flight (one bunq call and its retries).
const SHUTDOWN_RENEWAL_GRACE: Duration = Duration::from_secs(30);
/// Consecutive failed runs before `/readyz` reports not ready.
const FAILURE_THRESHOLD: u32 = 3;

/// Why the daemon could not start (once started, it only stops on a signal).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The config file is invalid or unreadable at start.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Another instance holds the state directory.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The health listener could not bind.
    #[error("cannot listen on {address} (http.listen): {source}")]
    Listen {
        /// The configured address.
        address: std::net::SocketAddr,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    /// The bunq settings are unusable (e.g. a refused base URL).
    #[error(transparent)]
    Bunq(#[from] BunqError),
    /// The cron expression could not be scheduled.
    #[error(transparent)]
    Schedule(#[from] schedule::ScheduleError),
}

/// How the daemon is embedded: production uses [`Options::production`]; tests and `demo` pass
/// their own shutdown token, notifier and listener.
pub struct Options {
    /// The config file, re-read on reload.
    pub config_path: PathBuf,
    /// Cancelled to stop the daemon (signals cancel it too when `handle_signals` is set).
    pub shutdown: CancellationToken,
    /// systemd notifications (disabled outside systemd).
    pub notifier: Notifier,
    /// Install SIGHUP/SIGTERM/SIGINT handlers.
    pub handle_signals: bool,
    /// A pre-bound health listener; `None` binds `http.listen`.
    pub listener: Option<TcpListener>,
    /// How often the config file is checked for a changed content.
    pub watch: WatchSettings,
}

impl Options {
    /// Signals on, systemd from the environment, `http.listen` from the config.
    pub fn production(config_path: PathBuf) -> Options {
        Options {
            config_path,
            shutdown: CancellationToken::new(),
            notifier: Notifier::from_env(),
            handle_signals: true,
            listener: None,
            watch: WatchSettings::default(),
        }
    }
}

/// Reads and validates the config file; also returns the fingerprint of the exact bytes parsed,
/// so the watcher reports only real changes.
pub fn read_config(path: &Path) -> Result<(Config, Fingerprint), config::ConfigError> {
    // One read: the fingerprint must be of the very bytes parsed, or a swap between two reads
    // would pair the old config with the new content and the watcher would never reload it.
    let text = config::read(path)?;
    let config = config::parse(path, &text)?;
    Ok((config, Fingerprint::of_bytes(text.as_bytes())))
}

/// Runs the daemon until shutdown. Returns `Ok` on a graceful stop.
pub async fn run(options: Options) -> Result<(), DaemonError> {
    // Handlers first: a SIGHUP during start-up must queue a reload, not kill the process.
    let (reload_tx, reload_rx) = mpsc::channel::<Reload>(4);
    let _signal_listener = if options.handle_signals {
        Some(
            forward_signals(options.shutdown.clone(), reload_tx.clone())
                .map_err(DaemonError::Signals)?,
        )
    } else {
        None
    };
    let (config, fingerprint) = read_config(&options.config_path)?;
    let api_key = config::resolve_api_key(&config)?;
    std::fs::create_dir_all(&config.bunq.state_dir).map_err(|err| {
        BunqError::Context(format!(
            "cannot create {}: {err}",
            config.bunq.state_dir.display()
        ))
    })?;
    let _lock = StateLock::acquire(&config.bunq.state_dir)?;

    let metrics = Arc::new(Metrics::new(env!("CARGO_PKG_VERSION")));
    let health = Arc::new(Health::new(HEARTBEAT_TIMEOUT, FAILURE_THRESHOLD));
    health.set_config_loaded(true);
    health.beat();
    metrics.record_config_reload(true, SystemTime::now());

    let shutdown = options.shutdown.clone();
    let listener = match options.listener {
        Some(listener) => listener,
        None => TcpListener::bind(config.http.listen)
            .await
            .map_err(|source| DaemonError::Listen {
                address: config.http.listen,
                source,
            })?,
    };
    let local = listener.local_addr().ok();
    tracing::info!(listen = ?local, "health and metrics listener started");
    let server = tokio::spawn(health::serve(
        listener,
        Arc::clone(&health),
        Arc::clone(&metrics),
        shutdown.child_token(),
    ));

    let (changes_tx, changes_rx) = mpsc::channel::<ConfigChanged>(1);
    tokio::spawn(watch::watch_config(
        options.config_path.clone(),
        Some(fingerprint.clone()),
        options.watch,
        changes_tx,
        shutdown.child_token(),
    ));

    let observer: Arc<dyn ApiObserver> = Arc::new(Observer {
        metrics: Arc::clone(&metrics),
        health: Arc::clone(&health),
    });
    let notifier = options.notifier;
    let _ = notifier.status("connecting to bunq");
    let mut settings = client_settings(&config, Some(observer))?;
    // One limiter for every connection attempt below and any other client of the process:
    // bunq's session-server allows 1 call per 30 s per IP, however many clients make them.
    settings.rate_limiter = Some(RateLimiter::process());
    let Some(client) = connect_until_shutdown(
        settings,
        api_key,
        &config.bunq.state_dir,
        &health,
        &notifier,
        &shutdown,
    )
    .await
    else {
        return stop(&notifier, &shutdown, server).await;
    };
    let client = Arc::new(client);
    health.set_session_valid_until(Some(client.session_expires_at()));
    metrics.set_session_expiry(SystemTime::from(client.session_expires_at()));

    let renew_trigger = RenewTrigger::new();
    let renewal = tokio::spawn(renewal_task(
        Arc::clone(&client),
        config.sync.renew_before,
        Arc::clone(&health),
        Arc::clone(&metrics),
        renew_trigger.clone(),
        shutdown.child_token(),
    ));

    let _ = notifier.ready();
    if let Some(period) = notifier.watchdog_interval() {
        tokio::spawn(watchdog_task(
            notifier.clone(),
            Arc::clone(&health),
            period,
            shutdown.child_token(),
        ));
    }
    tracing::info!(
        config = %options.config_path.display(),
        credentials = config.credentials.len(),
        policy = config.sync.policy.as_str(),
        "bunq-ipsync running"
    );

    let records = RecordStore::new(&config.bunq.state_dir);
    let last_record = records.load();
    let (scheduler, cron) = build_scheduler(&config).await?;
    let mut daemon = Daemon {
        config_path: options.config_path,
        config,
        fingerprint,
        reload_failed: false,
        client,
        metrics,
        health,
        notifier,
        records,
        last_record,
        scheduler,
        cron,
        renew_trigger,
        shutdown: shutdown.clone(),
    };
    daemon.run_loop(reload_rx, changes_rx).await;
    stop_cron(daemon.cron.take()).await;
    // A renewal in flight finishes and saves its session (a session opened at bunq but never
    // stored would be lost to the next start); the runtime would drop the task otherwise.
    if tokio::time::timeout(SHUTDOWN_RENEWAL_GRACE, renewal)
        .await
        .is_err()
    {
        tracing::warn!("session renewal still running at shutdown; abandoned");
    }
    stop(&daemon.notifier, &shutdown, server).await
}

async fn stop(
    notifier: &Notifier,
    shutdown: &CancellationToken,
    server: tokio::task::JoinHandle<()>,
) -> Result<(), DaemonError> {
    let _ = notifier.stopping();
    shutdown.cancel();
    let _ = server.await;
    tracing::info!("bunq-ipsync stopped");
    Ok(())
}

async fn stop_cron(cron: Option<CronTicker>) {
    if let Some(cron) = cron
        && let Err(err) = cron.shutdown().await
    {
        tracing::warn!(error = %err, "cron scheduler did not stop cleanly");
    }
}

/// Why a reload was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reload {
    /// SIGHUP: always re-read.
    Signal,
}

/// SIGTERM/SIGINT cancel `shutdown` directly (so a run in progress sees it); SIGHUP becomes a
/// reload request for the loop.
fn forward_signals(
    shutdown: CancellationToken,
    reloads: mpsc::Sender<Reload>,
) -> std::io::Result<SignalListener> {
    let (listener, mut events) = SignalListener::start()?;
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                SignalEvent::Reload => {
                    let _ = reloads.try_send(Reload::Signal);
                }
                SignalEvent::Shutdown => {
                    tracing::info!("shutdown requested; finishing the call in flight");
                    shutdown.cancel();
                }
            }
        }
    });
    Ok(listener)
}

/// Connects, retrying with backoff until it works or shutdown. bunq errors never end the
/// daemon: they show as a readiness reason.
async fn connect_until_shutdown(
    settings: crate::bunq::ClientSettings,
    api_key: crate::secret::Secret,
    state_dir: &Path,
    health: &Health,
    notifier: &Notifier,
    shutdown: &CancellationToken,
) -> Option<BunqClient> {
    let mut backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(300));
    let mut told_systemd = false;
    loop {
        // `settings` carries the process's rate limiter: every attempt counts against it.
        let attempt = BunqClient::connect(settings.clone(), api_key.clone(), state_dir);
        let result = tokio::select! {
            () = shutdown.cancelled() => return None,
            result = attempt => result,
        };
        match result {
            Ok(client) => {
                health.set_access_refused(None);
                health.set_registration_deferred(None);
                return Some(client);
            }
            Err(err) => {
                let delay = backoff.next_delay();
                let message = explain(&err);
                tracing::error!(error = %message, retry_in = ?delay, "cannot open a bunq session");
                health.record_run_result(false, &format!("cannot open a bunq session: {message}"));
                if err.is_credentials_rejected() {
                    health.set_access_refused(Some(message.clone()));
                }
                // Bounded: the next attempts still try session-server with the saved
                // installation (the client keeps it), one per backoff and per 30 s at most.
                health.set_registration_deferred(
                    err.is_registration_deferred().then(|| message.clone()),
                );
                if !told_systemd {
                    // Up and waiting is a state, not a failed start: without READY=1 systemd
                    // would kill and restart the daemon in a loop while bunq refuses it. The
                    // reason is in STATUS= and /readyz.
                    let _ = notifier.ready();
                    told_systemd = true;
                }
                let _ = notifier.status(&format!("waiting for bunq: {message}"));
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = sleep_beating(health, delay) => {}
                }
            }
        }
        health.beat();
    }
}

/// Sleeps for `delay`, beating every [`HEARTBEAT_PERIOD`]: waiting out a connection backoff
/// (up to minutes while bunq refuses) is the loop working as intended, and `/healthz` must not
/// fail over it (an orchestrator would restart a process that cannot fix bunq).
async fn sleep_beating(health: &Health, delay: Duration) {
    let deadline = tokio::time::Instant::now() + delay;
    loop {
        health.beat();
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return;
        }
        tokio::time::sleep((deadline - now).min(HEARTBEAT_PERIOD)).await;
    }
}

/// The error text, plus what to do when bunq refuses the daemon's key or IP.
fn explain(err: &BunqError) -> String {
    if err.is_credentials_rejected() {
        format!(
            "{err}. bunq refuses this API key from this IP: the daemon's own IP may have been \
             deactivated outside bunq-ipsync (re-activate it in the bunq app), or the key belongs \
             to the other environment"
        )
    } else {
        err.to_string()
    }
}

async fn build_scheduler(config: &Config) -> Result<(Scheduler, Option<CronTicker>), DaemonError> {
    // The scheduler spreads runs by up to its own maximum; `sync.jitter` scales that down.
    let spread = config
        .sync
        .interval
        .mul_f64(schedule::JITTER_FRACTION)
        .min(schedule::MAX_JITTER);
    let jitter_scale = if spread.is_zero() {
        0.0
    } else {
        (config.sync.jitter.as_secs_f64() / spread.as_secs_f64()).min(1.0)
    };
    let backoff = Backoff::new(
        Duration::from_secs(5),
        config.sync.interval.max(Duration::from_secs(5)),
    );
    match &config.sync.schedule {
        Some(expr) => {
            let (ticker, ticks) = CronTicker::start(expr).await?;
            let fallback = schedule::cron_fallback(config.sync.interval, expr)?;
            Ok((
                Scheduler::on_ticks(ticks, fallback).with_backoff(backoff),
                Some(ticker),
            ))
        }
        None => {
            let mut random = RandomJitter::new();
            let jitter = move || random.next_fraction() * jitter_scale;
            Ok((
                Scheduler::every(config.sync.interval, jitter).with_backoff(backoff),
                None,
            ))
        }
    }
}

/// Sends `WATCHDOG=1` every `period` while the heartbeat is fresh. Its own task, because the
/// main loop is busy inside a long, rate-limited apply for minutes; the heartbeat stays fresh
/// then through every answered bunq request, and goes stale only if the daemon really hangs.
async fn watchdog_task(
    notifier: Notifier,
    health: Arc<Health>,
    period: Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if health.liveness_at(tokio::time::Instant::now()).alive {
            let _ = notifier.watchdog();
        } else {
            tracing::error!("main loop heartbeat is stale; withholding WATCHDOG=1");
        }
    }
}

/// Keeps the session alive ahead of expiry, independent of sync cycles.
async fn renewal_task(
    client: Arc<BunqClient>,
    renew_before: Duration,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    trigger: RenewTrigger,
    shutdown: CancellationToken,
) {
    let clock = client.wall_clock();
    // The user's session_timeout is what every new session lives; the current session may have
    // only minutes left (a restart), which must not shrink the lead. Only a session imported
    // without its timeout falls back to what it has left.
    let session_timeout = client.session_timeout().unwrap_or_else(|| {
        (client.session_expires_at() - clock())
            .to_std()
            .unwrap_or(Duration::from_secs(60))
    });
    let mut policy = RenewalPolicy::new(session_timeout);
    policy.renew_before = Some(renew::renewal_lead(renew_before, session_timeout));
    let expiry_client = Arc::clone(&client);
    let current_expiry = move || expiry_client.session_expires_at();
    let renew = move || {
        let client = Arc::clone(&client);
        let health = Arc::clone(&health);
        let metrics = Arc::clone(&metrics);
        async move {
            let before = client.session_expires_at();
            let result = client.renew_session().await;
            match &result {
                // The client keeps a session younger than 30 s (bunq allows one session-server
                // call per 30 s): nothing was renewed, so nothing is counted.
                Ok(expires_at) if *expires_at == before => {}
                Ok(expires_at) => {
                    metrics.record_session_renewal(true);
                    health.set_session_valid_until(Some(*expires_at));
                    metrics.set_session_expiry(SystemTime::from(*expires_at));
                }
                Err(_) => metrics.record_session_renewal(false),
            }
            result
        }
    };
    renew::run_renewal(policy, clock, current_expiry, renew, trigger, shutdown).await;
}

/// Feeds bunq request events into the metrics and the heartbeat: every answered request is
/// progress, so a long, rate-limited apply keeps the watchdog fed.
struct Observer {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl ApiObserver for Observer {
    fn request_finished(
        &self,
        method: &str,
        route_pattern: &str,
        status: Option<u16>,
        elapsed: Duration,
    ) {
        self.metrics
            .record_api_request(route_pattern, method, status, elapsed);
        self.health.beat();
    }

    fn session_created(&self, expires_at: DateTime<Utc>) {
        self.health.set_session_valid_until(Some(expires_at));
        self.metrics
            .set_session_expiry(SystemTime::from(expires_at));
    }
}

/// The loop's state.
struct Daemon {
    config_path: PathBuf,
    config: Config,
    fingerprint: Fingerprint,
    /// The last reload failed: the file on disk is not the running config, even if it later
    /// changes back to the running config's bytes.
    reload_failed: bool,
    client: Arc<BunqClient>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    notifier: Notifier,
    records: RecordStore,
    last_record: Option<RunRecord>,
    scheduler: Scheduler,
    cron: Option<CronTicker>,
    renew_trigger: RenewTrigger,
    shutdown: CancellationToken,
}

impl Daemon {
    async fn run_loop(
        &mut self,
        mut reloads: mpsc::Receiver<Reload>,
        mut changes: mpsc::Receiver<ConfigChanged>,
    ) {
        let mut heartbeat = tokio::time::interval(HEARTBEAT_PERIOD);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                Some(_) = reloads.recv() => self.reload(true).await,
                Some(ConfigChanged) = changes.recv() => self.reload(false).await,
                _ = heartbeat.tick() => self.health.beat(),
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
                self.fingerprint = fingerprint;
                self.reload_failed = false;
                self.metrics.record_config_reload(true, SystemTime::now());
                self.health.set_reload_error(None);
                tracing::info!(config = %self.config_path.display(), "config reloaded; reconciling now");
                if schedule_changed {
                    self.replace_scheduler().await;
                }
                let _ = self.notifier.ready();
                self.reconcile(Trigger::Startup).await;
            }
            Err(err) => {
                self.reload_failed = true;
                self.metrics.record_config_reload(false, SystemTime::now());
                let message = err.to_string();
                for line in message.lines() {
                    tracing::error!(error = %line, "config reload failed; still running on the last good config");
                }
                self.health
                    .set_reload_error(Some(message.lines().next().unwrap_or_default().to_string()));
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
        self.metrics.record_run_started(SystemTime::now());
        let stop = self.shutdown.child_token();
        let result = run::apply_run(
            self.client.as_ref(),
            &self.config,
            self.last_record.as_ref(),
            &stop,
        )
        .await;
        let elapsed = started.elapsed();
        // The summary line carries the run's id, so it can be joined with the run's drift and
        // audit lines. A run that failed before it planned has logged nothing under an id yet:
        // it gets one of its own.
        let (run_id, verdict) = match result {
            Ok((report, record)) => {
                self.health.set_access_refused(None);
                self.health.set_registration_deferred(None);
                if let Err(err) = self.records.save(&record) {
                    tracing::warn!(run_id = %report.run_id, error = %err, "cannot save the last-run record; drift reports may repeat");
                }
                self.last_record = Some(record);
                self.metrics.record_report(&report);
                (report.run_id.clone(), report.verdict())
            }
            Err(err) => (run::new_run_id(), self.failed_run(&err)),
        };
        let message = &verdict.summary;
        self.metrics
            .record_run(verdict.result, elapsed, SystemTime::now());
        self.health
            .record_run_result(verdict.result != RunResult::Failed, message);
        self.health
            .set_session_valid_until(Some(self.client.session_expires_at()));
        self.scheduler.run_finished(verdict.outcome);
        let _ = self.notifier.status(message);
        match verdict.result {
            RunResult::Failed => {
                tracing::error!(%run_id, ?trigger, duration = ?elapsed, "{message}")
            }
            RunResult::Blocked => {
                tracing::warn!(%run_id, ?trigger, duration = ?elapsed, "{message}")
            }
            _ => tracing::info!(%run_id, ?trigger, duration = ?elapsed, "{message}"),
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
            RunError::UnknownCredential { .. } => (false, err.to_string()),
        };
        err.verdict(transient, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    use crate::bunq::TransportSettings;
    use crate::bunq::client::REREGISTRATION_INTERVAL;
    use crate::bunq::session::WallClock;
    use crate::bunq::{BaseUrl, ClientSettings, PrivateKey, RateLimits, RetryPolicy};
    use crate::simulator::{Fault, FaultKind, SeededKey, Simulator, SimulatorOptions};

    const MINUTE: Duration = Duration::from_secs(60);

    /// One server key for these tests (RSA generation is slow in debug builds).
    fn server_key() -> PrivateKey {
        static KEY: OnceLock<PrivateKey> = OnceLock::new();
        KEY.get_or_init(|| PrivateKey::generate().unwrap()).clone()
    }

    /// A wall clock that follows tokio's paused clock, for the client and the renewal task.
    fn tokio_wall_clock() -> WallClock {
        let origin = tokio::time::Instant::now();
        let wall = Utc::now();
        Arc::new(move || wall + chrono::Duration::from_std(origin.elapsed()).unwrap())
    }

    /// A simulated bunq with bunq's rate limits and `session_timeout_secs` sessions, a user, and
    /// client settings on tokio time sharing `limiter`.
    struct Bank {
        sim: Simulator,
        key: SeededKey,
        dir: tempfile::TempDir,
        settings: ClientSettings,
    }

    impl Bank {
        async fn start(session_timeout_secs: u64, renew_before: Duration) -> Bank {
            let sim = Simulator::start(SimulatorOptions {
                server_key: Some(server_key()),
                session_timeout_secs,
                ..SimulatorOptions::default()
            })
            .await
            .unwrap();
            let key = sim.create_user_with_api_key();
            let mut settings =
                ClientSettings::new(BaseUrl::parse(&sim.base_url()).unwrap(), "runtime test");
            settings.transport = TransportSettings {
                connect_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(20),
                retry: RetryPolicy {
                    max_attempts: 2,
                    base_delay: Duration::from_millis(10),
                    max_delay: Duration::from_millis(40),
                },
                rate_limits: RateLimits::bunq(),
            };
            settings.rate_limiter = Some(Arc::new(RateLimiter::new(RateLimits::bunq())));
            settings.renew_before = renew_before;
            settings.clock = tokio_wall_clock();
            Bank {
                sim,
                key,
                dir: tempfile::tempdir().unwrap(),
                settings,
            }
        }

        fn state_dir(&self) -> PathBuf {
            self.dir.path().join("state")
        }

        async fn connect(&self) -> BunqClient {
            BunqClient::connect(
                self.settings.clone(),
                self.key.api_key.clone(),
                &self.state_dir(),
            )
            .await
            .unwrap()
        }

        fn count(&self, method: &str, path: &str, status: Option<u16>) -> usize {
            self.sim
                .request_log()
                .iter()
                .filter(|r| r.method == method && r.path.ends_with(path) && r.status == status)
                .count()
        }

        fn installations(&self) -> usize {
            self.count("POST", "/installation", Some(200))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn connect_retries_while_bunq_rejects_every_installation_register_once_per_interval() {
        let bank = Bank::start(604_800, Duration::from_secs(600)).await;
        // Every session-server call meets "Insufficient authentication.": bunq forgets each
        // installation as the client tries to open a session with it.
        bank.sim.inject(
            Fault::once(FaultKind::ForgetInstallation)
                .on(reqwest::Method::POST, "/session-server")
                .times(100_000),
        );
        let health = Health::new(HEARTBEAT_TIMEOUT, FAILURE_THRESHOLD);
        let shutdown = CancellationToken::new();
        let started = tokio::time::Instant::now();
        let state_dir = bank.state_dir();
        let notifier = Notifier::disabled();
        let connecting = connect_until_shutdown(
            bank.settings.clone(),
            bank.key.api_key.clone(),
            &state_dir,
            &health,
            &notifier,
            &shutdown,
        );
        let watching = async {
            // Three session-server attempts with the one installation...
            while bank.count("POST", "/session-server", Some(403)) < 3 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            assert_eq!(bank.installations(), 1);
            let reasons = health.readiness_at(Utc::now()).reasons;
            assert!(
                reasons
                    .iter()
                    .any(|r| r.starts_with("re-registration with bunq is bounded: ")),
                "{reasons:?}"
            );
            // ...and the next installation only once the interval has passed.
            while bank.installations() < 2 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            assert!(started.elapsed() >= REREGISTRATION_INTERVAL);
            shutdown.cancel();
        };
        let (client, ()) = tokio::join!(connecting, watching);
        assert!(client.is_none());
        assert_eq!(bank.installations(), 2);
        assert_eq!(bank.count("POST", "/device-server", Some(200)), 2);
        assert_eq!(
            bank.count("POST", "/session-server", Some(429)),
            0,
            "every attempt waited for session-server's window"
        );
    }

    /// Runs the daemon's renewal task for `client` until the returned token is cancelled.
    fn spawn_renewal(
        client: &Arc<BunqClient>,
        renew_before: Duration,
    ) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(renewal_task(
            Arc::clone(client),
            renew_before,
            Arc::new(Health::new(HEARTBEAT_TIMEOUT, FAILURE_THRESHOLD)),
            Arc::new(Metrics::new("test")),
            RenewTrigger::new(),
            shutdown.clone(),
        ));
        (shutdown, task)
    }

    #[tokio::test(start_paused = true)]
    async fn renewal_after_a_restart_is_sized_from_the_session_timeout_not_the_time_left() {
        // One-hour sessions, renew 15 min ahead. A restart 40 min into a session finds 20 min
        // left; the lead stays 15 min (not half of 20).
        let renew_before = 15 * MINUTE;
        let bank = Bank::start(3600, renew_before).await;
        drop(bank.connect().await);
        tokio::time::sleep(40 * MINUTE).await;
        let client = Arc::new(bank.connect().await);
        assert_eq!(
            bank.sim.sessions_created(),
            1,
            "the saved session is reused"
        );

        let (shutdown, task) = spawn_renewal(&client, renew_before);
        tokio::time::sleep(6 * MINUTE).await;
        assert_eq!(
            bank.sim.sessions_created(),
            2,
            "renewed 15 min before expiry (at 45 min), not 10 min before"
        );
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn session_renewed_inline_by_a_request_is_not_renewed_again_by_the_task() {
        let renew_before = 10 * MINUTE;
        let bank = Bank::start(3600, renew_before).await;
        let client = Arc::new(bank.connect().await);
        let (shutdown, task) = spawn_renewal(&client, renew_before);

        // 5 min in, bunq ends the session early; the next request opens a new one inline.
        tokio::time::sleep(5 * MINUTE).await;
        bank.sim.expire_all_sessions();
        client.list_credentials().await.unwrap();
        assert_eq!(bank.sim.sessions_created(), 2);

        // The first session's renewal time (50 min) passes: that session is gone already.
        tokio::time::sleep(47 * MINUTE).await;
        assert_eq!(
            bank.sim.sessions_created(),
            2,
            "no second session-server call for the renewed session"
        );
        // The new session is renewed at its own time (55 min).
        tokio::time::sleep(4 * MINUTE).await;
        assert_eq!(bank.sim.sessions_created(), 3);
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn connection_backoff_keeps_the_heartbeat_fresh() {
        let health = Arc::new(Health::new(HEARTBEAT_TIMEOUT, FAILURE_THRESHOLD));
        let longest_backoff = Duration::from_secs(300);
        let sleeper = tokio::spawn({
            let health = Arc::clone(&health);
            async move { sleep_beating(&health, longest_backoff).await }
        });
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let liveness = health.liveness_at(tokio::time::Instant::now());
            assert!(liveness.alive, "{liveness:?}");
        }
        sleeper.await.unwrap();
    }
}
