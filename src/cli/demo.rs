//! demo (todo)
use crate::cli::args::{Cli, DemoArgs};
use crate::reconcile::exit::ExitStatus;
/// Runs the demo.
pub fn run(_cli: &Cli, _args: &DemoArgs) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("demo is not wired yet")
}
