//! The `own-ip` guard: which credential and IP the daemon signs in from ([`OwnAccess`], found in
//! the credential listing by [`own_access`]), and which deactivations that forbids on each
//! credential.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::bunq::model::{CredentialId, CredentialPasswordIp};

use super::rule::BlockReason;

/// The daemon's own access path: its device's IP on the credential it authenticates with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OwnAccess {
    /// The credential whose `permitted_device.description` is the daemon's.
    pub credential: CredentialId,
    /// That credential's `permitted_device.ip`.
    pub ip: Ipv4Addr,
}

/// Finds the daemon's own access paths in a credential listing: every credential whose
/// `permitted_device.description` equals `device_description`, with its `permitted_device.ip`.
/// Devices without an IPv4 address yield nothing (bunq binds IPv4 only).
pub fn own_access(
    credentials: &[CredentialPasswordIp],
    device_description: &str,
) -> Vec<OwnAccess> {
    let mut found: Vec<OwnAccess> = credentials
        .iter()
        .filter_map(|credential| {
            let device = credential.permitted_device.as_ref()?;
            if device.description.as_deref() != Some(device_description) {
                return None;
            }
            let ip = device.ip.as_deref()?.trim().parse::<Ipv4Addr>().ok()?;
            Some(OwnAccess {
                credential: credential.id,
                ip,
            })
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// What the `own-ip` rule knows about one credential.
pub(super) enum OwnRule<'a> {
    /// The own credential is not identified: it may be this one.
    Unknown,
    /// Another credential is the daemon's own.
    NotOwn,
    /// This is the daemon's own credential.
    Own {
        /// `permitted_device.ip` (usually one).
        registration: BTreeSet<Ipv4Addr>,
        /// `bunq.egress_ips`; `None`: unknown.
        egress: Option<&'a BTreeSet<Ipv4Addr>>,
    },
}

impl<'a> OwnRule<'a> {
    /// The rule for `credential`: unknown when the own credential was not identified
    /// (`own_credential_known` false), else own when one of `own_access` is on it.
    pub(super) fn for_credential(
        credential: CredentialId,
        own_credential_known: bool,
        own_access: &[OwnAccess],
        egress: Option<&'a BTreeSet<Ipv4Addr>>,
    ) -> Self {
        let registration: BTreeSet<Ipv4Addr> = own_access
            .iter()
            .filter(|own| own.credential == credential)
            .map(|own| own.ip)
            .collect();
        if !own_credential_known {
            OwnRule::Unknown
        } else if registration.is_empty() {
            OwnRule::NotOwn
        } else {
            OwnRule::Own {
                registration,
                egress,
            }
        }
    }

    /// Why the rule refuses to deactivate an entry of `ip`; `None`: it may go.
    pub(super) fn refuses(&self, ip: Ipv4Addr) -> Option<BlockReason> {
        match self {
            OwnRule::NotOwn => None,
            OwnRule::Unknown => Some(BlockReason::OwnCredentialUnknown),
            OwnRule::Own {
                registration,
                egress,
            } => {
                if registration.contains(&ip) {
                    Some(BlockReason::RegistrationIp)
                } else {
                    match egress {
                        None => Some(BlockReason::EgressUnknown),
                        Some(egress) if egress.contains(&ip) => Some(BlockReason::EgressIp),
                        Some(_) => None,
                    }
                }
            }
        }
    }
}
