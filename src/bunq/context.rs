//! The persisted API context: what a restart needs to reuse its bunq registration instead of
//! creating a new installation, device and session.
//!
//! The context lives in one JSON file, [`CONTEXT_FILE_NAME`], inside the state directory. It holds
//! secrets (the client private key, the installation and session tokens), so:
//!
//! * the directory is created `0700`; an existing directory that group or others can access is
//!   tightened to `0700` (with a warning) and the client refuses to run if that fails; systemd's
//!   `StateDirectory=` creates `0755` by default, so refusing would only annoy;
//! * the file is written `0600`, atomically: a temp file in the same directory, write, fsync,
//!   rename over the old file, fsync the directory. A crash leaves the old or the new context,
//!   never half of one;
//! * the API key itself is never stored, only its SHA-256 fingerprint, so a context is never
//!   mixed with another key; `Debug` prints no secret.
//!
//! Loading: a missing file is `None`; corrupt JSON or a format version from the future is a
//! typed error naming the file (never silently discarded: the operator may want it back); a
//! context made for another API key or base URL does not match and the client registers anew.

use std::fs;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bunq::crypto::{PrivateKey, PublicKey};
use crate::bunq::endpoint::BaseUrl;
use crate::bunq::error::{BunqError, json_error_summary};
use crate::bunq::model::UserId;
use crate::bunq::state_dir::{self, DIR_MODE};
use crate::secret::Secret;

/// The file name of the context inside the state directory.
pub const CONTEXT_FILE_NAME: &str = "bunq-context.json";
/// The context format this build writes and reads. A newer one is refused, not guessed at.
pub const CONTEXT_FORMAT_VERSION: u32 = 1;

const FILE_MODE: u32 = 0o600;

/// Everything the client persists about its bunq registration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Context {
    /// [`CONTEXT_FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// The base URL the registration belongs to (installations do not carry over between hosts).
    pub base_url: String,
    /// SHA-256 hex of the API key the registration belongs to; see [`api_key_fingerprint`].
    pub api_key_fingerprint: String,
    /// The client's RSA key (PKCS#8 PEM); its public half went to `POST /installation`.
    pub client_private_key: Secret,
    /// Present once `POST /installation` succeeded.
    #[serde(default)]
    pub installation: Option<InstallationContext>,
    /// Present once `POST /device-server` succeeded.
    #[serde(default)]
    pub device: Option<DeviceContext>,
    /// The current session, if one was opened.
    #[serde(default)]
    pub session: Option<SessionContext>,
    /// When `POST /installation` last succeeded for this API key and base URL in this state
    /// directory (UTC). The client makes no new installation (and so no new device at bunq)
    /// within [`crate::bunq::client::REREGISTRATION_INTERVAL`] of it, also across restarts.
    ///
    /// Kept in the context file rather than a file of its own: it belongs to the key and base
    /// URL the context is for (a context for another key is replaced and rightly starts without
    /// it), and it is written in the same atomic save as the installation it dates, so the two
    /// cannot disagree after a crash. Optional with a serde default, so a context written before
    /// this field existed still loads (it then allows one registration), and an older build
    /// reading a newer file ignores it: the format version stays the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<DateTime<Utc>>,
}

/// The result of `POST /installation`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InstallationContext {
    /// The long-lived installation token, used for device-server and session-server.
    pub token: Secret,
    /// bunq's server public key (SPKI PEM), which verifies every later response.
    pub server_public_key: String,
}

/// The result of `POST /device-server`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceContext {
    /// The DeviceServer id; `None` when imported from an SDK file, which does not record it
    /// (no call of this client needs it).
    #[serde(default)]
    pub id: Option<u64>,
    /// The description the device was registered with; it names the credential in listings.
    #[serde(default)]
    pub description: Option<String>,
}

/// An open session.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionContext {
    /// The session token sent in `X-Bunq-Client-Authentication`.
    pub token: Secret,
    /// The session id from session-server's `Id` element; `None` when imported.
    #[serde(default)]
    pub id: Option<u64>,
    /// The user id for `/user/{user}/...` paths.
    pub user_id: UserId,
    /// When the session expires unless extended (UTC).
    pub expires_at: DateTime<Utc>,
    /// The user's auto-logout time in seconds, as bunq reported it.
    #[serde(default)]
    pub session_timeout_secs: Option<u64>,
}

