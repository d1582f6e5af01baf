//! Process signals turned into events for the async run loop.
//!
//! A dedicated thread runs `signal_hook::iterator::Signals` and forwards each delivery into a
//! tokio channel as a [`SignalEvent`]:
//!
//! * `SIGHUP` → [`SignalEvent::Reload`] (re-read the config; systemd's `ExecReload`/
//!   `Type=notify-reload` send it).
//! * `SIGTERM`, `SIGINT` → [`SignalEvent::Shutdown`] the first time: the loop stops scheduling,
//!   lets an in-flight call finish and exits 0.
//! * A **second** `SIGTERM`/`SIGINT` ends the process at once from the signal thread, with exit
//!   status `128 + signal` (143 for SIGTERM, 130 for SIGINT, the shell convention), via
//!   `_exit` (`signal_hook::low_level::exit`): no destructors, no flushing. The operator asked
//!   twice; a hung bunq call must not keep the process alive.
//!
//! The decision logic is the pure [`SignalPolicy`], tested without sending signals.

use std::thread::JoinHandle;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};
use tokio::sync::mpsc;

/// What the run loop is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalEvent {
    /// Re-read and validate the config; switch on success, keep the old one on failure.
    Reload,
    /// Stop gracefully.
    Shutdown,
}

impl SignalEvent {
    /// The `event` field of the log line.
    pub fn name(self) -> &'static str {
        match self {
            SignalEvent::Reload => "reload",
            SignalEvent::Shutdown => "shutdown",
        }
    }
}

/// What to do with one delivered signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalAction {
    /// Forward this event to the run loop.
    Forward(SignalEvent),
    /// Exit the process immediately with this status.
    ExitNow(i32),
}

/// Maps deliveries to actions; remembers whether shutdown was already requested.
#[derive(Debug, Default)]
pub struct SignalPolicy {
    /// A first SIGTERM/SIGINT has been forwarded.
    shutdown_requested: bool,
}

impl SignalPolicy {
    /// The action for `signal`; `None` for signals this policy does not handle.
    pub fn on_signal(&mut self, signal: i32) -> Option<SignalAction> {
        match signal {
            SIGHUP => Some(SignalAction::Forward(SignalEvent::Reload)),
            SIGTERM | SIGINT if self.shutdown_requested => {
                Some(SignalAction::ExitNow(128 + signal))
            }
            SIGTERM | SIGINT => {
                self.shutdown_requested = true;
                Some(SignalAction::Forward(SignalEvent::Shutdown))
            }
            _ => None,
        }
    }
}

/// The running signal thread; dropping it unregisters the handlers and joins the thread.
///
/// While it lives, SIGTERM and SIGINT no longer kill the process by default: they arrive as
/// events, so the receiver must act on them. Keep it for the life of the process: signal-hook
/// cannot restore the default actions, so after a drop these signals are ignored.
#[derive(Debug)]
pub struct SignalListener {
    /// Closes the iterator so the thread ends.
    handle: Handle,
    /// Joined on drop.
    thread: Option<JoinHandle<()>>,
}

impl SignalListener {
    /// Registers SIGHUP, SIGTERM and SIGINT and starts the forwarding thread.
    pub fn start() -> std::io::Result<(SignalListener, mpsc::UnboundedReceiver<SignalEvent>)> {
        let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT])?;
        let handle = signals.handle();
        // Unbounded: the thread must never block on a busy loop, or a second SIGTERM could not
        // be acted on. Events are tiny and only come from an operator or the service manager.
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut policy = SignalPolicy::default();
                for signal in signals.forever() {
                    match policy.on_signal(signal) {
                        Some(SignalAction::Forward(event)) => {
                            tracing::info!(signal, event = event.name(), "signal received");
                            // A closed receiver means the loop is gone; keep handling signals so a
                            // second SIGTERM still exits.
                            let _ = tx.send(event);
                        }
                        Some(SignalAction::ExitNow(status)) => {
                            tracing::warn!(
                                signal,
                                status,
                                "second termination signal: exiting now"
                            );
                            signal_hook::low_level::exit(status);
                        }
                        None => {}
                    }
                }
            })?;
        Ok((
            SignalListener {
                handle,
                thread: Some(thread),
            },
            rx,
        ))
    }
}

impl Drop for SignalListener {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELOAD: Option<SignalAction> = Some(SignalAction::Forward(SignalEvent::Reload));
    const SHUTDOWN: Option<SignalAction> = Some(SignalAction::Forward(SignalEvent::Shutdown));

    /// The action a fresh policy takes on the last of `signals`, after the ones before it.
    fn last_action(signals: &[i32]) -> Option<SignalAction> {
        let mut p = SignalPolicy::default();
        let (last, before) = signals.split_last().expect("at least one signal");
        for &signal in before {
            p.on_signal(signal);
        }
        p.on_signal(*last)
    }

    #[test]
    fn sighup_requests_reload_every_time() {
        let mut p = SignalPolicy::default();
        for _ in 0..3 {
            assert_eq!(p.on_signal(SIGHUP), RELOAD);
        }
    }

    #[test]
    fn first_sigterm_requests_shutdown() {
        assert_eq!(last_action(&[SIGTERM]), SHUTDOWN);
    }

    #[test]
    fn second_sigterm_exits_with_143() {
        let action = last_action(&[SIGTERM, SIGTERM]);
        assert_eq!(action, Some(SignalAction::ExitNow(143)));
    }

    #[test]
    fn sigint_after_sigterm_exits_with_130() {
        let action = last_action(&[SIGTERM, SIGINT]);
        assert_eq!(action, Some(SignalAction::ExitNow(130)));
    }

    #[test]
    fn reload_after_shutdown_request_is_still_forwarded() {
        assert_eq!(last_action(&[SIGINT, SIGHUP]), RELOAD);
    }

    #[test]
    fn other_signals_are_ignored() {
        assert_eq!(last_action(&[signal_hook::consts::SIGUSR1]), None);
    }
}
