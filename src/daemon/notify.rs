//! systemd service notifications (`sd_notify(3)`): readiness, reload, status, watchdog, stop.
//!
//! The [`Notifier`] is built once from the environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`,
//! `WATCHDOG_PID`) and never mutates it. Outside systemd (no `NOTIFY_SOCKET`, e.g. Kubernetes)
//! every method is a no-op. Messages are formatted by the `sd-notify` crate's `NotifyState`;
//! the datagram is sent here, because `sd-notify` 0.5 only sends to the socket named by the
//! process environment and tests need to aim at their own socket. Both filesystem paths and
//! Linux abstract sockets (`@name`) are supported.

use std::ffi::{OsStr, OsString};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::Duration;

use sd_notify::NotifyState;

/// Why a notification could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The socket could not be reached or the datagram was not sent completely.
    #[error("cannot notify the service manager at {target}: {source}")]
    Send {
        /// The `NOTIFY_SOCKET` value.
        target: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `CLOCK_MONOTONIC` could not be read for `MONOTONIC_USEC`.
    #[error("cannot read CLOCK_MONOTONIC for a reload notification: {0}")]
    Clock(#[source] std::io::Error),
}

/// Where notifications go.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// A socket file.
    Path(PathBuf),
    /// A Linux abstract socket (the name after the leading `@`).
    Abstract(Vec<u8>),
}

/// Sends `sd_notify` messages to one service manager socket, or nowhere.
#[derive(Clone, Debug, Default)]
pub struct Notifier {
    /// `None` outside systemd: every send is a no-op.
    target: Option<Target>,
    /// Half of the watchdog timeout, when systemd expects pings from this process.
    watchdog_interval: Option<Duration>,
}

impl Notifier {
    /// A notifier configured from the process environment, read once (the environment is not
    /// modified).
    pub fn from_env() -> Notifier {
        let mut notifier = match std::env::var_os("NOTIFY_SOCKET") {
            Some(socket) if !socket.is_empty() => Notifier::to_socket(&socket),
            _ => Notifier::disabled(),
        };
        notifier.watchdog_interval = watchdog_interval_from(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        notifier
    }

    /// A notifier that sends nothing (not running under systemd).
    pub fn disabled() -> Notifier {
        Notifier::default()
    }

    /// A notifier that sends to `socket`, spelled as in `NOTIFY_SOCKET`: a path, or `@name` for
    /// an abstract socket.
    pub fn to_socket(socket: &OsStr) -> Notifier {
        let bytes = socket.as_bytes();
        let target = match bytes.strip_prefix(b"@") {
            Some(name) => Target::Abstract(name.to_vec()),
            None => Target::Path(PathBuf::from(socket)),
        };
        Notifier {
            target: Some(target),
            watchdog_interval: None,
        }
    }

    /// Sets the watchdog timeout systemd announced (`WATCHDOG_USEC`); pings are due at half of it.
    pub fn with_watchdog_timeout(mut self, timeout: Duration) -> Notifier {
        self.watchdog_interval = (!timeout.is_zero()).then_some(timeout / 2);
        self
    }

    /// Whether messages go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// How often to send [`Notifier::watchdog`]: half of `WATCHDOG_USEC` when the watchdog is on
    /// for this process, `None` otherwise.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_interval
    }

    /// `READY=1`: startup (or a reload) is complete.
    pub fn ready(&self) -> Result<(), NotifyError> {
        self.send(&[NotifyState::Ready])
    }

    /// `RELOADING=1` with `MONOTONIC_USEC`: a reload starts. systemd ≥ 253 fails the reload (and
    /// stops the service) without the timestamp. Follow with [`Notifier::ready`].
    pub fn reloading(&self) -> Result<(), NotifyError> {
        if !self.is_enabled() {
            return Ok(());
        }
        let now = NotifyState::monotonic_usec_now().map_err(NotifyError::Clock)?;
        self.send(&[NotifyState::Reloading, now])
    }

