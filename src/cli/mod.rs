//! The binary edge: parses the command line, runs one command and turns its outcome into an
//! exit code. The only module that uses `anyhow`.
//!
//! * [`args`]: the clap definitions (the subcommand and flag contract).
//! * [`setup`]: config, logging, API key and bunq connection, shared by the commands.
//! * [`oneshot`]: `plan`, `apply`, `export`.
//! * [`validate`]: `validate`, the config check as text or JSON.
//! * [`status`]: `status`, the saved bunq context as text or JSON.
//! * [`context`]: `sandbox-user`, `import-sdk-context`.
//! * [`daemon`]: `run`, the service.
//! * [`demo`]: the walkthrough against the built-in simulator.
//! * [`notify_test`]: `notify-test`, one test message to every notification target.
//! * [`logging`]: text or JSON logs on stderr.
//! * [`generate`]: `completion` and `man`, generated from the clap definition.
//! * [`progress`]: the progress bar of `apply` and `demo` on a terminal.

pub mod args;
pub mod context;
pub mod daemon;
pub mod demo;
pub mod generate;
pub mod logging;
pub mod notify_test;
pub mod oneshot;
pub mod progress;
pub mod setup;
pub mod status;
pub mod validate;

use clap::Parser;

use crate::reconcile::exit::ExitStatus;
use args::{Cli, Command};

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap exits 2 on usage errors, which would read as "changes pending": map to 1.
            let _ = err.print();
            let status = if err.use_stderr() {
                ExitStatus::Error
            } else {
                ExitStatus::Success
            };
            return i32::from(status.code());
        }
    };
    let cli = match cli.with_env_overrides(|name| std::env::var(name).ok()) {
        Ok(cli) => cli,
        Err(err) => {
            eprintln!("error: {err}");
            return i32::from(ExitStatus::Error.code());
        }
    };
    let status = match run(&cli) {
        Ok(status) => status,
        Err(err) => {
            let message = render_error(&err);
            if cli.log_format == Some(args::LogFormatArg::Json) {
                // Log shippers expect one JSON object per line, start-up errors included.
                let line = serde_json::json!({"level": "ERROR", "message": message});
                eprintln!("{line}");
            } else {
                eprintln!("error: {message}");
            }
            ExitStatus::Error
        }
    };
    i32::from(status.code())
}

fn run(cli: &Cli) -> anyhow::Result<ExitStatus> {
    match &cli.command {
        Command::Run(args) => daemon::run(cli, args),
        Command::Plan(args) => oneshot::plan(cli, args),
        Command::Apply(args) => oneshot::apply(cli, args),
        Command::Validate(args) => validate::validate(cli, args),
        Command::Export(args) => oneshot::export(cli, args),
        Command::Status(args) => status::status(cli, args),
        Command::Demo(args) => demo::run(cli, args),
        Command::NotifyTest => notify_test::run(cli),
        Command::SandboxUser(args) => context::sandbox_user(cli, args),
        Command::ImportSdkContext(args) => context::import_sdk_context(cli, args),
        Command::Completion(args) => generate::completion(args),
        Command::Man => generate::man(),
    }
}

/// The error and its causes, one per line when there are several (config errors already are).
fn render_error(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(&format!("\n  caused by: {cause}"));
        }
    }
    text
}
