//! The verdict on one run: how it ended, in every form its consumers need, decided in one place.
//!
//! A finished run is read by the CLI (exit code), the daemon's scheduler (retry soon or wait),
//! the metrics (`result` label of `bunq_ipsync_runs_total`) and the operator (summary line in the
//! log and systemd `STATUS=`). [`RunReport::verdict`] and [`RunError::verdict`] give all of them
//! at once, so they cannot disagree about what a run was.

use crate::reconcile::exit::ExitStatus;
use crate::reconcile::report::summary_line;
use crate::reconcile::run::{RunError, RunReport};

/// How a reconcile run ended; the `result` label of `bunq_ipsync_runs_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunResult {
    /// Actual state already equalled the desired state; nothing was written.
    Converged,
    /// Drift was found and every planned change was applied.
    ChangesApplied,
    /// A safety rule refused the plan; nothing was written.
    Blocked,
    /// The run did not complete (API error, partial apply, invalid state).
    Failed,
}

impl RunResult {
    /// Every result, for pre-initialising series.
    pub const ALL: [RunResult; 4] = [
        RunResult::Converged,
        RunResult::ChangesApplied,
        RunResult::Blocked,
        RunResult::Failed,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Converged => "converged",
            RunResult::ChangesApplied => "changes_applied",
            RunResult::Blocked => "blocked",
            RunResult::Failed => "failed",
        }
    }

    /// Whether the run reached the desired state, which is what "last success" means.
    pub fn is_success(self) -> bool {
        matches!(self, RunResult::Converged | RunResult::ChangesApplied)
    }
}

/// How a run ended, as far as scheduling cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// The run completed (converged, applied, or blocked by a safety rule).
    Completed,
    /// The run failed for a reason that may go away by itself (timeout, 5xx, 429): retry soon.
    TransientFailure,
    /// The run failed in a way a retry will not fix (rejected credentials, bad state): wait for
    /// the next scheduled run.
    Failed,
}

/// Everything a run's consumers need to know about how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The process exit status (CLI).
    pub exit: ExitStatus,
    /// The metric result.
    pub result: RunResult,
    /// What the scheduler does next.
    pub outcome: RunOutcome,
    /// One line for the log and systemd `STATUS=`.
    pub summary: String,
}

impl RunReport {
    /// The exit status: for a plan, its outcome; for an apply, error if anything failed,
    /// blocked if a safety rule refused something, changes pending if an `observe` credential
    /// has changes left unwritten, else success (converged).
    pub fn exit_status(&self) -> ExitStatus {
        match &self.applied {
            None => ExitStatus::from_outcome(self.plan.outcome()),
            Some(report) if report.has_failures() => ExitStatus::Error,
            Some(report) if report.has_blocked() => ExitStatus::Blocked,
            Some(report) if report.has_observed() => ExitStatus::ChangesPending,
            Some(_) => ExitStatus::Success,
        }
    }

    /// The verdict on this run: exit status, metric result, scheduling outcome and summary.
    pub fn verdict(&self) -> Verdict {
        let (result, outcome, summary) = self.judge();
        Verdict {
            exit: self.exit_status(),
            result,
            outcome,
            summary,
        }
    }

    fn judge(&self) -> (RunResult, RunOutcome, String) {
        let Some(applied) = &self.applied else {
            // A plan-only run (`run --dry-run`) writes nothing: it reports what it would do.
            return (
                RunResult::Converged,
                RunOutcome::Completed,
                format!("dry run, nothing written: {}", summary_line(&self.plan)),
            );
        };
        let tally = applied.tally();
        let counts = format!("{tally}, {} drift", self.drift_count());
        if let Some(reason) = &applied.security_failure {
            // Not retried within the run: the next scheduled run starts afresh.
            return (
                RunResult::Failed,
                RunOutcome::Failed,
                format!("run stopped: {reason}"),
            );
        }
        if applied.has_failures() {
            return (
                RunResult::Failed,
                RunOutcome::TransientFailure,
                format!("run incomplete: {counts}"),
            );
        }
        if applied.has_blocked() {
            let rules = self
                .plan
                .fired_rules()
                .iter()
                .map(|rule| rule.name())
                .collect::<Vec<_>>()
                .join(", ");
            return (
                RunResult::Blocked,
                RunOutcome::Completed,
                format!("run blocked by {rules}: {counts}"),
            );
        }
        // The writable credentials converged; what `observe` holds back is pending, not a
        // failure: the run result says what happened to the writes, the summary says the rest.
        let result = if tally.applied > 0 {
            RunResult::ChangesApplied
        } else {
            RunResult::Converged
        };
        if applied.has_observed() {
            return (
                result,
                RunOutcome::Completed,
                format!("changes pending (policy observe, not written): {counts}"),
            );
        }
        if tally.applied > 0 {
            (
                RunResult::ChangesApplied,
                RunOutcome::Completed,
                format!("changes applied: {counts}"),
            )
        } else {
            (
                RunResult::Converged,
                RunOutcome::Completed,
                format!("converged: {counts}"),
            )
        }
    }
}

