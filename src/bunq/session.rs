//! The three calls that build an API context: `POST /installation`, `POST /device-server` and
//! `POST /session-server`, and the parsing of their responses.
//!
//! Responses are read by type key (`Token`, `ServerPublicKey`, `Id`, `UserPerson`, ...), never by
//! position. The session expiry is computed locally as "now + the user's `session_timeout`"; the
//! client renews before it (see [`crate::bunq::client`]).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::bunq::context::{DeviceContext, InstallationContext, SessionContext};
use crate::bunq::crypto::{PrivateKey, PublicKey};
use crate::bunq::error::BunqError;
use crate::bunq::model::{BunqId, Envelope, UserId};
use crate::bunq::ratelimit::SESSION_SERVER_PATTERN;
use crate::bunq::transport::{Call, RetryMode, Route, Transport, to_body};
use crate::secret::Secret;

/// The wall clock used for session expiry (defined once, in [`crate::clock`]).
pub use crate::clock::{WallClock, system_clock};

/// `POST /installation`.
pub const INSTALLATION: Route = Route::post("/installation");
/// `POST /device-server`.
pub const DEVICE_SERVER: Route = Route::post("/device-server");
/// `POST /session-server`.
pub const SESSION_SERVER: Route = Route::post(SESSION_SERVER_PATTERN);

/// The user types session-server may return, each holding `id` and `session_timeout`.
const PLAIN_USER_TYPES: [&str; 3] = ["UserPerson", "UserCompany", "UserPaymentServiceProvider"];
/// The OAuth user type; its timeout lives in `requested_by_user`.
const API_KEY_USER_TYPE: &str = "UserApiKey";
/// bunq's documented default auto-logout (one week), used only if a user object lacks
/// `session_timeout`.
const DEFAULT_SESSION_TIMEOUT_SECS: u64 = 604_800;

#[derive(Serialize)]
struct InstallationBody<'a> {
    client_public_key: &'a str,
}

#[derive(Serialize)]
struct DeviceServerBody<'a> {
    description: &'a str,
    secret: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    permitted_ips: Option<&'a [String]>,
}

#[derive(Serialize)]
struct SessionServerBody<'a> {
    secret: &'a str,
}

/// What the calls made after installation and before a session (device and session
/// registration) are sent with: the installation token as auth, the client key to sign, the
/// server key to verify the response.
struct Installed<'a> {
    token: &'a Secret,
    client_key: &'a PrivateKey,
    server_key: &'a PublicKey,
}

impl<'a> Installed<'a> {
    fn new(token: &'a Secret, client_key: &'a PrivateKey, server_key: &'a PublicKey) -> Self {
        Installed {
            token,
            client_key,
            server_key,
        }
    }

    /// Posts `body` to `route` (retried on transient failures) and reads the reply's envelope.
    async fn post(
        &self,
        transport: &Transport,
        route: &Route,
        body: &impl Serialize,
    ) -> Result<Envelope, BunqError> {
        let body = to_body(route, body)?;
        transport
            .send(&Call {
                route: route.clone(),
                path: route.pattern.to_owned(),
                body: Some(body),
                auth: Some(self.token),
                signer: Some(self.client_key),
                verifier: Some(self.server_key),
                retry: RetryMode::Transient,
            })
            .await?
            .envelope(route)
    }
}

/// Registers the client's public key. No token, no signature, no response verification (the
/// server key arrives in this very response).
pub async fn install(
    transport: &Transport,
    client_key: &PrivateKey,
) -> Result<InstallationContext, BunqError> {
    let pem = client_key.public_key().to_pem();
    let body = to_body(
        &INSTALLATION,
        &InstallationBody {
            client_public_key: &pem,
        },
    )?;
    let response = transport
        .send(&Call {
            route: INSTALLATION,
            path: INSTALLATION.pattern.to_owned(),
            body: Some(body),
            auth: None,
            signer: None,
            verifier: None,
            retry: RetryMode::Transient,
        })
        .await?;
    parse_installation(&response.envelope(&INSTALLATION)?)
}

/// Reads `Token.token` and `ServerPublicKey.server_public_key` from an installation response.
pub fn parse_installation(envelope: &Envelope) -> Result<InstallationContext, BunqError> {
    let token = string_field(envelope, &INSTALLATION, "Token", "token")?;
    let server_public_key = string_field(
        envelope,
        &INSTALLATION,
        "ServerPublicKey",
        "server_public_key",
    )?;
    PublicKey::from_pem(&server_public_key)
        .map_err(|err| protocol(&INSTALLATION, format!("ServerPublicKey: {err}")))?;
    Ok(InstallationContext {
        token: Secret::new(token),
        server_public_key,
    })
}

