//! Who gets told what, and how often: a pure state machine over the events of runs and of the
//! failures between them. Time is passed in, so tests move it by hand.
//!
//! * At most one message per kind per run: a run's kinds are deduplicated.
//! * `failed` on the first failure, then at most once per [`FAILED_REPEAT`] while failures
//!   persist (a daemon retrying every few seconds must not page every few seconds).
//! * `recovered` once, on the first run that does not fail after a failure was reported.
//! * `blocked` when what is held back changes: a block that persists (the daemon's own IP,
//!   every five minutes) is not repeated each run; the heartbeat's `/fail` and the metrics keep
//!   showing it. A run without blocks forgets it, so its return is news again.
//! * `config_rejected` once per refused content: a SIGHUP and the file watcher reloading the
//!   same broken file are one message; a different error, or one after a good reload, is new.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use super::event::EventKind;

/// How long a persisting failure stays quiet after it was reported.
pub const FAILED_REPEAT: Duration = Duration::from_secs(60 * 60);

/// The failure episode, if one is going on.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// When `failed` was last sent; `Some` while failures persist.
    failed_sent: Option<Instant>,
    /// The error of the last refused reload, while no reload succeeded since.
    rejected: Option<String>,
    /// What the last run held back (see [`Policy::held_back`]), while runs keep blocking.
    blocked: Option<String>,
}

impl Policy {
    /// The kinds to send for a run that produced `kinds` (in any number, duplicates included).
    /// A run without `failed` ends a failure episode with `recovered`.
    pub fn run_finished(&mut self, kinds: &[EventKind], now: Instant) -> Vec<EventKind> {
        let mut send: BTreeSet<EventKind> = kinds.iter().copied().collect();
        if send.remove(&EventKind::Failed) {
            if self.failure(now) {
                send.insert(EventKind::Failed);
            }
        } else if self.failed_sent.take().is_some() {
            send.insert(EventKind::Recovered);
        }
        send.into_iter().collect()
    }

    /// A run held back `blocked` (a stable description of every refused write, `None` when it
    /// blocked nothing): whether that is news, to be sent as `blocked`.
    pub fn held_back(&mut self, blocked: Option<String>) -> bool {
        let news = blocked.is_some() && blocked != self.blocked;
        self.blocked = blocked;
        news
    }

    /// A reload was refused for `error`: whether to send `config_rejected` for it.
    pub fn config_rejected(&mut self, error: &str) -> bool {
        if self.rejected.as_deref() == Some(error) {
            return false;
        }
        self.rejected = Some(error.to_owned());
        true
    }

    /// A reload succeeded: the next refusal is news again.
    pub fn config_accepted(&mut self) {
        self.rejected = None;
    }

    /// A failure at `now` (of a run, a connection or a session renewal): whether to send
    /// `failed` for it.
    pub fn failure(&mut self, now: Instant) -> bool {
        match self.failed_sent {
            Some(sent) if now.saturating_duration_since(sent) < FAILED_REPEAT => false,
            _ => {
                self.failed_sent = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventKind::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_run_sends_each_kind_once() {
        let mut policy = Policy::default();
        let now = Instant::now();
        assert_eq!(
            policy.run_finished(&[Applied, Drift, Applied, Blocked, Drift], now),
            vec![Applied, Blocked, Drift]
        );
    }

    #[test]
    fn failed_is_sent_first_then_at_most_hourly_while_it_persists() {
        let mut policy = Policy::default();
        let start = Instant::now();
        assert_eq!(policy.run_finished(&[Failed], start), vec![Failed]);
        assert_eq!(policy.run_finished(&[Failed], start + MINUTE), vec![]);
        assert!(
            !policy.failure(start + 59 * MINUTE),
            "connect failure inside the hour"
        );
        assert_eq!(
            policy.run_finished(&[Failed, Applied], start + 60 * MINUTE),
            vec![Applied, Failed]
        );
        assert_eq!(policy.run_finished(&[Failed], start + 61 * MINUTE), vec![]);
    }

    #[test]
    fn recovered_is_sent_once_when_failures_end() {
        let mut policy = Policy::default();
        let start = Instant::now();
        assert_eq!(policy.run_finished(&[Failed], start), vec![Failed]);
        assert_eq!(
            policy.run_finished(&[Applied], start + MINUTE),
            vec![Applied, Recovered]
        );
        assert_eq!(policy.run_finished(&[], start + 2 * MINUTE), vec![]);
        // A new episode is reported at once, however soon it starts.
        assert_eq!(
            policy.run_finished(&[Failed], start + 3 * MINUTE),
            vec![Failed]
        );
    }

    #[test]
    fn a_failure_outside_a_run_opens_an_episode_a_good_run_closes() {
        let mut policy = Policy::default();
        let start = Instant::now();
        assert!(policy.failure(start));
        assert_eq!(policy.run_finished(&[], start + MINUTE), vec![Recovered]);
    }

    #[test]
    fn the_same_refused_config_is_reported_once_until_a_reload_succeeds() {
        let mut policy = Policy::default();
        assert!(policy.config_rejected("config.yaml:2:3: sync.policy: bad"));
        assert!(!policy.config_rejected("config.yaml:2:3: sync.policy: bad"));
        assert!(policy.config_rejected("config.yaml:4:3: sync.interval: bad"));
        policy.config_accepted();
        assert!(policy.config_rejected("config.yaml:4:3: sync.interval: bad"));
    }

    #[test]
    fn a_persisting_block_is_sent_once_and_again_after_it_cleared_or_changed() {
        let mut policy = Policy::default();
        let own_ip = || Some("4242 192.0.2.9 own-ip".to_owned());
        assert!(policy.held_back(own_ip()));
        assert!(!policy.held_back(own_ip()), "the same block next run");
        assert!(policy.held_back(Some("4242 192.0.2.9 own-ip; 4242 192.0.2.8 own-ip".into())));
        assert!(!policy.held_back(None));
        assert!(policy.held_back(own_ip()), "back after a run without it");
    }

    #[test]
    fn no_recovered_without_a_failure() {
        let mut policy = Policy::default();
        assert_eq!(policy.run_finished(&[Drift], Instant::now()), vec![Drift]);
    }
}
