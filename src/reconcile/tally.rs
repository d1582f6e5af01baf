//! [`Tally`]: the executor's results counted by outcome, in the words the CLI and the daemon's
//! summary use. Apart from [`crate::reconcile::apply`] (which re-exports it) to keep that module
//! to the executor.

/// How many results of an [`ApplyReport`](crate::reconcile::apply::ApplyReport) ended in each [`OutcomeKind`](crate::reconcile::apply::OutcomeKind). Displays as
/// `1 applied, 0 failed, 2 skipped, 0 blocked`, the form the CLI and the daemon's summary use,
/// with `, 3 observe` appended when `observe` credentials have pending changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Results that ended [`OutcomeKind::Applied`](crate::reconcile::apply::OutcomeKind::Applied).
    pub applied: usize,
    /// Results that ended [`OutcomeKind::Failed`](crate::reconcile::apply::OutcomeKind::Failed).
    pub failed: usize,
    /// Results that ended [`OutcomeKind::Skipped`](crate::reconcile::apply::OutcomeKind::Skipped).
    pub skipped: usize,
    /// Results that ended [`OutcomeKind::Blocked`](crate::reconcile::apply::OutcomeKind::Blocked).
    pub blocked: usize,
    /// Results that ended [`OutcomeKind::Observed`](crate::reconcile::apply::OutcomeKind::Observed).
    pub observed: usize,
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} applied, {} failed, {} skipped, {} blocked",
            self.applied, self.failed, self.skipped, self.blocked
        )?;
        if self.observed > 0 {
            write!(f, ", {} observe", self.observed)?;
        }
        Ok(())
    }
}
