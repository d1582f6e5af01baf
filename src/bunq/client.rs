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

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::bunq::context::{Context, ContextStore, DeviceContext, SessionContext};
use crate::bunq::crypto::{PrivateKey, PublicKey};
use crate::bunq::endpoint::BaseUrl;
use crate::bunq::error::BunqError;
use crate::bunq::model::{DeviceServer, Envelope, UserId};
use crate::bunq::observer::{ApiObserver, NoopObserver};
use crate::bunq::ratelimit::RateLimiter;
use crate::bunq::session::{self, WallClock, system_clock};
use crate::bunq::transport::{
    ApiResponse, Body, Call, RetryMode, Route, Transport, TransportSettings,
};
use crate::secret::Secret;

/// A session opened this recently is not replaced again by [`BunqClient::renew_session`]
/// (bunq allows one session-server call per 30 s).
pub const RECENT_SESSION: Duration = Duration::from_secs(30);

/// The least time between two new installations from one state directory (for one API key and
/// base URL), whether the process that makes them keeps running or restarts. Bounds the
/// installation and device-server calls (and the device entries they leave at bunq) if bunq
/// keeps rejecting fresh installations for a reason re-registering cannot fix.
pub const REREGISTRATION_INTERVAL: Duration = Duration::from_secs(3600);

/// How to reach bunq and how to register there.
#[derive(Clone)]
pub struct ClientSettings {
    /// Production, sandbox, or an explicit (e.g. simulator) URL.
    pub base_url: BaseUrl,
    /// The device description sent to `POST /device-server`. bunq shows it as the credential's
    /// `permitted_device.description`, which is how the daemon finds its own credential.
    pub device_description: String,
    /// `permitted_ips` for `POST /device-server`; `None` omits the field (bunq binds the calling
    /// IP only).
    pub permitted_ips: Option<Vec<String>>,
    /// Timeouts, retries, rate limits.
    pub transport: TransportSettings,
    /// The rate limiter to share with the process's other clients, normally
    /// [`RateLimiter::process`]; its limits replace `transport.rate_limits`. `None` gives the
    /// client a limiter of its own from `transport.rate_limits`, which keeps bunq's windows only
    /// if the process builds no other client (tests with a simulated bank each).
    pub rate_limiter: Option<Arc<RateLimiter>>,
    /// Open a new session when the current one expires within this margin.
    pub renew_before: Duration,
    /// Receives request and session events (metrics); `None` for no observer.
    pub observer: Option<Arc<dyn ApiObserver>>,
    /// The wall clock for session expiry; [`system_clock`] unless a test moves time.
    pub clock: WallClock,
}

impl ClientSettings {
    /// Defaults: bunq's rate limits, default timeouts and retries, renew 10 minutes before expiry.
    pub fn new(base_url: BaseUrl, device_description: impl Into<String>) -> Self {
        ClientSettings {
            base_url,
            device_description: device_description.into(),
            permitted_ips: None,
            transport: TransportSettings::default(),
            rate_limiter: None,
            renew_before: Duration::from_secs(600),
            observer: None,
            clock: system_clock(),
        }
    }
}