impl RunError {
    /// The verdict on a run that could not plan. `transient`: a retry soon may succeed (the
    /// caller knows, e.g. after asking for a session renewal); `explanation` is the failure as
    /// the operator should read it.
    pub fn verdict(&self, transient: bool, explanation: &str) -> Verdict {
        Verdict {
            exit: ExitStatus::Error,
            result: RunResult::Failed,
            outcome: if transient {
                RunOutcome::TransientFailure
            } else {
                RunOutcome::Failed
            },
            summary: format!("run failed: {explanation}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::apply::{ActionResult, ApplyReport, Outcome};
    use crate::reconcile::plan::{Action, Change, Plan, Reason, Rule};

    fn report(outcomes: Vec<Outcome>, security_failure: Option<&str>) -> RunReport {
        let results = outcomes
            .into_iter()
            .map(|outcome| ActionResult {
                action: Action {
                    credential: 1,
                    change: Change::Create {
                        ip: "192.0.2.1".parse().unwrap(),
                    },
                    reason: Reason::DesiredMissing,
                },
                outcome,
                entry: None,
                unconfirmed: false,
            })
            .collect();
        RunReport {
            run_id: "run".into(),
            plan: Plan {
                credentials: Vec::new(),
                max_changes: 10,
                run_block: None,
                sources: Vec::new(),
            },
            resolutions: Default::default(),
            applied: Some(ApplyReport {
                results,
                security_failure: security_failure.map(str::to_owned),
            }),
        }
    }

    #[test]
    fn nothing_applied_is_converged() {
        let verdict = report(Vec::new(), None).verdict();
        assert_eq!(verdict.exit, ExitStatus::Success);
        assert_eq!(verdict.result, RunResult::Converged);
        assert_eq!(verdict.outcome, RunOutcome::Completed);
        assert_eq!(
            verdict.summary,
            "converged: 0 applied, 0 failed, 0 skipped, 0 blocked, 0 drift"
        );
    }

    #[test]
    fn an_applied_change_is_changes_applied() {
        let verdict = report(vec![Outcome::Applied], None).verdict();
        assert_eq!(verdict.exit, ExitStatus::Success);
        assert_eq!(verdict.result, RunResult::ChangesApplied);
        assert!(verdict.summary.starts_with("changes applied: 1 applied"));
    }

    #[test]
    fn a_failure_is_retried_soon() {
        let outcomes = vec![Outcome::Applied, Outcome::Failed("503".into())];
        let verdict = report(outcomes, None).verdict();
        assert_eq!(verdict.exit, ExitStatus::Error);
        assert_eq!(verdict.result, RunResult::Failed);
        assert_eq!(verdict.outcome, RunOutcome::TransientFailure);
        assert!(
            verdict
                .summary
                .starts_with("run incomplete: 1 applied, 1 failed")
        );
    }

    #[test]
    fn a_security_stop_waits_for_the_next_run() {
        let verdict = report(vec![Outcome::Failed("bad".into())], Some("bad signature")).verdict();
        assert_eq!(verdict.exit, ExitStatus::Error);
        assert_eq!(verdict.outcome, RunOutcome::Failed);
        assert_eq!(verdict.summary, "run stopped: bad signature");
    }

    #[test]
    fn a_refusal_is_blocked_but_completed() {
        let verdict = report(vec![Outcome::Blocked(Rule::OwnIp)], None).verdict();
        assert_eq!(verdict.exit, ExitStatus::Blocked);
        assert_eq!(verdict.result, RunResult::Blocked);
        assert_eq!(verdict.outcome, RunOutcome::Completed);
    }

    #[test]
    fn observed_changes_are_pending_not_failed() {
        let verdict = report(vec![Outcome::Observed, Outcome::Observed], None).verdict();
        assert_eq!(verdict.exit, ExitStatus::ChangesPending);
        assert_eq!(verdict.exit.code(), 2);
        assert_eq!(verdict.result, RunResult::Converged);
        assert_eq!(verdict.outcome, RunOutcome::Completed);
        assert_eq!(
            verdict.summary,
            "changes pending (policy observe, not written): 0 applied, 0 failed, 0 skipped, \
             0 blocked, 2 observe, 0 drift"
        );
    }

    #[test]
    fn a_refusal_wins_over_observed_changes() {
        let outcomes = vec![Outcome::Observed, Outcome::Blocked(Rule::OwnIp)];
        assert_eq!(report(outcomes, None).verdict().exit, ExitStatus::Blocked);
    }

    #[test]
    fn a_plan_only_run_is_judged_by_its_plan() {
        let mut planned = report(Vec::new(), None);
        planned.applied = None;
        let verdict = planned.verdict();
        assert_eq!(verdict.exit, ExitStatus::Success);
        assert_eq!(
            verdict.summary,
            "dry run, nothing written: Plan: 0 to create, 0 to activate, 0 to deactivate, 0 blocked"
        );
    }
}
