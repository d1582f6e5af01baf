//! Log setup: text or JSON lines on stderr (stdout is for data), level from the config or flags,
//! `RUST_LOG` wins over both. ANSI colours only on a terminal, never in JSON.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

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
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
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
