//! Telling people: webhooks (a versioned JSON document or a Slack message) when a run changed
//! an allowlist, was blocked, found drift or failed, when a reload was refused and when failures
//! end; and a dead-man heartbeat (healthchecks.io / Uptime Kuma push style) after every run.
//!
//! Layout, one job per file:
//! * [`settings`]: `notify:` as validated ([`NotifyConfig`]);
//! * [`url`]: [`SecretUrl`], a URL that prints as its origin only;
//! * [`event`]: [`EventKind`] and the [`Event`] built from a run (pure);
//! * [`policy`]: one message per kind per run, `failed` at most hourly, `recovered` once (pure);
//! * [`json`] and [`slack`]: the two bodies;
//! * [`heartbeat`]: which ping follows which run;
//! * [`sender`]: the bounded queue, the background task, retries and counting.
//!
//! [`Notifications`] ties them together for the daemon and `apply`. Delivery never delays or
//! fails a run: everything is queued without waiting, and what is lost is counted and logged.

pub mod event;
pub mod heartbeat;
pub mod json;
pub mod policy;
pub mod sender;
pub mod settings;
pub mod slack;
#[cfg(test)]
mod testing;
pub mod url;

use std::sync::{Arc, Mutex, RwLock};

pub use event::{Event, EventKind, Origin};
pub use sender::{DeliveryError, DeliveryObserver, DeliveryResult, Target};
pub use settings::{Format, Heartbeat, NotifyConfig, Webhook};
pub use url::SecretUrl;

use crate::clock::WallClock;
use crate::reconcile::run::RunReport;
use crate::reconcile::verdict::Verdict;
use heartbeat::Ping;
use policy::Policy;
use sender::{Deliverer, Request, Sender};

/// The notifications of one process: the targets of the running config, the policy's state and
/// the sender. Cheap to clone (shared). [`Notifications::disabled`] sends nothing.
#[derive(Clone)]
pub struct Notifications {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    /// The running config's `notify:`; replaced on reload.
    config: RwLock<NotifyConfig>,
    /// Which messages go out (shared by runs and the failures between them).
    policy: Mutex<Policy>,
    /// The queue; `None` once finished.
    sender: Mutex<Option<Sender>>,
    /// Stamps events.
    clock: WallClock,
    /// The machine's name, in every event.
    host: String,
}

impl std::fmt::Debug for Notifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.inner.is_some() {
            "Notifications(enabled)"
        } else {
            "Notifications(disabled)"
        })
    }
}

impl Notifications {
    /// Sends nothing (no `notify:` targets, or a caller that must not notify, like `plan`).
    pub fn disabled() -> Notifications {
        Notifications { inner: None }
    }

    /// Starts the sender for `config` (disabled when it has no target), counting into
    /// `observer`. Must be called inside a tokio runtime.
    pub fn start(
        config: &NotifyConfig,
        observer: Arc<dyn DeliveryObserver>,
        clock: WallClock,
    ) -> Result<Notifications, reqwest::Error> {
        let sender = Sender::start(Deliverer::new()?, observer);
        register_targets(&sender, config);
        Ok(Notifications {
            inner: Some(Arc::new(Inner {
                config: RwLock::new(config.clone()),
                policy: Mutex::new(Policy::default()),
                sender: Mutex::new(Some(sender)),
                clock,
                host: host_name(),
            })),
        })
    }

    /// A reload switched to `config`: new targets take the next messages.
    pub fn set_config(&self, config: &NotifyConfig) {
        let Some(inner) = &self.inner else { return };
        if let Some(sender) = lock(&inner.sender).as_ref() {
            register_targets(sender, config);
        }
        *inner
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = config.clone();
        inner.policy().config_accepted();
    }

    /// A run begins: the heartbeat's `/start` ping, when asked for.
    pub fn run_started(&self) {
        self.with(|inner, config| {
            if let Some(heartbeat) = config.heartbeat.as_ref().filter(|beat| beat.start) {
                inner.ping(config, heartbeat, Ping::Start);
            }
        });
    }

    /// A run finished with `report` judged `verdict`: its events (as the policy allows) and
    /// the heartbeat.
    pub fn run_finished(&self, report: &RunReport, verdict: &Verdict) {
        self.with(|inner, config| {
            let origin = inner.origin();
            let mut kinds = event::run_kinds(report, verdict);
            if !inner.policy().held_back(event::held_back(report)) {
                kinds.retain(|kind| *kind != EventKind::Blocked);
            }
            let kinds = inner.policy().run_finished(&kinds, now());
            for kind in kinds {
                let event = match kind {
                    EventKind::Recovered => {
                        Event::recovered(Some(&report.run_id), &verdict.summary, &origin)
                    }
                    kind => Event::of_run(kind, report, verdict, &origin),
                };
                inner.post(config, &event);
            }
            inner.heartbeat_after(config, verdict);
        });
    }

