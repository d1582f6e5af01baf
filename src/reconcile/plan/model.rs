//! The plan as data: per credential what is planned, refused, kept and in sync
//! ([`CredentialPlan`]), and for the run the [`Plan`] with its outcome and summary. This is what
//! the executor applies and the reports print.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde::Serialize;

use crate::bunq::model::{CredentialId, EntryId, PermittedIp, credential_label};
use crate::config::Policy;

use super::action::{Action, ChangeKind};
use super::input::{SourceFacts, SourceReport};
use super::kept::{Kept, KeptReason};
use super::rule::{BlockedAction, Rule, RunBlock};
use super::state::{Drift, IpStates, states_after};

/// A desired IP that is already ACTIVE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InSync {
    /// The address.
    pub ip: Ipv4Addr,
    /// The ACTIVE entry (the newest, when there are several).
    pub entry: EntryId,
}

/// The plan for one credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialPlan {
    /// The credential.
    pub credential: CredentialId,
    /// Its label.
    pub name: Option<String>,
    /// The policy applied.
    pub policy: Policy,
    /// Planned writes: creates and activations first, then deactivations.
    pub actions: Vec<Action>,
    /// Writes a safety rule refused.
    pub blocked: Vec<BlockedAction>,
    /// Entries deliberately left alone.
    pub kept: Vec<Kept>,
    /// Desired IPs already ACTIVE.
    pub in_sync: Vec<InSync>,
    /// Out-of-band changes since the previous run.
    pub drift: Vec<Drift>,
    /// Where desired IPs came from and which sources failed (empty without sources).
    pub sources: SourceFacts,
}

impl CredentialPlan {
    /// `4242 (ci-runners)` or `4242`.
    pub fn label(&self) -> String {
        credential_label(self.credential, self.name.as_deref())
    }

    /// The source an IP came from (`dns:…`), `None` for static items.
    pub fn source_of(&self, ip: &str) -> Option<&str> {
        let ip: Ipv4Addr = ip.parse().ok()?;
        self.sources.provenance.get(&ip).map(String::as_str)
    }

    /// Whether its actions may be applied: false under `observe`, whose actions stay pending.
    pub fn writes(&self) -> bool {
        self.policy.writes()
    }

    /// The IP states this credential will have once its actions are applied; what a run records
    /// for the next run's drift report.
    pub fn states_after(&self, actual: &[PermittedIp]) -> IpStates {
        states_after(actual, self.actions.iter())
    }
}

/// How a plan ends, in increasing severity (so the worst of several is their maximum).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanOutcome {
    /// Converged.
    NothingToDo,
    /// Actions to apply, none blocked.
    ChangesPending,
    /// A safety rule refused at least one action (or the whole run).
    Blocked,
}

/// Counts for a summary line and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanSummary {
    /// Creates planned.
    pub create: usize,
    /// Activations planned.
    pub activate: usize,
    /// Deactivations planned.
    pub deactivate: usize,
    /// Actions refused by a rule.
    pub blocked: usize,
    /// Entries deliberately left alone.
    pub kept: usize,
    /// Desired IPs already ACTIVE.
    pub in_sync: usize,
    /// Out-of-band changes found.
    pub drift: usize,
    /// Planned actions (counted above too) on `observe` credentials: reported, never written.
    pub observe: usize,
    /// Rules that refused something (action or run), sorted.
    pub blocking_rules: Vec<Rule>,
}

/// The result of planning a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Per credential, in input order.
    pub credentials: Vec<CredentialPlan>,
    /// The limit the run was checked against.
    pub max_changes: usize,
    /// Set when the whole run is blocked.
    pub run_block: Option<RunBlock>,
    /// What every distinct source yielded this run.
    pub sources: Vec<SourceReport>,
}

impl Plan {
    /// Blocked over pending over nothing to do.
    pub fn outcome(&self) -> PlanOutcome {
        if self.run_block.is_some() || self.credentials.iter().any(|plan| !plan.blocked.is_empty())
        {
            PlanOutcome::Blocked
        } else if self.credentials.iter().any(|plan| !plan.actions.is_empty()) {
            PlanOutcome::ChangesPending
        } else {
            PlanOutcome::NothingToDo
        }
    }

    /// Every planned action in application order (creates and activations of all credentials,
    /// then deactivations), whether or not the run is blocked or observed; for printing.
    pub fn actions(&self) -> Vec<&Action> {
        in_order(&self.credentials, |_| true)
    }

    /// The planned actions of credentials the daemon may write (every policy but `observe`), in
    /// application order, whether or not the run is blocked: what `max-changes` counts.
    pub fn writable_actions(&self) -> Vec<&Action> {
        in_order(&self.credentials, CredentialPlan::writes)
    }

    /// The planned actions of `observe` credentials, in application order: reported as pending,
    /// never applied.
    pub fn observed_actions(&self) -> Vec<&Action> {
        in_order(&self.credentials, |plan| !plan.writes())
    }

    /// Whether the plan deactivates anything, planned or held back by a rule: only then do the
    /// own-IP facts (the credentials listing) matter, as they only ever block a deactivation.
    pub fn wants_deactivation(&self) -> bool {
        self.credentials.iter().any(|plan| {
            plan.actions
                .iter()
                .chain(plan.blocked.iter().map(|blocked| &blocked.action))
                .any(|action| action.change.is_deactivation())
        })
    }

    /// The actions the executor may apply, in order: the writable ones, none when the run is
    /// blocked. Actions of `observe` credentials are never among them.
    pub fn applicable_actions(&self) -> Vec<&Action> {
        if self.run_block.is_some() {
            Vec::new()
        } else {
            self.writable_actions()
        }
    }

    /// Counts for a summary.
    pub fn summary(&self) -> PlanSummary {
        let mut summary = PlanSummary::default();
        let mut rules = BTreeSet::new();
        for plan in &self.credentials {
            if !plan.writes() {
                summary.observe += plan.actions.len();
            }
            for action in &plan.actions {
                match action.change.kind() {
                    ChangeKind::Create => summary.create += 1,
                    ChangeKind::Activate => summary.activate += 1,
                    ChangeKind::Deactivate => summary.deactivate += 1,
                }
            }
            summary.blocked += plan.blocked.len();
            rules.extend(plan.blocked.iter().map(|blocked| blocked.rule));
            summary.kept += plan.kept.len();
            summary.in_sync += plan.in_sync.len();
            summary.drift += plan.drift.len();
        }
        if let Some(block) = self.run_block {
            rules.insert(block.rule);
        }
        summary.blocking_rules = rules.into_iter().collect();
        summary
    }

    /// Every rule that fired, including `protected` (which keeps, not blocks).
    pub fn fired_rules(&self) -> BTreeSet<Rule> {
        let mut rules: BTreeSet<Rule> = self.summary().blocking_rules.into_iter().collect();
        let protected = self
            .credentials
            .iter()
            .flat_map(|plan| plan.kept.iter())
            .any(|kept| kept.reason == KeptReason::Protected);
        if protected {
            rules.insert(Rule::Protected);
        }
        rules
    }
}

/// The actions of the credentials `include` accepts, creates and activations of all of them
/// before any deactivation, so access never drops below the desired set mid-run.
fn in_order(
    credentials: &[CredentialPlan],
    include: impl Fn(&CredentialPlan) -> bool,
) -> Vec<&Action> {
    let all = || {
        credentials
            .iter()
            .filter(|plan| include(plan))
            .flat_map(|plan| plan.actions.iter())
    };
    all()
        .filter(|action| !action.change.is_deactivation())
        .chain(all().filter(|action| action.change.is_deactivation()))
        .collect()
}