    /// `STATUS=<text>`: shown by `systemctl status`. Line breaks are replaced by spaces, since a
    /// newline would start a new assignment.
    pub fn status(&self, text: &str) -> Result<(), NotifyError> {
        let one_line = text.replace(['\n', '\r'], " ");
        self.send(&[NotifyState::Status(&one_line)])
    }

    /// `WATCHDOG=1`: the main loop is making progress.
    pub fn watchdog(&self) -> Result<(), NotifyError> {
        self.send(&[NotifyState::Watchdog])
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) -> Result<(), NotifyError> {
        self.send(&[NotifyState::Stopping])
    }

    fn send(&self, states: &[NotifyState<'_>]) -> Result<(), NotifyError> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        let message: String = states.iter().map(|s| format!("{s}\n")).collect();
        let send_err = |source| NotifyError::Send {
            target: describe(target),
            source,
        };
        let socket = UnixDatagram::unbound().map_err(send_err)?;
        let sent = match target {
            Target::Path(path) => socket.send_to(message.as_bytes(), path),
            Target::Abstract(name) => SocketAddr::from_abstract_name(name)
                .and_then(|addr| socket.send_to_addr(message.as_bytes(), &addr)),
        }
        .map_err(send_err)?;
        if sent != message.len() {
            return Err(send_err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "incomplete datagram",
            )));
        }
        Ok(())
    }
}

fn describe(target: &Target) -> String {
    match target {
        Target::Path(path) => path.display().to_string(),
        Target::Abstract(name) => {
            let name = OsString::from(OsStr::from_bytes(name));
            format!("@{}", name.to_string_lossy())
        }
    }
}

/// Half of `WATCHDOG_USEC` if the watchdog applies to the process `own_pid`.
///
/// systemd sets `WATCHDOG_PID` to the main pid; if it names another process (we were forked from
/// the service's main process), the pings are not ours to send. Unparseable or zero values mean
/// no watchdog.
pub fn watchdog_interval_from(
    watchdog_usec: Option<&str>,
    watchdog_pid: Option<&str>,
    own_pid: u32,
) -> Option<Duration> {
    if let Some(pid) = watchdog_pid
        && pid.trim().parse::<u32>().ok()? != own_pid
    {
        return None;
    }
    let usec: u64 = watchdog_usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_the_timeout() {
        assert_eq!(
            watchdog_interval_from(Some("30000000"), None, 7),
            Some(Duration::from_secs(15))
        );
    }

    #[test]
    fn watchdog_for_our_pid_applies() {
        assert_eq!(
            watchdog_interval_from(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn watchdog_for_another_pid_is_ignored() {
        assert_eq!(watchdog_interval_from(Some("2000000"), Some("8"), 7), None);
    }

    #[test]
    fn missing_zero_or_garbage_watchdog_usec_means_no_watchdog() {
        assert_eq!(watchdog_interval_from(None, None, 7), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval_from(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval_from(Some("5"), Some("x"), 7), None);
    }

    #[test]
    fn disabled_notifier_sends_nothing_and_succeeds() {
        let n = Notifier::disabled();
        assert!(!n.is_enabled());
        n.ready().unwrap();
        n.reloading().unwrap();
        n.status("x").unwrap();
        n.watchdog().unwrap();
        n.stopping().unwrap();
    }

    #[test]
    fn at_prefix_selects_abstract_socket() {
        let n = Notifier::to_socket(OsStr::new("@sd/notify"));
        assert_eq!(n.target, Some(Target::Abstract(b"sd/notify".to_vec())));
    }

    #[test]
    fn explicit_watchdog_timeout_gives_half() {
        let n = Notifier::disabled().with_watchdog_timeout(Duration::from_secs(10));
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(5)));
    }

    #[test]
    fn unreachable_socket_is_a_send_error_naming_it() {
        let n = Notifier::to_socket(OsStr::new("/nonexistent/bunq-ipsync-notify.sock"));
        let err = n.ready().unwrap_err();
        assert!(
            err.to_string().starts_with(
                "cannot notify the service manager at /nonexistent/bunq-ipsync-notify.sock:"
            ),
            "{err}"
        );
    }
}
