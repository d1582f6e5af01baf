//! The planner: desired state + actual state → [`Plan`]. Pure: no I/O, no clock, no randomness;
//! the same input always gives the same plan, so everything that decides is tested here.
//!
//! # Semantics, per credential
//!
//! * A desired IP with an ACTIVE entry is in sync. Further ACTIVE entries of the same IP are
//!   left alone and reported as kept (`duplicate-active`): deactivating them would gain nothing.
//! * A desired IP with only INACTIVE entries: the newest one (highest id) is activated. A new
//!   entry is never created while one exists for the IP.
//! * A desired IP with no entry: a create (status ACTIVE).
//! * A desired IP whose only entries have a status this daemon does not know: the create is
//!   blocked by `unknown-status` (creating would duplicate, touching the entry is not ours to do).
//! * An ACTIVE entry whose IP is not desired: deactivated under `sync` (every ACTIVE entry of that
//!   IP), kept under `additive`, kept if the IP is `protected`.
//! * An entry whose IP text is not a plain IPv4 address (the app-set wildcard `*`, IPv6, junk)
//!   never matches a desired IP and is never written, whatever its status: bunq refuses to
//!   manage `*` through the API, so a PUT would fail every run. It is reported as kept
//!   (`not-ipv4`) and never blocks the run.
//! * Entries with an unknown status are reported as kept and never touched.
//!
//! # Safety rules (reported by name)
//!
//! * `own-ip`: the daemon must never deactivate an IP it may be calling bunq from. bunq accepts
//!   calls from any ACTIVE IP of the credential, so on the daemon's own credential (the one
//!   whose `permitted_device.description` is the daemon's):
//!   * the registration IP (`permitted_device.ip`) is never deactivated (`registration-ip`);
//!   * every `bunq.egress_ips` address is never deactivated (`egress-ip`);
//!   * when `bunq.egress_ips` is not set, every other deactivation is blocked too
//!     (`egress-unknown`): any ACTIVE IP there may be the one the daemon calls from.
//!
//!   When the own credential cannot be identified at all, the rule fails closed: every
//!   deactivation on every managed credential is blocked (`own-credential-unknown`), since any of
//!   them may be the daemon's. Creates and activations still apply in all these cases; only the
//!   refused deactivations are blocked, and they make the run `blocked`.
//! * `protected`: protected IPs are never deactivated; they show as kept and make the run
//!   neither blocked nor pending.
//! * `max-changes`: more actions than `max_changes` in one run block the whole run: nothing is
//!   applicable, the full plan is still there to print.
//! * `unknown-status`: see above.
//!
//! # Order
//!
//! [`Plan::applicable_actions`] lists every create and activation of the run before any
//! deactivation, so access never drops below the desired set while a run is being applied.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::Serialize;

use crate::bunq::model::{CredentialId, CredentialPasswordIp, EntryId, IpStatus, PermittedIp};
use crate::config::{CredentialSpec, Policy};

/// The wildcard entry bunq's app can set; it grants every IP.
pub const WILDCARD: &str = "*";

/// The effective status of each IP text on one credential: ACTIVE if any entry is ACTIVE, else
/// INACTIVE if any is INACTIVE, else the unknown status of the lowest entry id. This is what a
/// run records so the next run can report out-of-band changes (drift).
pub type IpStates = BTreeMap<String, IpStatus>;

/// Computes [`IpStates`] from a credential's entries.
pub fn ip_states(entries: &[PermittedIp]) -> IpStates {
    let mut sorted: Vec<&PermittedIp> = entries.iter().collect();
    sorted.sort_by_key(|entry| entry.id);
    let mut states = IpStates::new();
    for entry in sorted {
        states
            .entry(entry.ip.clone())
            .and_modify(|status| {
                if status_rank(&entry.status) > status_rank(status) {
                    *status = entry.status.clone();
                }
            })
            .or_insert_with(|| entry.status.clone());
    }
    states
}

fn status_rank(status: &IpStatus) -> u8 {
    match status {
        IpStatus::Active => 2,
        IpStatus::Inactive => 1,
        IpStatus::Other(_) => 0,
    }
}

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
}

impl Rule {
    /// The stable name used in plans, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Rule::OwnIp => "own-ip",
            Rule::Protected => "protected",
            Rule::MaxChanges => "max-changes",
            Rule::UnknownStatus => "unknown-status",
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
    fn new(action: Action, why: BlockReason) -> Self {
        BlockedAction {
            action,
            rule: why.rule(),
            why,
        }
    }
}

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

