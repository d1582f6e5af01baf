//! Starting the daemon (`bunq-ipsync run`): how it is embedded ([`Options`]) and the wiring in
//! [`run`], which reads the config, takes the state lock, starts the parts below and hands over
//! to the run loop until shutdown.
//!
//! The parts, each in its own file:
//!
//! * `run_loop`: one task owns the config, the bunq client and the schedule, and runs
//!   reconciles inline, so runs never overlap; it reloads the config and accounts for each run;
//! * `connect`: the first bunq connection, retried until it works or shutdown;
//! * `tasks`: signal forwarding, the systemd watchdog and session renewal;
//! * `observer`: the one place that publishes what bunq reports into health and metrics.
//!
//! Around the loop:
//!
//! * the health/metrics listener (its own task, reads shared [`Health`] and [`Metrics`]);
//! * the session renewal task, independent of sync cycles;
//! * the config watcher (Kubernetes `..data` swaps) and SIGHUP, both leading to the same reload;
//! * the API key file's watcher (and SIGHUP), leading to a key rotation without a restart
//!   (`rotate`);
//! * a signal forwarder, so SIGTERM cancels at once even while a run is applying (the write in
//!   flight finishes, the rest of the plan is skipped, the loop exits 0);
//! * systemd notifications (`READY=1`, `RELOADING=1`, `STATUS=`, `WATCHDOG=1`, `STOPPING=1`).
//! * webhooks and the heartbeat ([`crate::notify`]), told by the loop (runs, refused reloads),
//!   the start-up connection and the renewal task (failures); their background sender is given
//!   a short grace at shutdown to deliver the last run's messages.
//!
//! API errors never end the process: a failed run is retried with backoff, a failed connection
//! is retried until shutdown, and the reasons show in `/readyz` and the metrics.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bunq::{ApiObserver, BunqClient, BunqError, ClientSettings, RateLimiter};
use crate::clock::{WallClock, system_clock};
use crate::config::{self, Config};
use crate::daemon::connect::connect_until_shutdown;
pub use crate::daemon::error::DaemonError;
use crate::daemon::follow::Following;
use crate::daemon::health::{self, Health};
use crate::daemon::lock::StateLock;
use crate::daemon::metrics::Metrics;
use crate::daemon::notify::Notifier;
use crate::daemon::observer::Observer;
use crate::daemon::renew::RenewTrigger;
use crate::daemon::rotate::{self, KeyRotation};
pub use crate::daemon::run_loop::read_config;
use crate::daemon::run_loop::{Daemon, build_scheduler, stop_cron};
use crate::daemon::signals::SignalListener;
use crate::daemon::tasks::{Reload, Renewal, forward_signals, watchdog_task};
use crate::daemon::watch::{self, ConfigChanged, Fingerprint, WatchSettings};
use crate::notify::{DeliveryObserver, Notifications};
use crate::reconcile::bunq_adapter::client_settings;
use crate::reconcile::record::RecordStore;

/// How long the loop may go without a heartbeat before `/healthz` fails.
pub(super) const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long shutdown waits for a session renewal in flight (one bunq call and its retries).
const SHUTDOWN_RENEWAL_GRACE: Duration = Duration::from_secs(30);
/// How long shutdown waits for queued notifications (the last run's messages): long enough for
/// one message's attempts, short enough for systemd's stop timeout.
const SHUTDOWN_NOTIFY_GRACE: Duration = Duration::from_secs(20);
/// Consecutive failed runs before `/readyz` reports not ready.
pub(super) const FAILURE_THRESHOLD: u32 = 3;

/// How the daemon is embedded: production uses [`Options::production`]; tests and `demo` pass
/// their own shutdown token, notifier and listener.
pub struct Options {
    /// The config file, re-read on reload.
    pub config_path: PathBuf,
    /// The config as the caller already loaded it from `config_path` with [`read_config`] (one
    /// read per load, handed on); `None` reads it at start.
    pub loaded: Option<(Config, Fingerprint)>,
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
    /// The wall clock for the bunq client's session expiry, the renewal task and the metrics'
    /// timestamps; [`system_clock`] in production, [`crate::clock::tokio_clock`] under paused
    /// tokio time in tests.
    pub clock: WallClock,
    /// `run --dry-run`: every run plans and reports through the read-only bunq port, none
    /// writes.
    pub dry_run: bool,
    /// The limiter of every bunq call; `None`: the process's one limiter (production). Tests on
    /// paused tokio time pass their own: instants of different paused clocks do not compare.
    pub rate_limiter: Option<Arc<RateLimiter>>,
}

