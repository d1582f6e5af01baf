//! A stateful in-process bunq: the test double the client and the daemon are tested against,
//! and the bank behind the `demo` command.
//!
//! It is deliberately independent of [`crate::bunq`]'s client code (it shares only the wire
//! model and the crypto primitives), so it is an oracle for the client rather than a mirror of
//! it: its own token model, signature checks, rate-limit counting and IP enforcement.
//!
//! Start one with [`Simulator::start`], seed a user and key with
//! [`Simulator::create_user_with_api_key`], point a client at [`Simulator::base_url`], and steer
//! it with [`Simulator::set_caller_ip`], [`Simulator::set_entry_status`] (drift made in the app),
//! [`Simulator::expire_all_sessions`] and [`Simulator::inject`] ([`Fault`]s).
//!
//! * [`options`]: [`SimulatorOptions`], the knobs where bunq is unknown or too slow.
//! * [`dns`]: [`DnsServer`], a loopback nameserver for DNS sources (not bunq, but a double of
//!   the same kind: the tests and `demo` move a name with it).
//! * [`receiver`]: [`Receiver`], a loopback HTTP server that records requests: the webhook and
//!   heartbeat receiver of the notification tests and the demo.
//! * `server`: the handle, hyper server, response headers and signatures, fault application.
//! * `api`: routing order and the endpoints; `auth`: tokens, signatures, request ids, caller IP.
//! * `state`: the world model; `routes`: paths; `pagination`; `rate_limit`; `faults`; `clock`
//!   (scaled tokio time); `wire`: exact bunq envelopes.
//!
//! Choices where bunq's behaviour is undocumented: a second entry for an IP that already has one
//! is allowed (so tests can see a client create duplicates); `count` above 200 is refused with
//! 400, not clamped; DELETE on an entry is 405; a rejected (429) call does not count toward the
//! rate-limit window; session-server needs device-server for that key on that installation
//! first; a user id in the path that is not the session's user is 403. device-server on a
//! credential with ACTIVE entries changes no entry (the caller must be one of them); on one
//! without, it makes the caller IP and each `permitted_ips` value ACTIVE, reusing an existing
//! entry for the same IP. `session_timeout` is reported unscaled even when `time_scale` shortens
//! the real lifetime.

mod api;
mod auth;
mod clock;
pub mod dns;
mod faults;
pub mod options;
mod pagination;
mod rate_limit;
pub mod receiver;
mod routes;
mod serve;
mod server;
mod state;
mod wire;

pub use dns::{DnsAnswer, DnsServer};
pub use faults::{Fault, FaultKind};
pub use options::{DEFAULT_CALLER_IP, SimulatorOptions, UserKind};
pub use receiver::{Received, Receiver};
pub use server::{LoggedRequest, Simulator};
pub use state::{SeedError, SeededKey};
