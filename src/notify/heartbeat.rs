//! The dead-man heartbeat, healthchecks.io / Uptime Kuma push style: `GET <url>` after a run
//! that converged or applied, `GET <url>/fail` after one that failed or was blocked, and (with
//! `start: true`) `GET <url>/start` when a run begins, so the service also measures run time.
//! When pings stop, the service alerts: that covers a daemon that died or hangs.

use super::url::SecretUrl;
use crate::reconcile::verdict::RunResult;

/// One ping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ping {
    /// A run begins.
    Start,
    /// A run converged or applied.
    Success,
    /// A run failed or was blocked.
    Fail,
}

impl Ping {
    /// The ping after a run that ended with `result`.
    pub fn after(result: RunResult) -> Ping {
        match result {
            RunResult::Converged | RunResult::ChangesApplied => Ping::Success,
            RunResult::Blocked | RunResult::Failed => Ping::Fail,
        }
    }

    /// The URL to `GET` for this ping of the check at `base`.
    pub fn url(self, base: &SecretUrl) -> SecretUrl {
        match self {
            Ping::Success => base.clone(),
            Ping::Fail => base.with_segment("fail"),
            Ping::Start => base.with_segment("start"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::testing::secret_url;

    #[test]
    fn good_runs_ping_the_url_and_bad_ones_fail() {
        let base = secret_url("https://hc-ping.com/uuid");
        let url = |result| Ping::after(result).url(&base).expose().to_owned();
        assert_eq!(url(RunResult::Converged), "https://hc-ping.com/uuid");
        assert_eq!(url(RunResult::ChangesApplied), "https://hc-ping.com/uuid");
        assert_eq!(url(RunResult::Blocked), "https://hc-ping.com/uuid/fail");
        assert_eq!(url(RunResult::Failed), "https://hc-ping.com/uuid/fail");
        assert_eq!(
            Ping::Start.url(&base).expose(),
            "https://hc-ping.com/uuid/start"
        );
    }
}