impl Options {
    /// Signals on, systemd from the environment, `http.listen` from the config.
    pub fn production(config_path: PathBuf) -> Options {
        Options {
            config_path,
            loaded: None,
            shutdown: CancellationToken::new(),
            notifier: Notifier::from_env(),
            handle_signals: true,
            listener: None,
            watch: WatchSettings::default(),
            clock: system_clock(),
            dry_run: false,
            rate_limiter: None,
        }
    }

    /// A daemon embedded in another program (tests, benches): no signal handlers, no systemd,
    /// health on `listener`, the system clock and the process's limiter; struct update changes
    /// the rest.
    pub fn embedded(config_path: PathBuf, listener: TcpListener) -> Options {
        Options {
            notifier: Notifier::disabled(),
            handle_signals: false,
            listener: Some(listener),
            ..Options::production(config_path)
        }
    }
}

/// Metrics, health, the notifications of `config` and the observer that publishes to them, with
/// the config just loaded (and `dry_run` said in `/metrics` and `/readyz`).
fn publishers(
    clock: &WallClock,
    config: &Config,
    dry_run: bool,
) -> (Arc<Metrics>, Arc<Health>, Notifications, Arc<Observer>) {
    let metrics = Arc::new(Metrics::new(env!("CARGO_PKG_VERSION")));
    let health =
        Arc::new(Health::new(HEARTBEAT_TIMEOUT, FAILURE_THRESHOLD).with_clock(Arc::clone(clock)));
    health.set_config_loaded(true);
    health.beat();
    metrics.record_config_reload(true, SystemTime::from(clock()));
    metrics.set_dry_run(dry_run);
    health.set_dry_run(dry_run);
    let notifications = start_notifications(config, &metrics, clock);
    let observer =
        Observer::new(Arc::clone(&metrics), Arc::clone(&health)).notifying(notifications.clone());
    (metrics, health, notifications, Arc::new(observer))
}

/// The notifications sender, counting into `metrics`. It starts even without targets, so a
/// reload can add them; a sender that cannot be built is logged, and the daemon runs without.
fn start_notifications(
    config: &Config,
    metrics: &Arc<Metrics>,
    clock: &WallClock,
) -> Notifications {
    let observer: Arc<dyn DeliveryObserver> = Arc::clone(metrics) as Arc<dyn DeliveryObserver>;
    Notifications::start(&config.notify, observer, Arc::clone(clock)).unwrap_or_else(|err| {
        tracing::error!(
            error = %crate::bunq::transport::error_chain(&err.without_url()),
            "cannot build the HTTP client for notifications; none will be sent"
        );
        Notifications::disabled()
    })
}

/// Watches the config file for changes of its content (beside SIGHUP), from the bytes the
/// daemon started with.
fn watch_config_file(
    config_path: &Path,
    watch: &WatchSettings,
    fingerprint: &Fingerprint,
    shutdown: &CancellationToken,
) -> mpsc::Receiver<ConfigChanged> {
    let (changes_tx, changes_rx) = mpsc::channel::<ConfigChanged>(1);
    tokio::spawn(watch::watch_config(
        config_path.to_path_buf(),
        Some(fingerprint.clone()),
        watch.clone(),
        changes_tx,
        shutdown.child_token(),
    ));
    changes_rx
}

/// Watches the API key file (when the key comes from one) for a rotated key; the loop checks
/// the key on each event. The returned sender is held while no file is watched, so the
/// channel stays open and quiet.
fn watch_api_key(
    config: &Config,
    watch: &WatchSettings,
    shutdown: &CancellationToken,
) -> (
    mpsc::Receiver<ConfigChanged>,
    Option<mpsc::Sender<ConfigChanged>>,
) {
    let (key_tx, key_rx) = mpsc::channel::<ConfigChanged>(1);
    let Some(path) = rotate::key_file(config) else {
        return (key_rx, Some(key_tx));
    };
    tokio::spawn(watch::watch_file(
        path,
        "API key file",
        None,
        watch.clone(),
        key_tx,
        shutdown.child_token(),
    ));
    (key_rx, None)
}

