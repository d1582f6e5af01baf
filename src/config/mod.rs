//! The one place that reads the YAML config.
//!
//! Two stages, as in ripgrep: [`raw`] parses the document faithfully (structure, unknown keys),
//! then `validate` turns it into a typed [`Config`], collecting every problem with its file,
//! line, column and field path ([`ConfigErrors`]). [`sources`] resolves where the config file and
//! the API key come from; [`overrides`] applies `apply`'s one-run overrides. Nothing in this
//! module writes anywhere.
//!
//! `config.example.yaml` at the repository root documents every key.

mod cron;
pub mod error;
mod locate;
pub mod log_filter;
pub mod model;
pub mod overrides;
pub mod raw;
pub mod sources;
mod validate;

use std::path::Path;

pub use crate::bunq::Environment;
pub use cron::CronSchedule;
pub use error::{ConfigError, ConfigErrors, ConfigIssue, Location};
pub use log_filter::{LogFilterError, check_log_filter, parse_log_filter};
pub use model::{
    BunqSettings, Config, CredentialSpec, HttpSettings, LogFormat, LogSettings, Policy,
    SyncSettings,
};
pub use overrides::{OverrideError, RunOverrides};
pub use sources::{
    api_key_file, api_key_file_with, resolve_api_key, resolve_api_key_with, resolve_path,
    resolve_path_with,
};

/// Reads and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    parse(path, &read(path)?)
}

/// The config file's text, for callers that also need the exact bytes parsed (the daemon
/// fingerprints them to notice changes).
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses and validates config `text`; `source` names the file in every message.
pub fn parse(source: &Path, text: &str) -> Result<Config, ConfigError> {
    // A file of only comments parses as null: say so rather than listing every required key.
    if matches!(yaml_serde::from_str(text), Ok(yaml_serde::Value::Null)) {
        return Err(single_issue(
            source,
            None,
            "the config file is empty".to_owned(),
        ));
    }
    let raw: raw::RawConfig =
        yaml_serde::from_str(text).map_err(|error| parse_error(source, &error))?;
    validate::validate(raw, source, text).map_err(ConfigError::Invalid)
}

/// Turns a YAML or structure error into an issue with the location split out of the message.
fn parse_error(source: &Path, error: &yaml_serde::Error) -> ConfigError {
    let location = error.location().map(|location| Location {
        line: location.line(),
        column: location.column(),
    });
    let mut message = error.to_string();
    if let Some(location) = location {
        let suffix = format!(" at line {} column {}", location.line, location.column);
        message = message.replacen(&suffix, "", 1);
    }
    single_issue(source, location, message)
}

fn single_issue(source: &Path, location: Option<Location>, message: String) -> ConfigError {
    ConfigError::Invalid(ConfigErrors::new(vec![ConfigIssue {
        file: source.to_path_buf(),
        location,
        field: String::new(),
        message,
    }]))
}
