//! The request handling of the simulated bunq: route, rate limit, authenticate, then run the
//! endpoint against the [`World`].
//!
//! Checks run in this order, each answering with bunq's error as soon as it fails: unknown route
//! (404) or method (405, e.g. DELETE on an IP entry), rate limit (429), token, signature, request
//! id, caller IP, path user, then the endpoint's own validation. Everything here is synchronous
//! and runs under the simulator's one lock; the server adds headers and signatures.

use std::net::{Ipv4Addr, Ipv6Addr};

use hyper::Method;
use serde_json::{Map, Value, json};

mod registration;

use registration::{device_server, installation, sandbox_user_person, session_server};

use super::auth::{self, Credentials};
use super::pagination::PageRequest;
use super::rate_limit::RateLimiter;
use super::routes::{Route, TokenKind};
use super::state::World;
use super::wire::{self, ApiError, Reply};
use crate::bunq::model::{CredentialId, EntryId, Envelope, IpStatus, UserId};

/// The settings request handling needs, fixed at simulator start.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Count rate limits.
    pub(crate) rate_limits: bool,
    /// Status of "Insufficient authentication.".
    pub(crate) reject_status: u16,
    /// Require a signature on device-server.
    pub(crate) strict_device_signature: bool,
    /// Write `\/` in bodies.
    pub(crate) escape_slashes: bool,
    /// The server public key PEM returned by installation.
    pub(crate) server_public_key_pem: String,
    /// Wrapper of the user object (`UserPerson`, `UserCompany`).
    pub(crate) user_wrapper: &'static str,
}

/// One request as the API logic sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ApiRequest<'a> {
    /// HTTP method.
    pub(crate) method: &'a Method,
    /// Path without query, e.g. `/v1/user/1/credential-password-ip`.
    pub(crate) path: &'a str,
    /// Query string without `?` (may be empty).
    pub(crate) query: &'a str,
    /// Token, signature, request id and body.
    pub(crate) credentials: Credentials<'a>,
    /// The IP the simulated bunq sees.
    pub(crate) caller_ip: Ipv4Addr,
}

/// Answers one request.
pub(crate) fn handle(
    world: &mut World,
    limiter: &mut RateLimiter,
    settings: &Settings,
    request: &ApiRequest<'_>,
) -> Reply {
    match dispatch(world, limiter, settings, request) {
        Ok(envelope) => Reply {
            status: 200,
            body: wire::encode(&envelope, settings.escape_slashes),
        },
        Err(error) => error.into_reply(settings.escape_slashes),
    }
}

fn dispatch(
    world: &mut World,
    limiter: &mut RateLimiter,
    settings: &Settings,
    request: &ApiRequest<'_>,
) -> Result<Envelope, ApiError> {
    let route = Route::parse(request.path).ok_or_else(|| ApiError::not_found("Route"))?;
    if !route.allows(request.method) {
        return Err(ApiError::new(405, "Method not allowed for this endpoint."));
    }
    if settings.rate_limits {
        let now = world.clock.now();
        limiter.admit(request.caller_ip, route.pattern(), request.method, now)?;
    }
    let credentials = &request.credentials;
    match route.token_kind(request.method) {
        TokenKind::None => match route {
            Route::Installation => installation(world, settings, credentials.body),
            _ => Ok(sandbox_user_person(world)),
        },
        TokenKind::Installation => {
            let installation = auth::installation(world, credentials, settings.reject_status)?;
            let signature_required =
                route == Route::SessionServer || settings.strict_device_signature;
            auth::signature(world, installation, credentials, signature_required)?;
            auth::request_id(world, installation, credentials)?;
            let body = json_object(credentials.body)?;
            if route == Route::SessionServer {
                session_server(world, settings, installation, &body, request.caller_ip)
            } else {
                device_server(world, installation, &body, request.caller_ip)
            }
        }
        TokenKind::Session => {
            let (session, installation) =
                auth::session(world, credentials, settings.reject_status)?;
            auth::signature(world, installation, credentials, false)?;
            auth::request_id(world, installation, credentials)?;
            let (user_id, credential_id) = world
                .sessions
                .get(&session)
                .map(|found| (found.user_id, found.credential_id))
                .ok_or_else(|| auth::insufficient_authentication(settings.reject_status))?;
            auth::caller_ip(world, credential_id, request.caller_ip)?;
            if route.user().is_some_and(|user| user != user_id) {
                return Err(ApiError::new(
                    403,
                    "You are not allowed to access this user.",
                ));
            }
            session_call(world, settings, route, session, request)
        }
    }
}