impl SessionContext {
    /// True when the session is still usable for at least the renewal margin after `now`.
    ///
    /// The margin is `renew_before`, but never more than half the session's lifetime: with a
    /// short auto-logout (say 5 minutes) and a 10-minute `renew_before`, every new session
    /// would be due at once and each request would open a session.
    pub fn is_fresh(&self, now: DateTime<Utc>, renew_before: std::time::Duration) -> bool {
        let mut margin = chrono::Duration::from_std(renew_before).unwrap_or(chrono::Duration::MAX);
        if let Some(half_life) = self
            .session_timeout_secs
            .and_then(|secs| i64::try_from(secs / 2).ok())
            .and_then(chrono::Duration::try_seconds)
        {
            margin = margin.min(half_life);
        }
        match self.expires_at.checked_sub_signed(margin) {
            Some(renew_at) => now < renew_at,
            None => false,
        }
    }
}

impl Context {
    /// A fresh context for `base_url` and `api_key`, holding only a new client key.
    pub fn new(
        base_url: &BaseUrl,
        api_key: &Secret,
        client_key: &PrivateKey,
    ) -> Result<Self, BunqError> {
        let pem = client_key.to_pkcs8_pem()?;
        Ok(Context {
            format_version: CONTEXT_FORMAT_VERSION,
            base_url: base_url.as_str().to_owned(),
            api_key_fingerprint: api_key_fingerprint(api_key),
            client_private_key: Secret::new(pem.as_str()),
            installation: None,
            device: None,
            session: None,
            registered_at: None,
        })
    }

    /// Why this context cannot be used for `base_url` and `api_key`, or `None` if it can.
    pub fn mismatch(&self, base_url: &BaseUrl, api_key: &Secret) -> Option<&'static str> {
        if self.api_key_fingerprint != api_key_fingerprint(api_key) {
            Some("it was made for a different API key")
        } else if BaseUrl::parse(&self.base_url).ok().as_ref() != Some(base_url) {
            Some("it was made for a different base URL")
        } else {
            None
        }
    }

    /// The client private key.
    pub fn client_key(&self) -> Result<PrivateKey, BunqError> {
        Ok(PrivateKey::from_pkcs8_pem(
            self.client_private_key.expose(),
        )?)
    }

    /// bunq's server public key, once installed.
    pub fn server_key(&self) -> Result<Option<PublicKey>, BunqError> {
        match &self.installation {
            Some(installation) => Ok(Some(PublicKey::from_pem(&installation.server_public_key)?)),
            None => Ok(None),
        }
    }
}

/// SHA-256 of the API key as lowercase hex: identifies the key without storing it.
pub fn api_key_fingerprint(api_key: &Secret) -> String {
    crate::hex::sha256(api_key.expose().as_bytes())
}

/// The context file in a state directory, with safe permissions and atomic writes.
#[derive(Clone, Debug)]
pub struct ContextStore {
    file: PathBuf,
}

