//! Keeping a [`BunqClient`]'s session alive: renewal before expiry, one replacement however
//! many tasks meet a rejected session (single flight), and registering anew when bunq has
//! forgotten the installation, within the re-registration bound.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{BunqClient, ClientState, RECENT_SESSION, Registration, SessionTicket};
use crate::bunq::context::SessionContext;
use crate::bunq::error::BunqError;
use crate::bunq::registration::{
    REREGISTRATION_INTERVAL, deferral_error, fresh_context, register, registration_deferral,
};
use crate::bunq::session;

impl BunqClient {
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

    /// The current session, renewed first if it expires within `renew_before`.
    pub(super) async fn ticket(&self) -> Result<SessionTicket, BunqError> {
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
    pub(super) async fn replace_session(
        &self,
        seen_generation: u64,
    ) -> Result<SessionTicket, BunqError> {
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
        // The session is usable even if saving fails; the next start then opens another one.
        // Saved before it is announced, as at registration.
        if let Err(err) = self.store.save(&state.context) {
            tracing::error!(error = %err, "cannot save the new bunq session");
        }
        self.observer.session_created(session.expires_at);
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
