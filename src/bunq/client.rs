//! [`BunqClient`]: a registered, authenticated connection to bunq, shareable between tasks.
//!
//! [`BunqClient::connect`] reuses the saved context when it matches the API key and base URL
//! (no installation, device or session call at all while the saved session is fresh) and
//! otherwise registers: installation → device-server → session-server, saving after each step
//! so a crash mid-registration resumes where it stopped. If bunq rejects the installation token
//! when opening a session (bunq forgot the installation), the client registers anew, at most
//! once per [`REREGISTRATION_INTERVAL`] per state directory (also across restarts) and never in
//! a loop; see [`BunqClient`] for the rules.
//!
//! Sessions: every call first makes sure the session is valid for at least `renew_before`, and
//! opens a new one if not. If bunq nevertheless rejects the session token (any 401 or 403:
//! bunq's wording varies), the client opens a new session once and retries that request once. The
//! session state sits behind a `tokio::sync::Mutex`, so concurrent tasks wait for one renewal
//! instead of each opening a session; session-server is further limited to 1 call per 30 s by
//! the rate limiter, which every client of a process shares when given
//! [`ClientSettings::rate_limiter`].
//!
//! A client made by [`BunqClient::connect_read_only`] is for a state directory another process
//! (the daemon) holds: it uses the saved session as is and never renews, registers or saves.
//!
//! The typed endpoints live in [`crate::bunq::allowlist`].

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

mod connect;
mod renewal;

pub use crate::bunq::client_settings::ClientSettings;
use crate::bunq::context::{Context, ContextStore, DeviceContext};
use crate::bunq::crypto::{PrivateKey, PublicKey};
use crate::bunq::endpoint::BaseUrl;
use crate::bunq::error::BunqError;
use crate::bunq::model::{DeviceServer, Envelope, UserId};
use crate::bunq::observer::ApiObserver;
pub use crate::bunq::registration::REREGISTRATION_INTERVAL;
use crate::bunq::session::WallClock;
use crate::bunq::transport::{ApiResponse, Body, Call, RetryMode, Route, Transport};
use crate::secret::Secret;

/// A session opened this recently is not replaced again by [`BunqClient::renew_session`]
/// (bunq allows one session-server call per 30 s).
pub const RECENT_SESSION: Duration = Duration::from_secs(30);

/// A snapshot of the session for the synchronous getters.
#[derive(Clone, Copy, Debug)]
struct SessionInfo {
    user_id: UserId,
    expires_at: DateTime<Utc>,
    /// Bumped on every new session, so a task that saw a rejected token can tell whether
    /// someone else already replaced it.
    generation: u64,
    /// The user's auto-logout in seconds, when bunq reported it.
    session_timeout_secs: Option<u64>,
    /// When this process last opened a session (monotonic clock).
    opened_at: Option<tokio::time::Instant>,
}

/// The keys and token of one installation: what signs and verifies every request, and what
/// opens sessions. Replaced as a whole when the client registers anew.
struct Registration {
    client_key: PrivateKey,
    server_key: PublicKey,
    installation_token: Secret,
}

/// What a request needs from the current session.
struct SessionTicket {
    token: Secret,
    user_id: UserId,
    generation: u64,
    /// The installation the session belongs to; requests are signed and verified with its keys.
    registration: Arc<Registration>,
}

/// The mutable registration state, behind one lock so that renewing a session or registering
/// anew happens once however many tasks notice the need (single flight).
struct ClientState {
    /// The persisted context.
    context: Context,
    /// The keys of `context`'s installation; `None` after bunq rejected the installation, until
    /// a new registration succeeds.
    registration: Option<Arc<Registration>>,
    /// When this process last tried to register because bunq had forgotten the installation.
    /// Beside the persisted [`Context::registered_at`] (which dates successful installations):
    /// a registration that failed after its installation (at device-server, say) is not retried
    /// by the same process within [`REREGISTRATION_INTERVAL`] either; a restart resumes it.
    reregistered_at: Option<tokio::time::Instant>,
}

/// A registered bunq client. Use it as `Arc<BunqClient>`; all methods take `&self`.
///
/// # When bunq forgets the installation
///
/// bunq can drop an installation and its sessions while the state file still holds them (a
/// sandbox reset, a revoked device). The client notices when `POST /session-server` rejects the
/// installation token with "Insufficient authentication" (at start, on renewal, or when a
/// request's session was rejected; see [`BunqError::is_installation_rejected`]). A rejection
/// whose `X-Bunq-Server-Signature` does not verify is a security error and discards nothing.
/// Then it:
///
/// 1. replaces the state file's context with a new client key and no installation, device or
///    session, so that even if everything below fails, the next start registers anew instead of
///    reusing the dead context;
/// 2. registers anew within the same call (installation → device-server → session-server; the
///    rate limiter holds the session-server call until bunq's 30 s window allows it), and the
///    request that met the rejection is sent once more with the new session;
/// 3. does this at most once per [`REREGISTRATION_INTERVAL`] per state directory: the time of
///    the last installation is saved in the context ([`Context::registered_at`]), so every
///    registration counts, the first one and those of earlier processes included. Inside the
///    interval calls fail with [`BunqError::RegistrationDeferred`] without contacting bunq until
///    the interval has passed; a registration that failed part-way is not retried by the same
///    process within the interval (a restart resumes it at the step that failed).
///
/// [`BunqClient::connect`] follows the same bound: when the saved installation is rejected
/// within the interval it returns [`BunqError::RegistrationDeferred`] and keeps the saved
/// installation, so the caller's next attempt (the daemon retries with backoff) tries
/// session-server with it again instead of registering.
///
/// A rejected freshly registered installation is an error, never a loop. "User credentials are
/// incorrect" from session-server does *not* trigger a registration: it means the calling IP is
/// not active on the key's credential (or the key is wrong), which a new installation cannot fix,
/// and device-server on a credential without active IPs would re-activate the caller's IP behind
/// the operator's back. That error is returned as is and the saved installation is kept.
pub struct BunqClient {
    transport: Transport,
    store: ContextStore,
    api_key: Secret,
    /// How to register anew: device description, permitted IPs, renewal margin, clock.
    settings: ClientSettings,
    /// The description bunq shows on the own credential: the one the current device was
    /// registered with. Replaced when the client registers anew, so the own-ip rule follows.
    device_description: std::sync::Mutex<Option<String>>,
    observer: Arc<dyn ApiObserver>,
    /// Held while a session is replaced or the client registers anew.
    state: tokio::sync::Mutex<ClientState>,
    info: std::sync::Mutex<SessionInfo>,
    /// Made by [`BunqClient::connect_read_only`]: the state directory belongs to another
    /// process, so this client never opens a session, registers or saves.
    read_only: bool,
}

