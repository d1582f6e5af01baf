//! `validate`: the config parses and validates and the API key can be read; with `--resolve`,
//! every source resolves too. For people (a summary line, errors on stderr) and for scripts
//! (`--output json`, one document on stdout, also when the config is invalid).
//!
//! # JSON format (version 1)
//!
//! ```text
//! {
//!   "format_version": 1,
//!   "config": "/etc/bunq-ipsync/config.yaml",
//!   "valid": true | false,
//!   "problems": [{"file": "/etc/bunq-ipsync/config.yaml", "line": 7 | null,
//!                 "column": 9 | null, "field": "credentials[0].ips[1]" | "",
//!                 "message": "..."}],
//!   "summary": null (config invalid) | {"credentials": 2, "desired_ips": 5, "sources": 1,
//!               "policy": "sync" | "additive" | "observe", "egress_ips": 2 | null},
//!   "sources": null (without --resolve) | [<an element of the plan JSON's "sources">]
//! }
//! ```
//!
//! `valid` is true exactly when `validate` exits 0: no problem, and with `--resolve` every
//! source resolved. `problems` lists the config's issues in file order, or the one reason the
//! file or the API key could not be read. Fields are only ever added within a format version.

use serde::Serialize;

use crate::cli::args::{Cli, OutputFormat, ValidateArgs};
use crate::cli::setup;
use crate::config::{self, Config, ConfigError};
use crate::reconcile::desired::source_reports;
use crate::reconcile::exit::ExitStatus;
use crate::reconcile::plan::SourceReport;
use crate::reconcile::report::SourceDocument;
use crate::sources::SourceResolver;

/// The version of the JSON document; bumped only when a field changes meaning or goes away.
pub const VALIDATE_FORMAT_VERSION: u32 = 1;

/// `validate`. Exit 0 when valid, 1 otherwise (the reason also on stderr).
pub fn validate(cli: &Cli, args: &ValidateArgs) -> anyhow::Result<ExitStatus> {
    let path = config::resolve_path(cli.config.as_deref());
    let loaded = config::load(&path).and_then(|config| {
        config::resolve_api_key(&config)?;
        Ok(config)
    });
    let config = match loaded {
        Ok(config) => config,
        Err(err) => {
            if args.output == OutputFormat::Json {
                let document = ValidateDocument {
                    format_version: VALIDATE_FORMAT_VERSION,
                    config: path.display().to_string(),
                    valid: false,
                    problems: ProblemDocument::all(&path, &err),
                    summary: None,
                    sources: None,
                };
                print_json(&document)?;
            }
            return Err(err.into());
        }
    };
    let reports = if args.resolve {
        setup::init_logging(cli, Some(&config));
        let resolver = SourceResolver::new(config.sources.clone());
        let resolutions = setup::runtime()?.block_on(resolver.resolve_all(config.sources()));
        Some(source_reports(&resolutions))
    } else {
        None
    };
    match args.output {
        OutputFormat::Text => print_text(&config, reports.as_deref()),
        OutputFormat::Json => print_json(&ValidateDocument::valid(&config, reports.as_deref()))?,
    }
    let failed = reports
        .iter()
        .flatten()
        .filter(|r| r.error.is_some())
        .count();
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} source(s) failed; a run would hold back the deactivations of the \
             credentials that use them (source-unavailable)",
            reports.map_or(0, |reports| reports.len())
        );
    }
    Ok(ExitStatus::Success)
}

fn print_json(document: &ValidateDocument) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(document)?);
    Ok(())
}

/// The document of `validate --output json` (see the module docs).
#[derive(Clone, Debug, Serialize)]
pub struct ValidateDocument {
    /// [`VALIDATE_FORMAT_VERSION`].
    pub format_version: u32,
    /// The config file checked.
    pub config: String,
    /// `validate` exits 0.
    pub valid: bool,
    /// What is wrong, in file order.
    pub problems: Vec<ProblemDocument>,
    /// What the config holds; `None` when it is invalid.
    pub summary: Option<SummaryDocument>,
    /// What every source yielded; `None` without `--resolve`.
    pub sources: Option<Vec<SourceDocument>>,
}