/// Runs the daemon until shutdown. Returns `Ok` on a graceful stop.
pub async fn run(options: Options) -> Result<(), DaemonError> {
    // Handlers first: a SIGHUP during start-up must queue a reload, not kill the process.
    let (reload_tx, reload_rx) = mpsc::channel::<Reload>(4);
    let _signal_listener = listen_for_signals(&options, &reload_tx)?;
    let (config, fingerprint) = match options.loaded {
        Some(loaded) => loaded,
        None => read_config(&options.config_path)?,
    };
    let api_key = config::resolve_api_key(&config)?;
    create_state_dir(&config.bunq.state_dir)?;
    let _lock = StateLock::acquire(&config.bunq.state_dir)?;

    let clock = options.clock;
    let (metrics, health, notifications, observer) = publishers(&clock, &config, options.dry_run);

    let shutdown = options.shutdown.clone();
    let server = serve_health(options.listener, &config, &observer, &shutdown).await?;
    let changes_rx = watch_config_file(
        &options.config_path,
        &options.watch,
        &fingerprint,
        &shutdown,
    );

    let notifier = options.notifier;
    let _ = notifier.status("connecting to bunq");
    let connection = Connection {
        rate_limiter: options.rate_limiter,
        observer: &observer,
        clock: &clock,
        notifier: &notifier,
        notifications: &notifications,
        shutdown: &shutdown,
    };
    let Some((client, settings)) = connect(&config, api_key, connection).await? else {
        return stop(&notifier, &shutdown, server).await;
    };
    let client = Arc::new(client);
    observer.session_valid_until(client.session_expires_at());
    let renew_trigger = RenewTrigger::new();
    let renew_before = config.sync.renew_before;
    let renewal = Renewal::spawn(&client, renew_before, &observer, &renew_trigger, &shutdown);
    let rotation = KeyRotation::new(settings, config.clone());
    let (key_rx, _unwatched_key) = watch_api_key(&config, &options.watch, &shutdown);
    let running = Running {
        config_path: &options.config_path,
        config: &config,
        dry_run: options.dry_run,
    };
    announce_running(&notifier, &health, &running, &shutdown);

    let records = RecordStore::new(&config.bunq.state_dir);
    let (scheduler, cron) = build_scheduler(&config).await?;
    let following = Following::start(&config, options.watch.poll_interval, &shutdown);
    let mut daemon = Daemon {
        config_path: options.config_path,
        config,
        fingerprint,
        reload_failed: false,
        client,
        metrics,
        health,
        observer,
        clock,
        notifier,
        notifications,
        last_record: records.load(),
        records,
        scheduler,
        cron,
        renew_trigger,
        following,
        renewal: Some(renewal),
        rotation,
        shutdown: shutdown.clone(),
        dry_run: options.dry_run,
    };
    daemon.run_loop(reload_rx, changes_rx, key_rx).await;
    finish(daemon, server).await
}

/// The signal handlers, when the embedder wants them: SIGTERM/SIGINT cancel the shutdown
/// token, SIGHUP queues a reload.
fn listen_for_signals(
    options: &Options,
    reloads: &mpsc::Sender<Reload>,
) -> Result<Option<SignalListener>, DaemonError> {
    if !options.handle_signals {
        return Ok(None);
    }
    forward_signals(options.shutdown.clone(), reloads.clone())
        .map(Some)
        .map_err(DaemonError::Signals)
}

/// What the start-up line says about the daemon that is now running.
struct Running<'a> {
    config_path: &'a Path,
    config: &'a Config,
    dry_run: bool,
}

/// Connected: tells systemd the daemon is ready, starts the watchdog it asked for, logs so (and
/// says so loudly, in the log and in `STATUS=`, when it is a dry run).
fn announce_running(
    notifier: &Notifier,
    health: &Arc<Health>,
    running: &Running<'_>,
    shutdown: &CancellationToken,
) {
    let Running {
        config_path,
        config,
        dry_run,
    } = *running;
    let _ = notifier.ready();
    if dry_run {
        let _ = notifier.status("dry run: every run plans and reports, none writes");
        tracing::warn!(
            "dry run (run --dry-run): every run plans and reports through the read-only bunq \
             port; nothing is written to bunq"
        );
    }
    if let Some(period) = notifier.watchdog_interval() {
        tokio::spawn(watchdog_task(
            notifier.clone(),
            Arc::clone(health),
            period,
            shutdown.child_token(),
        ));
    }
    tracing::info!(
        config = %config_path.display(),
        credentials = config.credentials.len(),
        policy = config.sync.policy.as_str(),
        dry_run,
        "bunq-ipsync running"
    );
}

fn create_state_dir(state_dir: &Path) -> Result<(), DaemonError> {
    std::fs::create_dir_all(state_dir).map_err(|err| {
        DaemonError::Bunq(BunqError::Context(format!(
            "cannot create {}: {err}",
            state_dir.display()
        )))
    })
}

