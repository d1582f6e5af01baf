//! A simulated bunq for the daemon's in-process tests, with client settings on tokio's
//! (paused) clock.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::bunq::model::{CredentialId, EntryId, IpStatus};
use crate::bunq::{
    BaseUrl, BunqClient, ClientSettings, PrivateKey, RateLimiter, RateLimits, RetryPolicy,
    TransportSettings,
};
use crate::clock::tokio_clock;
use crate::daemon::runtime::Options;
use crate::simulator::{SeededKey, Simulator, SimulatorOptions};

pub(super) const MINUTE: Duration = Duration::from_secs(60);

/// The IP the daemon tests' `managed` credential should have ACTIVE.
pub(super) const MANAGED_IP: &str = "203.0.113.10";

/// The daemon tests' `managed` credential, its [`MANAGED_IP`] entry (INACTIVE at the start) and
/// the files of a daemon that manages it.
pub(super) struct Managed {
    pub(super) credential: CredentialId,
    pub(super) entry: EntryId,
    /// The API key file the config names.
    pub(super) key_file: PathBuf,
    /// The config: sync policy, `interval`, no jitter, the credential with [`MANAGED_IP`].
    pub(super) config_path: PathBuf,
}

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

    /// Adds the `managed` credential and writes the key file and a config for it, with
    /// `extra_config` (whole top-level sections) appended.
    pub(super) fn managed(&self, interval: Duration, extra_config: &str) -> Managed {
        let device_ip = "203.0.113.200".parse().ok();
        let user = self.key.user_id;
        let credential = self.sim.add_credential(user, Some("managed"), device_ip);
        let credential = credential.unwrap();
        let entry = self
            .sim
            .add_entry(credential, MANAGED_IP, IpStatus::Inactive);
        let key_file = self.dir.path().join("api-key");
        std::fs::write(&key_file, self.key.api_key.expose()).unwrap();
        let config_path = self.dir.path().join("config.yaml");
        let config = format!(
            "bunq:\n  environment: sandbox\n  base_url: \"{base}\"\n  device_description: daemon-test\n  \
             state_dir: \"{state}\"\n  api_key_file: \"{key}\"\n\
             sync:\n  policy: sync\n  interval: {interval}s\n  jitter: 0s\n  max_changes: 10\n\
             credentials:\n  - id: {credential}\n    name: managed\n    ips:\n      - \"{MANAGED_IP}\"\n\
             {extra_config}",
            base = self.sim.base_url(),
            state = self.state_dir().display(),
            key = key_file.display(),
            interval = interval.as_secs(),
        );
        std::fs::write(&config_path, config).unwrap();
        Managed {
            credential,
            entry: entry.unwrap(),
            key_file,
            config_path,
        }
    }

    /// An in-process daemon's options on this bank: tokio time and the bank's limiter.
    pub(super) fn options(
        &self,
        config_path: PathBuf,
        listener: tokio::net::TcpListener,
    ) -> Options {
        Options {
            clock: tokio_clock(),
            rate_limiter: self.settings.rate_limiter.clone(),
            ..Options::embedded(config_path, listener)
        }
    }

    /// The status of `credential`'s entry of `ip`.
    pub(super) fn status(&self, credential: CredentialId, ip: &str) -> IpStatus {
        let entries = self.sim.entries(credential).unwrap();
        entries
            .into_iter()
            .find(|entry| entry.ip == ip)
            .unwrap()
            .status
    }

    /// Waits (in tokio time) until `credential`'s entry of `ip` is ACTIVE; fails after `limit`.
    pub(super) async fn until_active(&self, credential: CredentialId, ip: &str, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.status(credential, ip) != IpStatus::Active {
            assert!(tokio::time::Instant::now() < deadline, "{ip} not active");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
