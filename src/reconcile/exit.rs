//! Process exit codes, in the spirit of Terraform's `-detailed-exitcode`: 0 nothing to do (or
//! converged), 2 changes pending, 3 blocked by a safety rule, 1 error. When several hold, the
//! most severe wins: error over blocked over pending over nothing.

use super::plan::PlanOutcome;

/// The exit status of a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// 0: nothing to do, or the run converged.
    Success,
    /// 1: an error (invalid config, bunq unreachable, a failed write).
    Error,
    /// 2: the plan has changes that are not applied yet.
    ChangesPending,
    /// 3: a safety rule refused an action or the whole run.
    Blocked,
}

impl ExitStatus {
    /// The numeric process exit code.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Error => 1,
            ExitStatus::ChangesPending => 2,
            ExitStatus::Blocked => 3,
        }
    }

    /// Severity used to combine statuses; higher wins.
    fn severity(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::ChangesPending => 1,
            ExitStatus::Blocked => 2,
            ExitStatus::Error => 3,
        }
    }

    /// The more severe of two statuses.
    pub fn worst(self, other: ExitStatus) -> ExitStatus {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    /// The status of a plan outcome alone.
    pub fn from_outcome(outcome: PlanOutcome) -> ExitStatus {
        match outcome {
            PlanOutcome::NothingToDo => ExitStatus::Success,
            PlanOutcome::ChangesPending => ExitStatus::ChangesPending,
            PlanOutcome::Blocked => ExitStatus::Blocked,
        }
    }

    /// The status of a command: an error wins over any outcome; no outcome (planning never
    /// happened) without an error is success.
    pub fn of_run(outcome: Option<PlanOutcome>, errored: bool) -> ExitStatus {
        let status = outcome.map_or(ExitStatus::Success, ExitStatus::from_outcome);
        if errored {
            status.worst(ExitStatus::Error)
        } else {
            status
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_detailed_exitcode() {
        let codes: Vec<u8> = [
            ExitStatus::Success,
            ExitStatus::Error,
            ExitStatus::ChangesPending,
            ExitStatus::Blocked,
        ]
        .map(ExitStatus::code)
        .to_vec();
        assert_eq!(codes, vec![0, 1, 2, 3]);
    }

    #[test]
    fn outcomes_map_to_codes() {
        assert_eq!(ExitStatus::from_outcome(PlanOutcome::NothingToDo).code(), 0);
        assert_eq!(
            ExitStatus::from_outcome(PlanOutcome::ChangesPending).code(),
            2
        );
        assert_eq!(ExitStatus::from_outcome(PlanOutcome::Blocked).code(), 3);
    }

    #[test]
    fn error_wins_over_blocked() {
        assert_eq!(
            ExitStatus::of_run(Some(PlanOutcome::Blocked), true),
            ExitStatus::Error
        );
    }

    #[test]
    fn blocked_wins_over_pending() {
        assert_eq!(
            ExitStatus::ChangesPending.worst(ExitStatus::Blocked),
            ExitStatus::Blocked
        );
        assert_eq!(
            ExitStatus::Blocked.worst(ExitStatus::ChangesPending),
            ExitStatus::Blocked
        );
    }

    #[test]
    fn pending_wins_over_nothing() {
        assert_eq!(
            ExitStatus::Success.worst(ExitStatus::ChangesPending),
            ExitStatus::ChangesPending
        );
    }

    #[test]
    fn error_without_a_plan_is_an_error() {
        assert_eq!(ExitStatus::of_run(None, true).code(), 1);
    }

    #[test]
    fn no_error_and_no_plan_is_success() {
        assert_eq!(ExitStatus::of_run(None, false).code(), 0);
    }

    #[test]
    fn outcome_order_is_blocked_over_pending_over_nothing() {
        assert!(PlanOutcome::Blocked > PlanOutcome::ChangesPending);
        assert!(PlanOutcome::ChangesPending > PlanOutcome::NothingToDo);
    }
}
