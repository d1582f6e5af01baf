//! bunq-ipsync keeps the permitted-IP allowlists of bunq API credentials equal to a desired state
//! written in YAML.
//!
//! # Layout
//!
//! Layers read top-down; arrows only point downward:
//!
//! * [`cli`]: the binary edge. Subcommands, exit codes, output formats. The only place that uses
//!   `anyhow`.
//! * [`daemon`]: the long-running service. Schedule, signals, config reload, session renewal,
//!   health and metrics listener, systemd notifications, the single-writer lock.
//! * [`reconcile`]: desired state versus actual state. The pure [`reconcile::plan`] decides; the
//!   single executor in [`reconcile::apply`] is the only code that writes to bunq.
//! * [`config`]: the one place that reads the YAML config: raw parse, then validation into a
//!   typed [`config::Config`].
//! * [`sources`]: dynamic desired IPs (DNS names, files, URLs), resolved before every run and
//!   followed between runs; never a reason to deactivate when they fail.
//! * [`address`]: the one rule for what an IP item may be, for the config and every source.
//! * [`bunq`]: the bunq API client. Cryptography, the persisted context, the signing and verifying
//!   transport with its rate limiter, typed endpoints.
//! * [`simulator`]: a stateful in-process bunq test double, used by the tests and by `demo`. It
//!   sits beside [`bunq`], never under it: the daemon's runtime path does not reach it.
//! * [`notify`]: webhooks (JSON, Slack) and the dead-man heartbeat after runs; secrets kept out
//!   of every print.
//! * [`clock`]: the one wall clock, injected into the bunq client and the daemon so tests can
//!   move time.
//! * [`secret`]: the one type that holds secrets and redacts them from every `Debug` print.

pub mod address;
pub mod atomic_file;
pub mod bunq;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod hex;
pub mod notify;
pub mod reconcile;
pub mod secret;
pub mod simulator;
pub mod sources;
pub mod tls;

#[cfg(test)]
mod test_util;
