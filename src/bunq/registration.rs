//! Registering with bunq: installation → device-server → session-server, resumable after a
//! crash, and bounded to one new installation per [`REREGISTRATION_INTERVAL`] per state
//! directory.
//!
//! Each registration leaves a device entry in the user's bunq account, so a rejection that a new
//! installation cannot fix must not make one per retry; the time of the last installation is
//! saved in the context ([`Context::registered_at`]) so the bound holds across restarts too.
//! [`crate::bunq::BunqClient`] decides *when* to register; this module does the steps.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::bunq::client_settings::ClientSettings;
use crate::bunq::context::{Context, ContextStore};
use crate::bunq::crypto::{PrivateKey, PublicKey};
use crate::bunq::error::BunqError;
use crate::bunq::session;
use crate::bunq::transport::Transport;
use crate::secret::Secret;

/// The least time between two new installations from one state directory (for one API key and
/// base URL), whether the process that makes them keeps running or restarts. Bounds the
/// installation and device-server calls (and the device entries they leave at bunq) if bunq
/// keeps rejecting fresh installations for a reason re-registering cannot fix.
pub const REREGISTRATION_INTERVAL: Duration = Duration::from_secs(3600);

/// Why a new installation must wait, when the last one (`registered_at`, from the context) was
/// made less than [`REREGISTRATION_INTERVAL`] before `now`; `None` when it may go ahead.
///
/// A `registered_at` more than an interval in the future was written under a wrong clock: it is
/// ignored rather than blocking registrations until that date.
pub(crate) fn registration_deferral(
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
pub(crate) fn deferral_error(since: Duration) -> BunqError {
    let remaining = REREGISTRATION_INTERVAL.saturating_sub(since);
    BunqError::RegistrationDeferred {
        since: Duration::from_secs(since.as_secs()),
        interval: REREGISTRATION_INTERVAL,
        // Rounded up, so "allowed in 0s" never shows while it is not.
        retry_in: Duration::from_secs(
            remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0),
        ),
    }
}

/// The outcome of [`register`].
pub(crate) struct Registered {
    /// The context with every step done, as saved.
    pub(crate) context: Context,
    /// Signs every request of the installation.
    pub(crate) client_key: PrivateKey,
    /// Verifies every response.
    pub(crate) server_key: PublicKey,
    /// Opens sessions.
    pub(crate) installation_token: Secret,
    /// When a session was opened here (monotonic), `None` when the saved one was still fresh.
    pub(crate) opened_at: Option<tokio::time::Instant>,
}

/// A new context with a new client key, for a clean registration.
pub(crate) fn fresh_context(
    settings: &ClientSettings,
    api_key: &Secret,
) -> Result<Context, BunqError> {
    tracing::info!(base_url = %settings.base_url, "registering a new bunq installation");
    Context::new(&settings.base_url, api_key, &PrivateKey::generate()?)
}

/// Runs the registration steps `context` still lacks (installation, device, a fresh session),
/// saving after each one so that a crash resumes at the step it interrupted.
pub(crate) async fn register(
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
        tracing::info!(device_id = device.id, "registered the bunq device");
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
        let expires_at = session.expires_at;
        opened_at = Some(tokio::time::Instant::now());
        context.session = Some(session);
        // Saved before it is announced: whoever learns of the session (health, metrics, a test
        // reading the state file once `/readyz` is 200) finds it on disk already.
        store.save(&context)?;
        transport.observer().session_created(expires_at);
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
            Some(BunqError::RegistrationDeferred {
                since, retry_in, ..
            }) => {
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
