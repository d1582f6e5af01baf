//! Following dynamic sources between runs, so a moved DNS name is applied within seconds
//! instead of at the next `sync.interval`.
//!
//! One task per config: it re-resolves each DNS source when its answer's TTL runs out (never
//! more often than `sources.min_refresh`), each URL source every `max(min_refresh, 60 s)`, and
//! polls each file source's content (the config watcher's mechanism, so a ConfigMap `..data`
//! swap counts) and re-reads it when it changed. Re-resolution alone sends nothing to bunq: only
//! when a source now yields other addresses than the last run used does it ask the run loop for
//! a run ([`SourceEvent::Changed`]), and the loop runs it as any other (full read of bunq, the
//! usual rate limits, never two at once). A failed re-resolution starts no run; it is reported
//! at once ([`SourceEvent::Failed`]) and the next run treats the source as failed anyway.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::daemon::watch::Fingerprint;
use crate::sources::{Resolutions, Source, SourceError, SourceResolver};

/// What the follower tells the run loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEvent {
    /// A source yields other addresses than the last run used: run now.
    Changed(Source),
    /// A re-resolution failed (reported once per new error, not on every retry).
    Failed(Source, SourceError),
    /// A source that had failed resolves again.
    Recovered(Source),
}

/// What each source yielded in the last run, shared between the run loop (which writes it after
/// every run) and the follower (which compares against it).
#[derive(Clone, Default)]
pub struct LastUsed(Arc<Mutex<BTreeMap<Source, Option<BTreeSet<Ipv4Addr>>>>>);

impl LastUsed {
    /// Records what a run resolved (`None` for a source that failed in it).
    pub fn record(&self, resolutions: &Resolutions) {
        let mut used = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        used.clear();
        for (source, result) in resolutions {
            let addresses = result
                .as_ref()
                .ok()
                .map(|resolved| resolved.addresses.clone());
            used.insert(source.clone(), addresses);
        }
    }

    /// True when `addresses` is not what the last run used for `source` (also when the last
    /// run could not resolve it, or has not run yet).
    fn differs(&self, source: &Source, addresses: &BTreeSet<Ipv4Addr>) -> bool {
        let used = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        used.get(source)
            .is_none_or(|last| last.as_ref() != Some(addresses))
    }
}

/// The follower of the running config, as the run loop holds it: restarted on every reload
/// (sources may have changed), stopped with the daemon.
pub struct Following {
    /// What the last run used; the run loop records into it after every run.
    pub last_used: LastUsed,
    events: mpsc::Receiver<SourceEvent>,
    sender: mpsc::Sender<SourceEvent>,
    stop: CancellationToken,
    shutdown: CancellationToken,
    file_poll: Duration,
}

impl Following {
    /// Starts following `config`'s sources (nothing when it has none).
    pub fn start(config: &Config, file_poll: Duration, shutdown: &CancellationToken) -> Following {
        let (sender, events) = mpsc::channel(16);
        let mut following = Following {
            last_used: LastUsed::default(),
            events,
            sender,
            stop: shutdown.child_token(),
            shutdown: shutdown.clone(),
            file_poll,
        };
        following.spawn(config);
        following
    }

    /// Follows `config`'s sources from now on instead of the old ones.
    pub fn restart(&mut self, config: &Config) {
        self.stop.cancel();
        self.stop = self.shutdown.child_token();
        self.spawn(config);
    }

    fn spawn(&mut self, config: &Config) {
        let sources: BTreeSet<Source> = config.sources().into_iter().cloned().collect();
        if sources.is_empty() {
            return;
        }
        tokio::spawn(follow_sources(
            Arc::new(SourceResolver::new(config.sources.clone())),
            sources,
            self.last_used.clone(),
            self.file_poll,
            self.sender.clone(),
            self.stop.clone(),
        ));
    }

    /// The next event; pending forever when nothing is followed.
    pub async fn next(&mut self) -> Option<SourceEvent> {
        self.events.recv().await
    }
}

/// One followed source.
struct Followed {
    source: Source,
    /// When it is resolved next; `None` for files, which are polled.
    due: Option<Instant>,
    /// Files: the content last read.
    fingerprint: Option<Fingerprint>,
    /// The error last reported, so a failure that persists is reported once.
    failing: Option<SourceError>,
}

