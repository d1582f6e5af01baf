//! A simulated bunq for the daemon's in-process tests, with client settings on tokio's
//! (paused) clock.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::bunq::{
    BaseUrl, BunqClient, ClientSettings, PrivateKey, RateLimiter, RateLimits, RetryPolicy,
    TransportSettings,
};
use crate::clock::tokio_clock;
use crate::simulator::{SeededKey, Simulator, SimulatorOptions};

pub(super) const MINUTE: Duration = Duration::from_secs(60);

/// One server key for these tests (RSA generation is slow in debug builds).
pub(super) fn server_key() -> PrivateKey {
    crate::bunq::crypto::test_key().clone()
}

/// A simulated bunq with bunq's rate limits and `session_timeout_secs` sessions, a user, and
/// client settings on tokio time sharing `limiter`.
pub(super) struct Bank {
    /// The simulated bank.
    pub(super) sim: Simulator,
    /// The user's API key.
    pub(super) key: SeededKey,
    /// Holds the state directory (and a config file) for the test's lifetime.
    pub(super) dir: tempfile::TempDir,
    /// Client settings on tokio time.
    pub(super) settings: ClientSettings,
}

impl Bank {
    pub(super) async fn start(session_timeout_secs: u64, renew_before: Duration) -> Bank {
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
        settings.clock = tokio_clock();
        Bank {
            sim,
            key,
            dir: tempfile::tempdir().unwrap(),
            settings,
        }
    }

    pub(super) fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub(super) async fn connect(&self) -> BunqClient {
        BunqClient::connect(
            self.settings.clone(),
            self.key.api_key.clone(),
            &self.state_dir(),
        )
        .await
        .unwrap()
    }

    pub(super) fn count(&self, method: &str, path: &str, status: Option<u16>) -> usize {
        self.sim
            .request_log()
            .iter()
            .filter(|r| r.method == method && r.path.ends_with(path) && r.status == status)
            .count()
    }

    pub(super) fn installations(&self) -> usize {
        self.count("POST", "/installation", Some(200))
    }
}
