//! `status`: what the state directory holds and who holds its lock, for people (aligned lines)
//! and for scripts (`--output json`). Both render the one [`StatusDocument`], so the two outputs
//! cannot tell different stories. Reads only; never contacts bunq; never a secret.
//!
//! # JSON format (version 1)
//!
//! ```text
//! {
//!   "format_version": 1,
//!   "state_file": "/var/lib/bunq-ipsync/bunq-context.json",
//!   "lock": null (no state directory yet) | {"held": false | true, "holder_pid": 4242 | null},
//!   "context": null (nothing saved yet) | {
//!     "format_version": 1, "base_url": "https://api.bunq.com/v1",
//!     "api_key": {"fingerprint_prefix": "0123456789abcdef",
//!                 "configured_key": "matches" | "differs" | "unreadable"},
//!     "installation": true | false,
//!     "device": null | {"id": 13 | null, "description": "bunq-ipsync" | null},
//!     "session": null | {"user_id": 7, "expires_at": "2026-12-03T07:15:00Z", "valid": true,
//!                        "remaining_secs": 600, "timeout_secs": 3600 | null}
//!   },
//!   "problem": null | "why the daemon holding the lock cannot work (status then exits 1)"
//! }
//! ```
//!
//! `lock.held` is true when another process (normally the daemon) holds the lock. Fields are only
//! ever added within a format version.

use std::io::Write as _;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::bunq::context::{CONTEXT_FILE_NAME, api_key_fingerprint};
use crate::bunq::{Context, ContextStore};
use crate::cli::args::{Cli, OutputArgs, OutputFormat};
use crate::cli::setup::{self, StateAccess};
use crate::config;
use crate::reconcile::exit::ExitStatus;

/// The version of the JSON document; bumped only when a field changes meaning or goes away.
pub const STATUS_FORMAT_VERSION: u32 = 1;

/// How many hex digits of the API key's fingerprint are shown: enough to tell keys apart.
const FINGERPRINT_PREFIX: usize = 16;

/// `status`. It takes the lock when it is free like every command; when the daemon holds it, a
/// missing or expired saved session means the daemon cannot work: the document says so in
/// `problem` and the command exits 1.
pub fn status(cli: &Cli, args: &OutputArgs) -> anyhow::Result<ExitStatus> {
    let config = setup::load_config(cli)?;
    let state_dir = &config.bunq.state_dir;
    // Read-only: a missing state directory is reported, not created (and nobody holds it).
    let access = if state_dir.exists() {
        Some(setup::claim_state_dir(state_dir)?)
    } else {
        None
    };
    let result = show(&config, access.as_ref(), args.output);
    match &access {
        Some(access) => access.explain(result),
        None => result,
    }
}

fn show(
    config: &config::Config,
    access: Option<&StateAccess>,
    output: OutputFormat,
) -> anyhow::Result<ExitStatus> {
    let document = StatusDocument::read(config, access, Utc::now())?;
    let text = match output {
        OutputFormat::Text => render_text(&document),
        OutputFormat::Json => format!("{}\n", serde_json::to_string_pretty(&document)?),
    };
    std::io::stdout().write_all(text.as_bytes())?;
    match document.problem {
        Some(problem) => Err(anyhow::anyhow!(problem)),
        None => Ok(ExitStatus::Success),
    }
}

/// Everything `status` reports (see the module docs for the JSON shape).
#[derive(Clone, Debug, Serialize)]
pub struct StatusDocument {
    /// [`STATUS_FORMAT_VERSION`].
    pub format_version: u32,
    /// The context file's path.
    pub state_file: String,
    /// The lock, `None` when there is no state directory yet.
    pub lock: Option<LockDocument>,
    /// The saved context, `None` when nothing is saved yet.
    pub context: Option<ContextDocument>,
    /// Why the daemon holding the lock cannot work; set only while another process holds it.
    pub problem: Option<String>,
}

/// `lock`.
#[derive(Clone, Debug, Serialize)]
pub struct LockDocument {
    /// Another process holds the state directory's lock.
    pub held: bool,
    /// The holder's pid, when the lock file names it.
    pub holder_pid: Option<u32>,
}

/// `context`.
#[derive(Clone, Debug, Serialize)]
pub struct ContextDocument {
    /// The context file's own format version.
    pub format_version: u32,
    /// The bunq base URL the registration belongs to.
    pub base_url: String,
    /// Which API key the registration belongs to.
    pub api_key: ApiKeyDocument,
    /// Whether an installation is registered.
    pub installation: bool,
    /// The registered device.
    pub device: Option<DeviceDocument>,
    /// The saved session.
    pub session: Option<SessionDocument>,
}

/// `context.api_key`: never the key, only a prefix of its SHA-256.
#[derive(Clone, Debug, Serialize)]
pub struct ApiKeyDocument {
    /// The first hex digits of the saved key's SHA-256 fingerprint.
    pub fingerprint_prefix: String,
    /// `matches`, `differs` (the next run registers anew) or `unreadable` (from here).
    pub configured_key: &'static str,
}

/// `context.device`.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceDocument {
    /// The DeviceServer id; `null` when imported from the SDK.
    pub id: Option<u64>,
    /// The description the device was registered with.
    pub description: Option<String>,
}

/// `context.session`.
#[derive(Clone, Debug, Serialize)]
pub struct SessionDocument {
    /// The bunq user the session is for.
    pub user_id: u64,
    /// When it expires unless extended.
    pub expires_at: DateTime<Utc>,
    /// Not yet expired.
    pub valid: bool,
    /// Seconds until it expires, 0 once expired.
    pub remaining_secs: u64,
    /// The user's auto-logout time as bunq reported it.
    pub timeout_secs: Option<u64>,
}

