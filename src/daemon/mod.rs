//! The long-running service around the one-shot reconcile.
//!
//! Each submodule is one independent building block with its own tests; the run loop that
//! selects over them lives above these parts and only wires them together:
//!
//! * [`schedule`]: when runs happen (start, interval with jitter or cron ticks, retry backoff).
//! * [`renew`]: when to renew the bunq session, and the task that does it.
//! * [`signals`]: SIGHUP/SIGTERM/SIGINT turned into [`signals::SignalEvent`]s on a channel.
//! * [`watch`]: config file polling that survives the Kubernetes `..data` symlink swap.
//! * [`lock`]: the single-writer lock file in the state directory.
//! * [`health`]: the `/healthz`, `/readyz` and `/metrics` HTTP listener and its shared state.
//! * [`metrics`]: the Prometheus registry and typed recording methods.
//! * [`notify`]: systemd `sd_notify` messages (ready, reloading, status, watchdog, stopping).

pub mod health;
pub mod lock;
pub mod metrics;
pub mod notify;
pub mod renew;
pub mod runtime;
pub mod schedule;
pub mod signals;
pub mod watch;
