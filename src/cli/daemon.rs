//! `run`: the long-running service.

use crate::cli::args::{Cli, RunArgs};
use crate::cli::setup;
use crate::config;
use crate::daemon::runtime::{self, Options};
use crate::reconcile::exit::ExitStatus;

/// Loads the config once (it sets up logging, then the daemon starts on it), then hands over to
/// the daemon until it stops; `--dry-run` makes it plan and report without ever writing.
pub fn run(cli: &Cli, args: &RunArgs) -> anyhow::Result<ExitStatus> {
    let path = config::resolve_path(cli.config.as_deref());
    let loaded = runtime::read_config(&path)?;
    setup::init_logging(cli, Some(&loaded.0));
    let options = Options {
        loaded: Some(loaded),
        dry_run: args.dry_run,
        ..Options::production(path)
    };
    setup::runtime()?.block_on(runtime::run(options))?;
    Ok(ExitStatus::Success)
}
