//! The integration tests, one crate with a module per area (as ripgrep does): the library, its
//! dependencies and the shared support layer are linked once instead of once per file.
//! `cargo test --test integration faults::` runs one area.
//!
//! `tests/dumpable.rs` stays its own test binary: it makes its process non-dumpable.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a panic is how a test reports failure"
)]

mod invariants;
mod support;

mod bunq_contract;
mod cli;
mod client_scenarios;
mod config;
mod crypto_interop;
mod daemon_e2e;
mod daemon_parts;
mod demo;
mod deploy_files;
mod faults;
mod notify;
mod parser_props;
mod planner_props;
mod reconcile_scenarios;
mod simulator;
mod soak;
