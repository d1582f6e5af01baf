//! The safety rules: their names ([`Rule`]), the exact case that refused an action
//! ([`BlockReason`]), the refused action ([`BlockedAction`]) and the refusal of a whole run
//! ([`RunBlock`]).

use super::action::Action;

/// A named safety rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// Never take away the daemon's own access.
    OwnIp,
    /// Protected IPs are never deactivated.
    Protected,
    /// Too many changes in one run block the run.
    MaxChanges,
    /// Entries with a status this daemon does not know are not touched or duplicated.
    UnknownStatus,
    /// A source of the credential failed: its desired set is incomplete, nothing is deactivated.
    SourceUnavailable,
}

impl Rule {
    /// Every rule (for pre-initialising the `changes_blocked_total` series at 0).
    pub const ALL: [Rule; 5] = [
        Rule::OwnIp,
        Rule::Protected,
        Rule::MaxChanges,
        Rule::UnknownStatus,
        Rule::SourceUnavailable,
    ];

    /// The stable name used in plans, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Rule::OwnIp => "own-ip",
            Rule::Protected => "protected",
            Rule::MaxChanges => "max-changes",
            Rule::UnknownStatus => "unknown-status",
            Rule::SourceUnavailable => "source-unavailable",
        }
    }

    /// What the rule protects, for humans.
    pub fn description(self) -> &'static str {
        match self {
            Rule::OwnIp => "would remove the daemon's own IP from the credential it signs in with",
            Rule::Protected => "protected IPs are never deactivated",
            Rule::MaxChanges => "more changes than sync.max_changes in one run",
            Rule::UnknownStatus => {
                "an entry with an unknown status exists for this IP; not touched, not duplicated"
            }
            Rule::SourceUnavailable => {
                "a source of this credential failed, so its desired set is incomplete; nothing is \
                 deactivated on it until the source resolves"
            }
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a rule refused one action: the rule names the family, this the exact case, so that the
/// operator is told what to fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BlockReason {
    /// `own-ip`: the daemon's device was registered from this IP on its own credential.
    RegistrationIp,
    /// `own-ip`: the IP is in `bunq.egress_ips` on the daemon's own credential.
    EgressIp,
    /// `own-ip`: on the daemon's own credential while `bunq.egress_ips` is not set.
    EgressUnknown,
    /// `own-ip`: no credential could be identified as the daemon's own.
    OwnCredentialUnknown,
    /// `unknown-status`: the only entries of a desired IP have a status this daemon does not
    /// know.
    UnknownStatus,
    /// `source-unavailable`: a DNS, file or URL source of the credential failed this run.
    SourceUnavailable,
}

impl BlockReason {
    /// The rule this reason belongs to.
    pub fn rule(self) -> Rule {
        match self {
            BlockReason::RegistrationIp
            | BlockReason::EgressIp
            | BlockReason::EgressUnknown
            | BlockReason::OwnCredentialUnknown => Rule::OwnIp,
            BlockReason::UnknownStatus => Rule::UnknownStatus,
            BlockReason::SourceUnavailable => Rule::SourceUnavailable,
        }
    }

    /// Stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            BlockReason::RegistrationIp => "registration-ip",
            BlockReason::EgressIp => "egress-ip",
            BlockReason::EgressUnknown => "egress-unknown",
            BlockReason::OwnCredentialUnknown => "own-credential-unknown",
            BlockReason::UnknownStatus => "unknown-status",
            BlockReason::SourceUnavailable => "source-unavailable",
        }
    }

    /// What happened and how to fix it, for humans.
    pub fn description(self) -> &'static str {
        match self {
            BlockReason::RegistrationIp => {
                "the daemon's device was registered from this IP (permitted_device.ip) on the \
                 credential it signs in with; it is never deactivated"
            }
            BlockReason::EgressIp => {
                "listed in bunq.egress_ips: the daemon may call bunq from this IP; it is never \
                 deactivated on the credential the daemon signs in with"
            }
            BlockReason::EgressUnknown => {
                "on the credential the daemon signs in with, and the daemon's egress is unknown: \
                 this ACTIVE IP may be the one it calls bunq from; set bunq.egress_ips to the IPs \
                 the daemon calls bunq from"
            }
            BlockReason::OwnCredentialUnknown => {
                "the daemon's own credential was not found: no credential's \
                 permitted_device.description equals the daemon's device description, so any \
                 credential may be the one it signs in with; set bunq.device_description to the \
                 description the device was registered with (see `bunq-ipsync export`), or check \
                 the device in the bunq app"
            }
            BlockReason::UnknownStatus => Rule::UnknownStatus.description(),
            BlockReason::SourceUnavailable => {
                "a source of this credential failed this run (see its failed sources), so this \
                 IP may still be desired; it is deactivated only once every source resolves; \
                 `bunq-ipsync validate --resolve` shows what each source yields"
            }
        }
    }
}

/// An action a safety rule refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockedAction {
    /// What would have been done.
    pub action: Action,
    /// The rule that refused it.
    pub rule: Rule,
    /// The exact case of the rule, with what to fix.
    pub why: BlockReason,
}

impl BlockedAction {
    pub(super) fn new(action: Action, why: BlockReason) -> Self {
        BlockedAction {
            action,
            rule: why.rule(),
            why,
        }
    }
}

/// Why the whole run is blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunBlock {
    /// Always [`Rule::MaxChanges`] today.
    pub rule: Rule,
    /// Actions the run would make.
    pub changes: usize,
    /// The configured limit.
    pub limit: usize,
}
