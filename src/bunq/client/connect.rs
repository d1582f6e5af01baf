//! Opening a [`BunqClient`]: as the state directory's writer ([`BunqClient::connect`]: reuse
//! the saved context or register, then make sure a session is open) or beside the writer
//! ([`BunqClient::connect_read_only`]: the saved session as is, nothing sent or saved).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{BunqClient, ClientState, Registration, SessionInfo};
use crate::bunq::client_settings::ClientSettings;
use crate::bunq::context::{ContextStore, api_key_fingerprint};
use crate::bunq::crypto::PublicKey;
use crate::bunq::error::BunqError;
use crate::bunq::observer::{ApiObserver, NoopObserver};
use crate::bunq::registration::{Registered, fresh_context, register, registration_deferral};
use crate::bunq::transport::Transport;
use crate::secret::Secret;

/// What a client talks and saves through, before its session state is known.
type ClientParts = (
    Transport,
    ContextStore,
    Secret,
    ClientSettings,
    Arc<dyn ApiObserver>,
);

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
        let (registered, reregistered_at) =
            register_from_saved(&transport, &store, &settings, &api_key).await?;
        let Registered {
            context,
            client_key,
            server_key,
            installation_token,
            opened_at,
        } = registered;
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
        let registration = Registration {
            client_key,
            server_key,
            installation_token,
        };
        let state = ClientState {
            context,
            registration: Some(Arc::new(registration)),
            reregistered_at,
        };
        let parts = (transport, store, api_key, settings, observer);
        Ok(BunqClient::assemble(parts, state, info, false).await)
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
        let state = ClientState {
            context,
            registration: Some(Arc::new(registration)),
            reregistered_at: None,
        };
        let parts = (transport, store, api_key, settings, observer);
        Ok(BunqClient::assemble(parts, state, info, true).await)
    }

    /// Moves a client registered in a staging directory (a key rotation registers the new
    /// key beside the running context, see [`crate::daemon`]) to `state_dir`: its context
    /// replaces the one saved there in one atomic write, the staged file is removed, and every
    /// later save (session renewals) goes to `state_dir`. The caller must have stopped every
    /// other writer of `state_dir`'s context first.
    pub fn into_state_dir(mut self, state_dir: &Path) -> Result<BunqClient, BunqError> {
        let store = ContextStore::open(state_dir)?;
        store.save(&self.state.get_mut().context)?;
        let staged = std::mem::replace(&mut self.store, store);
        if let Err(err) = staged.remove() {
            tracing::warn!(error = %err, "cannot remove the staged bunq context");
        }
        Ok(self)
    }

    /// True when this client was opened with `api_key` (compared by fingerprint, as the saved
    /// context is).
    pub fn uses_api_key(&self, api_key: &Secret) -> bool {
        api_key_fingerprint(&self.api_key) == api_key_fingerprint(api_key)
    }

    /// The client both constructors end with; it reads the own device back from bunq when the
    /// saved one lacks its description (see [`crate::bunq::device`]).
    async fn assemble(
        (transport, store, api_key, settings, observer): ClientParts,
        state: ClientState,
        info: SessionInfo,
        read_only: bool,
    ) -> BunqClient {
        let device_description = state
            .context
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
            state: tokio::sync::Mutex::new(state),
            info: std::sync::Mutex::new(info),
            read_only,
        };
        client.learn_own_device().await;
        client
    }
}

/// The registration [`BunqClient::connect`] starts from: the saved context with its missing
/// steps done, or, when bunq rejects the saved installation, one registration from scratch
/// (unless this state directory registered within the interval). Also returns when this process
/// registered anew, for the in-process bound.
async fn register_from_saved(
    transport: &Transport,
    store: &ContextStore,
    settings: &ClientSettings,
    api_key: &Secret,
) -> Result<(Registered, Option<tokio::time::Instant>), BunqError> {
    let saved = store.load_matching(&settings.base_url, api_key)?;
    let reused_installation = saved
        .as_ref()
        .is_some_and(|context| context.installation.is_some());
    let registered_at = saved.as_ref().and_then(|context| context.registered_at);
    let context = match saved {
        Some(context) => context,
        None => fresh_context(settings, api_key)?,
    };
    let registered = register(transport, store, settings, api_key, context).await;
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
            let mut context = fresh_context(settings, api_key)?;
            context.registered_at = registered_at;
            reregistered_at = Some(tokio::time::Instant::now());
            register(transport, store, settings, api_key, context).await?
        }
        other => other?,
    };
    Ok((registered, reregistered_at))
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
