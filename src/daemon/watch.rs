//! Config reload trigger for files that change without being written to: Kubernetes ConfigMaps.
//!
//! A ConfigMap mounted as a directory is updated by the kubelet by writing a new timestamped
//! directory, pointing a fresh `..data_tmp` symlink at it and renaming that over `..data`; the
//! visible `config.yaml` is a symlink to `..data/config.yaml` and is never modified in place, so
//! its own mtime and inotify events on it tell nothing. This module therefore polls the
//! *content* behind the path (resolved anew on each read) and compares a SHA-256
//! [`Fingerprint`]. A swap to identical content is not a change.
//!
//! Changes are debounced by [`Debouncer`]: an event is emitted only once the content has stayed
//! the same for the quiet period, so a burst of swaps yields one reload, and a file caught
//! missing mid-swap is not reported if it reappears unchanged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Default time between polls.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Default quiet period before a change is reported.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(1);

/// What a poll saw at the config path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fingerprint {
    /// The path (or a symlink on the way) does not resolve.
    Missing,
    /// The path exists but cannot be read; the error kind, so a persistent error is one state.
    Unreadable(std::io::ErrorKind),
    /// SHA-256 of the content.
    Content([u8; 32]),
}

impl Fingerprint {
    /// The fingerprint of `content`, e.g. the bytes the running config was parsed from.
    pub fn of_bytes(content: &[u8]) -> Fingerprint {
        Fingerprint::Content(Sha256::digest(content).into())
    }

    /// Reads `path` (following symlinks) and fingerprints what is there now.
    pub fn of_file(path: &Path) -> Fingerprint {
        match std::fs::read(path) {
            Ok(content) => Fingerprint::of_bytes(&content),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Fingerprint::Missing,
            Err(e) => Fingerprint::Unreadable(e.kind()),
        }
    }
}

/// Turns a stream of observations into change events, one per settled change.
#[derive(Debug)]
pub struct Debouncer {
    /// The state last reported (or the baseline).
    reported: Fingerprint,
    /// The state seen most recently.
    seen: Fingerprint,
    /// When `seen` was first seen.
    seen_since: Instant,
    /// How long `seen` must stay unchanged before it is reported.
    quiet: Duration,
}

impl Debouncer {
    /// Starts from `baseline` (what the running config was read from), at `now`.
    pub fn new(baseline: Fingerprint, quiet: Duration, now: Instant) -> Debouncer {
        Debouncer {
            reported: baseline.clone(),
            seen: baseline,
            seen_since: now,
            quiet,
        }
    }

    /// Records that the path showed `fingerprint` at `now`; `true` means "report a change now".
    pub fn observe(&mut self, fingerprint: Fingerprint, now: Instant) -> bool {
        if fingerprint != self.seen {
            self.seen = fingerprint;
            self.seen_since = now;
        }
        let settled = now.saturating_duration_since(self.seen_since) >= self.quiet;
        if settled && self.seen != self.reported {
            self.reported = self.seen.clone();
            return true;
        }
        false
    }
}

/// A config file change worth a reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigChanged;

/// Polling settings for [`watch_config`].
#[derive(Clone, Debug)]
pub struct WatchSettings {
    /// Time between polls.
    pub poll_interval: Duration,
    /// Quiet period before a change is reported.
    pub debounce: Duration,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            poll_interval: DEFAULT_POLL_INTERVAL,
            debounce: DEFAULT_DEBOUNCE,
        }
    }
}

/// Polls `path` until `shutdown`, sending [`ConfigChanged`] on `changes` for each settled change
/// relative to `baseline` (pass the fingerprint of the bytes the running config came from; with
/// `None` the first poll's state is the baseline).
///
/// The channel should hold one event: if an event is still pending when the next change
/// settles, the two coalesce (the reload reads the newest file anyway). Returns when `shutdown`
/// is cancelled or the receiver is dropped.
pub async fn watch_config(
    path: PathBuf,
    baseline: Option<Fingerprint>,
    settings: WatchSettings,
    changes: mpsc::Sender<ConfigChanged>,
    shutdown: CancellationToken,
) {
    watch_file(path, "config file", baseline, settings, changes, shutdown).await;
}

