//! The long-running service around the one-shot reconcile.
//!
//! Each building block below is independent, with its own tests; [`runtime`] wires them
//! together (start-up, [`runtime::run`]), and the private modules `run_loop` (the loop that
//! selects over them, one run at a time, and its accounting), `connect` (the first connection),
//! `tasks` (signal forwarding, watchdog, session renewal) and `observer` (the one place bunq's
//! events reach health and metrics) do the daemon's work:
//!
//! * [`schedule`]: when runs happen (start, interval with jitter or cron ticks, retry backoff).
//! * [`renew`]: when to renew the bunq session, and the task that does it.
//! * [`signals`]: SIGHUP/SIGTERM/SIGINT turned into [`signals::SignalEvent`]s on a channel.
//! * [`watch`]: config file polling that survives the Kubernetes `..data` symlink swap.
//! * [`lock`]: the single-writer lock file in the state directory.
//! * [`health`]: the `/healthz`, `/readyz` and `/metrics` HTTP listener and its shared state.
//! * [`metrics`]: the Prometheus registry and typed recording methods.
//! * [`notify`]: systemd `sd_notify` messages (ready, reloading, status, watchdog, stopping).

mod connect;
mod error;
pub mod health;
pub mod lock;
pub mod metrics;
pub mod notify;
mod observer;
pub mod renew;
mod run_loop;
pub mod runtime;
pub mod schedule;
pub mod signals;
mod tasks;
#[cfg(test)]
mod test_bank;
pub mod watch;
