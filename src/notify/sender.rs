//! Delivery: a bounded queue to one background task that sends each request with a timeout and
//! 3 attempts with backoff. Enqueueing never waits ([`Sender::enqueue`] uses `try_send`), so a
//! slow or dead receiver can never delay or fail a run. What cannot be delivered (queue full,
//! every attempt failed) is counted per target and logged once per target and episode: the
//! first failure is logged, the next ones are only counted until one is delivered again.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::url::SecretUrl;

/// Messages waiting for the sender; more are dropped (and counted).
pub const QUEUE_CAPACITY: usize = 64;
/// Attempts per message.
pub const ATTEMPTS: u32 = 3;
/// The wait before the second attempt; doubled before each further one.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Where a message goes: the `target` label of `bunq_ipsync_notifications_total`. Never the URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// `notify.webhooks[i]`.
    Webhook(usize),
    /// `notify.heartbeat`.
    Heartbeat,
}

impl Target {
    /// The metric label: the webhook index (`0`, `1`, …) or `heartbeat`.
    pub fn label(self) -> String {
        match self {
            Target::Webhook(index) => index.to_string(),
            Target::Heartbeat => "heartbeat".to_owned(),
        }
    }
}

/// How a message ended: the `result` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryResult {
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed.
    Failed,
    /// Never sent: the queue was full.
    Dropped,
}

impl DeliveryResult {
    /// Every result, for pre-initialising series.
    pub const ALL: [DeliveryResult; 3] = [
        DeliveryResult::Delivered,
        DeliveryResult::Failed,
        DeliveryResult::Dropped,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryResult::Delivered => "delivered",
            DeliveryResult::Failed => "failed",
            DeliveryResult::Dropped => "dropped",
        }
    }
}

/// Counts deliveries (the daemon's metrics); a port, so this module does not know Prometheus.
pub trait DeliveryObserver: Send + Sync {
    /// `target` is configured: its series exist from now on, at 0.
    fn target_configured(&self, target: Target);
    /// A message to `target` ended with `result`.
    fn delivery(&self, target: Target, result: DeliveryResult);
}

/// An observer that counts nothing (one-shot commands have no metrics).
pub struct Uncounted;

impl DeliveryObserver for Uncounted {
    fn target_configured(&self, _: Target) {}
    fn delivery(&self, _: Target, _: DeliveryResult) {}
}

/// One HTTP request to a target.
#[derive(Clone, Debug)]
pub struct Request {
    /// Whom it is for.
    pub target: Target,
    /// The URL (a secret).
    pub url: SecretUrl,
    /// `Some((content type, bytes))`: a POST; `None`: a GET (a heartbeat ping).
    pub body: Option<(&'static str, Vec<u8>)>,
    /// Per attempt.
    pub timeout: Duration,
}

/// Why a message was not delivered. Never carries the URL.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The receiver answered a status other than 2xx.
    #[error("HTTP {0}")]
    Status(u16),
    /// No answer within the timeout.
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The connection failed.
    #[error("{0}")]
    Transport(String),
}

/// Sends one request, retrying; shared by the background task and `notify-test`.
#[derive(Clone, Debug)]
pub struct Deliverer {
    /// For every target but loopback ones.
    http: reqwest::Client,
    /// For loopback targets: no proxy from the environment may intercept them.
    loopback: reqwest::Client,
}

impl Deliverer {
    /// The crate's one TLS set-up ([`crate::tls`], as the bunq client), redirects only to the
    /// same host.
    pub fn new() -> Result<Deliverer, reqwest::Error> {
        let builder = || {
            crate::tls::client_builder()
                .redirect(reqwest::redirect::Policy::custom(|attempt| {
                    let same_host = attempt.previous().first().map(|first| first.host_str())
                        == Some(attempt.url().host_str());
                    if same_host && attempt.previous().len() < 5 {
                        attempt.follow()
                    } else {
                        attempt.stop()
                    }
                }))
                .user_agent(crate::bunq::transport::USER_AGENT)
        };
        Ok(Deliverer {
            http: builder().build()?,
            loopback: builder().no_proxy().build()?,
        })
    }