fn session_call(
    world: &mut World,
    settings: &Settings,
    route: Route,
    session: u64,
    request: &ApiRequest<'_>,
) -> Result<Envelope, ApiError> {
    let write = request.method == Method::POST || request.method == Method::PUT;
    match route {
        Route::Session => {
            if let Some(found) = world.sessions.get_mut(&session) {
                found.ended = true;
            }
            Ok(wire::items(vec![]))
        }
        Route::User(user) => Ok(wire::items(vec![(
            settings.user_wrapper,
            user_object(world, user)?,
        )])),
        Route::DeviceServer => list_devices(world, session, request),
        Route::Device(device) => get_device(world, session, device),
        Route::Credentials(user) => list_credentials(world, user, request),
        Route::Credential(user, credential) => {
            let found = user_credential(world, user, credential)?;
            Ok(wire::items(vec![(
                "CredentialPasswordIp",
                to_value(&found.to_wire()),
            )]))
        }
        Route::Entries(user, credential) if write => {
            user_credential(world, user, credential)?;
            let body = json_object(request.credentials.body)?;
            create_entry(world, credential, &body)
        }
        Route::Entries(user, credential) => {
            let page = PageRequest::parse(request.query)?;
            let all = user_credential(world, user, credential)?.entries_newest_first();
            let (items, links) = page.apply(&all, |entry| entry.id, request.path);
            Ok(wire::list(
                "PermittedIp",
                items.iter().map(to_value).collect(),
                links,
            ))
        }
        Route::Entry(user, credential, entry) if write => {
            update_entry(world, user, credential, entry, request)
        }
        Route::Entry(user, credential, entry) => {
            let found = user_credential(world, user, credential)?
                .entries
                .get(&entry)
                .ok_or_else(|| ApiError::not_found("PermittedIp"))?;
            Ok(wire::items(vec![("PermittedIp", to_value(found))]))
        }
        // Routes of other token kinds never reach here.
        _ => Err(ApiError::not_found("Route")),
    }
}

/// `GET /user/{user}/credential-password-ip`: the user's credentials, newest first.
fn list_credentials(
    world: &World,
    user: UserId,
    request: &ApiRequest<'_>,
) -> Result<Envelope, ApiError> {
    let page = PageRequest::parse(request.query)?;
    let mut all: Vec<_> = world
        .credentials
        .values()
        .filter(|credential| credential.user_id == user)
        .map(|credential| credential.to_wire())
        .collect();
    all.reverse();
    let (items, links) = page.apply(&all, |credential| credential.id, request.path);
    Ok(wire::list(
        "CredentialPasswordIp",
        items.iter().map(to_value).collect(),
        links,
    ))
}

/// `PUT .../ip/{entry}`: changes the status; the IP of an entry never changes.
fn update_entry(
    world: &mut World,
    user: UserId,
    credential: CredentialId,
    entry: EntryId,
    request: &ApiRequest<'_>,
) -> Result<Envelope, ApiError> {
    let body = json_object(request.credentials.body)?;
    let current_ip = user_credential(world, user, credential)?
        .entries
        .get(&entry)
        .map(|found| found.ip.clone())
        .ok_or_else(|| ApiError::not_found("PermittedIp"))?;
    if let Some(ip) = body.get("ip")
        && ip.as_str() != Some(current_ip.as_str())
    {
        return Err(ApiError::bad_request(
            "The IP address of an existing entry cannot be changed; \
             deactivate it and create a new one.",
        ));
    }
    let status = parse_status(body.get("status"))?
        .ok_or_else(|| ApiError::bad_request("status is required."))?;
    world
        .set_entry_status(credential, entry, status)
        .map_err(|_| ApiError::not_found("PermittedIp"))?;
    Ok(wire::id(entry))
}

/// The user of the session's API key: devices are the user's, not a credential's.
fn session_user(world: &World, session: u64) -> Result<UserId, ApiError> {
    world
        .sessions
        .get(&session)
        .map(|found| found.user_id)
        .ok_or_else(|| ApiError::not_found("Session"))
}

