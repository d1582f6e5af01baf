//! What the executor ([`crate::reconcile::apply`], which re-exports these) says about each
//! planned action: its [`Outcome`], the label every report, metric and audit line uses for it
//! ([`OutcomeKind`]), and the run's [`ApplyReport`]. Apart from the executor so that readers of
//! results (reports, metrics, notifications) do not depend on how the writes are made.

use crate::bunq::model::EntryId;
use crate::reconcile::plan::{Action, Rule};
use crate::reconcile::tally::Tally;

/// How one planned action ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// bunq confirmed the change.
    Applied,
    /// The change was attempted and did not happen (or its result is unknown); the next run
    /// re-reads and repairs.
    Failed(String),
    /// Not attempted, for the reason given; the next run tries again.
    Skipped(String),
    /// Refused by a safety rule; the operator must change the config (or the limit).
    Blocked(Rule),
    /// Not attempted: the credential's policy is `observe`, so the change stays pending.
    Observed,
}

impl Outcome {
    /// Which of the four outcomes this is, without its detail.
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::Applied => OutcomeKind::Applied,
            Outcome::Failed(_) => OutcomeKind::Failed,
            Outcome::Skipped(_) => OutcomeKind::Skipped,
            Outcome::Blocked(_) => OutcomeKind::Blocked,
            Outcome::Observed => OutcomeKind::Observed,
        }
    }

    /// Stable label for logs and metrics: `applied`, `failed`, `skipped`, `blocked`, `observe`.
    pub fn label(&self) -> &'static str {
        self.kind().as_str()
    }
}

/// An [`Outcome`] without its detail: what counts, reports and the `outcome` metric label use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OutcomeKind {
    /// See [`Outcome::Applied`].
    Applied,
    /// See [`Outcome::Failed`].
    Failed,
    /// See [`Outcome::Skipped`].
    Skipped,
    /// See [`Outcome::Blocked`].
    Blocked,
    /// See [`Outcome::Observed`].
    Observed,
}

impl OutcomeKind {
    /// Every kind, in report order (and for pre-initialising metric series).
    pub const ALL: [OutcomeKind; 5] = [
        OutcomeKind::Applied,
        OutcomeKind::Failed,
        OutcomeKind::Skipped,
        OutcomeKind::Blocked,
        OutcomeKind::Observed,
    ];

    /// The label: `applied`, `failed`, `skipped`, `blocked`, `observe`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Applied => "applied",
            OutcomeKind::Failed => "failed",
            OutcomeKind::Skipped => "skipped",
            OutcomeKind::Blocked => "blocked",
            OutcomeKind::Observed => "observe",
        }
    }
}

/// One action and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionResult {
    /// What was planned.
    pub action: Action,
    /// How it ended.
    pub outcome: Outcome,
    /// The entry written: the planned one, or the id bunq gave a created entry.
    pub entry: Option<EntryId>,
    /// The action failed, but bunq may have carried it out all the same: the request got no
    /// answer (reset, timeout), an answer whose signature did not verify, or (for a create) a
    /// 5xx or an unreadable 200. The next run's reading decides; its change is not reported as
    /// drift.
    pub unconfirmed: bool,
}

/// Everything the executor did in one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// One result per planned action (applicable or blocked), in the order handled.
    pub results: Vec<ActionResult>,
    /// Set when a response-signature failure stopped the run.
    pub security_failure: Option<String>,
}

impl ApplyReport {
    /// Results that ended in `kind`.
    pub fn count(&self, kind: OutcomeKind) -> usize {
        self.results
            .iter()
            .filter(|result| result.outcome.kind() == kind)
            .count()
    }

    /// The results counted by outcome.
    pub fn tally(&self) -> Tally {
        let mut tally = Tally::default();
        for result in &self.results {
            *match result.outcome.kind() {
                OutcomeKind::Applied => &mut tally.applied,
                OutcomeKind::Failed => &mut tally.failed,
                OutcomeKind::Skipped => &mut tally.skipped,
                OutcomeKind::Blocked => &mut tally.blocked,
                OutcomeKind::Observed => &mut tally.observed,
            } += 1;
        }
        tally
    }

    /// True when any action failed or the run was stopped for security.
    pub fn has_failures(&self) -> bool {
        self.security_failure.is_some() || self.count(OutcomeKind::Failed) > 0
    }

    /// True when a safety rule refused something.
    pub fn has_blocked(&self) -> bool {
        self.count(OutcomeKind::Blocked) > 0
    }

    /// True when an `observe` credential has changes this run left pending.
    pub fn has_observed(&self) -> bool {
        self.count(OutcomeKind::Observed) > 0
    }
}

impl ActionResult {
    /// bunq confirmed the change on `entry`.
    pub(crate) fn applied(action: &Action, entry: EntryId) -> Self {
        ActionResult {
            action: action.clone(),
            outcome: Outcome::Applied,
            entry: Some(entry),
            unconfirmed: false,
        }
    }

    /// The change was attempted and did not happen, or may have (`unconfirmed`).
    pub(crate) fn failed(
        action: &Action,
        reason: String,
        entry: Option<EntryId>,
        unconfirmed: bool,
    ) -> Self {
        ActionResult {
            action: action.clone(),
            outcome: Outcome::Failed(reason),
            entry,
            unconfirmed,
        }
    }

    /// Not attempted (skipped or blocked): nothing was sent, the planned entry stays.
    pub(crate) fn not_attempted(action: &Action, outcome: Outcome) -> Self {
        ActionResult {
            action: action.clone(),
            outcome,
            entry: action.change.entry(),
            unconfirmed: false,
        }
    }
}