impl ContextStore {
    /// Opens (creating if needed) the state directory with mode `0700`, tightening a laxer one
    /// (except a Kubernetes fsGroup volume's expected group access: see [`state_dir`]).
    pub fn open(state_dir: &Path) -> Result<Self, BunqError> {
        let fail = |what: &str, err: std::io::Error| {
            BunqError::Context(format!("{what} {}: {err}", state_dir.display()))
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(state_dir)
            .map_err(|err| fail("cannot create state directory", err))?;
        let meta =
            fs::metadata(state_dir).map_err(|err| fail("cannot inspect state directory", err))?;
        if !meta.is_dir() {
            return Err(BunqError::Context(format!(
                "state path {} is not a directory",
                state_dir.display()
            )));
        }
        state_dir::secure(state_dir, &meta);
        Ok(ContextStore {
            file: state_dir.join(CONTEXT_FILE_NAME),
        })
    }

    /// The context file's path.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Reads the context: `None` when there is none yet; corrupt or future-format files are
    /// errors naming the file.
    pub fn load(&self) -> Result<Option<Context>, BunqError> {
        // The file holds the tokens and the private key: wipe the bytes once parsed.
        let bytes = match fs::read(&self.file) {
            Ok(bytes) => zeroize::Zeroizing::new(bytes),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => {
                return Err(BunqError::Context(format!(
                    "cannot read {}: {err}",
                    self.file.display()
                )));
            }
        };
        self.tighten_file_mode();
        let corrupt = |reason: String| BunqError::ContextCorrupt {
            path: self.file.clone(),
            reason,
        };
        // Check the version before the shape, so a future format gets the right message.
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|err| corrupt(format!("not valid JSON ({})", json_error_summary(&err))))?;
        let version = value
            .get("format_version")
            .and_then(Value::as_u64)
            .ok_or_else(|| corrupt("no numeric format_version".to_owned()))?;
        if version > u64::from(CONTEXT_FORMAT_VERSION) {
            return Err(BunqError::ContextVersion {
                path: self.file.clone(),
                found: version,
                supported: CONTEXT_FORMAT_VERSION,
            });
        }
        let context: Context = serde_json::from_slice(&bytes)
            .map_err(|err| corrupt(format!("unexpected layout ({})", json_error_summary(&err))))?;
        Ok(Some(context))
    }

    /// Reads the context if it belongs to `base_url` and `api_key`. A context for another key or
    /// URL is reported in the log and treated as absent, so the caller registers anew (and the
    /// next save replaces it).
    pub fn load_matching(
        &self,
        base_url: &BaseUrl,
        api_key: &Secret,
    ) -> Result<Option<Context>, BunqError> {
        let Some(context) = self.load()? else {
            return Ok(None);
        };
        match context.mismatch(base_url, api_key) {
            None => Ok(Some(context)),
            Some(reason) => {
                tracing::warn!(
                    file = %self.file.display(),
                    reason,
                    "saved bunq context does not match; registering a new installation"
                );
                Ok(None)
            }
        }
    }

    /// Writes the context atomically with mode `0600`.
    pub fn save(&self, context: &Context) -> Result<(), BunqError> {
        // The serialized context holds the tokens and the private key: wipe it once written.
        let bytes = serde_json::to_vec_pretty(context)
            .map(zeroize::Zeroizing::new)
            .map_err(|err| BunqError::Context(format!("cannot serialize context: {err}")))?;
        crate::atomic_file::write(&self.file, &bytes).map_err(|err| {
            BunqError::Context(format!("cannot replace {}: {err}", self.file.display()))
        })
    }