impl std::fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSettings")
            .field("base_url", &self.base_url)
            .field("device_description", &self.device_description)
            .field("permitted_ips", &self.permitted_ips)
            .field("transport", &self.transport)
            .field(
                "rate_limiter",
                &self.rate_limiter.as_ref().map_or("own", |_| "shared"),
            )
            .field("renew_before", &self.renew_before)
            .field("observer", &self.observer.as_ref().map(|_| "set"))
            .finish()
    }
}

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
    /// Loads the saved context from `state_dir` or registers anew, and makes sure a session is
    /// open. With a matching saved context and a fresh session this sends no request at all.
    pub async fn connect(
        settings: ClientSettings,
        api_key: Secret,
        state_dir: &Path,
    ) -> Result<Self, BunqError> {
        let (observer, store) = open_parts(&settings, &api_key, state_dir)?;
        let transport = transport_for(&settings, &observer)?;
        let saved = store.load_matching(&settings.base_url, &api_key)?;
        let reused_installation = saved
            .as_ref()
            .is_some_and(|context| context.installation.is_some());
        let registered_at = saved.as_ref().and_then(|context| context.registered_at);
        let context = match saved {
            Some(context) => context,
            None => fresh_context(&settings, &api_key)?,
        };
        let registered = register(&transport, &store, &settings, &api_key, context).await;
        let mut reregistered_at = None;
        let registered = match registered {
            Err(err) if reused_installation && err.is_installation_rejected() => {
                // The saved installation token no longer opens sessions (bunq dropped the
                // installation). Register once from scratch, unless this state directory did so
                // within the interval: then the saved installation stays as it is, for the
                // caller's next attempt to try session-server with it again. Never loop.
                if let Some(deferred) = registration_deferral(registered_at, (settings.clock)()) {
                    tracing::warn!(
                        file = %store.path().display(),
                        error = %err,
                        "bunq rejected the saved installation; not registering a new one yet"
                    );
                    return Err(deferred);
                }
                tracing::warn!(
                    file = %store.path().display(),
                    error = %err,
                    "bunq rejected the saved installation; registering a new one"
                );
                let mut context = fresh_context(&settings, &api_key)?;
                context.registered_at = registered_at;
                reregistered_at = Some(tokio::time::Instant::now());
                register(&transport, &store, &settings, &api_key, context).await?
            }
            other => other?,
        };
        let Registered {
            context,
            client_key,
            server_key,
            installation_token,
            opened_at,
        } = registered;
        let device_description = context
            .device
            .as_ref()
            .and_then(|device| device.description.clone());
        let info = match &context.session {
            Some(session) => SessionInfo {
                user_id: session.user_id,
                expires_at: session.expires_at,
                session_timeout_secs: session.session_timeout_secs,
                generation: 0,
                opened_at,
            },
            None => {
                return Err(BunqError::Context(
                    "no session after registration".to_owned(),
                ));
            }
        };

        let client = BunqClient {
            transport,
            store,
            api_key,
            settings,
            device_description: std::sync::Mutex::new(device_description),
            observer,
            state: tokio::sync::Mutex::new(ClientState {
                context,
                registration: Some(Arc::new(Registration {
                    client_key,
                    server_key,
                    installation_token,
                })),
                reregistered_at,
            }),
            info: std::sync::Mutex::new(info),
            read_only: false,
        };
        client.learn_own_device().await;
        Ok(client)
    }

    /// A client on a state directory that another process (normally the daemon) holds: it uses
    /// the saved session exactly as saved and sends no request to do so.
    ///
    /// It never calls installation, device-server or session-server and never writes the state
    /// file, because the holder relies on that file and may be renewing or replacing it right
    /// now; a second writer would overwrite the holder's context with one bunq has already
    /// replaced. The session is used until it expires, however close that is (a writer would
    /// renew it `renew_before` ahead). When no matching context with an unexpired session is
    /// saved, this fails without contacting bunq; when bunq later rejects the session, or it
    /// expires meanwhile, the call fails instead of opening a new one.
    pub async fn connect_read_only(
        settings: ClientSettings,
        api_key: Secret,
        state_dir: &Path,
    ) -> Result<Self, BunqError> {
        let (observer, store) = open_parts(&settings, &api_key, state_dir)?;
        let unusable = |why: String| {
            BunqError::Context(format!(
                "{why}; a read-only client registers nothing and opens no session"
            ))
        };
        let file = store.path().display().to_string();
        let context = store
            .load()?
            .ok_or_else(|| unusable(format!("no saved bunq context in {file}")))?;
        if let Some(reason) = context.mismatch(&settings.base_url, &api_key) {
            return Err(unusable(format!(
                "the saved bunq context in {file}: {reason}"
            )));
        }
        let (Some(installation), Some(session)) = (&context.installation, &context.session) else {
            return Err(unusable(format!(
                "the saved bunq context in {file} holds no session yet"
            )));
        };
        if !session.is_fresh((settings.clock)(), Duration::ZERO) {
            return Err(unusable(format!(
                "the saved bunq session expired at {}",
                session.expires_at.format("%Y-%m-%d %H:%M:%S UTC")
            )));
        }
        let registration = Registration {
            client_key: context.client_key()?,
            server_key: PublicKey::from_pem(&installation.server_public_key)?,
            installation_token: installation.token.clone(),
        };
        let info = SessionInfo {
            user_id: session.user_id,
            expires_at: session.expires_at,
            session_timeout_secs: session.session_timeout_secs,
            generation: 0,
            opened_at: None,
        };
        let transport = transport_for(&settings, &observer)?;
        let device_description = context
            .device
            .as_ref()
            .and_then(|device| device.description.clone());
        let client = BunqClient {
            transport,
            store,
            api_key,
            settings,
            device_description: std::sync::Mutex::new(device_description),
            observer,
            state: tokio::sync::Mutex::new(ClientState {
                context,
                registration: Some(Arc::new(registration)),
                reregistered_at: None,
            }),
            info: std::sync::Mutex::new(info),
            read_only: true,
        };
        client.learn_own_device().await;
        Ok(client)
    }

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

    /// Opens a new session now (for the daemon's renewal task) and returns its expiry.
    ///
    /// If this client opened a session less than [`RECENT_SESSION`] ago (a request renewed it
    /// just before), that session is kept and no call is made: session-server allows one call
    /// per 30 s, and waiting for the window would stall every other request meanwhile.
    pub async fn renew_session(&self) -> Result<DateTime<Utc>, BunqError> {
        let mut state = self.state.lock().await;
        let info = self.info();
        let recent = info
            .opened_at
            .is_some_and(|opened| opened.elapsed() < RECENT_SESSION);
        if recent && state.context.session.is_some() {
            return Ok(info.expires_at);
        }
        let session = self.replace_session_locked(&mut state).await?;
        Ok(session.expires_at)
    }

    /// Opens a new session only if the current one expires within `renew_before`; returns the
    /// (possibly new) expiry.
    pub async fn ensure_session(&self) -> Result<DateTime<Utc>, BunqError> {
        self.ticket().await?;
        Ok(self.session_expires_at())
    }

    /// Sends an authenticated, signed, verified request. `path` builds the concrete path from
    /// the user id. On a session rejection the session is replaced once and the request is
    /// sent once more.
    pub(crate) async fn call(
        &self,
        route: &Route,
        path: &(dyn Fn(UserId) -> String + Sync),
        body: Option<Body>,
        retry: RetryMode,
    ) -> Result<ApiResponse, BunqError> {
        let ticket = self.ticket().await?;
        let first = self
            .send_with(route, path(ticket.user_id), &body, &ticket, retry)
            .await;
        match first {
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
        }
    }

    /// [`BunqClient::call`] and parse the envelope.
    pub(crate) async fn call_envelope(
        &self,
        route: &Route,
        path: &(dyn Fn(UserId) -> String + Sync),
        body: Option<Body>,
        retry: RetryMode,
    ) -> Result<Envelope, BunqError> {
        self.call(route, path, body, retry).await?.envelope(route)
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

    /// The current session, renewed first if it expires within `renew_before`.
    async fn ticket(&self) -> Result<SessionTicket, BunqError> {
        let mut state = self.state.lock().await;
        // A read-only client uses its session to the end: it cannot renew it.
        let renew_before = if self.read_only {
            Duration::ZERO
        } else {
            self.settings.renew_before
        };
        let fresh = state
            .context
            .session
            .as_ref()
            .filter(|session| session.is_fresh((self.settings.clock)(), renew_before))
            .cloned();
        let session = match fresh {
            Some(session) => session,
            None => {
                tracing::info!("bunq session expires soon; renewing it");
                self.replace_session_locked(&mut state).await?
            }
        };
        self.ticket_for(&state, session)
    }

    fn ticket_for(
        &self,
        state: &ClientState,
        session: SessionContext,
    ) -> Result<SessionTicket, BunqError> {
        let registration = state.registration.clone().ok_or_else(|| {
            // Unreachable: a session is only handed out after a registration succeeded.
            BunqError::Context("a session without an installation".to_owned())
        })?;
        Ok(SessionTicket {
            token: session.token,
            user_id: session.user_id,
            generation: self.info().generation,
            registration,
        })
    }

    /// Replaces the session that was rejected under `seen_generation`, unless another task did
    /// that already.
    async fn replace_session(&self, seen_generation: u64) -> Result<SessionTicket, BunqError> {
        let mut state = self.state.lock().await;
        let session = match (
            &state.context.session,
            self.info().generation == seen_generation,
        ) {
            (Some(session), false) => session.clone(),
            _ => self.replace_session_locked(&mut state).await?,
        };
        self.ticket_for(&state, session)
    }

    /// Opens a new session with the current installation, or registers anew when bunq has
    /// forgotten it (see [`BunqClient`]).
    async fn replace_session_locked(
        &self,
        state: &mut ClientState,
    ) -> Result<SessionContext, BunqError> {
        if self.read_only {
            // Every path to session-server, device-server, installation and the state file
            // passes here.
            let expires_at = self.info().expires_at;
            return Err(BunqError::Context(format!(
                "the saved bunq session (valid until {}) is due for renewal, and a read-only \
                 client opens no new one",
                expires_at.format("%Y-%m-%d %H:%M:%S UTC")
            )));
        }
        let Some(registration) = state.registration.clone() else {
            // bunq rejected the installation earlier and no registration has succeeded since.
            return self.reregister_locked(state).await;
        };
        let opened = session::open_session(
            &self.transport,
            &registration.client_key,
            &registration.server_key,
            &registration.installation_token,
            &self.api_key,
            &self.settings.clock,
        )
        .await;
        let session = match opened {
            Ok(session) => session,
            Err(err) if err.is_installation_rejected() => {
                tracing::warn!(
                    file = %self.store.path().display(),
                    error = %err,
                    "bunq rejected the installation token; forgetting the saved installation"
                );
                self.forget_installation_locked(state)?;
                return self.reregister_locked(state).await;
            }
            Err(err) => return Err(err),
        };
        state.context.session = Some(session.clone());
        self.adopt_session(&session);
        self.observer.session_created(session.expires_at);
        // The session is usable even if saving fails; the next start then opens another one.
        if let Err(err) = self.store.save(&state.context) {
            tracing::error!(error = %err, "cannot save the new bunq session");
        }
        Ok(session)
    }

    /// Replaces the dead context, in memory and in the state file, with a new client key and
    /// nothing else, so no later call and no later start reuses it.
    ///
    /// The time of the last registration is kept: it bounds the next one, also for a restart.
    fn forget_installation_locked(&self, state: &mut ClientState) -> Result<(), BunqError> {
        state.registration = None;
        let registered_at = state.context.registered_at;
        state.context = fresh_context(&self.settings, &self.api_key)?;
        state.context.registered_at = registered_at;
        self.store.save(&state.context)
    }

    /// Registers anew (installation, device-server, session-server) from the forgotten context,
    /// unless this state directory installed less than [`REREGISTRATION_INTERVAL`] ago or this
    /// process tried to register less than that ago.
    async fn reregister_locked(
        &self,
        state: &mut ClientState,
    ) -> Result<SessionContext, BunqError> {
        let now = (self.settings.clock)();
        if state.context.installation.is_none()
            && let Some(deferred) = registration_deferral(state.context.registered_at, now)
        {
            return Err(deferred);
        }
        if let Some(at) = state.reregistered_at {
            let since = at.elapsed();
            if since < REREGISTRATION_INTERVAL {
                return Err(deferral_error(since));
            }
        }
        state.reregistered_at = Some(tokio::time::Instant::now());
        let registered = register(
            &self.transport,
            &self.store,
            &self.settings,
            &self.api_key,
            state.context.clone(),
        )
        .await;
        let registered = match registered {
            Ok(registered) => registered,
            Err(err) => {
                // register saved its progress after each step; the next attempt (or the next
                // start) resumes there instead of installing yet another key.
                if let Ok(Some(saved)) = self
                    .store
                    .load_matching(&self.settings.base_url, &self.api_key)
                {
                    state.context = saved;
                }
                return Err(err);
            }
        };
        let session = registered
            .context
            .session
            .clone()
            .ok_or_else(|| BunqError::Context("no session after registration".to_owned()))?;
        tracing::info!("registered anew with bunq after it rejected the installation");
        if let Some(description) = registered
            .context
            .device
            .as_ref()
            .and_then(|device| device.description.clone())
        {
            *self
                .device_description
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(description);
        }
        state.context = registered.context;
        state.registration = Some(Arc::new(Registration {
            client_key: registered.client_key,
            server_key: registered.server_key,
            installation_token: registered.installation_token,
        }));
        self.adopt_session(&session);
        Ok(session)
    }

    /// Publishes a new session to the synchronous getters and to tasks holding old tickets.
    fn adopt_session(&self, session: &SessionContext) {
        let mut info = self
            .info
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        info.user_id = session.user_id;
        info.expires_at = session.expires_at;
        info.session_timeout_secs = session.session_timeout_secs;
        info.generation += 1;
        info.opened_at = Some(tokio::time::Instant::now());
    }
}