/// Binds `http.listen` (unless the embedder bound a listener) and serves health and metrics
/// until shutdown.
async fn serve_health(
    listener: Option<TcpListener>,
    config: &Config,
    observer: &Observer,
    shutdown: &CancellationToken,
) -> Result<JoinHandle<()>, DaemonError> {
    let listener = match listener {
        Some(listener) => listener,
        None => TcpListener::bind(config.http.listen)
            .await
            .map_err(|source| DaemonError::Listen {
                address: config.http.listen,
                source,
            })?,
    };
    let local = listener.local_addr().ok();
    tracing::info!(
        listen = local.map(tracing::field::display),
        "health and metrics listener started"
    );
    Ok(tokio::spawn(health::serve(
        listener,
        observer.health(),
        observer.metrics(),
        shutdown.child_token(),
    )))
}

/// What the start-up connection reports to while it retries.
struct Connection<'a> {
    rate_limiter: Option<Arc<RateLimiter>>,
    observer: &'a Arc<Observer>,
    clock: &'a WallClock,
    notifier: &'a Notifier,
    notifications: &'a Notifications,
    shutdown: &'a CancellationToken,
}

/// The client settings from the config, on the daemon's clock and the process's rate limiter,
/// connected until it works, with those settings (a key rotation connects with them again);
/// `None` on shutdown.
async fn connect(
    config: &Config,
    api_key: crate::secret::Secret,
    connection: Connection<'_>,
) -> Result<Option<(BunqClient, ClientSettings)>, DaemonError> {
    let Connection {
        rate_limiter,
        observer,
        clock,
        notifier,
        notifications,
        shutdown,
    } = connection;
    let api_observer: Arc<dyn ApiObserver> = Arc::clone(observer) as Arc<dyn ApiObserver>;
    let mut settings = client_settings(config, Some(api_observer))?;
    settings.clock = Arc::clone(clock);
    // One limiter for every connection attempt below and any other client of the process:
    // bunq's session-server allows 1 call per 30 s per IP, however many clients make them.
    settings.rate_limiter = Some(rate_limiter.unwrap_or_else(RateLimiter::process));
    let health = observer.health();
    let client = connect_until_shutdown(
        settings.clone(),
        api_key,
        &config.bunq.state_dir,
        &health,
        notifier,
        notifications,
        shutdown,
    )
    .await;
    Ok(client.map(|client| (client, settings)))
}

/// After the loop: stops the cron ticker, lets a renewal in flight finish, stops the listener.
async fn finish(mut daemon: Daemon, server: JoinHandle<()>) -> Result<(), DaemonError> {
    stop_cron(daemon.cron.take()).await;
    // A renewal in flight finishes and saves its session (a session opened at bunq but never
    // stored would be lost to the next start); the runtime would drop the task otherwise.
    if let Some(renewal) = daemon.renewal.take()
        && !renewal.stop(SHUTDOWN_RENEWAL_GRACE).await
    {
        tracing::warn!("session renewal still running at shutdown; abandoned");
    }
    // Messages of the last run (and a refused reload) go out before the process ends.
    if tokio::time::timeout(SHUTDOWN_NOTIFY_GRACE, daemon.notifications.finish())
        .await
        .is_err()
    {
        tracing::warn!("notifications still queued at shutdown were abandoned");
    }
    stop(&daemon.notifier, &daemon.shutdown, server).await
}

async fn stop(
    notifier: &Notifier,
    shutdown: &CancellationToken,
    server: JoinHandle<()>,
) -> Result<(), DaemonError> {
    let _ = notifier.stopping();
    shutdown.cancel();
    let _ = server.await;
    tracing::info!("bunq-ipsync stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::bunq::model::IpStatus;
    use crate::daemon::test_bank::{Bank, MANAGED_IP, MINUTE};

    const INTERVAL: Duration = Duration::from_secs(300);

    #[tokio::test(start_paused = true)]
    async fn the_loop_repairs_drift_at_the_next_scheduled_run_not_before() {
        let bank = Bank::start(604_800, Duration::from_secs(600)).await;
        let managed = bank.managed(INTERVAL, "");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let options = bank.options(managed.config_path, listener);
        let shutdown = options.shutdown.clone();
        let daemon = tokio::spawn(run(options));

        // The start-up run activates the entry at once (the session-server window aside).
        bank.until_active(managed.credential, MANAGED_IP, MINUTE)
            .await;
        // Someone deactivates it in the app: nothing changes until the interval has passed...
        bank.sim
            .set_entry_status(managed.credential, managed.entry, IpStatus::Inactive)
            .unwrap();
        tokio::time::sleep(INTERVAL - MINUTE).await;
        assert_eq!(
            bank.status(managed.credential, MANAGED_IP),
            IpStatus::Inactive,
            "no run between scheduled runs"
        );
        // ...and the scheduled run repairs it.
        bank.until_active(managed.credential, MANAGED_IP, 2 * MINUTE)
            .await;

        shutdown.cancel();
        daemon.await.unwrap().unwrap();
    }
}