/// [`watch_config`] for any file, `what` naming it in the log (the API key file, say: the
/// daemon rotates to a new key when it changes). The content itself is never logged.
pub async fn watch_file(
    path: PathBuf,
    what: &'static str,
    baseline: Option<Fingerprint>,
    settings: WatchSettings,
    changes: mpsc::Sender<ConfigChanged>,
    shutdown: CancellationToken,
) {
    let baseline = match baseline {
        Some(fingerprint) => fingerprint,
        None => read_fingerprint(&path).await,
    };
    let mut debouncer = Debouncer::new(baseline, settings.debounce, Instant::now());
    let mut ticks = tokio::time::interval(settings.poll_interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let fingerprint = read_fingerprint(&path).await;
        if debouncer.observe(fingerprint, Instant::now()) {
            tracing::info!(path = %path.display(), "{what} changed");
            match changes.try_send(ConfigChanged) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }
}

/// [`Fingerprint::of_file`] off the async threads (a config file read is small but blocking).
async fn read_fingerprint(path: &Path) -> Fingerprint {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || Fingerprint::of_file(&owned))
        .await
        .unwrap_or(Fingerprint::Unreadable(std::io::ErrorKind::Other))
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUIET: Duration = Duration::from_secs(1);

    fn fp(s: &str) -> Fingerprint {
        Fingerprint::of_bytes(s.as_bytes())
    }

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn same_content_same_fingerprint() {
        assert_eq!(fp("a: 1\n"), fp("a: 1\n"));
        assert_ne!(fp("a: 1\n"), fp("a: 2\n"));
    }

    #[test]
    fn missing_file_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Fingerprint::of_file(&dir.path().join("nope.yaml")),
            Fingerprint::Missing
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unchanged_content_reports_nothing() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(fp("a"), QUIET, t0);
        assert!(!d.observe(fp("a"), at(t0, 5000)));
    }

    #[tokio::test(start_paused = true)]
    async fn change_is_reported_once_after_quiet_period() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(fp("a"), QUIET, t0);
        assert!(!d.observe(fp("b"), at(t0, 100)));
        assert!(!d.observe(fp("b"), at(t0, 1099)));
        assert!(d.observe(fp("b"), at(t0, 1100)));
        assert!(!d.observe(fp("b"), at(t0, 5000)));
    }

    #[tokio::test(start_paused = true)]
    async fn burst_of_changes_is_one_report() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(fp("a"), QUIET, t0);
        let mut reports = 0;
        for (i, content) in ["b", "c", "d"].iter().enumerate() {
            reports += usize::from(d.observe(fp(content), at(t0, 300 * i as u64)));
        }
        for ms in (700..4000).step_by(100) {
            reports += usize::from(d.observe(fp("d"), at(t0, ms)));
        }
        assert_eq!(reports, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn brief_disappearance_with_same_content_is_no_change() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(fp("a"), QUIET, t0);
        assert!(!d.observe(Fingerprint::Missing, at(t0, 100)));
        assert!(!d.observe(fp("a"), at(t0, 200)));
        assert!(!d.observe(fp("a"), at(t0, 5000)));
    }

    #[tokio::test(start_paused = true)]
    async fn lasting_disappearance_is_a_change() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(fp("a"), QUIET, t0);
        d.observe(Fingerprint::Missing, at(t0, 100));
        assert!(d.observe(Fingerprint::Missing, at(t0, 1100)));
    }

    #[tokio::test(start_paused = true)]
    async fn change_back_and_forth_after_report_is_reported_again() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(fp("a"), QUIET, t0);
        d.observe(fp("b"), at(t0, 0));
        assert!(d.observe(fp("b"), at(t0, 1000)));
        d.observe(fp("a"), at(t0, 2000));
        assert!(d.observe(fp("a"), at(t0, 3000)));
    }
}
