//! The problems found while validating: field paths with messages, turned into located
//! [`ConfigIssue`]s (file, line, column, field) once the whole document was checked.

use std::path::Path;

use crate::config::error::{ConfigErrors, ConfigIssue};
use crate::config::locate::{FieldPath, locate};

/// Problems found so far, as field paths with messages.
#[derive(Default)]
pub(super) struct Problems(Vec<(FieldPath, String)>);

impl Problems {
    pub(super) fn add(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.0.push((path.clone(), message.into()));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn into_errors(self, source: &Path, text: &str) -> ConfigErrors {
        let issues = self
            .0
            .into_iter()
            .map(|(path, message)| ConfigIssue {
                file: source.to_path_buf(),
                location: locate(text, &path),
                field: path.to_string(),
                message,
            })
            .collect();
        ConfigErrors::new(issues)
    }
}
