//! Entries the plan deliberately leaves as they are, and why: the planner decides them, the
//! orderer sorts them and the reports print them, so they live apart from the plan itself.

use crate::bunq::model::{EntryId, IpStatus};

/// Why an entry is deliberately left as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeptReason {
    /// ACTIVE, not desired, but protected.
    Protected,
    /// ACTIVE, not desired, policy `additive`.
    Additive,
    /// A second ACTIVE entry of a desired IP.
    DuplicateActive,
    /// A status this daemon does not know.
    UnknownStatus,
    /// The IP text is not a plain IPv4 address (`*`, IPv6, junk): bunq does not let the API
    /// manage it, so it is never written.
    NotIpv4,
}

impl KeptReason {
    /// Stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            KeptReason::Protected => "protected",
            KeptReason::Additive => "additive",
            KeptReason::DuplicateActive => "duplicate-active",
            KeptReason::UnknownStatus => "unknown-status",
            KeptReason::NotIpv4 => "not-ipv4",
        }
    }

    /// One line for humans.
    pub fn description(self) -> &'static str {
        match self {
            KeptReason::Protected => "protected, never deactivated",
            KeptReason::Additive => "not desired, left alone (policy additive)",
            KeptReason::DuplicateActive => "another ACTIVE entry of a desired IP, left alone",
            KeptReason::UnknownStatus => "unknown status, never touched",
            KeptReason::NotIpv4 => {
                "not a plain IPv4 address; bunq does not let the API manage it, never written"
            }
        }
    }
}

/// An entry deliberately left as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    /// The entry.
    pub entry: EntryId,
    /// Its address as bunq reports it.
    pub ip: String,
    /// Its status.
    pub status: IpStatus,
    /// Why it is left alone.
    pub reason: KeptReason,
}
