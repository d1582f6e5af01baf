//! The registration endpoints: `POST /installation`, `POST /device-server` (which binds the key
//! to the caller's IP, as bunq does for a credential without ACTIVE entries) and
//! `POST /session-server`, plus `POST /sandbox-user-person`.

use std::net::Ipv4Addr;

use serde_json::{Map, Value, json};

use super::{Settings, json_object, required_str, token_object, user_object};
use crate::bunq::crypto::PublicKey;
use crate::bunq::model::{CredentialId, Envelope, IpStatus, PermittedDevice};
use crate::simulator::auth;
use crate::simulator::state::World;
use crate::simulator::wire::{self, ApiError};

pub(super) fn installation(
    world: &mut World,
    settings: &Settings,
    body: &[u8],
) -> Result<Envelope, ApiError> {
    let body = json_object(body)?;
    let pem = body
        .get("client_public_key")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("client_public_key is required."))?;
    let key = PublicKey::from_pem(pem)
        .map_err(|_| ApiError::bad_request("client_public_key is not a valid public key."))?;
    let id = world.create_installation(key);
    let token = world
        .installations
        .get(&id)
        .map(|found| found.token.expose().to_owned());
    let mut items = id_and_token(world, id, token, "installation")?;
    items.push((
        "ServerPublicKey",
        json!({ "server_public_key": settings.server_public_key_pem }),
    ));
    Ok(wire::items(items))
}

pub(super) fn device_server(
    world: &mut World,
    installation: u64,
    body: &Map<String, Value>,
    caller_ip: Ipv4Addr,
) -> Result<Envelope, ApiError> {
    let description = required_str(body, "description")?.to_owned();
    let secret = required_str(body, "secret")?;
    let permitted_ips = match body.get("permitted_ips") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(ips)) => ips
            .iter()
            .map(|ip| match ip.as_str() {
                Some(ip) if ip == "*" || ip.parse::<Ipv4Addr>().is_ok() => Ok(ip.to_owned()),
                _ => Err(ApiError::bad_request(
                    "permitted_ips must hold IPv4 addresses or \"*\".",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(ApiError::bad_request("permitted_ips must be a list.")),
    };
    let key_index = world
        .api_key_index(secret)
        .ok_or_else(ApiError::credentials_incorrect)?;
    let credential_id = world.api_keys[key_index].credential_id;
    let credential = world
        .credential_mut(credential_id)
        .map_err(|_| ApiError::credentials_incorrect())?;
    if credential.has_active_entries() {
        auth::caller_ip(world, credential_id, caller_ip)?;
    } else {
        let mut wanted = vec![caller_ip.to_string()];
        for ip in permitted_ips {
            if !wanted.contains(&ip) {
                wanted.push(ip);
            }
        }
        for ip in wanted {
            activate_or_add(world, credential_id, &ip)?;
        }
    }
    let now = world.clock.timestamp();
    let credential = world
        .credential_mut(credential_id)
        .map_err(|_| ApiError::credentials_incorrect())?;
    credential.permitted_device = Some(PermittedDevice {
        description: Some(description.clone()),
        ip: Some(caller_ip.to_string()),
    });
    credential.updated = now.clone();
    if let Some(found) = world.installations.get_mut(&installation) {
        found.registered_keys.insert(key_index);
    }
    let user_id = world.api_keys[key_index].user_id;
    let device_id = world.add_device(user_id, description, caller_ip);
    Ok(wire::id(device_id))
}

/// Makes `ip` ACTIVE on the credential: reactivates an existing entry for it, or adds one.
fn activate_or_add(world: &mut World, credential: CredentialId, ip: &str) -> Result<(), ApiError> {
    let existing = world
        .credentials
        .get(&credential)
        .and_then(|found| found.entries.values().find(|entry| entry.ip == ip))
        .map(|entry| entry.id);
    let result = match existing {
        Some(entry) => world.set_entry_status(credential, entry, IpStatus::Active),
        None => world
            .add_entry(credential, ip, IpStatus::Active)
            .map(|_| ()),
    };
    result.map_err(|_| ApiError::credentials_incorrect())
}

pub(super) fn session_server(
    world: &mut World,
    settings: &Settings,
    installation: u64,
    body: &Map<String, Value>,
    caller_ip: Ipv4Addr,
) -> Result<Envelope, ApiError> {
    let secret = required_str(body, "secret")?;
    let key_index = world
        .api_key_index(secret)
        .ok_or_else(ApiError::credentials_incorrect)?;
    let registered = world
        .installations
        .get(&installation)
        .is_some_and(|found| found.registered_keys.contains(&key_index));
    if !registered {
        // bunq needs device-server for this key on this installation first.
        return Err(ApiError::credentials_incorrect());
    }
    let (user_id, credential_id) = {
        let key = &world.api_keys[key_index];
        (key.user_id, key.credential_id)
    };
    auth::caller_ip(world, credential_id, caller_ip)?;
    let session = world
        .create_session(installation, key_index)
        .ok_or_else(ApiError::credentials_incorrect)?;
    let token = world
        .sessions
        .get(&session)
        .map(|found| found.token.expose().to_owned());
    let mut items = id_and_token(world, session, token, "session")?;
    items.push((settings.user_wrapper, user_object(world, user_id)?));
    Ok(wire::items(items))
}

/// The `Id` and `Token` items of a reply that hands out a new installation's or session's
/// `token` (`None`: the `what` just created is gone, a simulator bug).
fn id_and_token(
    world: &mut World,
    id: u64,
    token: Option<String>,
    what: &str,
) -> Result<Vec<(&'static str, Value)>, ApiError> {
    let token = token.ok_or_else(|| ApiError::new(500, format!("{what} vanished")))?;
    Ok(vec![
        ("Id", json!({ "id": id })),
        ("Token", token_object(world, &token)),
    ])
}

pub(super) fn sandbox_user_person(world: &mut World) -> Envelope {
    let seeded = world.create_user_with_api_key("sandbox_");
    let user = user_object(world, seeded.user_id).unwrap_or(Value::Null);
    wire::items(vec![(
        "ApiKey",
        json!({
            "api_key": seeded.api_key.expose(),
            "user": { "UserPerson": user },
            "login_code": "000000",
        }),
    )])
}
