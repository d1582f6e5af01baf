//! Desired state versus actual state.
//!
//! * [`desired`]: the run's desired state: static items widened by what sources yielded.
//! * [`plan`]: the pure planner. Decides every action and applies the safety rules.
//! * [`exit`]: exit codes and their precedence.
//! * [`report`]: the plan as a text table or stable JSON.
//! * [`run`]: one run: observe bunq, plan, and (apply mode only) hand the plan to [`apply`], the
//!   single executor and the only code that writes to bunq.
//! * [`ledger`]: what the executor's two concurrent write streams share: results in plan order
//!   and the per-credential gate that holds deactivations until the grants are in.
//! * [`progress`]: what the executor tells a progress display, and the ETA at bunq's windows.
//! * [`port`]: the reader/writer ports a run reads and the executor writes through.
//! * [`bunq_adapter`]: the bunq client behind those ports, settings from the config.
//! * [`tally`]: the executor's results counted by outcome.
//! * [`verdict`]: how a run ended, as exit status, metric result, scheduling outcome and summary.
//! * [`record`]: what the last run left, for drift reports.
//! * [`export`]: the current allowlists as a config file, for onboarding.
//! * [`saved_plan`]: reviewed plans (`plan --out`, `apply --plan`, `apply --checksum`): the
//!   actions' checksum and the gate a gated apply checks.

pub mod apply;
pub mod bunq_adapter;
pub mod desired;
pub mod exit;
pub mod export;
#[cfg(test)]
mod fixtures;
pub mod ledger;
pub mod outcome;
pub mod plan;
pub mod port;
pub mod progress;
pub mod record;
pub mod report;
pub mod run;
pub mod saved_plan;
pub mod tally;
pub mod verdict;

pub use port::{AllowlistReader, AllowlistWriter};
