//! What every command does first: find and load the config, start logging, read the API key,
//! connect to bunq. Errors carry context for the operator; nothing here writes to bunq.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use crate::bunq::{ApiObserver, BunqClient, RateLimiter};
use crate::cli::args::{Cli, LogFormatArg};
use crate::cli::logging::{self, LogFormat};
use crate::config::{self, Config};
use crate::reconcile::bunq_port::client_settings;

/// Loads and validates the config named by `--config`, `$BUNQ_IPSYNC_CONFIG` or the default.
pub fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let path = config::resolve_path(cli.config.as_deref());
    Ok(config::load(&path)?)
}

/// Starts logging with the config's format and level, overridden by the flags (and `RUST_LOG`).
pub fn init_logging(cli: &Cli, config: Option<&Config>) {
    let format = match (cli.log_format, config.map(|config| config.log.format)) {
        (Some(LogFormatArg::Json), _) | (None, Some(config::LogFormat::Json)) => LogFormat::Json,
        _ => LogFormat::Text,
    };
    let level = cli
        .log_level
        .clone()
        .or_else(|| config.map(|config| config.log.level.clone()))
        .unwrap_or_else(|| "info".into());
    logging::init(format, &level);
}

/// A runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Reads the API key and opens (or reuses) the bunq context in the config's state directory.
pub async fn connect(
    config: &Config,
    observer: Option<Arc<dyn ApiObserver>>,
) -> anyhow::Result<BunqClient> {
    let api_key = config::resolve_api_key(config)?;
    let mut settings = client_settings(config, observer)?;
    // Every client of the process counts against bunq's per-IP windows together (`demo` builds
    // two).
    settings.rate_limiter = Some(RateLimiter::process());
    let state_dir: &Path = &config.bunq.state_dir;
    BunqClient::connect(settings, api_key, state_dir)
        .await
        .with_context(|| format!("cannot open a bunq session at {}", config.bunq.base_url))
}