/// A desired IP that is already ACTIVE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InSync {
    /// The address.
    pub ip: Ipv4Addr,
    /// The ACTIVE entry (the newest, when there are several).
    pub entry: EntryId,
}

/// An IP whose state differs from what the previous run left: changed outside this daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    /// The address as bunq reports it.
    pub ip: String,
    /// What the previous run left; `None`: no entry then.
    pub before: Option<IpStatus>,
    /// What bunq reports now; `None`: no entry now.
    pub now: Option<IpStatus>,
}

/// The plan for one credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialPlan {
    /// The credential.
    pub credential: CredentialId,
    /// Its label.
    pub name: Option<String>,
    /// The policy applied.
    pub policy: Policy,
    /// Planned writes: creates and activations first, then deactivations.
    pub actions: Vec<Action>,
    /// Writes a safety rule refused.
    pub blocked: Vec<BlockedAction>,
    /// Entries deliberately left alone.
    pub kept: Vec<Kept>,
    /// Desired IPs already ACTIVE.
    pub in_sync: Vec<InSync>,
    /// Out-of-band changes since the previous run.
    pub drift: Vec<Drift>,
}

impl CredentialPlan {
    /// `4242 (ci-runners)` or `4242`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("{} ({name})", self.credential),
            None => self.credential.to_string(),
        }
    }

    /// The IP states this credential will have once its actions are applied; what a run records
    /// for the next run's drift report.
    pub fn states_after(&self, actual: &[PermittedIp]) -> IpStates {
        states_after(actual, self.actions.iter())
    }
}

/// The [`IpStates`] of `actual` after `applied` actions succeeded.
pub fn states_after<'a>(
    actual: &[PermittedIp],
    applied: impl IntoIterator<Item = &'a Action>,
) -> IpStates {
    let mut entries = actual.to_vec();
    let mut next_id = entries.iter().map(|entry| entry.id).max().unwrap_or(0);
    for action in applied {
        match &action.change {
            Change::Create { ip } => {
                // Saturating: bunq ids are far from u64::MAX, but an input that is not must not
                // panic. Ties keep push order (`ip_states` sorts stably), so a created entry
                // still counts after any existing one.
                next_id = next_id.saturating_add(1);
                entries.push(PermittedIp {
                    id: next_id,
                    ip: ip.to_string(),
                    status: IpStatus::Active,
                    created: None,
                    updated: None,
                });
            }
            Change::Activate { entry, .. } | Change::Deactivate { entry, .. } => {
                for existing in entries.iter_mut().filter(|existing| existing.id == *entry) {
                    existing.status = action.change.wanted();
                }
            }
        }
    }
    ip_states(&entries)
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

/// How a plan ends, in increasing severity (so the worst of several is their maximum).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanOutcome {
    /// Converged.
    NothingToDo,
    /// Actions to apply, none blocked.
    ChangesPending,
    /// A safety rule refused at least one action (or the whole run).
    Blocked,
}

/// Counts for a summary line and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanSummary {
    /// Creates planned.
    pub create: usize,
    /// Activations planned.
    pub activate: usize,
    /// Deactivations planned.
    pub deactivate: usize,
    /// Actions refused by a rule.
    pub blocked: usize,
    /// Entries deliberately left alone.
    pub kept: usize,
    /// Desired IPs already ACTIVE.
    pub in_sync: usize,
    /// Out-of-band changes found.
    pub drift: usize,
    /// Rules that refused something (action or run), sorted.
    pub blocking_rules: Vec<Rule>,
}

/// The result of planning a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Per credential, in input order.
    pub credentials: Vec<CredentialPlan>,
    /// The limit the run was checked against.
    pub max_changes: usize,
    /// Set when the whole run is blocked.
    pub run_block: Option<RunBlock>,
}

impl Plan {
    /// Blocked over pending over nothing to do.
    pub fn outcome(&self) -> PlanOutcome {
        if self.run_block.is_some() || self.credentials.iter().any(|plan| !plan.blocked.is_empty())
        {
            PlanOutcome::Blocked
        } else if self.credentials.iter().any(|plan| !plan.actions.is_empty()) {
            PlanOutcome::ChangesPending
        } else {
            PlanOutcome::NothingToDo
        }
    }

    /// Every planned action in application order (creates and activations of all credentials,
    /// then deactivations), whether or not the run is blocked; for printing.
    pub fn actions(&self) -> Vec<&Action> {
        let all = || self.credentials.iter().flat_map(|plan| plan.actions.iter());
        all()
            .filter(|action| !action.change.is_deactivation())
            .chain(all().filter(|action| action.change.is_deactivation()))
            .collect()
    }

