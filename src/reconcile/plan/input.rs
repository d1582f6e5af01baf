//! The planner's input: every configured credential paired with what bunq reports for it, and
//! what the run knows about the daemon's own access.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::bunq::model::{CredentialId, PermittedIp};
use crate::config::{CredentialSpec, Policy};

use super::own_ip::OwnAccess;
use super::state::IpStates;

/// Everything the planner knows about one credential.
#[derive(Clone, Copy, Debug)]
pub struct CredentialState<'a> {
    /// The credential id.
    pub id: CredentialId,
    /// Label from the config.
    pub name: Option<&'a str>,
    /// Whether undesired entries are deactivated.
    pub policy: Policy,
    /// IPs that must be ACTIVE.
    pub desired: &'a BTreeSet<Ipv4Addr>,
    /// IPs never deactivated.
    pub protected: &'a BTreeSet<Ipv4Addr>,
    /// The entries bunq reports now.
    pub actual: &'a [PermittedIp],
    /// What the previous run left, for drift; `None` on the first run.
    pub previous: Option<&'a IpStates>,
}

impl<'a> CredentialState<'a> {
    /// Pairs a configured credential with what bunq reports for it.
    pub fn new(
        spec: &'a CredentialSpec,
        actual: &'a [PermittedIp],
        previous: Option<&'a IpStates>,
    ) -> Self {
        CredentialState {
            id: spec.id,
            name: spec.name.as_deref(),
            policy: spec.policy,
            desired: &spec.ips,
            protected: &spec.protected,
            actual,
            previous,
        }
    }
}

/// The planner's whole input.
#[derive(Clone, Debug)]
pub struct PlanInput<'a> {
    /// The managed credentials, in config order.
    pub credentials: Vec<CredentialState<'a>>,
    /// More actions than this block the run.
    pub max_changes: usize,
    /// The daemon's own access paths (usually one).
    pub own_access: Vec<OwnAccess>,
    /// False when no credential of the listing could be identified as the daemon's own (no
    /// `permitted_device.description` matched): then any managed credential may be the one the
    /// daemon signs in with, and no deactivation is planned on any of them.
    pub own_credential_known: bool,
    /// `bunq.egress_ips`: every address the daemon may call bunq from (CIDRs expanded); `None`
    /// when not configured, which means the daemon's egress is unknown.
    pub egress_ips: Option<&'a BTreeSet<Ipv4Addr>>,
}
