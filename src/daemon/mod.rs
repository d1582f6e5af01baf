//! The long-running service around the one-shot reconcile.
//!
//! [`runtime`] starts the daemon ([`runtime::run`]) and wires the parts together. The daemon's
//! own work lives in private modules, one job each: `run_loop` (the loop that selects over the
//! parts, one run at a time, and accounts for each run), `connect` (the first bunq connection),
//! `tasks` (signal forwarding, watchdog, session renewal), `rotate` (switching to a new API
//! key without a restart), `observer` (the one place bunq's
//! events reach health and metrics) and `error` (why start-up failed).
//!
//! The building blocks, each independent with its own tests:
//!
//! * [`schedule`]: when runs happen (start, interval with jitter or cron ticks, retry backoff).
//! * [`renew`]: when to renew the bunq session, and the task that does it.
//! * [`signals`]: SIGHUP/SIGTERM/SIGINT turned into [`signals::SignalEvent`]s on a channel.
//! * [`watch`]: config file polling that survives the Kubernetes `..data` symlink swap.
//! * [`follow`]: re-resolving DNS, file and URL sources between runs; a change asks for a run.
//! * [`lock`]: the single-writer lock file in the state directory.
//! * [`health`]: the `/healthz`, `/readyz` and `/metrics` HTTP listener and its shared state.
//! * [`metrics`]: the Prometheus registry and typed recording methods.
//! * [`notify`]: systemd `sd_notify` messages (ready, reloading, status, watchdog, stopping).

mod connect;
mod error;
pub mod follow;
pub mod health;
pub mod lock;
pub mod metrics;
pub mod notify;
mod observer;
mod process_metrics;
pub mod renew;
mod rotate;
mod run_loop;
pub mod runtime;
pub mod schedule;
pub mod signals;
mod tasks;
#[cfg(test)]
mod test_bank;
pub mod watch;