    /// Sends `request`, up to [`ATTEMPTS`] times with backoff; the last error if none worked.
    pub async fn deliver(&self, request: &Request) -> Result<(), DeliveryError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            match self.attempt(request).await {
                Ok(()) => return Ok(()),
                Err(err) if attempt >= ATTEMPTS => return Err(err),
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
            }
        }
    }

    async fn attempt(&self, request: &Request) -> Result<(), DeliveryError> {
        let url = request.url.expose();
        let loopback = reqwest::Url::parse(url)
            .is_ok_and(|parsed| crate::bunq::endpoint::is_loopback_host(&parsed));
        let client = if loopback { &self.loopback } else { &self.http };
        let builder = match &request.body {
            Some((content_type, body)) => client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, *content_type)
                .body(body.clone()),
            None => client.get(url),
        };
        let response = builder
            .timeout(request.timeout)
            .send()
            .await
            .map_err(|err| {
                if err.is_timeout() {
                    DeliveryError::Timeout(request.timeout)
                } else {
                    // Without the URL: it carries the token.
                    DeliveryError::Transport(crate::bunq::transport::error_chain(
                        &err.without_url(),
                    ))
                }
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Status(status.as_u16()))
        }
    }

    /// The longest [`Deliverer::deliver`] can take for one request with `timeout`.
    pub fn bound(timeout: Duration) -> Duration {
        let backoffs: Duration = (0..ATTEMPTS - 1).map(|n| FIRST_BACKOFF * 2u32.pow(n)).sum();
        timeout * ATTEMPTS + backoffs
    }
}

/// The targets currently failing: the first failure of an episode is logged, the rest counted.
#[derive(Default)]
struct Episodes(Mutex<BTreeSet<Target>>);

impl Episodes {
    /// `target` failed (`what` says how): logs it unless its episode was already logged.
    fn failed(&self, request: &Request, what: &str) {
        let fresh = self.lock().insert(request.target);
        if fresh {
            tracing::warn!(
                target_index = %request.target.label(),
                url = %request.url,
                error = %what,
                "notification not delivered; further failures of this target are only counted \
                 (bunq_ipsync_notifications_total) until one is delivered"
            );
        }
    }

