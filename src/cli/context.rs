//! Commands about the bunq context rather than the allowlists: `status`, `sandbox-user`,
//! `import-sdk-context`. None of them prints a secret.

use std::path::Path;

use anyhow::Context as _;
use chrono::Utc;

use crate::bunq::context::{CONTEXT_FILE_NAME, api_key_fingerprint};
use crate::bunq::{
    BaseUrl, Context, ContextStore, TransportSettings, create_sandbox_user, import_sdk_conf,
};
use crate::cli::args::{Cli, ImportArgs, SandboxUserArgs};
use crate::cli::setup::{self, StateAccess};
use crate::config;
use crate::reconcile::exit::ExitStatus;

/// `status`: what the state directory holds, and who holds its lock. Reads only; never contacts
/// bunq. It takes the lock when it is free like every command; when the daemon holds it, a
/// missing or expired saved session means the daemon cannot work, so that is an error (exit 1).
pub fn status(cli: &Cli) -> anyhow::Result<ExitStatus> {
    let config = setup::load_config(cli)?;
    let state_dir = &config.bunq.state_dir;
    let path = state_dir.join(CONTEXT_FILE_NAME);
    // Read-only: a missing state directory is reported, not created (and nobody holds it).
    if !state_dir.exists() {
        println!(
            "state file: {} (none yet: the first run registers)",
            path.display()
        );
        return Ok(ExitStatus::Success);
    }
    let access = setup::claim_state_dir(state_dir)?;
    let result = show_status(&config, &access);
    access.explain(result)
}

fn show_status(config: &config::Config, access: &StateAccess) -> anyhow::Result<ExitStatus> {
    let state_dir = &config.bunq.state_dir;
    let path = state_dir.join(CONTEXT_FILE_NAME);
    let context = ContextStore::open(state_dir)?.load()?;
    let held = matches!(access, StateAccess::ReadOnly { .. });
    let lock = lock_description(access);
    let Some(context) = context else {
        println!(
            "state file: {} (none yet: the first run registers)",
            path.display()
        );
        println!("lock:       {lock}");
        if held {
            anyhow::bail!("no saved bunq context in {}", path.display());
        }
        return Ok(ExitStatus::Success);
    };
    println!("state file:      {}", path.display());
    println!("lock:            {lock}");
    println!("format version:  {}", context.format_version);
    println!("base URL:        {}", context.base_url);
    print_api_key(config, &context);
    println!(
        "installation:    {}",
        if context.installation.is_some() {
            "registered"
        } else {
            "none"
        }
    );
    match &context.device {
        Some(device) => println!(
            "device:          id {} description {:?}",
            device
                .id
                .map_or_else(|| "unknown".to_string(), |id| id.to_string()),
            device.description.as_deref().unwrap_or("")
        ),
        None => println!("device:          none"),
    }
    match print_session(&context, &path) {
        Some(reason) if held => Err(anyhow::anyhow!(reason)),
        _ => Ok(ExitStatus::Success),
    }
}

/// Who holds the state directory's lock, for the `lock:` line.
fn lock_description(access: &StateAccess) -> String {
    match access {
        StateAccess::Writer(_) => {
            "free (no bunq-ipsync process is using this state directory)".to_owned()
        }
        StateAccess::ReadOnly { holder, .. } => format!(
            "held by {} (the daemon, or another bunq-ipsync command)",
            holder.map_or_else(|| "another process".to_owned(), |pid| format!("pid {pid}"))
        ),
    }
}

/// The `API key:` lines: the saved key's fingerprint prefix and whether it is the configured key.
fn print_api_key(config: &config::Config, context: &Context) {
    println!(
        "API key:         sha256 {}…",
        &context.api_key_fingerprint[..16.min(context.api_key_fingerprint.len())]
    );
    match config::resolve_api_key(config) {
        Ok(key) if api_key_fingerprint(&key) == context.api_key_fingerprint => {
            println!("                 matches the configured API key")
        }
        Ok(_) => println!(
            "                 DIFFERS from the configured API key: the next run registers anew"
        ),
        Err(_) => println!("                 (configured API key not readable here)"),
    }
}

