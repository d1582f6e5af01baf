//! The command line's shape: global flags and subcommands (clap derive). Parsing only; the
//! commands themselves live in their own modules.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Keeps the permitted-IP allowlists of bunq API credentials equal to a desired state in YAML.
#[derive(Debug, Parser)]
#[command(name = "bunq-ipsync", version = VERSION, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 ok / nothing to do, 1 error, 2 changes pending (plan; apply: \
on an observe credential), 3 blocked by a safety rule."
)]
pub struct Cli {
    /// Config file. Default: $BUNQ_IPSYNC_CONFIG, else /etc/bunq-ipsync/config.yaml.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Log format on stderr; overrides $BUNQ_IPSYNC_LOG_FORMAT, which overrides `log.format`.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormatArg>,

    /// Log level (error, warn, info, debug, trace, or a RUST_LOG directive), checked like
    /// `log.level`; overrides $BUNQ_IPSYNC_LOG_LEVEL, which overrides `log.level`. RUST_LOG
    /// wins over all of them.
    #[arg(
        long,
        global = true,
        value_name = "LEVEL",
        value_parser = crate::config::parse_log_filter
    )]
    pub log_level: Option<String>,

    /// No progress bar during `apply` and `demo` (it is drawn only when stdout and stderr are
    /// terminals and the output is text).
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// What `--version` prints after the name: the version, and the git commit it was built from when
/// known (`0.1.0 (commit 0123456789ab)`; see `build.rs`).
pub const VERSION: &str = env!("BUNQ_IPSYNC_VERSION");

/// The environment variable that sets the log format when `--log-format` is not given.
pub const LOG_FORMAT_ENV: &str = "BUNQ_IPSYNC_LOG_FORMAT";
/// The environment variable that sets the log level when `--log-level` is not given.
pub const LOG_LEVEL_ENV: &str = "BUNQ_IPSYNC_LOG_LEVEL";

/// A `BUNQ_IPSYNC_LOG_*` variable with a value its flag would refuse.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct EnvOverrideError {
    /// The variable.
    pub name: &'static str,
    /// Why its value was refused.
    pub reason: String,
}

impl Cli {
    /// Fills `--log-format` and `--log-level` from [`LOG_FORMAT_ENV`] and [`LOG_LEVEL_ENV`]
    /// (read through `var`) where the flag was not given, checked as the flags are: the level
    /// by the same function as `log.level`. Precedence: `RUST_LOG` > flag > variable > config.
    /// Not clap's `env`: its errors would name the flag, not the variable the value came from.
    pub fn with_env_overrides(
        mut self,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Cli, EnvOverrideError> {
        if self.log_format.is_none()
            && let Some(value) = var(LOG_FORMAT_ENV)
        {
            let format = LogFormatArg::from_str(&value, true).map_err(|_| EnvOverrideError {
                name: LOG_FORMAT_ENV,
                reason: format!("{value:?} is not a log format; use text or json"),
            })?;
            self.log_format = Some(format);
        }
        if self.log_level.is_none()
            && let Some(value) = var(LOG_LEVEL_ENV)
        {
            crate::config::check_log_filter(&value).map_err(|err| EnvOverrideError {
                name: LOG_LEVEL_ENV,
                reason: err.to_string(),
            })?;
            self.log_level = Some(value);
        }
        Ok(self)
    }
}

/// The subcommands. Their names and exit codes are a contract operators' scripts rely on.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: reconcile at start and on every interval or cron tick, reload on SIGHUP
    /// and config changes, serve /healthz, /readyz and /metrics.
    Run(RunArgs),
    /// Show what a reconcile would change, without changing any allowlist. On an empty state
    /// directory it registers a device with bunq first; beside a running daemon it reads with
    /// the daemon's saved session and changes nothing.
    /// Exit: 0 nothing to do, 2 changes pending, 3 blocked by a safety rule, 1 error.
    Plan(PlanArgs),
    /// Reconcile once and exit; refuses (exit 1) while another process, such as the daemon, holds
    /// the state directory. With --plan or --checksum it applies only the reviewed actions and
    /// otherwise exits 1 ("stale plan"). Exit: 0 converged, 2 changes pending on an `observe`
    /// credential, 3 blocked by a safety rule, 1 error.
    Apply(ApplyArgs),
    /// Check the config file (and that the API key can be read); with --resolve also resolve
    /// every DNS, file and URL source. Exit: 0 valid, 1 invalid or a source failed.
    Validate(ValidateArgs),
    /// Print the current allowlists of all credentials as a config YAML, for onboarding.
    Export(ExportArgs),
    /// Show the saved bunq context (installation, device, session, user); never secrets.
    Status(OutputArgs),
    /// Send one `test` event to every webhook and a ping to the heartbeat (`notify:`), and
    /// print `ok` or the error per target. Exit: 0 all delivered, 1 otherwise.
    NotifyTest,
    /// Run the real reconcile code against the built-in bunq simulator. No bunq account needed.
    Demo(DemoArgs),
    /// Create a bunq sandbox user with an API key and print how to use it.
    SandboxUser(SandboxUserArgs),
    /// Import the context saved by the official bunq SDK (`bunq.conf`) into the state directory.
    ImportSdkContext(ImportArgs),
    /// Print a shell completion script, e.g. `bunq-ipsync completion bash >
    /// /etc/bash_completion.d/bunq-ipsync`.
    Completion(CompletionArgs),
    /// Print the man page (roff), e.g. `bunq-ipsync man > /usr/local/share/man/man1/bunq-ipsync.1`.
    Man,
}