    /// `target` took a message: a logged episode ends.
    fn delivered(&self, request: &Request) {
        if self.lock().remove(&request.target) {
            tracing::info!(
                target_index = %request.target.label(),
                url = %request.url,
                "notifications are delivered again"
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<Target>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The enqueueing side; the background task ends when it is dropped or [`Sender::finish`]ed.
pub struct Sender {
    queue: mpsc::Sender<Request>,
    task: JoinHandle<()>,
    shared: Arc<Shared>,
}

/// What the enqueueing side and the task both see.
struct Shared {
    observer: Arc<dyn DeliveryObserver>,
    episodes: Episodes,
    /// Messages queued or being sent, to bound [`Sender::finish`].
    pending: AtomicUsize,
}

impl Sender {
    /// Starts the background task, counting into `observer`.
    pub fn start(deliverer: Deliverer, observer: Arc<dyn DeliveryObserver>) -> Sender {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let shared = Arc::new(Shared {
            observer,
            episodes: Episodes::default(),
            pending: AtomicUsize::new(0),
        });
        let task = tokio::spawn(send_all(receiver, deliverer, Arc::clone(&shared)));
        Sender {
            queue,
            task,
            shared,
        }
    }

    /// The counting side, to register targets with.
    pub fn observer(&self) -> &dyn DeliveryObserver {
        self.shared.observer.as_ref()
    }

    /// Queues `request` without waiting; a full queue drops it (counted, logged once).
    pub fn enqueue(&self, request: Request) {
        self.shared.pending.fetch_add(1, Ordering::SeqCst);
        if let Err(err) = self.queue.try_send(request) {
            self.shared.pending.fetch_sub(1, Ordering::SeqCst);
            let request = match err {
                mpsc::error::TrySendError::Full(request)
                | mpsc::error::TrySendError::Closed(request) => request,
            };
            self.shared
                .observer
                .delivery(request.target, DeliveryResult::Dropped);
            self.shared
                .episodes
                .failed(&request, "the notification queue is full");
        }
    }

    /// Stops taking messages and waits until the queued ones are delivered or have failed, at
    /// most as long as each of them may take ([`Deliverer::bound`] with `timeout`).
    pub async fn finish(self, timeout: Duration) {
        let Sender {
            queue,
            task,
            shared,
        } = self;
        drop(queue);
        let pending = u32::try_from(shared.pending.load(Ordering::SeqCst)).unwrap_or(u32::MAX);
        let bound = Deliverer::bound(timeout) * pending.max(1);
        if tokio::time::timeout(bound, task).await.is_err() {
            tracing::warn!("notifications still being sent at exit were abandoned");
        }
    }
}

/// The background task: one message at a time, in order.
async fn send_all(
    mut receiver: mpsc::Receiver<Request>,
    deliverer: Deliverer,
    shared: Arc<Shared>,
) {
    while let Some(request) = receiver.recv().await {
        let result = match deliverer.deliver(&request).await {
            Ok(()) => {
                shared.episodes.delivered(&request);
                DeliveryResult::Delivered
            }
            Err(err) => {
                shared.episodes.failed(&request, &err.to_string());
                DeliveryResult::Failed
            }
        };
        shared.observer.delivery(request.target, result);
        shared.pending.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::testing::secret_url;

    /// Counts results per target.
    #[derive(Default)]
    struct Counts(Mutex<Vec<(Target, DeliveryResult)>>);

    impl DeliveryObserver for Counts {
        fn target_configured(&self, _: Target) {}
        fn delivery(&self, target: Target, result: DeliveryResult) {
            self.0.lock().unwrap().push((target, result));
        }
    }

    impl Counts {
        fn count(&self, result: DeliveryResult) -> usize {
            let all = self.0.lock().unwrap();
            all.iter().filter(|(_, found)| *found == result).count()
        }
    }

    /// A port nothing listens on: bound, read, released.
    fn refused_url() -> SecretUrl {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        secret_url(&format!("http://127.0.0.1:{port}/TOKEN"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_drops_and_counts_without_waiting_and_failures_are_counted_once_each() {
        let counts = Arc::new(Counts::default());
        let sender = Sender::start(Deliverer::new().unwrap(), Arc::clone(&counts) as _);
        let request = Request {
            target: Target::Webhook(0),
            url: refused_url(),
            body: None,
            timeout: Duration::from_secs(1),
        };
        // Nothing runs between these calls (one thread, no await): the queue fills up.
        for _ in 0..QUEUE_CAPACITY + 6 {
            sender.enqueue(request.clone());
        }
        assert_eq!(counts.count(DeliveryResult::Dropped), 6);

        sender.finish(Duration::from_secs(1)).await;

        assert_eq!(counts.count(DeliveryResult::Failed), QUEUE_CAPACITY);
        assert_eq!(counts.count(DeliveryResult::Delivered), 0);
    }

    #[tokio::test]
    async fn an_undelivered_message_is_the_last_error_without_the_url() {
        let request = Request {
            target: Target::Heartbeat,
            url: refused_url(),
            body: None,
            timeout: Duration::from_secs(5),
        };
        let err = Deliverer::new()
            .unwrap()
            .deliver(&request)
            .await
            .unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(matches!(err, DeliveryError::Transport(_)), "{shown}");
        assert!(!shown.contains("TOKEN"), "{shown}");
        assert_eq!(DeliveryError::Status(500).to_string(), "HTTP 500");
    }

    #[test]
    fn the_bound_covers_every_attempt_and_backoff() {
        assert_eq!(
            Deliverer::bound(Duration::from_secs(5)),
            Duration::from_millis(15_000 + 500 + 1000)
        );
    }
}
