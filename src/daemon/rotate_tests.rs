//! Key rotation end to end, in process on tokio's paused clock: the daemon, the simulated bank
//! and the key file, with the key file replaced while the daemon runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::bunq::ContextStore;
use crate::bunq::context::api_key_fingerprint;
use crate::bunq::model::{CredentialId, EntryId, IpStatus};
use crate::daemon::runtime::run;
use crate::daemon::test_bank::{Bank, MANAGED_IP as IP, MINUTE, Managed};
use crate::secret::Secret;
use crate::simulator::receiver::Receiver;

const INTERVAL: Duration = Duration::from_secs(300);

/// A running in-process daemon on a simulated bank, its key read from a file.
struct Rotating {
    bank: Bank,
    managed: CredentialId,
    entry: EntryId,
    key_file: PathBuf,
    health: SocketAddr,
    hooks: Receiver,
    shutdown: CancellationToken,
    daemon: tokio::task::JoinHandle<Result<(), crate::daemon::runtime::DaemonError>>,
}

impl Rotating {
    /// Starts the daemon and waits for its first run to converge, then for bunq's
    /// session-server window (1 call per 30 s) to pass, as it has long passed when a key is
    /// rotated in practice.
    async fn start() -> Rotating {
        let bank = Bank::start(604_800, Duration::from_secs(600)).await;
        let hooks = Receiver::start().await.unwrap();
        let notify = format!(
            "notify:\n  webhooks:\n    - url: \"{}\"\n      format: json\n",
            hooks.url("/events")
        );
        let Managed {
            credential: managed,
            entry,
            key_file,
            config_path,
        } = bank.managed(INTERVAL, &notify);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let health = listener.local_addr().unwrap();
        let options = bank.options(config_path, listener);
        let shutdown = options.shutdown.clone();
        let daemon = tokio::spawn(run(options));
        let rotating = Rotating {
            bank,
            managed,
            entry,
            key_file,
            health,
            hooks,
            shutdown,
            daemon,
        };
        rotating.until_active(MINUTE).await;
        tokio::time::sleep(Duration::from_secs(31)).await;
        rotating
    }

    /// Waits (in tokio time) until the managed IP is ACTIVE; fails after `limit`.
    async fn until_active(&self, limit: Duration) {
        self.bank.until_active(self.managed, IP, limit).await;
    }

    /// Someone deactivates the managed IP in the app; the next scheduled run must repair it.
    async fn deactivate_and_wait_for_the_repair(&self) {
        self.bank
            .sim
            .set_entry_status(self.managed, self.entry, IpStatus::Inactive)
            .unwrap();
        self.until_active(INTERVAL + MINUTE).await;
    }

    /// Replaces the key file as a secret manager does (write aside, rename over).
    fn replace_key(&self, key: &Secret) {
        let staged = self.key_file.with_extension("new");
        std::fs::write(&staged, key.expose()).unwrap();
        std::fs::rename(&staged, &self.key_file).unwrap();
    }

    /// The saved context's key fingerprint.
    fn saved_fingerprint(&self) -> String {
        let store = ContextStore::open(&self.bank.state_dir()).unwrap();
        store.load().unwrap().unwrap().api_key_fingerprint
    }

