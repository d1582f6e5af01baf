//! The one check of a log filter, shared by `log.level` in the config, the `--log-level` flag and
//! `BUNQ_IPSYNC_LOG_LEVEL`: each must refuse what the others refuse, or a typo in one of them
//! (`warning`) would silently turn logging off.

/// Why a log filter was refused. Carries the value as given (a log level is never a secret).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a log filter; use error, warn, info, debug or trace (or a RUST_LOG directive)"
)]
pub struct LogFilterError(pub String);

/// Accepts a plain level (`off`, `error`, `warn`, `info`, `debug`, `trace`, any case), or a
/// `RUST_LOG` style directive list (`bunq_ipsync=debug,warn`). A bare word that is not a level is
/// refused: `EnvFilter` would read it as a target name and silently drop every other log line.
pub fn check_log_filter(value: &str) -> Result<(), LogFilterError> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let is_level = |word: &str| LEVELS.contains(&word.trim().to_ascii_lowercase().as_str());
    let trimmed = value.trim();
    let valid = is_level(trimmed)
        || ((trimmed.contains('=') || trimmed.contains(','))
            && trimmed.split(',').all(|directive| {
                let directive = directive.trim();
                !directive.is_empty() && (directive.contains('=') || is_level(directive))
            })
            && tracing_subscriber::EnvFilter::builder()
                .parse(trimmed)
                .is_ok());
    if valid {
        Ok(())
    } else {
        Err(LogFilterError(value.to_owned()))
    }
}

/// [`check_log_filter`] in the shape clap's `value_parser` wants: the value itself when valid.
pub fn parse_log_filter(value: &str) -> Result<String, LogFilterError> {
    check_log_filter(value).map(|()| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_directive_lists_pass() {
        for value in [
            "info",
            "WARN",
            " debug ",
            "off",
            "bunq_ipsync=debug,warn",
            "warn,h2=off",
        ] {
            assert_eq!(check_log_filter(value), Ok(()), "{value}");
        }
    }

    #[test]
    fn a_bare_word_that_is_no_level_is_refused_naming_it() {
        for value in ["warning", "verbose", "", "info,", "info,warning"] {
            let err = check_log_filter(value).unwrap_err();
            assert_eq!(err, LogFilterError(value.to_owned()));
            assert!(err.to_string().contains("is not a log filter"), "{err}");
        }
        assert_eq!(
            parse_log_filter("warning").unwrap_err().to_string(),
            "\"warning\" is not a log filter; use error, warn, info, debug or trace (or a \
             RUST_LOG directive)"
        );
    }
}
