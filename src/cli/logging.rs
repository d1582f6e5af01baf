//! Log setup: text or JSON lines on stderr (stdout is for data), level from the config or flags,
//! `RUST_LOG` wins over both. ANSI colours only on a terminal (or with `CLICOLOR_FORCE`) and
//! never with `NO_COLOR` or in JSON.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::progress;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (journald adds its own timestamps; we keep ours for plain stderr).
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global subscriber. Called once, after the config is known; a second call (tests,
/// `demo` running several steps) is a no-op.
pub fn init(format: LogFormat, level: &str) {
    // tokio-cron-scheduler logs its own start-up at info; only its warnings matter here.
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{level},tokio_cron_scheduler=warn")))
        .unwrap_or_else(|_| EnvFilter::new("info,tokio_cron_scheduler=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| progress::LogWriter)
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder
            .with_ansi(ansi(
                std::io::stderr().is_terminal() || clicolor_force(),
                progress::no_color(),
            ))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_ansi(false)
            .try_init(),
    };
    // Already installed: keep the first one.
    drop(result);
}

/// Colour in text log lines: only on a terminal (or with `CLICOLOR_FORCE`), and never when
/// `NO_COLOR` is set (<https://no-color.org>): it wins over both.
fn ansi(stderr_terminal: bool, no_color: bool) -> bool {
    stderr_terminal && !no_color
}

/// `CLICOLOR_FORCE` is set and not `0`: colour even where stderr is not a terminal (a pager,
/// `less -R`).
fn clicolor_force() -> bool {
    std::env::var_os("CLICOLOR_FORCE").is_some_and(|value| !value.is_empty() && value != "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(ansi(true, false));
        assert!(!ansi(true, true));
        assert!(!ansi(false, false));
    }
}
