//! Who may call: tokens, request signatures, request-id uniqueness and the IP allowlist.
//!
//! * Token model: device-server and session-server take only an installation token; every
//!   `/user/...` and `/session` call only a live session token. Anything else is
//!   "Insufficient authentication." with the configured status.
//! * Signatures: verified over the raw body with the installation's client key whenever present
//!   (400 when wrong); required (466 when missing) on session-server and, in strict mode, on
//!   device-server.
//! * `X-Bunq-Client-Request-Id` may be used once per installation (400 on reuse), whether or not
//!   the first request succeeded.
//! * The caller IP must be ACTIVE on the session key's credential on every call, so deactivating
//!   your own IP locks you out on the next one.

use std::net::Ipv4Addr;

use super::state::World;
use super::wire::{ApiError, INSUFFICIENT_AUTHENTICATION, SIGNATURE_INVALID, SIGNATURE_REQUIRED};
use crate::bunq::model::CredentialId;

/// The parts of a request authentication looks at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Credentials<'a> {
    /// `X-Bunq-Client-Authentication`.
    pub(crate) token: Option<&'a str>,
    /// `X-Bunq-Client-Signature`.
    pub(crate) signature: Option<&'a str>,
    /// `X-Bunq-Client-Request-Id`.
    pub(crate) request_id: Option<&'a str>,
    /// The raw body the signature covers.
    pub(crate) body: &'a [u8],
}

/// The error for a token that is missing, unknown, expired or of the wrong kind.
pub(crate) fn insufficient_authentication(status: u16) -> ApiError {
    ApiError::new(status, INSUFFICIENT_AUTHENTICATION)
}

/// The installation whose token the request carries.
pub(crate) fn installation(
    world: &World,
    request: &Credentials<'_>,
    reject_status: u16,
) -> Result<u64, ApiError> {
    request
        .token
        .and_then(|token| world.installation_by_token(token))
        .ok_or_else(|| insufficient_authentication(reject_status))
}

/// The live session whose token the request carries, and the installation it was opened on.
pub(crate) fn session(
    world: &World,
    request: &Credentials<'_>,
    reject_status: u16,
) -> Result<(u64, u64), ApiError> {
    let now = world.clock.now();
    request
        .token
        .and_then(|token| world.live_session_by_token(token, now))
        .and_then(|id| {
            world
                .sessions
                .get(&id)
                .map(|session| (id, session.installation_id))
        })
        .ok_or_else(|| insufficient_authentication(reject_status))
}

/// Verifies the request signature with the installation's client key.
pub(crate) fn signature(
    world: &World,
    installation: u64,
    request: &Credentials<'_>,
    required: bool,
) -> Result<(), ApiError> {
    let Some(signature) = request.signature else {
        return if required {
            Err(ApiError::new(466, SIGNATURE_REQUIRED))
        } else {
            Ok(())
        };
    };
    let key = &world
        .installations
        .get(&installation)
        .ok_or_else(|| ApiError::new(500, "installation vanished"))?
        .client_key;
    key.verify(request.body, signature)
        .map_err(|_| ApiError::bad_request(SIGNATURE_INVALID))
}

/// Records the request id on the installation, refusing one seen before.
pub(crate) fn request_id(
    world: &mut World,
    installation: u64,
    request: &Credentials<'_>,
) -> Result<(), ApiError> {
    let Some(id) = request.request_id else {
        return Ok(());
    };
    let installation = world
        .installations
        .get_mut(&installation)
        .ok_or_else(|| ApiError::new(500, "installation vanished"))?;
    if installation.request_ids.insert(id.to_owned()) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "The X-Bunq-Client-Request-Id of this request was already used on this installation.",
        ))
    }
}

/// The caller IP must be ACTIVE (or an ACTIVE `*`) on the credential.
pub(crate) fn caller_ip(
    world: &World,
    credential: CredentialId,
    ip: Ipv4Addr,
) -> Result<(), ApiError> {
    match world.credentials.get(&credential) {
        Some(found) if found.permits(ip) => Ok(()),
        _ => Err(ApiError::credentials_incorrect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bunq::crypto::test_key as key;
    use crate::bunq::model::IpStatus;
    use crate::simulator::clock::Clock;

    fn request<'a>(signature: Option<&'a str>, request_id: Option<&'a str>) -> Credentials<'a> {
        Credentials {
            token: None,
            signature,
            request_id,
            body: b"{}",
        }
    }

    #[tokio::test]
    async fn signature_is_required_only_where_asked_and_checked_wherever_present() {
        let mut world = World::new(Clock::new(1.0), 60);
        let installation = world.create_installation(key().public_key());
        let missing = request(None, None);
        assert_eq!(
            signature(&world, installation, &missing, true)
                .unwrap_err()
                .status,
            466
        );
        assert!(signature(&world, installation, &missing, false).is_ok());
        let good = key().sign(b"{}");
        assert!(signature(&world, installation, &request(Some(&good), None), true).is_ok());
        let bad = key().sign(b"{ }");
        let err = signature(&world, installation, &request(Some(&bad), None), false).unwrap_err();
        assert_eq!(
            (err.status, err.description.as_str()),
            (400, SIGNATURE_INVALID)
        );
    }

    #[tokio::test]
    async fn request_id_is_single_use_per_installation() {
        let mut world = World::new(Clock::new(1.0), 60);
        let first = world.create_installation(key().public_key());
        let second = world.create_installation(key().public_key());
        let req = request(None, Some("abc"));
        assert!(request_id(&mut world, first, &req).is_ok());
        assert_eq!(request_id(&mut world, first, &req).unwrap_err().status, 400);
        assert!(request_id(&mut world, second, &req).is_ok());
    }

    #[tokio::test]
    async fn inactive_caller_ip_gets_the_credentials_error() {
        let mut world = World::new(Clock::new(1.0), 60);
        let cred = world.create_user_with_api_key("").credential_id;
        world
            .add_entry(cred, "10.0.0.1", IpStatus::Inactive)
            .unwrap();
        let err = caller_ip(&world, cred, Ipv4Addr::new(10, 0, 0, 1)).unwrap_err();
        assert_eq!(err, ApiError::credentials_incorrect());
    }
}