    /// A run failed before it could plan (`verdict.summary` says why, `error` is the cause).
    pub fn run_failed(&self, run_id: &str, verdict: &Verdict, error: &str) {
        self.with(|inner, config| {
            if inner.policy().failure(now()) {
                let event = Event::failure(Some(run_id), &verdict.summary, error, &inner.origin());
                inner.post(config, &event);
            }
            inner.heartbeat_after(config, verdict);
        });
    }

    /// The daemon could not connect to bunq or renew its session (`summary`, with its cause).
    pub fn session_failed(&self, summary: &str, error: &str) {
        self.with(|inner, config| {
            if inner.policy().failure(now()) {
                inner.post(
                    config,
                    &Event::failure(None, summary, error, &inner.origin()),
                );
            }
        });
    }

    /// A reload was refused for `error` (once per refused content, see [`policy`]).
    pub fn config_rejected(&self, error: &str) {
        self.with(|inner, config| {
            if inner.policy().config_rejected(error) {
                inner.post(config, &Event::config_rejected(error, &inner.origin()));
            }
        });
    }

    /// Stops taking messages and waits (bounded by the timeout and attempts of each) until the
    /// queued ones are delivered or failed: a one-shot `apply` must not exit before.
    pub async fn finish(&self) {
        let Some(inner) = &self.inner else { return };
        let sender = lock(&inner.sender).take();
        let timeout = inner.read_config().timeout;
        if let Some(sender) = sender {
            sender.finish(timeout).await;
        }
    }

    fn with(&self, act: impl FnOnce(&Inner, &NotifyConfig)) {
        if let Some(inner) = &self.inner {
            let config = inner.read_config().clone();
            act(inner, &config);
        }
    }
}

impl Inner {
    fn read_config(&self) -> std::sync::RwLockReadGuard<'_, NotifyConfig> {
        self.config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn policy(&self) -> std::sync::MutexGuard<'_, Policy> {
        lock(&self.policy)
    }

    fn origin(&self) -> Origin {
        Origin {
            host: self.host.clone(),
            time: (self.clock)(),
        }
    }

    fn enqueue(&self, request: Request) {
        if let Some(sender) = lock(&self.sender).as_ref() {
            sender.enqueue(request);
        }
    }

    /// `event` to every webhook that wants its kind, in the webhook's format.
    fn post(&self, config: &NotifyConfig, event: &Event) {
        for (index, webhook) in config.webhooks.iter().enumerate() {
            if webhook.wants(event.event) {
                self.enqueue(webhook_request(index, webhook, event, config.timeout));
            }
        }
    }

    fn heartbeat_after(&self, config: &NotifyConfig, verdict: &Verdict) {
        if let Some(heartbeat) = &config.heartbeat {
            self.ping(config, heartbeat, Ping::after(verdict.result));
        }
    }

    fn ping(&self, config: &NotifyConfig, heartbeat: &Heartbeat, ping: Ping) {
        self.enqueue(heartbeat_request(heartbeat, ping, config.timeout));
    }
}

/// The POST of `event` to `webhooks[index]`.
pub fn webhook_request(
    index: usize,
    webhook: &Webhook,
    event: &Event,
    timeout: std::time::Duration,
) -> Request {
    let body = match webhook.format {
        Format::Json => json::render(event),
        Format::Slack => slack::render(event),
    };
    Request {
        target: Target::Webhook(index),
        url: webhook.url.clone(),
        body: Some(("application/json", body)),
        timeout,
    }
}

/// The GET of `ping` to the heartbeat.
pub fn heartbeat_request(
    heartbeat: &Heartbeat,
    ping: Ping,
    timeout: std::time::Duration,
) -> Request {
    Request {
        target: Target::Heartbeat,
        url: ping.url(&heartbeat.url),
        body: None,
        timeout,
    }
}

/// Every request `notify-test` sends: a `test` event to each webhook, a success ping to the
/// heartbeat.
pub fn test_requests(config: &NotifyConfig, origin: &Origin) -> Vec<Request> {
    let event = Event::test(origin);
    let webhooks = config
        .webhooks
        .iter()
        .enumerate()
        .map(|(index, webhook)| webhook_request(index, webhook, &event, config.timeout));
    let heartbeat = config
        .heartbeat
        .iter()
        .map(|heartbeat| heartbeat_request(heartbeat, Ping::Success, config.timeout));
    webhooks.chain(heartbeat).collect()
}

/// The `origin` of an event happening now on this machine, by `clock`.
pub fn origin_now(clock: &WallClock) -> Origin {
    Origin {
        host: host_name(),
        time: clock(),
    }
}

fn register_targets(sender: &Sender, config: &NotifyConfig) {
    let webhooks = (0..config.webhooks.len()).map(Target::Webhook);
    let heartbeat = config.heartbeat.iter().map(|_| Target::Heartbeat);
    for target in webhooks.chain(heartbeat) {
        sender.observer().target_configured(target);
    }
}

/// The policy's clock: tokio's, so paused-time tests move it.
fn now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The kernel's host name (`/proc/sys/kernel/hostname`), else `$HOSTNAME`, else `unknown`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}