/// One element of `problems`.
#[derive(Clone, Debug, Serialize)]
pub struct ProblemDocument {
    /// The file the problem is in.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The field path (`credentials[0].ips[1]`), empty for the document or the file itself.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// `summary`.
#[derive(Clone, Debug, Serialize)]
pub struct SummaryDocument {
    /// Credentials managed.
    pub credentials: usize,
    /// Static desired IPs over all credentials (CIDRs expanded).
    pub desired_ips: usize,
    /// Distinct DNS, file and URL sources.
    pub sources: usize,
    /// `sync.policy`.
    pub policy: &'static str,
    /// How many `bunq.egress_ips` are set; `None` when the key is not set.
    pub egress_ips: Option<usize>,
}

impl ProblemDocument {
    /// Every issue of an invalid config, or the one reason the file or the key is unreadable.
    fn all(path: &std::path::Path, err: &ConfigError) -> Vec<ProblemDocument> {
        match err {
            ConfigError::Invalid(errors) => errors
                .issues()
                .iter()
                .map(|issue| ProblemDocument {
                    file: issue.file.display().to_string(),
                    line: issue.location.map(|location| location.line),
                    column: issue.location.map(|location| location.column),
                    field: issue.field.clone(),
                    message: issue.message.clone(),
                })
                .collect(),
            other => vec![ProblemDocument {
                file: path.display().to_string(),
                line: None,
                column: None,
                field: String::new(),
                message: other.to_string(),
            }],
        }
    }
}

impl ValidateDocument {
    fn valid(config: &Config, reports: Option<&[SourceReport]>) -> ValidateDocument {
        ValidateDocument {
            format_version: VALIDATE_FORMAT_VERSION,
            config: config.source.display().to_string(),
            valid: reports.is_none_or(|reports| reports.iter().all(|r| r.error.is_none())),
            problems: Vec::new(),
            summary: Some(SummaryDocument::new(config)),
            sources: reports.map(|reports| reports.iter().map(SourceDocument::from).collect()),
        }
    }
}

impl SummaryDocument {
    fn new(config: &Config) -> SummaryDocument {
        SummaryDocument {
            credentials: config.credentials.len(),
            desired_ips: config.credentials.iter().map(|spec| spec.ips.len()).sum(),
            sources: config.sources().len(),
            policy: config.sync.policy.as_str(),
            egress_ips: config.bunq.egress_ips.as_ref().map(|egress| egress.len()),
        }
    }
}

/// The summary line, what `bunq.egress_ips` does, and with `--resolve` a line per source.
fn print_text(config: &Config, reports: Option<&[SourceReport]>) {
    let summary = SummaryDocument::new(config);
    println!(
        "{}: valid ({} credential(s), {} desired IP(s), {} source(s), policy {})",
        config.source.display(),
        summary.credentials,
        summary.desired_ips,
        summary.sources,
        summary.policy
    );
    explain_egress(summary.egress_ips);
    for report in reports.into_iter().flatten() {
        match &report.error {
            None => {
                let addresses: Vec<String> =
                    report.addresses.iter().map(ToString::to_string).collect();
                let ttl = report
                    .ttl_secs
                    .map(|ttl| {
                        let ttl = std::time::Duration::from_secs(ttl);
                        format!(" (ttl {})", humantime::format_duration(ttl))
                    })
                    .unwrap_or_default();
                println!("{}: {}{ttl}", report.source, addresses.join(", "));
            }
            Some(err) => println!("{}: FAILED: {err}", report.source),
        }
    }
}

/// What `bunq.egress_ips` makes the own-ip rule do: it depends on this key more than on any
/// other.
fn explain_egress(egress_ips: Option<usize>) {
    match egress_ips {
        Some(count) => println!(
            "bunq.egress_ips: {count} address(es) the daemon may call bunq from; with the \
             registration IP they are never deactivated on the daemon's own credential"
        ),
        None => println!(
            "bunq.egress_ips: not set, so the daemon's egress is unknown: no IP of its own \
             credential is deactivated (own-ip, egress-unknown); set it to the IPs the daemon \
             calls bunq from"
        ),
    }
}
