//! The allowlist entries the reconciler's unit tests are built from, defined once.

use crate::bunq::model::{EntryId, IpStatus, PermittedIp};

/// An entry of `ip` with the wire status `status` (`ACTIVE`, `INACTIVE`, or any other text,
/// kept verbatim).
pub(crate) fn entry(id: EntryId, ip: &str, status: &str) -> PermittedIp {
    PermittedIp::new(id, ip, IpStatus::from_wire(status))
}

/// An ACTIVE entry.
pub(crate) fn active(id: EntryId, ip: &str) -> PermittedIp {
    entry(id, ip, "ACTIVE")
}