/// Registers this client as a device of the API key, with the installation token.
/// `permitted_ips` is omitted from the body when `None` (bunq then binds the calling IP).
pub async fn register_device(
    transport: &Transport,
    client_key: &PrivateKey,
    server_key: &PublicKey,
    installation_token: &Secret,
    api_key: &Secret,
    description: &str,
    permitted_ips: Option<&[String]>,
) -> Result<DeviceContext, BunqError> {
    let body = DeviceServerBody {
        description,
        secret: api_key.expose(),
        permitted_ips,
    };
    let envelope = Installed::new(installation_token, client_key, server_key)
        .post(transport, &DEVICE_SERVER, &body)
        .await?;
    let id = parse_id(&envelope, &DEVICE_SERVER)?;
    Ok(DeviceContext {
        id: Some(id),
        description: Some(description.to_owned()),
    })
}

/// Opens a new session with the installation token. The rate limiter admits this at most once
/// per 30 s (bunq's limit; hammering it after auth errors can get the IP blocked).
pub async fn open_session(
    transport: &Transport,
    client_key: &PrivateKey,
    server_key: &PublicKey,
    installation_token: &Secret,
    api_key: &Secret,
    clock: &WallClock,
) -> Result<SessionContext, BunqError> {
    let body = SessionServerBody {
        secret: api_key.expose(),
    };
    let envelope = Installed::new(installation_token, client_key, server_key)
        .post(transport, &SESSION_SERVER, &body)
        .await?;
    let session = parse_session(&envelope, clock())?;
    tracing::info!(
        user_id = session.user_id,
        expires_at = %session.expires_at,
        "opened a bunq session"
    );
    Ok(session)
}

/// Reads a session-server response received at `now`: `Id.id`, `Token.token`, and the user
/// object (one of `UserPerson`, `UserCompany`, `UserPaymentServiceProvider`, `UserApiKey`).
pub fn parse_session(envelope: &Envelope, now: DateTime<Utc>) -> Result<SessionContext, BunqError> {
    let route = &SESSION_SERVER;
    let id = parse_id(envelope, route)?;
    let token = string_field(envelope, route, "Token", "token")?;
    let (user_id, timeout) = parse_user(envelope)?;
    let timeout_secs = match timeout {
        Some(secs) => secs,
        None => {
            tracing::warn!(
                default = DEFAULT_SESSION_TIMEOUT_SECS,
                "session-server user has no session_timeout; assuming bunq's default"
            );
            DEFAULT_SESSION_TIMEOUT_SECS
        }
    };
    let lifetime = i64::try_from(timeout_secs)
        .ok()
        .and_then(chrono::Duration::try_seconds)
        .ok_or_else(|| {
            protocol(
                route,
                format!("session_timeout {timeout_secs} is out of range"),
            )
        })?;
    let expires_at = now
        .checked_add_signed(lifetime)
        .ok_or_else(|| protocol(route, "session expiry is out of range".to_owned()))?;
    Ok(SessionContext {
        token: Secret::new(token),
        id: Some(id),
        user_id,
        expires_at,
        session_timeout_secs: timeout,
    })
}

/// The user id and the session timeout (seconds) of a session-server response.
fn parse_user(envelope: &Envelope) -> Result<(UserId, Option<u64>), BunqError> {
    let route = &SESSION_SERVER;
    for user_type in PLAIN_USER_TYPES {
        if let Some(user) = envelope.find(user_type) {
            let id = user
                .get("id")
                .and_then(Value::as_u64)
                .ok_or_else(|| protocol(route, format!("{user_type} has no numeric id")))?;
            return Ok((id, user.get("session_timeout").and_then(Value::as_u64)));
        }
    }
    if let Some(api_key_user) = envelope.find(API_KEY_USER_TYPE) {
        // OAuth: the path id is the UserApiKey's own id; the timeout is that of the user who
        // requested the key.
        let id = api_key_user
            .get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| protocol(route, "UserApiKey has no numeric id".to_owned()))?;
        let timeout = api_key_user.get("requested_by_user").and_then(|anchor| {
            PLAIN_USER_TYPES
                .iter()
                .find_map(|user_type| anchor.get(*user_type))
                .and_then(|user| user.get("session_timeout"))
                .and_then(Value::as_u64)
        });
        return Ok((id, timeout));
    }
    Err(protocol(
        route,
        "no UserPerson, UserCompany, UserApiKey or UserPaymentServiceProvider in the response"
            .to_owned(),
    ))
}

