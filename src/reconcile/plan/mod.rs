//! The planner: desired state + actual state → [`Plan`]. Pure: no I/O, no clock, no randomness;
//! the same input always gives the same plan, so everything that decides is tested here.
//!
//! # Semantics, per credential
//!
//! * A desired IP with an ACTIVE entry is in sync. Further ACTIVE entries of the same IP are
//!   left alone and reported as kept (`duplicate-active`): deactivating them would gain nothing.
//! * A desired IP with only INACTIVE entries: the newest one (highest id) is activated. A new
//!   entry is never created while one exists for the IP.
//! * A desired IP with no entry: a create (status ACTIVE).
//! * A desired IP whose only entries have a status this daemon does not know: the create is
//!   blocked by `unknown-status` (creating would duplicate, touching the entry is not ours to do).
//! * An ACTIVE entry whose IP is not desired: deactivated under `sync` (every ACTIVE entry of that
//!   IP), kept under `additive`, kept if the IP is `protected`.
//! * `observe` plans exactly like `sync` (drift, actions, safety rules), but its actions are
//!   never applicable: they are reported as pending and never count against `max-changes`.
//! * An entry whose IP text is not a plain IPv4 address (the app-set wildcard `*`, IPv6, junk)
//!   never matches a desired IP and is never written, whatever its status: bunq refuses to
//!   manage `*` through the API, so a PUT would fail every run. It is reported as kept
//!   (`not-ipv4`) and never blocks the run.
//! * Entries with an unknown status are reported as kept and never touched.
//!
//! # Safety rules (reported by name)
//!
//! * `own-ip`: the daemon must never deactivate an IP it may be calling bunq from. bunq accepts
//!   calls from any ACTIVE IP of the credential, so on the daemon's own credential (the one
//!   whose `permitted_device.description` is the daemon's):
//!   * the registration IP (`permitted_device.ip`) is never deactivated (`registration-ip`);
//!   * every `bunq.egress_ips` address is never deactivated (`egress-ip`);
//!   * when `bunq.egress_ips` is not set, every other deactivation is blocked too
//!     (`egress-unknown`): any ACTIVE IP there may be the one the daemon calls from.
//!
//!   When the own credential cannot be identified at all, the rule fails closed: every
//!   deactivation on every managed credential is blocked (`own-credential-unknown`), since any of
//!   them may be the daemon's. Creates and activations still apply in all these cases; only the
//!   refused deactivations are blocked, and they make the run `blocked`.
//! * `protected`: protected IPs are never deactivated; they show as kept and make the run
//!   neither blocked nor pending.
//! * `max-changes`: more writable actions (those of `observe` credentials do not count) than
//!   `max_changes` in one run block the whole run: nothing is applicable, the full plan is still
//!   there to print.
//! * `unknown-status`: see above.
//! * `source-unavailable`: when a DNS, file or URL source of a credential failed this run, its
//!   desired set is incomplete: grants still apply (static items and the sources that
//!   resolved), but every deactivation on that credential is blocked, since the failed source
//!   may have yielded the IP. Other credentials are unaffected.
//!
//! # Order
//!
//! [`Plan::applicable_actions`] lists every create and activation of the run before any
//! deactivation, so access never drops below the desired set while a run is being applied.
//!
//! # Layout
//!
//! Private submodules, everything public re-exported here:
//!
//! * `input`: what the planner is given; `state`: IP states and drift.
//! * `action`: the planned writes; `rule`: the safety rules and what they refuse.
//! * `own_ip`: the daemon's own access and the `own-ip` guard.
//! * `credential`: one credential's plan, step by step; `order`: the order of its lists.
//! * `kept`: the entries left alone and why.
//! * `model`: the resulting [`Plan`].

mod action;
mod credential;
mod input;
mod kept;
mod model;
mod order;
mod own_ip;
mod rule;
mod state;

pub use action::{Action, Change, ChangeKind, Reason};
pub use input::{CredentialState, FailedSource, PlanInput, SourceFacts, SourceReport};
pub use kept::{Kept, KeptReason};
pub use model::{CredentialPlan, InSync, Plan, PlanOutcome, PlanSummary};
pub use own_ip::{OwnAccess, own_access};
pub use rule::{BlockReason, BlockedAction, Rule, RunBlock};
pub use state::{Drift, IpStates, ip_states, states_after};

use credential::plan_credential;
use own_ip::OwnRule;

/// The wildcard entry bunq's app can set; it grants every IP.
pub const WILDCARD: &str = "*";

/// Plans a run: every credential on its own, then the run-wide
/// `max-changes` limit.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let credentials: Vec<CredentialPlan> = input
        .credentials
        .iter()
        .map(|state| {
            let own = OwnRule::for_credential(
                state.id,
                input.own_credential_known,
                &input.own_access,
                input.egress_ips,
            );
            plan_credential(state, &own)
        })
        .collect();
    // Only writes count: `observe` credentials' actions are never applied.
    let changes: usize = credentials
        .iter()
        .filter(|plan| plan.writes())
        .map(|plan| plan.actions.len())
        .sum();
    let run_block = (changes > input.max_changes).then_some(RunBlock {
        rule: Rule::MaxChanges,
        changes,
        limit: input.max_changes,
    });
    Plan {
        credentials,
        max_changes: input.max_changes,
        run_block,
        sources: input.sources.clone(),
    }
}

#[cfg(test)]
#[path = "../plan_tests.rs"]
mod tests;
