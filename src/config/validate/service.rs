//! `http:` and `log:`: the daemon's service surface (the health and metrics listener, the log
//! format and filter). Every key has a default, so a bad value is reported and the default kept.

use std::net::SocketAddr;

use super::problems::Problems;
use crate::config::locate::FieldPath;
use crate::config::log_filter::check_log_filter;
use crate::config::model::{
    DEFAULT_LISTEN, DEFAULT_LOG_LEVEL, HttpSettings, LogFormat, LogSettings,
};
use crate::config::raw::{RawHttp, RawLog, Text};

/// `http.listen`.
pub(super) fn validate_http(
    raw: RawHttp,
    path: &FieldPath,
    problems: &mut Problems,
) -> HttpSettings {
    let default = DEFAULT_LISTEN;
    let listen = match raw.listen {
        None => default,
        Some(Text(value)) => value.parse::<SocketAddr>().unwrap_or_else(|_| {
            problems.add(
                &path.key("listen"),
                format!("{value:?} is not a socket address like 127.0.0.1:9477 or [::1]:9477"),
            );
            default
        }),
    };
    HttpSettings { listen }
}

/// `log.format` and `log.level`.
pub(super) fn validate_log(raw: RawLog, path: &FieldPath, problems: &mut Problems) -> LogSettings {
    let format = match raw.format {
        None => LogFormat::Text,
        Some(Text(value)) => match value.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                problems.add(
                    &path.key("format"),
                    format!("{other:?} is not a log format; use text or json"),
                );
                LogFormat::Text
            }
        },
    };
    let level = match raw.level {
        None => DEFAULT_LOG_LEVEL.to_owned(),
        Some(Text(value)) => {
            if let Err(err) = check_log_filter(&value) {
                problems.add(&path.key("level"), err.to_string());
            }
            value
        }
    };
    LogSettings { format, level }
}
