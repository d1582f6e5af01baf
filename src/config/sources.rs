//! Where the config file and the API key come from: command line, environment, systemd
//! credentials, files. Environment lookups are passed in as a function so that tests never touch
//! the process environment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::error::ConfigError;
use super::model::{
    API_KEY_ENV, CONFIG_PATH_ENV, CREDENTIALS_DIRECTORY_ENV, Config, DEFAULT_CONFIG_PATH,
};
use crate::secret::Secret;

/// Looks up one environment variable; [`process_env`] in production, a map in tests.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// Reads the real process environment.
pub fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// The config path: `--config PATH`, else `$BUNQ_IPSYNC_CONFIG`, else
/// [`DEFAULT_CONFIG_PATH`].
pub fn resolve_path(cli: Option<&Path>) -> PathBuf {
    resolve_path_with(cli, &process_env)
}

/// [`resolve_path`] with an explicit environment.
pub fn resolve_path_with(cli: Option<&Path>, env: EnvLookup<'_>) -> PathBuf {
    if let Some(path) = cli {
        return path.to_path_buf();
    }
    match env(CONFIG_PATH_ENV) {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => PathBuf::from(DEFAULT_CONFIG_PATH),
    }
}

/// The API key: `$BUNQ_API_KEY` if set, else the systemd credential `bunq.api_key_credential`
/// from `$CREDENTIALS_DIRECTORY`, else the file `bunq.api_key_file`. Surrounding whitespace
/// (a trailing newline) is trimmed. Errors name the source, never the key.
pub fn resolve_api_key(config: &Config) -> Result<Secret, ConfigError> {
    resolve_api_key_with(config, &process_env)
}

/// [`resolve_api_key`] with an explicit environment.
pub fn resolve_api_key_with(config: &Config, env: EnvLookup<'_>) -> Result<Secret, ConfigError> {
    if let Some(value) = env(API_KEY_ENV) {
        let origin = format!("the {API_KEY_ENV} environment variable");
        let text = zeroize::Zeroizing::new(value.into_string().map_err(|_| {
            ConfigError::ApiKeyNotText {
                origin: origin.clone(),
            }
        })?);
        return non_empty_key(Secret::new(text.trim()), origin);
    }
    if let Some(name) = &config.bunq.api_key_credential {
        let directory = env(CREDENTIALS_DIRECTORY_ENV)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| ConfigError::NoCredentialsDirectory { name: name.clone() })?;
        return read_key_file(&Path::new(&directory).join(name));
    }
    if let Some(path) = &config.bunq.api_key_file {
        return read_key_file(path);
    }
    Err(ConfigError::ApiKeyMissing)
}

/// The file the API key is read from (`$CREDENTIALS_DIRECTORY/<bunq.api_key_credential>` or
/// `bunq.api_key_file`), which the daemon watches for a rotated key; `None` when `$BUNQ_API_KEY`
/// is set (an environment cannot change under a running process) or no file is configured.
pub fn api_key_file_with(config: &Config, env: EnvLookup<'_>) -> Option<PathBuf> {
    if env(API_KEY_ENV).is_some() {
        return None;
    }
    if let Some(name) = &config.bunq.api_key_credential {
        let directory = env(CREDENTIALS_DIRECTORY_ENV).filter(|value| !value.is_empty())?;
        return Some(Path::new(&directory).join(name));
    }
    config.bunq.api_key_file.clone()
}

/// [`api_key_file_with`] in the process environment.
pub fn api_key_file(config: &Config) -> Option<PathBuf> {
    api_key_file_with(config, &process_env)
}

fn read_key_file(path: &Path) -> Result<Secret, ConfigError> {
    // Wiped on drop, like the Secret made from it.
    let bytes =
        zeroize::Zeroizing::new(
            std::fs::read(path).map_err(|source| ConfigError::ApiKeyFile {
                path: path.to_path_buf(),
                source,
            })?,
        );
    let origin = path.display().to_string();
    let text = std::str::from_utf8(&bytes).map_err(|_| ConfigError::ApiKeyNotText {
        origin: origin.clone(),
    })?;
    non_empty_key(Secret::new(text.trim()), origin)
}

fn non_empty_key(key: Secret, origin: String) -> Result<Secret, ConfigError> {
    if key.is_empty() {
        Err(ConfigError::ApiKeyEmpty { origin })
    } else {
        Ok(key)
    }
}
