//! The planner's actions: what one planned write changes ([`Change`], [`ChangeKind`]), why it is
//! planned ([`Reason`]), and the [`Action`] that pairs them with a credential.

use std::net::Ipv4Addr;

use serde::Serialize;

use crate::bunq::model::{CredentialId, EntryId, IpStatus};

/// What one action changes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Change {
    /// `POST .../ip` with status ACTIVE.
    Create {
        /// The address to allow.
        ip: Ipv4Addr,
    },
    /// `PUT .../ip/{entry}` to ACTIVE.
    Activate {
        /// The existing INACTIVE entry that is reused.
        entry: EntryId,
        /// Its address.
        ip: Ipv4Addr,
    },
    /// `PUT .../ip/{entry}` to INACTIVE.
    Deactivate {
        /// The ACTIVE entry.
        entry: EntryId,
        /// Its address as bunq reports it (may be `*` or IPv6).
        ip: String,
    },
}

/// The kind of a [`Change`], for counting and labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// A new entry.
    Create,
    /// INACTIVE → ACTIVE.
    Activate,
    /// ACTIVE → INACTIVE.
    Deactivate,
}

impl ChangeKind {
    /// Every kind, in plan order (and for pre-initialising metric series).
    pub const ALL: [ChangeKind; 3] = [
        ChangeKind::Create,
        ChangeKind::Activate,
        ChangeKind::Deactivate,
    ];

    /// Lower-case label (`create`, `activate`, `deactivate`), also the `action` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Create => "create",
            ChangeKind::Activate => "activate",
            ChangeKind::Deactivate => "deactivate",
        }
    }
}

impl Change {
    /// Which kind of change this is.
    pub fn kind(&self) -> ChangeKind {
        match self {
            Change::Create { .. } => ChangeKind::Create,
            Change::Activate { .. } => ChangeKind::Activate,
            Change::Deactivate { .. } => ChangeKind::Deactivate,
        }
    }

    /// The entry changed; `None` for a create.
    pub fn entry(&self) -> Option<EntryId> {
        match self {
            Change::Create { .. } => None,
            Change::Activate { entry, .. } | Change::Deactivate { entry, .. } => Some(*entry),
        }
    }

    /// The address as text.
    pub fn ip(&self) -> String {
        match self {
            Change::Create { ip } | Change::Activate { ip, .. } => ip.to_string(),
            Change::Deactivate { ip, .. } => ip.clone(),
        }
    }

    /// The status before; `None` for a create (no entry yet).
    pub fn current(&self) -> Option<IpStatus> {
        match self {
            Change::Create { .. } => None,
            Change::Activate { .. } => Some(IpStatus::Inactive),
            Change::Deactivate { .. } => Some(IpStatus::Active),
        }
    }

    /// The status after.
    pub fn wanted(&self) -> IpStatus {
        match self {
            Change::Create { .. } | Change::Activate { .. } => IpStatus::Active,
            Change::Deactivate { .. } => IpStatus::Inactive,
        }
    }

    /// True for a deactivation: the one kind that can take access away.
    pub fn is_deactivation(&self) -> bool {
        matches!(self, Change::Deactivate { .. })
    }
}

/// Why an action is planned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Desired, and no entry exists for the IP.
    DesiredMissing,
    /// Desired, and only INACTIVE entries exist: the newest is reused.
    DesiredInactive,
    /// ACTIVE but not desired, under `sync`.
    NotDesired,
}

impl Reason {
    /// Stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            Reason::DesiredMissing => "desired-missing",
            Reason::DesiredInactive => "desired-inactive",
            Reason::NotDesired => "not-desired",
        }
    }

    /// One line for humans.
    pub fn description(self) -> &'static str {
        match self {
            Reason::DesiredMissing => "desired, no entry yet",
            Reason::DesiredInactive => "desired, reuses the newest INACTIVE entry",
            Reason::NotDesired => "not desired (policy sync)",
        }
    }
}

/// One planned write.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Action {
    /// The credential written to.
    pub credential: CredentialId,
    /// What changes.
    pub change: Change,
    /// Why.
    pub reason: Reason,
}

/// One line for audit logs: `credential 4242: deactivate 198.51.100.1 entry 3 ACTIVE → INACTIVE:
/// not desired (policy sync)`.
impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "credential {}: {} {}",
            self.credential,
            self.change.kind().as_str(),
            self.change.ip()
        )?;
        if let Some(entry) = self.change.entry() {
            write!(f, " entry {entry}")?;
        }
        let current = self.change.current();
        write!(
            f,
            " {} → {}: {}",
            current.as_ref().map_or("none", IpStatus::as_str),
            self.change.wanted(),
            self.reason.description()
        )
    }
}