/// What both constructors check and open first: a non-empty API key, the observer (a no-op
/// when none is set) and the state directory's context store.
fn open_parts(
    settings: &ClientSettings,
    api_key: &Secret,
    state_dir: &Path,
) -> Result<(Arc<dyn ApiObserver>, ContextStore), BunqError> {
    if api_key.is_empty() {
        return Err(BunqError::Context("the API key is empty".to_owned()));
    }
    let observer: Arc<dyn ApiObserver> = settings
        .observer
        .clone()
        .unwrap_or_else(|| Arc::new(NoopObserver));
    Ok((observer, ContextStore::open(state_dir)?))
}

/// The transport for a client: on the process's shared limiter when the settings give one
/// ([`ClientSettings::rate_limiter`]), else on a limiter of its own.
fn transport_for(
    settings: &ClientSettings,
    observer: &Arc<dyn ApiObserver>,
) -> Result<Transport, BunqError> {
    match &settings.rate_limiter {
        Some(limiter) => Transport::with_limiter(
            settings.base_url.clone(),
            &settings.transport,
            Some(observer.clone()),
            Arc::clone(limiter),
        ),
        None => Transport::new(
            settings.base_url.clone(),
            &settings.transport,
            Some(observer.clone()),
        ),
    }
}

/// Why a new installation must wait, when the last one (`registered_at`, from the context) was
/// made less than [`REREGISTRATION_INTERVAL`] before `now`; `None` when it may go ahead.
///
/// A `registered_at` more than an interval in the future was written under a wrong clock: it is
/// ignored rather than blocking registrations until that date.
fn registration_deferral(
    registered_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<BunqError> {
    let at = registered_at?;
    let interval = chrono::Duration::from_std(REREGISTRATION_INTERVAL).ok()?;
    if at > now + interval || at + interval <= now {
        return None;
    }
    let since = (now - at).to_std().unwrap_or(Duration::ZERO);
    Some(deferral_error(since))
}

/// [`BunqError::RegistrationDeferred`] for a registration `since` ago (zero when it lies ahead
/// by a clock step back).
fn deferral_error(since: Duration) -> BunqError {
    let remaining = REREGISTRATION_INTERVAL.saturating_sub(since);
    BunqError::RegistrationDeferred {
        since: Duration::from_secs(since.as_secs()),
        // Rounded up, so "allowed in 0s" never shows while it is not.
        retry_in: Duration::from_secs(
            remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0),
        ),
    }
}

