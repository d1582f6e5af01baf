//! The simulator handle and its HTTP server: hyper 1 on `127.0.0.1:0`, one task per connection.
//!
//! The server owns everything between the socket and [`super::api`] (in `server/http.rs`):
//! reading the request, applying injected faults, adding bunq's response headers
//! (`X-Bunq-Client-Response-Id`, the echoed `X-Bunq-Client-Request-Id`, `X-Bunq-Server-Signature`
//! over the exact body bytes) and recording the request log. The handle, here, is the seeding
//! and inspection API for tests.

mod http;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hyper::Method;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::api::Settings;
use super::clock::Clock;
use super::faults::{Fault, FaultKind, FaultQueue};
use super::options::SimulatorOptions;
use super::rate_limit::RateLimiter;
use super::state::{SeedError, SeededKey, World};
use crate::bunq::crypto::{PrivateKey, PublicKey};
use crate::bunq::model::{
    CredentialId, CredentialPasswordIp, EntryId, IpStatus, PermittedDevice, PermittedIp, UserId,
};

/// One request as the simulator saw it, for tests that assert what a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: Method,
    /// Path with query, e.g. `/v1/user/1/credential-password-ip/2/ip?count=200`.
    pub path: String,
    /// The status answered; `None` when the connection was reset without a response.
    pub status: Option<u16>,
    /// The IP the simulated bunq saw.
    pub caller_ip: Ipv4Addr,
    /// Whether the request carried `X-Bunq-Client-Signature`.
    pub signed: bool,
    /// The `X-Bunq-Client-Request-Id` sent, to check a client uses a fresh one per attempt.
    /// (Tokens and bodies are not logged: they hold secrets.)
    pub request_id: Option<String>,
    /// The injected fault that fired on this request, if any.
    pub fault: Option<FaultKind>,
}

/// A running simulated bunq. Cheap to clone; the server stops on [`Simulator::shutdown`] or when
/// the last handle is dropped.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
    /// Cancels the server when the last handle goes; the server tasks do not hold it.
    _stop_on_drop: Arc<StopOnDrop>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("address", &self.inner.address)
            .finish_non_exhaustive()
    }
}

struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// What the server tasks share with the handles.
struct Inner {
    settings: Settings,
    server_key: PrivateKey,
    address: SocketAddr,
    stop: CancellationToken,
    state: Mutex<State>,
}

/// Everything that changes, under one lock so each request sees a consistent bank.
struct State {
    world: World,
    limiter: RateLimiter,
    faults: FaultQueue,
    log: Vec<LoggedRequest>,
    caller_ip: Ipv4Addr,
}

