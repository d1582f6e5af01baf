//! The command line's shape: global flags and subcommands (clap derive). Parsing only; the
//! commands themselves live in their own modules.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Keeps the permitted-IP allowlists of bunq API credentials equal to a desired state in YAML.
#[derive(Debug, Parser)]
#[command(name = "bunq-ipsync", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 ok / nothing to do, 1 error, 2 changes pending (plan), \
3 blocked by a safety rule."
)]
pub struct Cli {
    /// Config file. Default: $BUNQ_IPSYNC_CONFIG, else /etc/bunq-ipsync/config.yaml.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Log format on stderr; overrides `log.format` in the config.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormatArg>,

    /// Log level (error, warn, info, debug, trace); overrides `log.level`. RUST_LOG wins over both.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// No progress bar during `apply` and `demo` (it is drawn only when stdout and stderr are
    /// terminals and the output is text).
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands. Their names and exit codes are a contract operators' scripts rely on.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: reconcile at start and on every interval or cron tick, reload on SIGHUP
    /// and config changes, serve /healthz, /readyz and /metrics.
    Run,
    /// Show what a reconcile would change, without changing any allowlist. On an empty state
    /// directory it registers a device with bunq first; beside a running daemon it reads with
    /// the daemon's saved session and changes nothing.
    /// Exit: 0 nothing to do, 2 changes pending, 3 blocked by a safety rule, 1 error.
    Plan(OutputArgs),
    /// Reconcile once and exit; refuses (exit 1) while another process, such as the daemon, holds
    /// the state directory. Exit: 0 converged, 3 blocked by a safety rule, 1 error.
    Apply(OutputArgs),
    /// Check the config file (and that the API key can be read); with --resolve also resolve
    /// every DNS, file and URL source. Exit: 0 valid, 1 invalid or a source failed.
    Validate(ValidateArgs),
    /// Print the current allowlists of all credentials as a config YAML, for onboarding.
    Export(ExportArgs),
    /// Show the saved bunq context (installation, device, session, user); never secrets.
    Status,
    /// Send one `test` event to every webhook and a ping to the heartbeat (`notify:`), and
    /// print `ok` or the error per target. Exit: 0 all delivered, 1 otherwise.
    NotifyTest,
    /// Run the real reconcile code against the built-in bunq simulator. No bunq account needed.
    Demo(DemoArgs),
    /// Create a bunq sandbox user with an API key and print how to use it.
    SandboxUser(SandboxUserArgs),
    /// Import the context saved by the official bunq SDK (`bunq.conf`) into the state directory.
    ImportSdkContext(ImportArgs),
}

/// Output format of `plan` and `apply`.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// `text` for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Options of `validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Also resolve every source and print what each yields (syntax alone is checked without
    /// it, and nothing is resolved).
    #[arg(long)]
    pub resolve: bool,
}

/// Options of `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Only these credential ids (default: every credential of the user).
    #[arg(long = "credential", value_name = "ID")]
    pub credentials: Vec<u64>,
}

/// Options of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the daemon running against the simulator after the walkthrough (Ctrl-C to stop).
    #[arg(long)]
    pub follow: bool,
}

/// Options of `sandbox-user`.
#[derive(Debug, Args)]
pub struct SandboxUserArgs {
    /// Sandbox API base URL (default: bunq's public sandbox).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
}

/// Options of `import-sdk-context`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The `bunq.conf` JSON written by the SDK's `ApiContext.save()`.
    #[arg(value_name = "BUNQ_CONF")]
    pub path: PathBuf,

    /// Replace a context already in the state directory.
    #[arg(long)]
    pub force: bool,
}

/// `--output` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Tables and a summary line.
    Text,
    /// One JSON document on stdout.
    Json,
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn plan_accepts_json_output_and_global_config_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "bunq-ipsync",
            "plan",
            "--output",
            "json",
            "--config",
            "c.yaml",
        ])
        .unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("c.yaml")));
        match cli.command {
            Command::Plan(args) => assert_eq!(args.output, OutputFormat::Json),
            other => panic!("parsed as {other:?}"),
        }
    }
}
