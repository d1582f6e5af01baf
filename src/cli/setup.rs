//! What every command does first: find and load the config, start logging, claim the state
//! directory, read the API key, connect to bunq. Errors carry context for the operator; nothing
//! here writes to bunq.
//!
//! # One writer per state directory
//!
//! The state directory holds the bunq context (keys, installation, session) and the last-run
//! record; only the process holding its lock ([`StateLock`]) may write them or the allowlists.
//! `run` and `apply` (and `import-sdk-context`) need the lock and refuse to start without it
//! ([`lock_state_dir`]). `plan`, `export` and `status` take it when it is free and otherwise run
//! read-only beside its holder ([`claim_state_dir`], [`StateAccess`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

use crate::bunq::{ApiObserver, BunqClient, ContextStore, RateLimiter};
use crate::cli::args::{Cli, LogFormatArg};
use crate::cli::logging::{self, LogFormat};
use crate::config::{self, Config};
use crate::daemon::lock::{LockError, StateLock};
use crate::reconcile::bunq_adapter::client_settings;

/// Loads and validates the config named by `--config`, `$BUNQ_IPSYNC_CONFIG` or the default.
pub fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let path = config::resolve_path(cli.config.as_deref());
    Ok(config::load(&path)?)
}

/// Starts logging with the config's format and level, overridden by the flags (and `RUST_LOG`).
pub fn init_logging(cli: &Cli, config: Option<&Config>) {
    let format = match (cli.log_format, config.map(|config| config.log.format)) {
        (Some(LogFormatArg::Json), _) | (None, Some(config::LogFormat::Json)) => LogFormat::Json,
        _ => LogFormat::Text,
    };
    let level = cli
        .log_level
        .clone()
        .or_else(|| config.map(|config| config.log.level.clone()))
        .unwrap_or_else(|| "info".into());
    logging::init(format, &level);
}

/// A runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// How a command may use the state directory.
#[derive(Debug)]
pub enum StateAccess {
    /// This process holds the lock until the value drops: it may register, renew and save.
    Writer(StateLock),
    /// Another process holds the lock, normally the daemon: this one uses the saved session as
    /// is and writes nothing (see [`BunqClient::connect_read_only`]).
    ReadOnly {
        /// The state directory.
        state_dir: PathBuf,
        /// The holder's pid, when the lock file names it.
        holder: Option<u32>,
    },
}

impl StateAccess {
    /// Explains a read-only command's failure: the daemon holds the state directory, so the
    /// command could only use the saved session as it was, and could not repair it. The cause
    /// follows (for a session problem, the client's reason). A writer's result is returned
    /// unchanged.
    pub fn explain<T>(&self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        match self {
            StateAccess::Writer(_) => result,
            StateAccess::ReadOnly { state_dir, holder } => result.with_context(|| {
                format!(
                    "the daemon holds state directory {}{}, so this command ran read-only with \
                     the daemon's saved session and renewed, registered and saved nothing (if \
                     that session is the problem: retry after the daemon renewed it, or stop \
                     the daemon)",
                    state_dir.display(),
                    holder_suffix(*holder)
                )
            }),
        }
    }
}

fn holder_suffix(holder: Option<u32>) -> String {
    holder
        .map(|pid| format!(" (lock held by pid {pid})"))
        .unwrap_or_default()
}

/// Takes the state directory's lock for a command that writes, creating the directory (mode
/// 0700) if needed. Fails at once, without waiting, when another process holds it.
pub fn lock_state_dir(state_dir: &Path) -> anyhow::Result<StateLock> {
    ContextStore::open(state_dir)?;
    Ok(StateLock::acquire(state_dir)?)
}

/// For a command that only reads: the lock when it is free (the command may then register and
/// save as the daemon would), read-only access when another process holds it.
pub fn claim_state_dir(state_dir: &Path) -> anyhow::Result<StateAccess> {
    match lock_state_dir(state_dir) {
        Ok(lock) => Ok(StateAccess::Writer(lock)),
        Err(err) => match err.downcast::<LockError>() {
            Ok(LockError::Held { state_dir, holder }) => {
                tracing::info!(
                    state_dir = %state_dir.display(),
                    holder,
                    "the state directory is locked by another bunq-ipsync process; running \
                     read-only with its saved session"
                );
                Ok(StateAccess::ReadOnly { state_dir, holder })
            }
            Ok(other) => Err(other.into()),
            Err(err) => Err(err),
        },
    }
}

/// [`connect`] for a writer; for a reader, the read-only client on the holder's saved session.
pub async fn connect_with(
    config: &Config,
    access: &StateAccess,
    observer: Option<Arc<dyn ApiObserver>>,
) -> anyhow::Result<BunqClient> {
    match access {
        StateAccess::Writer(_) => connect(config, observer).await,
        StateAccess::ReadOnly { state_dir, .. } => {
            let api_key = config::resolve_api_key(config)?;
            let mut settings = client_settings(config, observer)?;
            settings.rate_limiter = Some(RateLimiter::process());
            Ok(BunqClient::connect_read_only(settings, api_key, state_dir).await?)
        }
    }
}

/// Reads the API key and opens (or reuses) the bunq context in the config's state directory.
pub async fn connect(
    config: &Config,
    observer: Option<Arc<dyn ApiObserver>>,
) -> anyhow::Result<BunqClient> {
    let api_key = config::resolve_api_key(config)?;
    let mut settings = client_settings(config, observer)?;
    // Every client of the process counts against bunq's per-IP windows together (`demo` builds
    // two).
    settings.rate_limiter = Some(RateLimiter::process());
    let state_dir: &Path = &config.bunq.state_dir;
    BunqClient::connect(settings, api_key, state_dir)
        .await
        .with_context(|| format!("cannot open a bunq session at {}", config.bunq.base_url))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `flock` locks belong to an open file description, so two acquisitions in one process
    /// conflict like two processes do: this runs the real contention without a child process.
    #[test]
    fn a_reader_takes_the_lock_when_free_and_reads_only_while_another_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        let first = claim_state_dir(&state_dir).unwrap();
        assert!(matches!(first, StateAccess::Writer(_)), "{first:?}");

        let second = claim_state_dir(&state_dir).unwrap();
        match &second {
            StateAccess::ReadOnly {
                state_dir: held,
                holder,
            } => {
                assert_eq!(held, &state_dir);
                assert_eq!(*holder, Some(std::process::id()));
            }
            other => panic!("expected read-only access, got {other:?}"),
        }
        let writer = lock_state_dir(&state_dir).unwrap_err().to_string();
        assert!(
            writer.contains(&state_dir.display().to_string()),
            "{writer}"
        );
        assert!(
            writer.contains(&format!("pid {}", std::process::id())),
            "{writer}"
        );
        let explained = second
            .explain::<()>(Err(anyhow::anyhow!("session expired")))
            .unwrap_err()
            .to_string();
        assert!(
            explained.starts_with("the daemon holds state directory"),
            "{explained}"
        );

        drop(first);
        let again = claim_state_dir(&state_dir).unwrap();
        assert!(
            matches!(again, StateAccess::Writer(_)),
            "released on drop: {again:?}"
        );
    }
}
