//! Errors of the config layer. A config problem is reported as a list of [`ConfigIssue`]s, each
//! naming the file, the line and column (when known) and the field path, so an operator can jump
//! straight to the offending value. No variant ever carries the API key.

use std::fmt;
use std::path::PathBuf;

/// A 1-based position in the config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// One problem found in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The config file as the operator named it.
    pub file: PathBuf,
    /// Where in the file, when it could be determined.
    pub location: Option<Location>,
    /// The field path, e.g. `credentials[1].ips[2]`; empty for the document itself.
    pub field: String,
    /// What is wrong and, where useful, how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(location) = self.location {
            write!(f, ":{}:{}", location.line, location.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one config file, in file order. Displayed one per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors {
    issues: Vec<ConfigIssue>,
}

impl ConfigErrors {
    /// Wraps the issues, ordered by position so the output reads top to bottom.
    pub(crate) fn new(mut issues: Vec<ConfigIssue>) -> Self {
        // Stable sort: issues without a location keep their relative order at the end.
        issues.sort_by_key(|issue| {
            issue
                .location
                .map_or((usize::MAX, usize::MAX), |l| (l.line, l.column))
        });
        ConfigErrors { issues }
    }

    /// The individual problems.
    pub fn issues(&self) -> &[ConfigIssue] {
        &self.issues
    }

    /// How many problems were found.
    pub fn len(&self) -> usize {
        self.issues.len()
    }

    /// True when there are no problems (never the case for a returned error).
    pub fn is_empty(&self) -> bool {
        self.issues.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, issue) in self.issues.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Why the config (or the API key it points to) could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The path that was tried.
        path: PathBuf,
        /// What the OS reported.
        source: std::io::Error,
    },
    /// The file was read but is not a valid config; every problem is listed.
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// `bunq.api_key_file` could not be read.
    #[error("cannot read the API key file {} (bunq.api_key_file): {source}", path.display())]
    ApiKeyFile {
        /// The key file path.
        path: PathBuf,
        /// What the OS reported.
        source: std::io::Error,
    },
    /// The API key source exists but holds nothing usable.
    #[error("the API key from {origin} is empty")]
    ApiKeyEmpty {
        /// Where the key was read from (an environment variable name or a file path).
        origin: String,
    },
    /// The API key source exists but is not UTF-8 text.
    #[error("the API key from {origin} is not valid UTF-8 text")]
    ApiKeyNotText {
        /// Where the key was read from.
        origin: String,
    },
    /// `bunq.api_key_credential` is set but systemd did not pass a credentials directory.
    #[error(
        "bunq.api_key_credential is {name:?} but $CREDENTIALS_DIRECTORY is not set \
         (start the service with LoadCredential={name}:<path>, or use BUNQ_API_KEY or bunq.api_key_file)"
    )]
    NoCredentialsDirectory {
        /// The configured credential name.
        name: String,
    },
    /// No source of the API key is configured.
    #[error(
        "no API key configured: set the BUNQ_API_KEY environment variable, \
         bunq.api_key_credential (systemd credential) or bunq.api_key_file"
    )]
    ApiKeyMissing,
}

impl ConfigError {
    /// The individual config problems, when this is a validation failure.
    pub fn issues(&self) -> &[ConfigIssue] {
        match self {
            ConfigError::Invalid(errors) => errors.issues(),
            _ => &[],
        }
    }
}

impl From<ConfigErrors> for ConfigError {
    fn from(errors: ConfigErrors) -> Self {
        ConfigError::Invalid(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(line: Option<usize>, field: &str, message: &str) -> ConfigIssue {
        ConfigIssue {
            file: PathBuf::from("config.yaml"),
            location: line.map(|line| Location { line, column: 3 }),
            field: field.to_owned(),
            message: message.to_owned(),
        }
    }

    #[test]
    fn issue_displays_file_line_column_field_and_message() {
        let shown = issue(Some(12), "credentials[1].ips[2]", "bad").to_string();
        assert_eq!(shown, "config.yaml:12:3: credentials[1].ips[2]: bad");
    }

    #[test]
    fn issue_without_location_or_field_omits_them() {
        assert_eq!(issue(None, "", "empty").to_string(), "config.yaml: empty");
    }

    #[test]
    fn errors_are_listed_one_per_line_in_file_order() {
        let errors = ConfigErrors::new(vec![
            issue(None, "x", "no place"),
            issue(Some(9), "b", "second"),
            issue(Some(2), "a", "first"),
        ]);
        assert_eq!(
            errors.to_string(),
            "config.yaml:2:3: a: first\nconfig.yaml:9:3: b: second\nconfig.yaml: x: no place"
        );
    }
}
