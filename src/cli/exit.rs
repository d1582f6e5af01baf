//! Process exit codes, Terraform `-detailed-exitcode` style. Operators' scripts rely on them.

/// The outcome of a command, as the process reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// Success; for `plan`, nothing to do; for `apply`, converged.
    Ok,
    /// `plan` only: the plan has changes to apply.
    ChangesPending,
    /// A safety rule blocked some or all of the plan; the operator must look.
    Blocked,
    /// Something failed: bad config, bunq error, I/O.
    Error,
}

impl Exit {
    /// The numeric code: 0, 2, 3 or 1.
    pub fn code(self) -> i32 {
        match self {
            Exit::Ok => 0,
            Exit::Error => 1,
            Exit::ChangesPending => 2,
            Exit::Blocked => 3,
        }
    }

    /// When several hold, the most serious wins: error over blocked over pending over ok.
    pub fn most_serious(self, other: Exit) -> Exit {
        self.max(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_documented_contract() {
        assert_eq!(
            [Exit::Ok, Exit::Error, Exit::ChangesPending, Exit::Blocked].map(Exit::code),
            [0, 1, 2, 3]
        );
    }

    #[test]
    fn precedence_is_error_then_blocked_then_pending_then_ok() {
        assert_eq!(Exit::Blocked.most_serious(Exit::Error), Exit::Error);
        assert_eq!(
            Exit::ChangesPending.most_serious(Exit::Blocked),
            Exit::Blocked
        );
        assert_eq!(
            Exit::Ok.most_serious(Exit::ChangesPending),
            Exit::ChangesPending
        );
        assert_eq!(Exit::Ok.most_serious(Exit::Ok), Exit::Ok);
    }
}