impl StatusDocument {
    /// Reads the context in the config's state directory (`access`: `None` when it does not
    /// exist) as of `now`.
    pub fn read(
        config: &config::Config,
        access: Option<&StateAccess>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<StatusDocument> {
        let state_dir = &config.bunq.state_dir;
        let path = state_dir.join(CONTEXT_FILE_NAME);
        let context = match access {
            Some(_) => ContextStore::open(state_dir)?.load()?,
            None => None,
        };
        let held = matches!(access, Some(StateAccess::ReadOnly { .. }));
        let context = context.map(|context| ContextDocument::new(config, &context, now));
        let problem = held.then(|| unusable(context.as_ref(), &path)).flatten();
        Ok(StatusDocument {
            format_version: STATUS_FORMAT_VERSION,
            state_file: path.display().to_string(),
            lock: access.map(|access| match access {
                StateAccess::Writer(_) => LockDocument {
                    held: false,
                    holder_pid: None,
                },
                StateAccess::ReadOnly { holder, .. } => LockDocument {
                    held: true,
                    holder_pid: *holder,
                },
            }),
            context,
            problem,
        })
    }
}

/// Why a daemon could not work with `context`: nothing saved, no session, or an expired one.
fn unusable(context: Option<&ContextDocument>, path: &Path) -> Option<String> {
    let Some(context) = context else {
        return Some(format!("no saved bunq context in {}", path.display()));
    };
    match &context.session {
        None => Some(format!("{} holds no session", path.display())),
        Some(session) if !session.valid => Some(format!(
            "the saved bunq session expired at {}",
            session.expires_at.format("%Y-%m-%d %H:%M:%S UTC")
        )),
        Some(_) => None,
    }
}

impl ContextDocument {
    fn new(config: &config::Config, context: &Context, now: DateTime<Utc>) -> ContextDocument {
        let fingerprint = &context.api_key_fingerprint;
        let configured_key = match config::resolve_api_key(config) {
            Ok(key) if api_key_fingerprint(&key) == *fingerprint => "matches",
            Ok(_) => "differs",
            Err(_) => "unreadable",
        };
        ContextDocument {
            format_version: context.format_version,
            base_url: context.base_url.clone(),
            api_key: ApiKeyDocument {
                fingerprint_prefix: fingerprint[..FINGERPRINT_PREFIX.min(fingerprint.len())]
                    .to_owned(),
                configured_key,
            },
            installation: context.installation.is_some(),
            device: context.device.as_ref().map(|device| DeviceDocument {
                id: device.id,
                description: device.description.clone(),
            }),
            session: context.session.as_ref().map(|session| {
                let remaining = (session.expires_at - now).num_seconds();
                SessionDocument {
                    user_id: session.user_id,
                    expires_at: session.expires_at,
                    valid: remaining > 0,
                    remaining_secs: u64::try_from(remaining).unwrap_or(0),
                    timeout_secs: session.session_timeout_secs,
                }
            }),
        }
    }
}

/// The document for people: one aligned line per fact.
pub fn render_text(document: &StatusDocument) -> String {
    let mut lines = Vec::new();
    let Some(context) = &document.context else {
        lines.push(format!(
            "state file: {} (none yet: the first run registers)",
            document.state_file
        ));
        if let Some(lock) = &document.lock {
            lines.push(format!("lock:       {}", lock_text(lock)));
        }
        return lines.join("\n") + "\n";
    };
    lines.push(format!("state file:      {}", document.state_file));
    if let Some(lock) = &document.lock {
        lines.push(format!("lock:            {}", lock_text(lock)));
    }
    lines.push(format!("format version:  {}", context.format_version));
    lines.push(format!("base URL:        {}", context.base_url));
    lines.push(format!(
        "API key:         sha256 {}…",
        context.api_key.fingerprint_prefix
    ));
    lines.push(format!(
        "                 {}",
        match context.api_key.configured_key {
            "matches" => "matches the configured API key",
            "differs" => "DIFFERS from the configured API key: the next run registers anew",
            _ => "(configured API key not readable here)",
        }
    ));
    let installation = if context.installation {
        "registered"
    } else {
        "none"
    };
    lines.push(format!("installation:    {installation}"));
    lines.push(match &context.device {
        Some(device) => format!(
            "device:          id {} description {:?}",
            device
                .id
                .map_or_else(|| "unknown".to_owned(), |id| id.to_string()),
            device.description.as_deref().unwrap_or("")
        ),
        None => "device:          none".to_owned(),
    });
    session_lines(context.session.as_ref(), &mut lines);
    lines.join("\n") + "\n"
}

fn lock_text(lock: &LockDocument) -> String {
    if !lock.held {
        return "free (no bunq-ipsync process is using this state directory)".to_owned();
    }
    format!(
        "held by {} (the daemon, or another bunq-ipsync command)",
        lock.holder_pid
            .map_or_else(|| "another process".to_owned(), |pid| format!("pid {pid}"))
    )
}

fn session_lines(session: Option<&SessionDocument>, lines: &mut Vec<String>) {
    let Some(session) = session else {
        lines.push("session:         none".to_owned());
        return;
    };
    let state = if session.valid {
        format!(
            "valid for {}",
            humantime::format_duration(std::time::Duration::from_secs(session.remaining_secs))
        )
    } else {
        "expired".to_owned()
    };
    lines.push(format!("user id:         {}", session.user_id));
    lines.push(format!(
        "session:         expires {} ({state})",
        session.expires_at.format("%Y-%m-%d %H:%M:%S UTC")
    ));
    if let Some(timeout) = session.timeout_secs {
        lines.push(format!("session timeout: {timeout} s"));
    }
}