    /// `/readyz`: status and body.
    async fn readyz(&self) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(self.health).await.unwrap();
        let request = "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let text = String::from_utf8(response).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, body.to_owned())
    }

    /// Waits (at most a minute) for `/readyz` to warn that bunq refused the new key, and checks
    /// that the daemon stays ready meanwhile (the old session works on); returns the body.
    async fn refusal_in_readyz(&self) -> String {
        let replaced = tokio::time::Instant::now();
        loop {
            let (status, body) = self.readyz().await;
            if body.contains("bunq refused the new API key") {
                assert_eq!(status, 200, "still ready: the old session works: {body}");
                return body;
            }
            assert!(
                replaced.elapsed() <= MINUTE,
                "no warning in /readyz: {body}"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.daemon.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_replaced_key_file_moves_the_daemon_to_a_session_of_the_new_key_without_a_restart() {
    let rotating = Rotating::start().await;
    let bank = &rotating.bank;
    let old_credential = bank.key.credential_id;
    assert_eq!(bank.sim.last_session_credential(), Some(old_credential));
    let new_key = bank.sim.add_api_key(bank.key.user_id).unwrap();

    rotating.replace_key(&new_key.api_key);
    let replaced = tokio::time::Instant::now();
    while bank.sim.last_session_credential() != Some(new_key.credential_id)
        || rotating.saved_fingerprint() != api_key_fingerprint(&new_key.api_key)
    {
        assert!(
            replaced.elapsed() <= Duration::from_secs(15),
            "no session of the new key within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        bank.installations(),
        2,
        "the new key got its own installation"
    );
    let saved = std::fs::read_to_string(
        bank.state_dir()
            .join(crate::bunq::context::CONTEXT_FILE_NAME),
    )
    .unwrap();
    assert!(
        !saved.contains(new_key.api_key.expose()),
        "only the fingerprint is saved"
    );
    assert!(
        !bank
            .state_dir()
            .join(super::ROTATION_DIR)
            .join(crate::bunq::context::CONTEXT_FILE_NAME)
            .exists(),
        "the staged context was moved, not copied"
    );
    assert_eq!(rotating.readyz().await.0, 200);

    // Later runs go on with the new key: with every session ended, the run after the next
    // out-of-band change opens its session with the new key, not the old one.
    bank.sim.expire_all_sessions();
    rotating.deactivate_and_wait_for_the_repair().await;
    assert_eq!(
        bank.sim.last_session_credential(),
        Some(new_key.credential_id)
    );
    assert!(!rotating.daemon.is_finished());
    rotating.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_refused_new_key_keeps_the_daemon_on_the_old_session_warning_and_notifying() {
    let rotating = Rotating::start().await;
    let bank = &rotating.bank;
    let old_credential = bank.key.credential_id;
    let old_fingerprint = rotating.saved_fingerprint();

    rotating.replace_key(&Secret::new("0123456789abcdef-a-key-bunq-never-issued"));
    let body = rotating.refusal_in_readyz().await;
    assert!(body.contains("previous key's session"), "{body}");
    assert!(!body.contains("a-key-bunq-never-issued"), "{body}");
    assert_eq!(rotating.saved_fingerprint(), old_fingerprint);
    assert_eq!(bank.sim.last_session_credential(), Some(old_credential));
    let events = rotating.hooks.wait_for(1, MINUTE).await;
    let failed: Vec<_> = events
        .iter()
        .map(|event| event.json())
        .filter(|event| event["event"] == "failed")
        .collect();
    assert!(
        failed
            .iter()
            .any(|event| event["summary"].as_str().unwrap().contains("new API key")),
        "{failed:?}"
    );

    // The old key's session still does the work.
    rotating.deactivate_and_wait_for_the_repair().await;
    assert_eq!(bank.sim.last_session_credential(), Some(old_credential));
    assert!(!rotating.daemon.is_finished());

    // bunq is asked again after the backoff (1 min, then 2 min, ...), on the staged
    // installation: no new installation per attempt.
    let refusals = || bank.count("POST", "/device-server", Some(400));
    let (installations, refused) = (bank.installations(), refusals());
    assert_eq!(installations, 2, "the old key's and the staged one");
    tokio::time::sleep(4 * MINUTE).await;
    assert!(refusals() > refused, "retried: {} refusals", refusals());
    assert_eq!(bank.installations(), installations);
    rotating.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_new_key_of_another_user_is_refused_and_the_old_session_goes_on() {
    let rotating = Rotating::start().await;
    let bank = &rotating.bank;
    let old_fingerprint = rotating.saved_fingerprint();
    let stranger = bank.sim.create_user_with_api_key();

    rotating.replace_key(&stranger.api_key);
    let body = rotating.refusal_in_readyz().await;
    assert!(
        body.contains(&format!("belongs to bunq user {}", stranger.user_id)),
        "{body}"
    );
    assert_eq!(rotating.saved_fingerprint(), old_fingerprint);
    // The repair proves the old client works on: the stranger's session (opened while bunq was
    // asked) cannot even see this user's credential.
    rotating.deactivate_and_wait_for_the_repair().await;
    rotating.stop().await;
}
