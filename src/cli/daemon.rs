//! `run`: the long-running service.

use crate::cli::args::Cli;
use crate::cli::setup;
use crate::config;
use crate::daemon::runtime::{self, Options};
use crate::reconcile::exit::ExitStatus;

/// Loads the config (to set up logging), then hands over to the daemon until it stops.
pub fn run(cli: &Cli) -> anyhow::Result<ExitStatus> {
    let path = config::resolve_path(cli.config.as_deref());
    let config = config::load(&path)?;
    setup::init_logging(cli, Some(&config));
    setup::runtime()?.block_on(runtime::run(Options::production(path)))?;
    Ok(ExitStatus::Success)
}