/// Follows `sources` until `stop`: sends [`SourceEvent`]s on `events`. `file_poll` is how often
/// file sources are checked for new content.
pub async fn follow_sources(
    resolver: Arc<SourceResolver>,
    sources: BTreeSet<Source>,
    last_used: LastUsed,
    file_poll: Duration,
    events: mpsc::Sender<SourceEvent>,
    stop: CancellationToken,
) {
    let start = Instant::now();
    let mut followed: Vec<Followed> = sources
        .into_iter()
        .map(|source| {
            let file = matches!(source, Source::File(_));
            let fingerprint = match &source {
                Source::File(path) => Some(Fingerprint::of_file(path)),
                _ => None,
            };
            // The first run resolved everything just now: wait one period before asking again.
            let due = (!file).then(|| {
                start
                    + resolver
                        .settings()
                        .refresh_after(&source, None)
                        .unwrap_or(file_poll)
            });
            Followed {
                source,
                due,
                fingerprint,
                failing: None,
            }
        })
        .collect();
    if followed.is_empty() {
        return;
    }
    loop {
        let next_poll = Instant::now() + file_poll;
        let wake = followed
            .iter()
            .filter_map(|item| item.due)
            .chain(
                followed
                    .iter()
                    .any(|item| item.due.is_none())
                    .then_some(next_poll),
            )
            .min()
            .unwrap_or(next_poll);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(wake) => {}
        }
        for item in &mut followed {
            if !item.is_due(Instant::now()) {
                continue;
            }
            let result = resolver.resolve(&item.source).await;
            let event = item.settle(&resolver, result, &last_used);
            if let Some(event) = event
                && events.send(event).await.is_err()
            {
                return;
            }
        }
    }
}

impl Followed {
    /// DNS and URL sources when their time has come; files when their content changed.
    fn is_due(&mut self, now: Instant) -> bool {
        match (&self.source, self.due) {
            (Source::File(path), _) => {
                let now_seen = Fingerprint::of_file(path);
                let changed = self.fingerprint.as_ref() != Some(&now_seen);
                self.fingerprint = Some(now_seen);
                changed
            }
            (_, Some(due)) => due <= now,
            (_, None) => false,
        }
    }

    /// Books one resolution: the next due time, and the event it is worth, if any.
    fn settle(
        &mut self,
        resolver: &SourceResolver,
        result: Result<crate::sources::Resolved, SourceError>,
        last_used: &LastUsed,
    ) -> Option<SourceEvent> {
        let settings = resolver.settings();
        match result {
            Ok(resolved) => {
                if !matches!(self.source, Source::File(_)) {
                    self.due = settings
                        .refresh_after(&self.source, resolved.ttl)
                        .map(|after| Instant::now() + after);
                }
                let recovered = self.failing.take().is_some();
                if last_used.differs(&self.source, &resolved.addresses) {
                    tracing::info!(
                        source = %self.source,
                        addresses = %join_addresses(&resolved.addresses),
                        "a source changed; starting a run"
                    );
                    Some(SourceEvent::Changed(self.source.clone()))
                } else if recovered {
                    Some(SourceEvent::Recovered(self.source.clone()))
                } else {
                    None
                }
            }
            Err(error) => {
                if !matches!(self.source, Source::File(_)) {
                    self.due = Some(Instant::now() + settings.min_refresh);
                }
                if self.failing.as_ref() == Some(&error) {
                    return None;
                }
                tracing::warn!(
                    source = %self.source,
                    error = %error,
                    "re-resolving a source failed; no run is started, and the next run holds \
                     back that credential's deactivations (source-unavailable)"
                );
                self.failing = Some(error.clone());
                Some(SourceEvent::Failed(self.source.clone(), error))
            }
        }
    }
}

