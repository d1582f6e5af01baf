//! Creating a throw-away sandbox user with an API key (`POST /sandbox-user-person`), for demos
//! and manual tests against bunq's public sandbox. No token, no signature: there is no
//! installation yet, so the response cannot be verified either.

use serde_json::Value;

use crate::bunq::endpoint::BaseUrl;
use crate::bunq::error::BunqError;
use crate::bunq::model::UserId;
use crate::bunq::transport::{Call, RetryMode, Route, Transport, TransportSettings};
use crate::secret::Secret;

/// `POST /sandbox-user-person`.
pub const SANDBOX_USER_PERSON: Route = Route::post("/sandbox-user-person");

/// A new sandbox user.
#[derive(Debug)]
pub struct SandboxUser {
    /// The user's API key (starts with `sandbox_` at bunq).
    pub api_key: Secret,
    /// The user id, when bunq includes the user object.
    pub user_id: Option<UserId>,
}

/// Creates a sandbox user at `base_url` and returns its API key. Not retried: each call creates
/// a user. Only meaningful against the sandbox (or a simulator).
pub async fn create_sandbox_user(
    base_url: &BaseUrl,
    settings: &TransportSettings,
) -> Result<SandboxUser, BunqError> {
    let transport = Transport::new(base_url.clone(), settings, None)?;
    let route = SANDBOX_USER_PERSON;
    let response = transport
        .send(&Call {
            route: route.clone(),
            path: route.pattern.to_owned(),
            body: None,
            auth: None,
            signer: None,
            verifier: None,
            retry: RetryMode::Never,
        })
        .await?;
    let envelope = response.envelope(&route)?;
    let missing = |what: &str| BunqError::Protocol {
        endpoint: route.endpoint(),
        message: format!("no {what} in the response"),
    };
    let api_key_object = envelope.find("ApiKey").ok_or_else(|| missing("ApiKey"))?;
    let api_key = api_key_object
        .get("api_key")
        .and_then(Value::as_str)
        .filter(|key| !key.is_empty())
        .ok_or_else(|| missing("ApiKey.api_key"))?;
    let user_id = api_key_object
        .get("user")
        .and_then(Value::as_object)
        .and_then(|user| user.values().find_map(|inner| inner.get("id")))
        .and_then(Value::as_u64);
    Ok(SandboxUser {
        api_key: Secret::new(api_key),
        user_id,
    })
}
