//! Importing the official bunq SDK's `bunq.conf` (Python and PHP layouts), so a user of the SDK
//! keeps the device already registered (and its IP allowlist entry) instead of registering a
//! new one. The result is an ordinary [`Context`], saved by the caller.

use std::fs;
use std::path::Path;

use chrono::{Local, NaiveDateTime, TimeZone as _, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::bunq::context::{Context, DeviceContext, InstallationContext, SessionContext};
use crate::bunq::crypto::{PrivateKey, PublicKey};
use crate::bunq::endpoint::Environment;
use crate::bunq::error::{BunqError, json_error_summary};
use crate::bunq::model::UserId;
use crate::secret::Secret;

/// A context imported from the official bunq SDK's `bunq.conf`, with the key it belongs to.
#[derive(Debug)]
pub struct SdkImport {
    /// The API key stored in the SDK file (the SDK keeps it in clear text; we do not).
    pub api_key: Secret,
    /// `environment_type` of the SDK file.
    pub environment: Environment,
    /// The equivalent context, ready for [`crate::bunq::ContextStore::save`].
    pub context: Context,
}

#[derive(Deserialize)]
struct SdkConf {
    api_key: Secret,
    environment_type: String,
    installation_context: SdkInstallation,
    #[serde(default)]
    session_context: Option<SdkSession>,
}

#[derive(Deserialize)]
struct SdkInstallation {
    private_key_client: Secret,
    public_key_server: String,
    token: Secret,
}

#[derive(Deserialize)]
struct SdkSession {
    token: Secret,
    expiry_time: String,
    user_id: UserId,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

/// Imports the official bunq SDK's `bunq.conf` (Python and PHP layouts), so a user of the SDK
/// keeps the device already registered (and its IP allowlist entry) instead of registering a new
/// one.
///
/// * `installation_context` gives the client key, server key and installation token.
/// * The device is marked registered with an unknown id and description: the SDK records
///   neither. The own-IP rule needs the description, so the first connect reads the device back
///   from bunq and saves it ([`crate::bunq::device`]).
/// * `session_context` is imported when present. The SDK writes its expiry as the writer's
///   *local* naive time; it is read as local time of this machine, so import on the machine that
///   wrote it. A wrong guess is harmless: an expired session is rejected by bunq and replaced.
/// * The base URL comes from `environment_type` (`PRODUCTION` / `SANDBOX`); set
///   `context.base_url` afterwards to import for another host.
pub fn import_sdk_conf(path: &Path) -> Result<SdkImport, BunqError> {
    let corrupt = |reason: String| BunqError::ContextCorrupt {
        path: path.to_owned(),
        reason,
    };
    let bytes = fs::read(path)
        .map_err(|err| BunqError::Context(format!("cannot read {}: {err}", path.display())))?;
    let conf: SdkConf = serde_json::from_slice(&bytes).map_err(|err| {
        corrupt(format!(
            "not a bunq SDK context file ({})",
            json_error_summary(&err)
        ))
    })?;
    let environment = match conf.environment_type.as_str() {
        "PRODUCTION" => Environment::Production,
        "SANDBOX" => Environment::Sandbox,
        other => return Err(corrupt(format!("unknown environment_type {other:?}"))),
    };
    let client_key =
        PrivateKey::from_pkcs8_pem(conf.installation_context.private_key_client.expose())
            .map_err(|err| corrupt(format!("private_key_client: {err}")))?;
    PublicKey::from_pem(&conf.installation_context.public_key_server)
        .map_err(|err| corrupt(format!("public_key_server: {err}")))?;
    let mut context = Context::new(&environment.base_url(), &conf.api_key, &client_key)?;
    context.installation = Some(InstallationContext {
        token: conf.installation_context.token,
        server_public_key: conf.installation_context.public_key_server,
    });
    context.device = Some(DeviceContext {
        id: None,
        description: None,
    });
    context.session = match conf.session_context {
        Some(session) => Some(import_sdk_session(session).map_err(corrupt)?),
        None => None,
    };
    Ok(SdkImport {
        api_key: conf.api_key,
        environment,
        context,
    })
}

fn import_sdk_session(session: SdkSession) -> Result<SessionContext, String> {
    let naive = NaiveDateTime::parse_from_str(&session.expiry_time, "%Y-%m-%d %H:%M:%S%.f")
        .map_err(|err| format!("session_context.expiry_time: {err}"))?;
    // Ambiguous or skipped local times (DST changes) resolve to the earlier instant, or to
    // "expired now", which only costs one new session.
    let expires_at = Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|local| local.with_timezone(&Utc))
        .unwrap_or_else(Utc::now);
    Ok(SessionContext {
        token: session.token,
        id: None,
        user_id: session.user_id,
        expires_at,
        session_timeout_secs: sdk_session_timeout(&session.rest),
    })
}

/// The SDK re-serializes the session-server user under `user_person`/`user_company`/... (Python)
/// or `userPerson`/... (PHP); an OAuth `user_api_key` holds the timeout in `requested_by_user`.
fn sdk_session_timeout(users: &serde_json::Map<String, Value>) -> Option<u64> {
    const DIRECT: [&str; 6] = [
        "user_person",
        "user_company",
        "user_payment_service_provider",
        "userPerson",
        "userCompany",
        "userPaymentServiceProvider",
    ];
    for key in DIRECT {
        if let Some(timeout) = users.get(key).and_then(|user| user.get("session_timeout")) {
            return timeout.as_u64();
        }
    }
    for key in ["user_api_key", "userApiKey"] {
        let Some(requested) = users
            .get(key)
            .and_then(|user| {
                user.get("requested_by_user")
                    .or_else(|| user.get("requestedByUser"))
            })
            .and_then(Value::as_object)
        else {
            continue;
        };
        for anchored in requested.values() {
            if let Some(timeout) = anchored.get("session_timeout").and_then(Value::as_u64) {
                return Some(timeout);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bunq::BaseUrl;
    use crate::bunq::context::api_key_fingerprint;
    use crate::bunq::crypto::test_key as key;

    fn sdk_conf() -> String {
        let private = key().to_pkcs8_pem().unwrap();
        let public = key().public_key().to_pem();
        serde_json::json!({
            "api_key": "sandbox_abc",
            "environment_type": "SANDBOX",
            "installation_context": {
                "private_key_client": private.as_str(),
                "public_key_client": public,
                "public_key_server": public,
                "token": "inst-token"
            },
        })
        .to_string()
    }

    /// [`sdk_conf`] with `session` as its `session_context`.
    fn with_session(session: Value) -> String {
        let mut conf: Value = serde_json::from_str(&sdk_conf()).unwrap();
        conf["session_context"] = session;
        conf.to_string()
    }

    /// Imports an SDK context file holding `conf`.
    fn import_conf(conf: &str) -> Result<SdkImport, BunqError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bunq.conf");
        fs::write(&path, conf).unwrap();
        import_sdk_conf(&path)
    }

    #[test]
    fn sdk_conf_imports_installation_device_and_session() {
        let session = serde_json::json!({
            "token": "sess-token",
            "expiry_time": "2030-01-02 03:04:05.123456",
            "user_id": 42,
            "user_person": {"id": 42, "session_timeout": 3600}
        });
        let import = import_conf(&with_session(session)).unwrap();
        assert_eq!(import.environment, Environment::Sandbox);
        assert_eq!(import.api_key.expose(), "sandbox_abc");
        let context = import.context;
        assert_eq!(context.base_url, BaseUrl::sandbox().as_str());
        assert_eq!(
            context.api_key_fingerprint,
            api_key_fingerprint(&import.api_key)
        );
        assert_eq!(context.installation.unwrap().token.expose(), "inst-token");
        assert!(context.device.unwrap().id.is_none());
        let session = context.session.unwrap();
        assert_eq!(session.user_id, 42);
        assert_eq!(session.token.expose(), "sess-token");
        assert_eq!(session.session_timeout_secs, Some(3600));
        let expected = Local
            .from_local_datetime(
                &NaiveDateTime::parse_from_str(
                    "2030-01-02 03:04:05.123456",
                    "%Y-%m-%d %H:%M:%S%.f",
                )
                .unwrap(),
            )
            .earliest()
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(session.expires_at, expected);
    }

    #[test]
    fn sdk_conf_oauth_session_takes_timeout_from_requested_by_user() {
        let session = serde_json::json!({
            "token": "t", "expiry_time": "2030-01-02 03:04:05.000000", "user_id": 7,
            "user_api_key": {"id": 7, "requested_by_user": {"user_company": {"session_timeout": 900}}}
        });
        let session = import_conf(&with_session(session))
            .unwrap()
            .context
            .session
            .unwrap();
        assert_eq!(session.session_timeout_secs, Some(900));
        assert_eq!(session.user_id, 7);
    }

    #[test]
    fn sdk_conf_without_session_imports_installation_only() {
        let context = import_conf(&sdk_conf()).unwrap().context;
        assert!(context.installation.is_some());
        assert!(context.session.is_none());
    }

    #[test]
    fn sdk_conf_with_unknown_environment_is_refused() {
        let conf = sdk_conf().replace("SANDBOX", "sandbox");
        let err = import_conf(&conf).unwrap_err();
        assert!(matches!(err, BunqError::ContextCorrupt { .. }), "{err}");
        assert!(!err.to_string().contains("sandbox_abc"), "{err}");
    }
}