/// `Id.id` of a create-style response.
pub fn parse_id(envelope: &Envelope, route: &Route) -> Result<u64, BunqError> {
    let value = envelope
        .find("Id")
        .ok_or_else(|| protocol(route, "no Id in the response".to_owned()))?;
    serde_json::from_value::<BunqId>(value.clone())
        .map(|id| id.id)
        .map_err(|err| protocol(route, format!("malformed Id ({err})")))
}

fn string_field(
    envelope: &Envelope,
    route: &Route,
    type_name: &str,
    field: &str,
) -> Result<String, BunqError> {
    envelope
        .find(type_name)
        .and_then(|object| object.get(field))
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| protocol(route, format!("no {type_name}.{field} in the response")))
}

fn protocol(route: &Route, message: String) -> BunqError {
    BunqError::Protocol {
        endpoint: route.endpoint(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn envelope(json: &str) -> Envelope {
        serde_json::from_str(json).unwrap()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn session_with_user_person_reads_id_token_and_timeout_by_type_key() {
        // Deliberately out of bunq's usual order: parsing is by key, not position.
        let body = r#"{"Response":[{"UserPerson":{"id":42,"session_timeout":3600,"extra":1}},
            {"Token":{"id":9,"token":"tok","created":"x"}},{"Id":{"id":77}}]}"#;
        let session = parse_session(&envelope(body), now()).unwrap();
        assert_eq!(session.id, Some(77));
        assert_eq!(session.user_id, 42);
        assert_eq!(session.token.expose(), "tok");
        assert_eq!(session.session_timeout_secs, Some(3600));
        assert_eq!(session.expires_at, now() + chrono::Duration::seconds(3600));
    }

    #[test]
    fn session_with_user_company_is_understood() {
        let body = r#"{"Response":[{"Id":{"id":1}},{"Token":{"token":"t"}},{"UserCompany":{"id":5,"session_timeout":60}}]}"#;
        let session = parse_session(&envelope(body), now()).unwrap();
        assert_eq!(session.user_id, 5);
        assert_eq!(session.session_timeout_secs, Some(60));
    }

    #[test]
    fn oauth_session_uses_the_api_key_user_id_and_requested_by_user_timeout() {
        let body = r#"{"Response":[{"Id":{"id":1}},{"Token":{"token":"t"}},{"UserApiKey":{"id":300,
            "requested_by_user":{"UserPerson":{"id":12,"session_timeout":900}},
            "granted_by_user":{"UserCompany":{"id":13,"session_timeout":5}}}}]}"#;
        let session = parse_session(&envelope(body), now()).unwrap();
        assert_eq!(session.user_id, 300);
        assert_eq!(session.session_timeout_secs, Some(900));
    }

    #[test]
    fn session_without_a_user_object_is_a_protocol_error() {
        let body =
            r#"{"Response":[{"Id":{"id":1}},{"Token":{"token":"t"}},{"UserAlien":{"id":5}}]}"#;
        let err = parse_session(&envelope(body), now()).unwrap_err();
        assert!(matches!(err, BunqError::Protocol { .. }), "{err}");
    }

    #[test]
    fn session_without_token_is_a_protocol_error() {
        let body = r#"{"Response":[{"Id":{"id":1}},{"UserPerson":{"id":5,"session_timeout":60}}]}"#;
        assert!(parse_session(&envelope(body), now()).is_err());
    }

    #[test]
    fn installation_reads_token_and_server_key_by_type_key() {
        let key = PrivateKey::generate().unwrap().public_key().to_pem();
        let body = serde_json::json!({"Response": [
            {"ServerPublicKey": {"server_public_key": key}},
            {"Id": {"id": 1}},
            {"Token": {"id": 2, "token": "install-token"}}
        ]})
        .to_string();
        let installation = parse_installation(&envelope(&body)).unwrap();
        assert_eq!(installation.token.expose(), "install-token");
        assert_eq!(installation.server_public_key, key);
    }

    #[test]
    fn installation_with_a_broken_server_key_is_refused() {
        let body = r#"{"Response":[{"Token":{"token":"t"}},{"ServerPublicKey":{"server_public_key":"nope"}}]}"#;
        assert!(parse_installation(&envelope(body)).is_err());
    }

    #[test]
    fn device_server_body_omits_permitted_ips_when_not_configured() {
        let body = DeviceServerBody {
            description: "d",
            secret: "s",
            permitted_ips: None,
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"description":"d","secret":"s"}"#
        );
    }
}