    /// The actions the executor may apply, in order; empty when the run is blocked.
    pub fn applicable_actions(&self) -> Vec<&Action> {
        if self.run_block.is_some() {
            Vec::new()
        } else {
            self.actions()
        }
    }

    /// Counts for a summary.
    pub fn summary(&self) -> PlanSummary {
        let mut summary = PlanSummary::default();
        let mut rules = BTreeSet::new();
        for plan in &self.credentials {
            for action in &plan.actions {
                match action.change.kind() {
                    ChangeKind::Create => summary.create += 1,
                    ChangeKind::Activate => summary.activate += 1,
                    ChangeKind::Deactivate => summary.deactivate += 1,
                }
            }
            summary.blocked += plan.blocked.len();
            rules.extend(plan.blocked.iter().map(|blocked| blocked.rule));
            summary.kept += plan.kept.len();
            summary.in_sync += plan.in_sync.len();
            summary.drift += plan.drift.len();
        }
        if let Some(block) = self.run_block {
            rules.insert(block.rule);
        }
        summary.blocking_rules = rules.into_iter().collect();
        summary
    }

    /// Every rule that fired, including `protected` (which keeps, not blocks).
    pub fn fired_rules(&self) -> BTreeSet<Rule> {
        let mut rules: BTreeSet<Rule> = self.summary().blocking_rules.into_iter().collect();
        let protected = self
            .credentials
            .iter()
            .flat_map(|plan| plan.kept.iter())
            .any(|kept| kept.reason == KeptReason::Protected);
        if protected {
            rules.insert(Rule::Protected);
        }
        rules
    }
}

/// Plans a run.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let credentials: Vec<CredentialPlan> = input
        .credentials
        .iter()
        .map(|state| {
            let own = if !input.own_credential_known {
                OwnRule::Unknown
            } else if input
                .own_access
                .iter()
                .any(|own| own.credential == state.id)
            {
                OwnRule::Own {
                    registration: input
                        .own_access
                        .iter()
                        .filter(|own| own.credential == state.id)
                        .map(|own| own.ip)
                        .collect(),
                    egress: input.egress_ips,
                }
            } else {
                OwnRule::NotOwn
            };
            plan_credential(state, &own)
        })
        .collect();
    let changes: usize = credentials.iter().map(|plan| plan.actions.len()).sum();
    let run_block = (changes > input.max_changes).then_some(RunBlock {
        rule: Rule::MaxChanges,
        changes,
        limit: input.max_changes,
    });
    Plan {
        credentials,
        max_changes: input.max_changes,
        run_block,
    }
}

/// What the `own-ip` rule knows about one credential.
enum OwnRule<'a> {
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