/// The outcome of [`register`].
struct Registered {
    context: Context,
    client_key: PrivateKey,
    server_key: PublicKey,
    installation_token: Secret,
    opened_at: Option<tokio::time::Instant>,
}

/// A new context with a new client key, for a clean registration.
fn fresh_context(settings: &ClientSettings, api_key: &Secret) -> Result<Context, BunqError> {
    tracing::info!(base_url = %settings.base_url, "registering a new bunq installation");
    Context::new(&settings.base_url, api_key, &PrivateKey::generate()?)
}

/// Runs the registration steps `context` still lacks (installation, device, a fresh session),
/// saving after each one so that a crash resumes at the step it interrupted.
async fn register(
    transport: &Transport,
    store: &ContextStore,
    settings: &ClientSettings,
    api_key: &Secret,
    mut context: Context,
) -> Result<Registered, BunqError> {
    let client_key = context.client_key()?;
    let installation = match &context.installation {
        Some(installation) => installation.clone(),
        None => {
            // The backstop of every path to a new installation (see `BunqClient`).
            if let Some(deferred) = registration_deferral(context.registered_at, (settings.clock)())
            {
                return Err(deferred);
            }
            let installation = session::install(transport, &client_key).await?;
            context.installation = Some(installation.clone());
            context.device = None;
            context.session = None;
            // Dated only once bunq confirmed it: a failed installation call (bunq down at the
            // first start) must not hold the next attempt back for an hour.
            context.registered_at = Some((settings.clock)());
            store.save(&context)?;
            installation
        }
    };
    let server_key = PublicKey::from_pem(&installation.server_public_key)?;

    if context.device.is_none() {
        let device = session::register_device(
            transport,
            &client_key,
            &server_key,
            &installation.token,
            api_key,
            &settings.device_description,
            settings.permitted_ips.as_deref(),
        )
        .await?;
        tracing::info!(device_id = ?device.id, "registered the bunq device");
        context.device = Some(device);
        context.session = None;
        store.save(&context)?;
    }

    let fresh = context
        .session
        .as_ref()
        .is_some_and(|session| session.is_fresh((settings.clock)(), settings.renew_before));
    let mut opened_at = None;
    if !fresh {
        let session = session::open_session(
            transport,
            &client_key,
            &server_key,
            &installation.token,
            api_key,
            &settings.clock,
        )
        .await?;
        transport.observer().session_created(session.expires_at);
        opened_at = Some(tokio::time::Instant::now());
        context.session = Some(session);
        store.save(&context)?;
    }
    Ok(Registered {
        context,
        client_key,
        server_key,
        installation_token: installation.token,
        opened_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes_ago: i64) -> Option<DateTime<Utc>> {
        Some(now() - chrono::Duration::minutes(minutes_ago))
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-02T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn registration_within_the_interval_defers_the_next_one_for_the_rest_of_it() {
        match registration_deferral(at(10), now()) {
            Some(BunqError::RegistrationDeferred { since, retry_in }) => {
                assert_eq!(since, Duration::from_secs(600));
                assert_eq!(retry_in, Duration::from_secs(3000));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_registration_or_one_an_interval_ago_defers_nothing() {
        assert!(registration_deferral(None, now()).is_none());
        assert!(registration_deferral(at(60), now()).is_none());
        assert!(registration_deferral(at(61), now()).is_none());
    }

    #[test]
    fn registration_time_far_in_the_future_is_ignored_not_obeyed_until_then() {
        // Written under a clock that was a year ahead: it must not block for a year.
        assert!(registration_deferral(at(-365 * 24 * 60), now()).is_none());
        // A small step back of the clock still counts as "just registered".
        assert!(registration_deferral(at(-5), now()).is_some());
    }
}