/// Addresses for a log field: `203.0.113.1, 203.0.113.2`, not Rust's `{203.0.113.1, …}`.
fn join_addresses(addresses: &BTreeSet<Ipv4Addr>) -> String {
    let addresses: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    addresses.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::{DnsAnswer, DnsServer};
    use crate::sources::SourceSettings;

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    async fn next(events: &mut mpsc::Receiver<SourceEvent>) -> SourceEvent {
        tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .expect("an event within 20 s")
            .expect("the follower is running")
    }

    fn start(
        dns: &DnsServer,
        sources: BTreeSet<Source>,
        last_used: &LastUsed,
    ) -> (mpsc::Receiver<SourceEvent>, CancellationToken) {
        let resolver = Arc::new(SourceResolver::new(SourceSettings {
            nameservers: Some(vec![dns.address()]),
            dns_timeout: Duration::from_millis(300),
            min_refresh: Duration::from_secs(1),
            ..SourceSettings::default()
        }));
        let (tx, rx) = mpsc::channel(8);
        let stop = CancellationToken::new();
        tokio::spawn(follow_sources(
            resolver,
            sources,
            last_used.clone(),
            Duration::from_millis(200),
            tx,
            stop.clone(),
        ));
        (rx, stop)
    }

    fn used(source: &Source, addresses: &[Ipv4Addr]) -> LastUsed {
        let last_used = LastUsed::default();
        last_used.record(&Resolutions::from([(
            source.clone(),
            Ok(crate::sources::Resolved::without_ttl(
                addresses.iter().copied().collect(),
            )),
        )]));
        last_used
    }

    /// A DNS server answering `host` with `answer`, and a follower of `dns:host` whose last
    /// run used 203.0.113.10.
    async fn follow_host(
        host: &str,
        answer: DnsAnswer,
    ) -> (
        DnsServer,
        Source,
        mpsc::Receiver<SourceEvent>,
        CancellationToken,
    ) {
        let dns = DnsServer::start().await.unwrap();
        let name = Source::Dns(host.into());
        dns.set(host, answer);
        let last_used = used(&name, &[ip("203.0.113.10")]);
        let (events, stop) = start(&dns, [name.clone()].into(), &last_used);
        (dns, name, events, stop)
    }

    /// A stretch of 2.5 s (past a 1 s TTL or `min_refresh`) in which `name` is asked at least
    /// `queries` times and no event comes (`why`).
    struct Quiet<'a> {
        name: &'a str,
        queries: usize,
        why: &'a str,
    }

    impl<'a> Quiet<'a> {
        fn new(name: &'a str, queries: usize, why: &'a str) -> Self {
            Quiet { name, queries, why }
        }

        /// Lets the stretch pass and asserts it, then answers `name` with `answer` and asserts
        /// that `expected` follows.
        async fn then_answer(
            &self,
            dns: &DnsServer,
            events: &mut mpsc::Receiver<SourceEvent>,
            answer: DnsAnswer,
            expected: SourceEvent,
        ) {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            let asked = dns.queries(self.name);
            assert!(asked >= self.queries, "{} asked {asked} times", self.name);
            assert!(events.try_recv().is_err(), "{}", self.why);
            dns.set(self.name, answer);
            assert_eq!(next(events).await, expected);
        }
    }

    #[tokio::test]
    async fn a_moved_name_asks_for_a_run_and_an_unchanged_one_does_not() {
        let (dns, name, mut events, stop) =
            follow_host("home.example.org", DnsAnswer::a(&[ip("203.0.113.10")], 1)).await;
        // Asked again after the TTL (1 s), same answer: no event; then the name moves.
        let quiet = Quiet::new("home.example.org", 2, "an unchanged answer starts no run");
        let moved = DnsAnswer::a(&[ip("203.0.113.20")], 1);
        quiet
            .then_answer(&dns, &mut events, moved, SourceEvent::Changed(name))
            .await;
        stop.cancel();
    }

    #[tokio::test]
    async fn a_failing_name_is_reported_once_and_its_recovery_too() {
        let (dns, name, mut events, stop) = follow_host("flaky.example", DnsAnswer::ServFail).await;
        assert_eq!(
            next(&mut events).await,
            SourceEvent::Failed(name.clone(), SourceError::ServFail)
        );
        // Retried every min_refresh (1 s), still failing: not reported again.
        let quiet = Quiet::new("flaky.example", 3, "a persisting failure is reported once");
        let recovered = DnsAnswer::a(&[ip("203.0.113.10")], 60);
        let recovered_event = SourceEvent::Recovered(name);
        quiet
            .then_answer(&dns, &mut events, recovered, recovered_event)
            .await;
        stop.cancel();
    }

    #[tokio::test]
    async fn a_changed_file_is_re_read_at_once() {
        let dns = DnsServer::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nat.txt");
        std::fs::write(&path, "203.0.113.10\n").unwrap();
        let file = Source::File(path.clone());
        let last_used = used(&file, &[ip("203.0.113.10")]);
        let (mut events, stop) = start(&dns, [file.clone()].into(), &last_used);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(events.try_recv().is_err());
        std::fs::write(&path, "203.0.113.10\n203.0.113.11\n").unwrap();
        assert_eq!(next(&mut events).await, SourceEvent::Changed(file.clone()));
        std::fs::write(&path, "203.0.113.10\nbad line\n").unwrap();
        match next(&mut events).await {
            SourceEvent::Failed(source, SourceError::BadLine { line: 2, .. }) => {
                assert_eq!(source, file)
            }
            other => panic!("{other:?}"),
        }
        stop.cancel();
    }
}