/// Options of `completion`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell the script is for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: CompletionShell,
}

/// The shells `completion` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    /// bash (bash-completion).
    Bash,
    /// zsh (a `_bunq-ipsync` file in `$fpath`).
    Zsh,
    /// fish (`~/.config/fish/completions/bunq-ipsync.fish`).
    Fish,
}

/// Output format of `plan`, `apply` and `status`.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// `text` for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Options of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run the whole daemon loop (schedule, reloads, sources, health, metrics, notifications)
    /// with the read-only bunq port: every run plans and reports, none writes.
    #[arg(long)]
    pub dry_run: bool,
}

/// Options of `plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// `--output`.
    #[command(flatten)]
    pub output: OutputArgs,

    /// Also save the plan to this file, with what it was computed from, for
    /// `apply --plan`.
    #[arg(long, value_name = "PLAN.json")]
    pub out: Option<PathBuf>,
}

/// Options of `apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
    /// One-run overrides of the config.
    #[command(flatten)]
    pub overrides: OverrideArgs,
    /// `--plan`, `--checksum`, `--max-age`.
    #[command(flatten)]
    pub gate: PlanGateArgs,
}

/// `apply`'s one-run overrides (`--max-changes`, `--credential`); never saved.
#[derive(Debug, Args)]
pub struct OverrideArgs {
    /// Overrides sync.max_changes for this run only; a run needing more than N changes is still
    /// blocked.
    #[arg(long, value_name = "N")]
    pub max_changes: Option<std::num::NonZeroUsize>,
    /// Limits this run to the configured credential ID (repeatable); the others are neither
    /// read nor written. An ID the config does not list is an error (exit 1).
    #[arg(long = "credential", value_name = "ID")]
    pub credentials: Vec<u64>,
}

impl OverrideArgs {
    /// The overrides as the library takes them.
    pub fn to_overrides(&self) -> crate::config::RunOverrides {
        crate::config::RunOverrides {
            max_changes: self.max_changes,
            credentials: self.credentials.clone(),
        }
    }
}

/// The reviewed plan an `apply` must match before it writes anything.
#[derive(Debug, Args)]
pub struct PlanGateArgs {
    /// Apply only if bunq still calls for exactly the actions of this saved plan
    /// (`plan --out`); otherwise write nothing and exit 1 ("stale plan").
    #[arg(long, value_name = "PLAN.json", conflicts_with = "checksum")]
    pub plan: Option<PathBuf>,

    /// Apply only if the actions' checksum (`checksum` of `plan --output json`) is SUM;
    /// otherwise write nothing and exit 1 ("stale plan").
    #[arg(long, value_name = "SUM")]
    pub checksum: Option<String>,

    /// How old the --plan file may be.
    #[arg(long, value_name = "DURATION", default_value = "1h", requires = "plan")]
    pub max_age: humantime::Duration,
}

/// Options of `validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Also resolve every source and print what each yields (syntax alone is checked without
    /// it, and nothing is resolved).
    #[arg(long)]
    pub resolve: bool,

    /// `text` for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Options of `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Only these credential ids (default: every credential of the user).
    #[arg(long = "credential", value_name = "ID")]
    pub credentials: Vec<u64>,
    /// The `sync.policy` of the exported file: `additive` (never deactivates) or `observe`
    /// (plans and reports, never writes).
    #[arg(long, value_enum, default_value_t = ExportPolicy::Additive)]
    pub policy: ExportPolicy,
}

/// `export --policy` values: the two starting points that cannot lock anyone out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportPolicy {
    /// Only add, never deactivate.
    Additive,
    /// Read, plan and report, never write.
    Observe,
}