/// `GET /device-server`: the session user's devices, newest first.
fn list_devices(
    world: &World,
    session: u64,
    request: &ApiRequest<'_>,
) -> Result<Envelope, ApiError> {
    let user = session_user(world, session)?;
    let page = PageRequest::parse(request.query)?;
    let all: Vec<_> = world
        .devices
        .values()
        .rev()
        .filter(|device| device.user_id == user)
        .map(|device| device.wire.clone())
        .collect();
    let (items, links) = page.apply(&all, |device| device.id, request.path);
    Ok(wire::list(
        "DeviceServer",
        items.iter().map(to_value).collect(),
        links,
    ))
}

/// `GET /device-server/{id}`: one of the session user's devices.
fn get_device(world: &World, session: u64, device: u64) -> Result<Envelope, ApiError> {
    let user = session_user(world, session)?;
    let found = world
        .devices
        .get(&device)
        .filter(|found| found.user_id == user)
        .ok_or_else(|| ApiError::not_found("DeviceServer"))?;
    Ok(wire::items(vec![("DeviceServer", to_value(&found.wire))]))
}

fn create_entry(
    world: &mut World,
    credential: CredentialId,
    body: &Map<String, Value>,
) -> Result<Envelope, ApiError> {
    let ip = match body.get("ip") {
        None | Some(Value::Null) => return Err(ApiError::bad_request("ip is required.")),
        Some(ip) => ip
            .as_str()
            .ok_or_else(|| ApiError::bad_request("ip must be a string."))?,
    };
    if ip == "*" {
        return Err(ApiError::bad_request(
            "The wildcard IP can only be allowed in the bunq app.",
        ));
    }
    if ip.parse::<Ipv6Addr>().is_ok() {
        return Err(ApiError::bad_request("Only IPv4 addresses are supported."));
    }
    if ip.parse::<Ipv4Addr>().is_err() {
        return Err(ApiError::bad_request(format!(
            "\"{ip}\" is not a valid IPv4 address."
        )));
    }
    let status = parse_status(body.get("status"))?.unwrap_or(IpStatus::Active);
    // bunq's behaviour for a second entry with the same IP is undocumented; the simulator allows
    // it so that tests can observe a client creating duplicates.
    let id = world
        .add_entry(credential, ip, status)
        .map_err(|_| ApiError::not_found("CredentialPasswordIp"))?;
    Ok(wire::id(id))
}

fn user_credential(
    world: &World,
    user: UserId,
    credential: CredentialId,
) -> Result<&super::state::Credential, ApiError> {
    world
        .credentials
        .get(&credential)
        .filter(|found| found.user_id == user)
        .ok_or_else(|| ApiError::not_found("CredentialPasswordIp"))
}

fn user_object(world: &World, user: UserId) -> Result<Value, ApiError> {
    let found = world
        .users
        .get(&user)
        .ok_or_else(|| ApiError::not_found("User"))?;
    Ok(json!({
        "id": found.id,
        "created": found.created,
        "updated": found.updated,
        "display_name": found.display_name,
        "public_nick_name": found.display_name,
        "legal_name": found.display_name,
        "status": "ACTIVE",
        "sub_status": "NONE",
        "session_timeout": world.session_timeout_secs(),
        "language": "en_US",
        "region": "nl_NL",
    }))
}

fn token_object(world: &mut World, token: &str) -> Value {
    let id = world.next_id();
    let now = world.clock.timestamp();
    json!({ "id": id, "created": now, "updated": now, "token": token })
}

fn parse_status(value: Option<&Value>) -> Result<Option<IpStatus>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text == "ACTIVE" => Ok(Some(IpStatus::Active)),
        Some(Value::String(text)) if text == "INACTIVE" => Ok(Some(IpStatus::Inactive)),
        Some(_) => Err(ApiError::bad_request("status must be ACTIVE or INACTIVE.")),
    }
}

fn required_str<'a>(body: &'a Map<String, Value>, field: &str) -> Result<&'a str, ApiError> {
    body.get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request(format!("{field} is required.")))
}

/// The body as a JSON object; an empty body counts as `{}`. No `Content-Type` is needed.
fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ApiError::bad_request(
            "The request body is not a JSON object.",
        )),
    }
}

fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}
