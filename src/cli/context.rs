//! Commands about the bunq context rather than the allowlists: `sandbox-user`,
//! `import-sdk-context` (`status` has its own module). None of them prints a secret.

use anyhow::Context as _;

use crate::bunq::context::api_key_fingerprint;
use crate::bunq::{BaseUrl, ContextStore, TransportSettings, create_sandbox_user, import_sdk_conf};
use crate::cli::args::{Cli, ImportArgs, SandboxUserArgs};
use crate::cli::setup;
use crate::config;
use crate::reconcile::exit::ExitStatus;

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
