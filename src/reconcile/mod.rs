//! Desired state versus actual state.
//!
//! * [`plan`]: the pure planner. Decides every action and applies the safety rules.
//! * [`exit`]: exit codes and their precedence.
//! * [`report`]: the plan as a text table or stable JSON.
//! * [`export`]: the current allowlists as a config file, for onboarding.

pub mod exit;
pub mod export;
pub mod plan;
pub mod report;
