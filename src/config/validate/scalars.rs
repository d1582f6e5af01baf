//! Value rules several sections share: a policy, a duration, a text that must say something.

use std::time::Duration;

use super::problems::Problems;
use crate::config::locate::FieldPath;
use crate::config::model::Policy;

/// `sync.policy` and `credentials[].policy`.
pub(super) fn parse_policy(
    value: &str,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<Policy> {
    match value {
        "sync" => Some(Policy::Sync),
        "additive" => Some(Policy::Additive),
        "observe" => Some(Policy::Observe),
        other => {
            problems.add(
                path,
                format!("{other:?} is not a policy; use sync, additive or observe"),
            );
            None
        }
    }
}

/// Every duration key: humantime's spelling (`30s`, `5m`, `1h`).
pub(super) fn parse_duration(
    value: &str,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<Duration> {
    match humantime::parse_duration(value) {
        Ok(duration) => Some(duration),
        Err(error) => {
            problems.add(
                path,
                format!("{value:?} is not a duration ({error}); write e.g. 30s, 5m or 1h"),
            );
            None
        }
    }
}

/// Text keys that must say something (names, paths, descriptions).
pub(super) fn non_empty<'v>(
    value: &'v str,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<&'v str> {
    if value.trim().is_empty() {
        problems.add(path, "must not be empty");
        None
    } else {
        Some(value)
    }
}
