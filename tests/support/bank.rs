//! The simulated bunq side of a test: one server key per test binary, the simulator options the
//! tests start from, [`Account`], a simulator with one user and API key plus a temporary
//! directory for the key file, config and state, and [`Hooked`], the real client with a hook
//! around each call (to inject a fault on exactly that request).

use std::future::Future;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::OnceLock;

use bunq_ipsync::bunq::model::{
    CredentialId, CredentialPasswordIp, EntryId, IpStatus, PermittedIp,
};
use bunq_ipsync::bunq::{BunqClient, BunqError, PrivateKey};
use bunq_ipsync::reconcile::port::{AllowlistReader, AllowlistWriter, EntryRef};
use bunq_ipsync::simulator::{SeededKey, Simulator, SimulatorOptions};
use hyper::Method;

use super::config_text;

/// One server key for every simulator and mock of this test binary: RSA generation is the slow
/// part of starting one.
pub fn server_key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate().expect("server key"))
}

/// Simulator options for the tests: real time, no rate limits unless a test wants them, the
/// shared server key.
pub fn sim_options() -> SimulatorOptions {
    SimulatorOptions {
        rate_limits: false,
        server_key: Some(server_key().clone()),
        ..SimulatorOptions::default()
    }
}

/// The ACTIVE IPs of `credential`, sorted.
pub fn active_ips(sim: &Simulator, credential: CredentialId) -> Vec<String> {
    let mut ips: Vec<String> = sim
        .entries(credential)
        .expect("entries")
        .into_iter()
        .filter(|entry| entry.status == IpStatus::Active)
        .map(|entry| entry.ip)
        .collect();
    ips.sort();
    ips
}

/// A simulator with one user and API key, and a directory holding the key file (`api-key`), the
/// config and the state dir (`state`).
pub struct Account {
    /// The simulated bunq.
    pub sim: Simulator,
    /// The user, API key and the key's own credential.
    pub key: SeededKey,
    /// Removed on drop.
    pub dir: tempfile::TempDir,
}

impl Account {
    /// Starts a simulator with `options`, seeds a user with an API key and writes the key file.
    pub async fn start(options: SimulatorOptions) -> Account {
        let sim = Simulator::start(options).await.expect("simulator starts");
        let key = sim.create_user_with_api_key();
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("api-key"), key.api_key.expose()).expect("key file");
        Account { sim, key, dir }
    }

    /// `bunq.state_dir`.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `bunq.api_key_file`.
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("api-key")
    }

    /// Another credential of the user (another API key's, "ci-runner"), with the given entries.
    pub fn credential_with(&self, entries: &[(&str, IpStatus)]) -> CredentialId {
        let id = self
            .sim
            .add_credential(
                self.key.user_id,
                Some("ci-runner"),
                Some("192.0.2.200".parse().expect("an IPv4 literal")),
            )
            .expect("credential");
        for (ip, status) in entries {
            self.sim
                .add_entry(id, ip, status.clone())
                .expect("seed entry");
        }
        id
    }

    /// The `bunq:` section for this account: the simulator, the key file, `device`, the state
    /// dir.
    pub fn bunq_section(&self, device: &str) -> String {
        config_text::bunq_section(
            &self.sim.base_url(),
            Some(&self.key_file()),
            device,
            &self.state_dir(),
        )
    }

    /// A whole config: [`Account::bunq_section`] for `device` with `bunq_extra` (indented
    /// `key: value` lines) appended, `sync.policy`, `sync.max_changes`, and `credentials` (YAML
    /// list items).
    pub fn config_text(
        &self,
        device: &str,
        bunq_extra: &str,
        policy: &str,
        max_changes: usize,
        credentials: &str,
    ) -> String {
        format!(
            "{}{bunq_extra}sync:\n  policy: {policy}\n  max_changes: {max_changes}\n\
             credentials:\n{credentials}",
            self.bunq_section(device),
        )
    }

    /// Writes `text` to `name` in the account's directory.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }
}

/// One client key for this test binary, for tests that plant a saved registration instead of
/// paying for a new key.
pub fn client_key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate().expect("client key"))
}

/// What a [`Hooked`] client does around each bunq call it forwards: it gets the call's method
/// and path (as the simulator's fault filters match them) and the call itself. The fault suite
/// and the soak use it to inject a fault on exactly the request a run is about to send, or to
/// stop a run while a write is in flight.
pub trait Hook: Sync {
    /// Runs `call` (the forwarded client call to `method` `path`), doing the hook's work around it.
    fn around<T: Send>(
        &self,
        method: Method,
        path: String,
        call: impl Future<Output = T> + Send,
    ) -> impl Future<Output = T> + Send;
}

/// The bunq client behind the reconciler's ports, every call passed through `hook`: the one
/// place the tests' client wrappers forward the ports.
pub struct Hooked<'a, H> {
    /// The real client.
    pub client: &'a BunqClient,
    /// What happens around each call.
    pub hook: H,
}

impl<H: Hook> AllowlistReader for Hooked<'_, H> {
    fn registered_device_description(&self) -> Option<String> {
        self.client.registered_device_description()
    }

    async fn list_credentials(&self) -> Result<Vec<CredentialPasswordIp>, BunqError> {
        let path = "credential-password-ip?count".to_owned();
        let call = AllowlistReader::list_credentials(self.client);
        self.hook.around(Method::GET, path, call).await
    }

    async fn list_ips(&self, credential: CredentialId) -> Result<Vec<PermittedIp>, BunqError> {
        let path = format!("/credential-password-ip/{credential}/ip?count");
        let call = AllowlistReader::list_ips(self.client, credential);
        self.hook.around(Method::GET, path, call).await
    }
}

impl<H: Hook> AllowlistWriter for Hooked<'_, H> {
    async fn create_ip(
        &self,
        credential: CredentialId,
        ip: Ipv4Addr,
    ) -> Result<EntryId, BunqError> {
        let path = format!("/credential-password-ip/{credential}/ip");
        let call = AllowlistWriter::create_ip(self.client, credential, ip);
        self.hook.around(Method::POST, path, call).await
    }

    async fn set_ip_status(&self, at: EntryRef, status: IpStatus) -> Result<(), BunqError> {
        let path = format!("/credential-password-ip/{}/ip/{}", at.credential, at.entry);
        let call = AllowlistWriter::set_ip_status(self.client, at, status);
        self.hook.around(Method::PUT, path, call).await
    }
}
