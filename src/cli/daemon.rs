//! `run`: the long-running service.

use crate::cli::args::Cli;
use crate::cli::setup;
use crate::config;
use crate::daemon::runtime::{self, Options};
use crate::reconcile::exit::ExitStatus;

/// Loads the config once (it sets up logging, then the daemon starts on it), then hands over to
/// the daemon until it stops.
pub fn run(cli: &Cli) -> anyhow::Result<ExitStatus> {
    let path = config::resolve_path(cli.config.as_deref());
    let loaded = runtime::read_config(&path)?;
    setup::init_logging(cli, Some(&loaded.0));
    let options = Options {
        loaded: Some(loaded),
        ..Options::production(path)
    };
    setup::runtime()?.block_on(runtime::run(options))?;
    Ok(ExitStatus::Success)
}