impl Simulator {
    /// Binds `127.0.0.1:0` and starts serving on the current tokio runtime. Fails when
    /// `time_scale` is not finite and positive, or when the port cannot be bound.
    pub async fn start(options: SimulatorOptions) -> std::io::Result<Simulator> {
        if !(options.time_scale.is_finite() && options.time_scale > 0.0) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "time_scale must be finite and positive",
            ));
        }
        let server_key = match options.server_key {
            Some(key) => key,
            None => PrivateKey::generate().map_err(std::io::Error::other)?,
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let address = listener.local_addr()?;
        let settings = Settings {
            rate_limits: options.rate_limits,
            reject_status: options.expired_session_status,
            strict_device_signature: options.strict_device_signature,
            escape_slashes: options.escape_slashes,
            server_public_key_pem: server_key.public_key().to_pem(),
            user_wrapper: options.user_kind.wrapper(),
        };
        let stop = CancellationToken::new();
        let inner = Arc::new(Inner {
            settings,
            server_key,
            address,
            stop: stop.clone(),
            state: Mutex::new(State {
                world: World::new(Clock::new(options.time_scale), options.session_timeout_secs),
                limiter: RateLimiter::default(),
                faults: FaultQueue::default(),
                log: Vec::new(),
                caller_ip: options.caller_ip,
            }),
        });
        tokio::spawn(http::accept_loop(listener, Arc::clone(&inner)));
        Ok(Simulator {
            inner,
            _stop_on_drop: Arc::new(StopOnDrop(stop)),
        })
    }

    /// The base URL to give a client: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.inner.address)
    }

    /// The bound socket address.
    pub fn address(&self) -> SocketAddr {
        self.inner.address
    }

    /// Stops accepting and closes open connections. Other handles keep the seeded data readable.
    pub fn shutdown(&self) {
        self.inner.stop.cancel();
    }

    /// The key every response is signed with (also returned by installation).
    pub fn server_public_key(&self) -> PublicKey {
        self.inner.server_key.public_key()
    }

    /// Creates a user and an API key whose credential has no device and no entries yet.
    pub fn create_user_with_api_key(&self) -> SeededKey {
        self.state().world.create_user_with_api_key("")
    }

    /// Adds a second API key for `user_id` (a new credential, no device, no entries), for
    /// key rotation: the daemon may switch to it without bunq forgetting the user.
    pub fn add_api_key(&self, user_id: UserId) -> Result<SeededKey, SeedError> {
        self.state().world.add_api_key(user_id)
    }

    /// The credential (that is, the API key) of the session opened last, `None` before any.
    pub fn last_session_credential(&self) -> Option<CredentialId> {
        let state = self.state();
        state
            .world
            .sessions
            .values()
            .max_by_key(|session| session.id)
            .map(|session| session.credential_id)
    }

    /// Adds a credential for another API key of `user_id` (whose key is not handed out), as in
    /// multi-key accounts. The optional device is what the credential listing shows as
    /// `permitted_device`; no entries are created, add them with [`Simulator::add_entry`].
    pub fn add_credential(
        &self,
        user_id: UserId,
        device_description: Option<&str>,
        device_ip: Option<Ipv4Addr>,
    ) -> Result<CredentialId, SeedError> {
        let device =
            (device_description.is_some() || device_ip.is_some()).then(|| PermittedDevice {
                description: device_description.map(str::to_owned),
                ip: device_ip.map(|ip| ip.to_string()),
            });
        self.state().world.add_credential(user_id, device)
    }

    /// Adds an allowlist entry out of band. `ip` is free text so tests can plant what the API
    /// refuses (an app-set `*`, an IPv6 address).
    pub fn add_entry(
        &self,
        credential: CredentialId,
        ip: &str,
        status: IpStatus,
    ) -> Result<EntryId, SeedError> {
        self.state().world.add_entry(credential, ip, status)
    }

    /// Replaces the device the credential listing shows as `permitted_device`, out of band
    /// (a device renamed or re-registered elsewhere), so tests can make the daemon's own
    /// credential unrecognisable.
    pub fn set_permitted_device(
        &self,
        credential: CredentialId,
        device_description: Option<&str>,
        device_ip: Option<Ipv4Addr>,
    ) -> Result<(), SeedError> {
        let device =
            (device_description.is_some() || device_ip.is_some()).then(|| PermittedDevice {
                description: device_description.map(str::to_owned),
                ip: device_ip.map(|ip| ip.to_string()),
            });
        self.state()
            .world
            .credential_mut(credential)?
            .permitted_device = device;
        Ok(())
    }

    /// Registers a device for `user` out of band (another API key's, or the app's), as
    /// `GET /device-server` then lists it; returns its id.
    pub fn add_device(
        &self,
        user: UserId,
        description: &str,
        ip: Ipv4Addr,
    ) -> Result<u64, SeedError> {
        let mut state = self.state();
        let world = &mut state.world;
        if !world.users.contains_key(&user) {
            return Err(SeedError::UnknownUser(user));
        }
        let id = world.add_device(user, description.to_owned(), ip);
        Ok(id)
    }

    /// Changes an entry's status out of band ("someone toggled it in the app").
    pub fn set_entry_status(
        &self,
        credential: CredentialId,
        entry: EntryId,
        status: IpStatus,
    ) -> Result<(), SeedError> {
        self.state()
            .world
            .set_entry_status(credential, entry, status)
    }

    /// The credential's entries as bunq would list them, newest first.
    pub fn entries(&self, credential: CredentialId) -> Result<Vec<PermittedIp>, SeedError> {
        self.state().world.entries(credential)
    }

    /// The credential as the listing shows it (with its `permitted_device`).
    pub fn credential(&self, credential: CredentialId) -> Result<CredentialPasswordIp, SeedError> {
        self.state()
            .world
            .credentials
            .get(&credential)
            .map(|found| found.to_wire())
            .ok_or(SeedError::UnknownCredential(credential))
    }

    /// Sets the IP the simulated bunq sees for every following request.
    pub fn set_caller_ip(&self, ip: Ipv4Addr) {
        self.state().caller_ip = ip;
    }

    /// The IP the simulated bunq currently sees.
    pub fn caller_ip(&self) -> Ipv4Addr {
        self.state().caller_ip
    }

    /// Ends every session now, as bunq does when it logs clients out early.
    pub fn expire_all_sessions(&self) {
        self.state().world.expire_all_sessions();
    }

    /// Forgets every installation and its sessions, as a sandbox reset or a revoked device does:
    /// their tokens are answered "Insufficient authentication." from now on.
    pub fn forget_installations(&self) {
        self.state().world.forget_installations();
    }

    /// How many sessions session-server has opened, to count a client's renewals.
    pub fn sessions_created(&self) -> usize {
        self.state().world.sessions_created
    }

    /// Every request answered (or reset) so far, oldest first.
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.state().log.clone()
    }

    /// Forgets the request log.
    pub fn clear_request_log(&self) {
        self.state().log.clear();
    }

    /// Queues a fault; the first queued fault matching a request fires.
    pub fn inject(&self, fault: Fault) {
        self.state().faults.push(fault);
    }

    /// Ends every injected fault now, so a test can end an outage at the moment it has seen
    /// what it waited for instead of sleeping out a fixed duration.
    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state()
    }
}

impl Inner {
    /// The state; a panic under the lock (a bug) must not take every later request down too.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_can_be_shared_across_tasks_and_threads() {
        fn assert_shareable<T: Send + Sync + Clone + 'static>() {}
        assert_shareable::<Simulator>();
    }

    #[tokio::test]
    async fn non_positive_time_scale_is_refused() {
        for time_scale in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let options = SimulatorOptions {
                time_scale,
                ..SimulatorOptions::default()
            };
            let err = Simulator::start(options).await.unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        }
    }
}