impl ExportPolicy {
    /// The config policy.
    pub fn policy(self) -> crate::config::Policy {
        match self {
            ExportPolicy::Additive => crate::config::Policy::Additive,
            ExportPolicy::Observe => crate::config::Policy::Observe,
        }
    }
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

    fn parse_with_env(args: &[&str], vars: &[(&str, &str)]) -> Result<Cli, EnvOverrideError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        Cli::try_parse_from(args)
            .unwrap()
            .with_env_overrides(|name| {
                vars.iter()
                    .find(|(var, _)| var == name)
                    .map(|(_, value)| value.clone())
            })
    }

    #[test]
    fn the_env_fills_only_the_log_flags_not_given() {
        let vars = [(LOG_FORMAT_ENV, "JSON"), (LOG_LEVEL_ENV, "debug")];
        let cli = parse_with_env(&["bunq-ipsync", "status"], &vars).unwrap();
        assert_eq!(cli.log_format, Some(LogFormatArg::Json));
        assert_eq!(cli.log_level.as_deref(), Some("debug"));
        let args = [
            "bunq-ipsync",
            "--log-format",
            "text",
            "--log-level",
            "warn",
            "status",
        ];
        let cli = parse_with_env(&args, &vars).unwrap();
        assert_eq!(cli.log_format, Some(LogFormatArg::Text));
        assert_eq!(cli.log_level.as_deref(), Some("warn"));
        let cli = parse_with_env(&["bunq-ipsync", "status"], &[]).unwrap();
        assert_eq!((cli.log_format, cli.log_level), (None, None));
    }

    #[test]
    fn a_bad_env_value_is_refused_naming_the_variable() {
        let err = parse_with_env(&["bunq-ipsync", "status"], &[(LOG_LEVEL_ENV, "warning")])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("BUNQ_IPSYNC_LOG_LEVEL: \"warning\" is not a log filter"),
            "{err}"
        );
        let err = parse_with_env(&["bunq-ipsync", "status"], &[(LOG_FORMAT_ENV, "xml")])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("BUNQ_IPSYNC_LOG_FORMAT: \"xml\""), "{err}");
        let flag = Cli::try_parse_from(["bunq-ipsync", "--log-level", "warning", "status"])
            .unwrap_err()
            .to_string();
        assert!(flag.contains("\"warning\" is not a log filter"), "{flag}");
    }

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
            Command::Plan(args) => assert_eq!(args.output.output, OutputFormat::Json),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn apply_takes_one_run_overrides() {
        let cli = Cli::try_parse_from([
            "bunq-ipsync",
            "apply",
            "--max-changes",
            "25",
            "--credential",
            "7",
            "--credential",
            "9",
        ])
        .unwrap();
        let Command::Apply(args) = cli.command else {
            panic!("not apply");
        };
        let overrides = args.overrides.to_overrides();
        assert_eq!(overrides.max_changes.map(|n| n.get()), Some(25));
        assert_eq!(overrides.credentials, [7, 9]);
    }

    #[test]
    fn max_changes_zero_is_a_usage_error() {
        let parsed = Cli::try_parse_from(["bunq-ipsync", "apply", "--max-changes", "0"]);
        assert!(parsed.is_err());
    }

    #[test]
    fn export_policy_defaults_to_additive_and_takes_observe() {
        let policy = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::Export(args) => args.policy,
            other => panic!("parsed as {other:?}"),
        };
        assert_eq!(policy(&["bunq-ipsync", "export"]), ExportPolicy::Additive);
        assert_eq!(
            policy(&["bunq-ipsync", "export", "--policy", "observe"]),
            ExportPolicy::Observe
        );
    }

    #[test]
    fn apply_takes_a_plan_with_a_max_age_or_a_checksum_but_not_both() {
        let cli = Cli::try_parse_from([
            "bunq-ipsync",
            "apply",
            "--plan",
            "p.json",
            "--max-age",
            "5m",
        ])
        .unwrap();
        match cli.command {
            Command::Apply(args) => {
                assert_eq!(args.gate.plan, Some(PathBuf::from("p.json")));
                assert_eq!(*args.gate.max_age, std::time::Duration::from_secs(300));
            }
            other => panic!("parsed as {other:?}"),
        }
        let both = ["apply", "--plan", "p.json", "--checksum", "abc"];
        assert!(Cli::try_parse_from(std::iter::once("bunq-ipsync").chain(both)).is_err());
        let age_alone = ["bunq-ipsync", "apply", "--max-age", "5m"];
        assert!(Cli::try_parse_from(age_alone).is_err());
    }
}