/// The session lines; returns why the saved session is unusable (expired or missing), if it is.
fn print_session(context: &Context, path: &Path) -> Option<String> {
    let Some(session) = &context.session else {
        println!("session:         none");
        return Some(format!("{} holds no session", path.display()));
    };
    let remaining = session.expires_at - Utc::now();
    let mut unusable = None;
    let state = if remaining.num_seconds() > 0 {
        format!(
            "valid for {}",
            humantime::format_duration(std::time::Duration::from_secs(
                remaining.num_seconds() as u64
            ))
        )
    } else {
        unusable = Some(format!(
            "the saved bunq session expired at {}",
            session.expires_at.format("%Y-%m-%d %H:%M:%S UTC")
        ));
        "expired".to_string()
    };
    println!("user id:         {}", session.user_id);
    println!(
        "session:         expires {} ({state})",
        session.expires_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    if let Some(timeout) = session.session_timeout_secs {
        println!("session timeout: {timeout} s");
    }
    unusable
}

/// `sandbox-user`: creates a sandbox user and prints its key with the next steps.
pub fn sandbox_user(cli: &Cli, args: &SandboxUserArgs) -> anyhow::Result<ExitStatus> {
    setup::init_logging(cli, None);
    let base_url = match &args.base_url {
        Some(url) => BaseUrl::parse(url)?,
        None => BaseUrl::sandbox(),
    };
    let user = setup::runtime()?
        .block_on(create_sandbox_user(
            &base_url,
            &TransportSettings::default(),
        ))
        .with_context(|| format!("cannot create a sandbox user at {}", base_url.as_str()))?;
    // The one place a key is printed: the operator asked for a new one, and it is a sandbox key.
    println!("{}", user.api_key.expose());
    eprintln!(
        "Created a sandbox user{}. Store the key above in a file readable only by the daemon,\n\
         e.g. `umask 077; cat > /etc/bunq-ipsync/api-key`, and set bunq.api_key_file to it\n\
         (or BUNQ_API_KEY) with bunq.environment: sandbox.",
        user.user_id
            .map(|id| format!(" (id {id})"))
            .unwrap_or_default()
    );
    Ok(ExitStatus::Success)
}

/// `import-sdk-context`: adopts the registration saved by the official SDK.
pub fn import_sdk_context(cli: &Cli, args: &ImportArgs) -> anyhow::Result<ExitStatus> {
    let config = setup::load_config(cli)?;
    setup::init_logging(cli, Some(&config));
    let import = import_sdk_conf(&args.path)?;
    let configured = config::resolve_api_key(&config)?;
    if api_key_fingerprint(&configured) != api_key_fingerprint(&import.api_key) {
        anyhow::bail!(
            "{} belongs to another API key than the configured one; refusing to mix registrations",
            args.path.display()
        );
    }
    // The config's base URL is a validated `BaseUrl`: compare as one, not as text.
    if BaseUrl::parse(&import.context.base_url).ok().as_ref() != Some(&config.bunq.base_url) {
        anyhow::bail!(
            "{} was saved for {} but the config uses {}",
            args.path.display(),
            import.context.base_url,
            config.bunq.base_url
        );
    }
    // The daemon relies on the context file it holds: never replace it under a running daemon.
    let _lock = setup::lock_state_dir(&config.bunq.state_dir)?;
    let store = ContextStore::open(&config.bunq.state_dir)?;
    if store.load()?.is_some() && !args.force {
        anyhow::bail!(
            "{} already holds a context; pass --force to replace it",
            store.path().display()
        );
    }
    store.save(&import.context)?;
    println!(
        "imported {} into {}",
        args.path.display(),
        store.path().display()
    );
    eprintln!(
        "The SDK does not record the device's description; the first connect reads it from bunq \
         so that the own-IP rule finds this daemon's credential."
    );
    Ok(ExitStatus::Success)
}