    /// Removes the context file (a fresh registration on the next start).
    pub fn remove(&self) -> Result<(), BunqError> {
        match fs::remove_file(&self.file) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(BunqError::Context(format!(
                "cannot remove {}: {err}",
                self.file.display()
            ))),
        }
    }

    fn tighten_file_mode(&self) {
        let Ok(meta) = fs::metadata(&self.file) else {
            return;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                file = %self.file.display(),
                mode = format!("{mode:o}"),
                "context file is readable by group or others; tightening it to 600"
            );
            if let Err(err) = fs::set_permissions(&self.file, fs::Permissions::from_mode(FILE_MODE))
            {
                tracing::warn!(file = %self.file.display(), %err, "cannot tighten context file mode");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bunq::crypto::test_key as key;
    use std::time::Duration;

    /// A context store in a fresh temporary directory (kept while the handle lives).
    fn temp_store() -> (tempfile::TempDir, ContextStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContextStore::open(dir.path()).unwrap();
        (dir, store)
    }

    /// Why loading a context file holding `text` fails.
    fn load_error(text: impl AsRef<[u8]>) -> BunqError {
        let (_dir, store) = temp_store();
        fs::write(store.path(), text).unwrap();
        store.load().unwrap_err()
    }

    /// A session of user 1 that expires at `expires_at`.
    fn session_until(
        expires_at: DateTime<Utc>,
        session_timeout_secs: Option<u64>,
    ) -> SessionContext {
        SessionContext {
            token: Secret::new("t"),
            id: None,
            user_id: 1,
            expires_at,
            session_timeout_secs,
        }
    }

    fn base() -> BaseUrl {
        BaseUrl::parse("http://127.0.0.1:9/v1").unwrap()
    }

    fn full_context(api_key: &Secret) -> Context {
        let mut context = Context::new(&base(), api_key, key()).unwrap();
        context.installation = Some(InstallationContext {
            token: Secret::new("installation-token-value"),
            server_public_key: key().public_key().to_pem(),
        });
        context.device = Some(DeviceContext {
            id: Some(4),
            description: Some("ipsync".into()),
        });
        context.session = Some(SessionContext {
            token: Secret::new("session-token-value"),
            id: Some(5),
            user_id: 6,
            expires_at: Utc::now() + chrono::Duration::days(7),
            session_timeout_secs: Some(604_800),
        });
        context
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn missing_context_loads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContextStore::open(&dir.path().join("state")).unwrap();
        assert!(store.load().unwrap().is_none());
    }

    #[test]
    fn saved_context_round_trips() {
        let (_dir, store) = temp_store();
        let api_key = Secret::new("api-key");
        store.save(&full_context(&api_key)).unwrap();
        let loaded = store.load_matching(&base(), &api_key).unwrap().unwrap();
        assert_eq!(loaded.session.as_ref().unwrap().user_id, 6);
        assert_eq!(loaded.device.as_ref().unwrap().id, Some(4));
        assert_eq!(
            loaded.client_key().unwrap().public_key(),
            key().public_key()
        );
    }

    #[test]
    fn context_written_before_registered_at_existed_loads_without_it() {
        let (_dir, store) = temp_store();
        let api_key = Secret::new("api-key");
        let mut old: Value = serde_json::to_value(full_context(&api_key)).unwrap();
        assert!(
            old.get("registered_at").is_none(),
            "not written while unset"
        );
        old["format_version"] = Value::from(1);
        fs::write(store.path(), old.to_string()).unwrap();
        let loaded = store.load_matching(&base(), &api_key).unwrap().unwrap();
        assert!(loaded.registered_at.is_none());
        assert!(loaded.installation.is_some());
    }

    #[test]
    fn registration_time_round_trips() {
        let (_dir, store) = temp_store();
        let api_key = Secret::new("api-key");
        let mut context = full_context(&api_key);
        let at = Utc::now();
        context.registered_at = Some(at);
        store.save(&context).unwrap();
        let loaded = store.load_matching(&base(), &api_key).unwrap().unwrap();
        assert_eq!(loaded.registered_at, Some(at));
    }

    #[test]
    fn new_state_directory_is_0700_and_file_is_0600() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let store = ContextStore::open(&state).unwrap();
        store.save(&full_context(&Secret::new("k"))).unwrap();
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(store.path()), 0o600);
    }

    #[test]
    fn lax_existing_directory_is_tightened_to_0700() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        fs::create_dir(&state).unwrap();
        fs::set_permissions(&state, fs::Permissions::from_mode(0o755)).unwrap();
        ContextStore::open(&state).unwrap();
        assert_eq!(mode(&state), 0o700);
    }

    #[test]
    fn lax_existing_file_is_tightened_on_load() {
        let (_dir, store) = temp_store();
        store.save(&full_context(&Secret::new("k"))).unwrap();
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o644)).unwrap();
        store.load().unwrap();
        assert_eq!(mode(store.path()), 0o600);
    }

    #[test]
    fn file_never_contains_the_api_key_only_its_fingerprint() {
        let (_dir, store) = temp_store();
        let api_key = Secret::new("sandbox_supersecretapikey");
        store.save(&full_context(&api_key)).unwrap();
        let text = fs::read_to_string(store.path()).unwrap();
        assert!(!text.contains("supersecretapikey"));
        assert!(text.contains(&api_key_fingerprint(&api_key)));
    }

    #[test]
    fn fingerprint_is_sha256_hex() {
        assert_eq!(
            api_key_fingerprint(&Secret::new("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn debug_print_shows_no_secret() {
        let printed = format!("{:?}", full_context(&Secret::new("k")));
        assert!(!printed.contains("installation-token-value"), "{printed}");
        assert!(!printed.contains("session-token-value"), "{printed}");
        assert!(!printed.contains("PRIVATE KEY"), "{printed}");
    }

    #[test]
    fn corrupt_json_is_an_error_naming_the_file() {
        let err = load_error(b"{ not json");
        assert!(matches!(err, BunqError::ContextCorrupt { .. }), "{err}");
        assert!(err.to_string().contains(CONTEXT_FILE_NAME), "{err}");
    }

    #[test]
    fn wrong_layout_is_corrupt_not_a_panic() {
        let (_dir, store) = temp_store();
        fs::write(store.path(), br#"{"format_version":1,"base_url":3}"#).unwrap();
        assert!(matches!(
            store.load().unwrap_err(),
            BunqError::ContextCorrupt { .. }
        ));
    }

    #[test]
    fn layout_errors_do_not_quote_values_of_the_file() {
        let (_dir, store) = temp_store();
        let text = r#"{"format_version":1,"base_url":"x","api_key_fingerprint":"f",
            "client_private_key":987654321987}"#;
        fs::write(store.path(), text).unwrap();
        let err = store.load().unwrap_err().to_string();
        // serde's own message would be "invalid type: integer `987654321987`, ...".
        assert!(!err.contains("987654321987"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn missing_fields_are_named() {
        let err = load_error(br#"{"format_version":1}"#).to_string();
        assert!(err.contains("missing field `base_url`"), "{err}");
    }

    #[test]
    fn future_format_version_is_refused_with_its_number() {
        let err = load_error(br#"{"format_version":99}"#);
        assert!(
            matches!(err, BunqError::ContextVersion { found: 99, .. }),
            "{err}"
        );
        assert!(err.to_string().contains(CONTEXT_FILE_NAME), "{err}");
    }

    #[test]
    fn context_of_another_api_key_does_not_match() {
        let (_dir, store) = temp_store();
        store.save(&full_context(&Secret::new("key-a"))).unwrap();
        assert!(
            store
                .load_matching(&base(), &Secret::new("key-b"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn context_of_another_base_url_does_not_match() {
        let (_dir, store) = temp_store();
        let api_key = Secret::new("key-a");
        store.save(&full_context(&api_key)).unwrap();
        let other = BaseUrl::parse("http://127.0.0.1:10/v1").unwrap();
        assert!(store.load_matching(&other, &api_key).unwrap().is_none());
    }

    #[test]
    fn save_replaces_the_file_and_leaves_no_temp_files() {
        let (dir, store) = temp_store();
        let mut context = full_context(&Secret::new("k"));
        store.save(&context).unwrap();
        context.session = None;
        store.save(&context).unwrap();
        assert!(store.load().unwrap().unwrap().session.is_none());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(CONTEXT_FILE_NAME)]);
    }

    #[test]
    fn session_is_fresh_until_renew_before_expiry() {
        let now = Utc::now();
        let session = session_until(now + chrono::Duration::seconds(600), None);
        assert!(session.is_fresh(now, Duration::from_secs(599)));
        assert!(!session.is_fresh(now, Duration::from_secs(600)));
        assert!(!session.is_fresh(now + chrono::Duration::seconds(700), Duration::ZERO));
    }

    #[test]
    fn renewal_margin_is_at_most_half_the_session_lifetime() {
        let now = Utc::now();
        let session = session_until(now + chrono::Duration::seconds(300), Some(300));
        // renew_before (10 min) exceeds the 5-minute lifetime: renew at half-life instead.
        assert!(session.is_fresh(now, Duration::from_secs(600)));
        assert!(session.is_fresh(
            now + chrono::Duration::seconds(149),
            Duration::from_secs(600)
        ));
        assert!(!session.is_fresh(
            now + chrono::Duration::seconds(150),
            Duration::from_secs(600)
        ));
    }
}