impl std::fmt::Debug for BunqClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BunqClient")
            .field("base_url", self.transport.base_url())
            .field("state_file", &self.store.path())
            .field("device_description", &self.device_description())
            .finish_non_exhaustive()
    }
}

impl BunqClient {
    /// True for a client made by [`BunqClient::connect_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The user id used in `/user/{user}/...` paths.
    pub fn user_id(&self) -> UserId {
        self.info().user_id
    }

    /// When the current session expires unless renewed.
    pub fn session_expires_at(&self) -> DateTime<Utc> {
        self.info().expires_at
    }

    /// The session lifetime bunq reported (`session_timeout` of the user), for choosing a
    /// renewal lead time; `None` when unknown (a session imported without it).
    pub fn session_timeout(&self) -> Option<Duration> {
        self.info().session_timeout_secs.map(Duration::from_secs)
    }

    /// The description this client's device was registered with (after a registration anew,
    /// the new one); `None` when the context was imported from an SDK file that does not record
    /// it.
    pub fn device_description(&self) -> Option<String> {
        self.device_description
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The saved device id when the saved device lacks its description (a context imported
    /// from the SDK), i.e. what [`BunqClient::learn_own_device`] looks up; `None` when there is
    /// nothing to learn.
    pub(crate) async fn device_to_learn(&self) -> Option<Option<u64>> {
        let state = self.state.lock().await;
        match &state.context.device {
            Some(device) if device.description.is_none() => Some(device.id),
            _ => None,
        }
    }

    /// Takes `device` as this client's own: the own-ip rule matches its description from now
    /// on, and a writer saves it with the context so the next start need not ask again. A
    /// read-only client keeps it in memory only (the state file is the holder's).
    pub(crate) async fn adopt_device(&self, device: &DeviceServer) {
        let Some(description) = device.description.clone() else {
            tracing::warn!(
                device = device.id,
                "bunq reports the own device without a description; the own credential stays \
                 unknown unless bunq.device_description names it"
            );
            return;
        };
        let mut state = self.state.lock().await;
        state.context.device = Some(DeviceContext {
            id: Some(device.id),
            description: Some(description.clone()),
        });
        *self
            .device_description
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(description.clone());
        tracing::info!(
            device = device.id,
            device_description = %description,
            "read the own device's description from bunq"
        );
        if !self.read_only
            && let Err(err) = self.store.save(&state.context)
        {
            tracing::error!(error = %err, "cannot save the own device's description");
        }
    }

    /// The base URL this client talks to.
    pub fn base_url(&self) -> &BaseUrl {
        self.transport.base_url()
    }

    /// The wall clock the client judges session expiry by ([`ClientSettings::clock`]), so that
    /// a renewal schedule and the client agree on when a session is due.
    pub fn wall_clock(&self) -> WallClock {
        Arc::clone(&self.settings.clock)
    }

    /// Sends an authenticated, signed, verified request and parses the reply's envelope.
    /// `path` builds the concrete path from the user id. On a session rejection the session is
    /// replaced once and the request is sent once more.
    pub(crate) async fn call_envelope(
        &self,
        route: &Route,
        path: &(dyn Fn(UserId) -> String + Sync),
        body: Option<Body>,
        retry: RetryMode,
    ) -> Result<Envelope, BunqError> {
        let ticket = self.ticket().await?;
        let first = self
            .send_with(route, path(ticket.user_id), &body, &ticket, retry)
            .await;
        let response = match first {
            Err(err) if err.is_session_rejected() && self.read_only => {
                Err(BunqError::Context(format!(
                    "bunq rejected the saved session ({err}); a read-only client opens no new one"
                )))
            }
            Err(err) if err.is_session_rejected() => {
                tracing::warn!(
                    endpoint = %route.endpoint(),
                    error = %err,
                    "bunq rejected the session; opening a new one and retrying once"
                );
                let ticket = self.replace_session(ticket.generation).await?;
                self.send_with(route, path(ticket.user_id), &body, &ticket, retry)
                    .await
            }
            other => other,
        };
        response?.envelope(route)
    }

    async fn send_with(
        &self,
        route: &Route,
        path: String,
        body: &Option<Body>,
        ticket: &SessionTicket,
        retry: RetryMode,
    ) -> Result<ApiResponse, BunqError> {
        self.transport
            .send(&Call {
                route: route.clone(),
                path,
                body: body.clone(),
                auth: Some(&ticket.token),
                signer: Some(&ticket.registration.client_key),
                verifier: Some(&ticket.registration.server_key),
                retry,
            })
            .await
    }

    fn info(&self) -> SessionInfo {
        *self
            .info
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