impl OwnRule<'_> {
    /// Why the rule refuses to deactivate an entry of `ip`; `None`: it may go.
    fn refuses(&self, ip: Ipv4Addr) -> Option<BlockReason> {
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

/// Sort key that puts IPv4 addresses in numeric order, then anything else by text.
fn ip_order(text: &str) -> (u8, u32, &str) {
    match text.parse::<Ipv4Addr>() {
        Ok(ip) => (0, u32::from(ip), text),
        Err(_) => (1, 0, text),
    }
}

fn plan_credential(state: &CredentialState<'_>, own: &OwnRule<'_>) -> CredentialPlan {
    let credential = state.id;
    let action = |change: Change, reason: Reason| Action {
        credential,
        change,
        reason,
    };

    // Entries by parsed address; entries that are not IPv4 go to `unmanaged`.
    let mut by_ip: BTreeMap<Ipv4Addr, Vec<&PermittedIp>> = BTreeMap::new();
    let mut unmanaged: Vec<&PermittedIp> = Vec::new();
    for entry in state.actual {
        match entry.ip.parse::<Ipv4Addr>() {
            Ok(ip) => by_ip.entry(ip).or_default().push(entry),
            Err(_) => unmanaged.push(entry),
        }
    }

    let mut actions = Vec::new();
    let mut blocked = Vec::new();
    let mut kept = Vec::new();
    let mut in_sync = Vec::new();
    let keep = |entry: &PermittedIp, reason: KeptReason| Kept {
        entry: entry.id,
        ip: entry.ip.clone(),
        status: entry.status.clone(),
        reason,
    };

    for &ip in state.desired {
        let entries = by_ip.get(&ip).map(Vec::as_slice).unwrap_or_default();
        let newest = |status: &IpStatus| {
            entries
                .iter()
                .filter(|entry| entry.status == *status)
                .max_by_key(|entry| entry.id)
        };
        if let Some(active) = newest(&IpStatus::Active) {
            in_sync.push(InSync {
                ip,
                entry: active.id,
            });
            let mut duplicates: Vec<&&PermittedIp> = entries
                .iter()
                .filter(|entry| entry.status == IpStatus::Active && entry.id != active.id)
                .collect();
            duplicates.sort_by_key(|entry| entry.id);
            kept.extend(
                duplicates
                    .into_iter()
                    .map(|entry| keep(entry, KeptReason::DuplicateActive)),
            );
        } else if let Some(inactive) = newest(&IpStatus::Inactive) {
            actions.push(action(
                Change::Activate {
                    entry: inactive.id,
                    ip,
                },
                Reason::DesiredInactive,
            ));
        } else if entries.is_empty() {
            actions.push(action(Change::Create { ip }, Reason::DesiredMissing));
        } else {
            blocked.push(BlockedAction::new(
                action(Change::Create { ip }, Reason::DesiredMissing),
                BlockReason::UnknownStatus,
            ));
        }
    }

    // Entries that are not plain IPv4 are reported and never written.
    kept.extend(
        unmanaged
            .iter()
            .map(|entry| keep(entry, KeptReason::NotIpv4)),
    );

    // Undesired ACTIVE entries, and every entry with an unknown status.
    let mut deactivations = Vec::new();
    let undesired = by_ip
        .iter()
        .filter(|(ip, _)| !state.desired.contains(ip))
        .flat_map(|(ip, entries)| entries.iter().map(move |entry| (*ip, *entry)));
    for (ip, entry) in undesired {
        match &entry.status {
            IpStatus::Other(_) => kept.push(keep(entry, KeptReason::UnknownStatus)),
            IpStatus::Inactive => {}
            IpStatus::Active => {
                if state.protected.contains(&ip) {
                    kept.push(keep(entry, KeptReason::Protected));
                } else if state.policy == Policy::Additive {
                    kept.push(keep(entry, KeptReason::Additive));
                } else {
                    let deactivation = action(
                        Change::Deactivate {
                            entry: entry.id,
                            ip: entry.ip.clone(),
                        },
                        Reason::NotDesired,
                    );
                    // own-ip: never deactivate an IP the daemon may be calling from.
                    match own.refuses(ip) {
                        Some(why) => blocked.push(BlockedAction::new(deactivation, why)),
                        None => deactivations.push(deactivation),
                    }
                }
            }
        }
    }
    // Unknown-status entries of desired IPs are kept too.
    for ip in state.desired {
        let entries = by_ip.get(ip).map(Vec::as_slice).unwrap_or_default();
        kept.extend(
            entries
                .iter()
                .filter(|entry| matches!(entry.status, IpStatus::Other(_)))
                .map(|entry| keep(entry, KeptReason::UnknownStatus)),
        );
    }

    actions.sort_by(|a, b| ip_order(&a.change.ip()).cmp(&ip_order(&b.change.ip())));
    deactivations.sort_by(|a, b| {
        (ip_order(&a.change.ip()), a.change.entry())
            .cmp(&(ip_order(&b.change.ip()), b.change.entry()))
    });
    actions.extend(deactivations);
    blocked.sort_by(|a, b| {
        (ip_order(&a.action.change.ip()), a.action.change.entry())
            .cmp(&(ip_order(&b.action.change.ip()), b.action.change.entry()))
    });
    kept.sort_by(|a, b| (ip_order(&a.ip), a.entry).cmp(&(ip_order(&b.ip), b.entry)));

    CredentialPlan {
        credential,
        name: state.name.map(str::to_owned),
        policy: state.policy,
        actions,
        blocked,
        kept,
        in_sync,
        drift: state
            .previous
            .map(|previous| drift(previous, &ip_states(state.actual)))
            .unwrap_or_default(),
    }
}

fn drift(previous: &IpStates, now: &IpStates) -> Vec<Drift> {
    let ips: BTreeSet<&String> = previous.keys().chain(now.keys()).collect();
    let mut drift: Vec<Drift> = ips
        .into_iter()
        .filter_map(|ip| {
            let before = previous.get(ip);
            let now = now.get(ip);
            (before != now).then(|| Drift {
                ip: ip.clone(),
                before: before.cloned(),
                now: now.cloned(),
            })
        })
        .collect();
    drift.sort_by(|a, b| ip_order(&a.ip).cmp(&ip_order(&b.ip)));
    drift
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
