//! The planner's input: every configured credential paired with what bunq reports for it, and
//! what the run knows about the daemon's own access.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::Serialize;

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
    /// What the credential's dynamic sources gave; `None` when it has none.
    pub sources: Option<&'a SourceFacts>,
}

/// What one credential's dynamic sources gave this run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceFacts {
    /// Each desired IP that came from a source (and is not also a static item), with the name of
    /// the first source that yielded it (`dns:home.example.org`).
    pub provenance: BTreeMap<Ipv4Addr, String>,
    /// The sources that failed: the desired set is incomplete, so no deactivation is planned on
    /// the credential (`source-unavailable`).
    pub failed: Vec<FailedSource>,
}

/// A source that yielded nothing usable this run. Serialized as it is into the plan JSON's
/// `failed_sources`, so its fields are part of that format
/// ([`crate::reconcile::report::FORMAT_VERSION`]): add, never rename or drop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FailedSource {
    /// Its name (`dns:home.example.org`, a URL without its secret parts).
    pub source: String,
    /// Why, e.g. `NXDOMAIN (the name does not exist)` or `line 3: ...`.
    pub error: String,
}

/// What one distinct source yielded this run, for the plan's `sources` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceReport {
    /// Its name.
    pub source: String,
    /// Every address (empty when it failed).
    pub addresses: BTreeSet<Ipv4Addr>,
    /// Why it failed; `None` when it resolved.
    pub error: Option<String>,
    /// The DNS answer's TTL in seconds.
    pub ttl_secs: Option<u64>,
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
            sources: None,
        }
    }

    /// The same with the credential's desired set widened by its sources, and what they gave.
    pub fn with_sources(self, desired: &'a BTreeSet<Ipv4Addr>, sources: &'a SourceFacts) -> Self {
        CredentialState {
            desired,
            sources: Some(sources),
            ..self
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
    /// What every distinct source yielded, carried into the plan for its report.
    pub sources: Vec<SourceReport>,
}
