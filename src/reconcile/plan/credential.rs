//! One credential's plan, in named steps: index its entries by address, plan the desired IPs,
//! plan the undesired entries (each deactivation past the `own-ip` guard), keep what is not the
//! daemon's to touch, and put everything in order.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::bunq::model::{IpStatus, PermittedIp};
use crate::config::Policy;

use super::action::{Action, Change, Reason};
use super::input::CredentialState;
use super::kept::{Kept, KeptReason};
use super::model::{CredentialPlan, InSync};
use super::order;
use super::own_ip::OwnRule;
use super::rule::{BlockReason, BlockedAction};
use super::state::{drift, ip_states};

/// Plans one credential; `own` is what the `own-ip` rule knows about it.
pub(super) fn plan_credential(state: &CredentialState<'_>, own: &OwnRule<'_>) -> CredentialPlan {
    let entries = Entries::index(state.actual);
    let mut draft = Draft::default();
    plan_desired(state, &entries, &mut draft);
    // Entries that are not plain IPv4 are reported and never written.
    draft.kept.extend(
        entries
            .unmanaged
            .iter()
            .map(|entry| keep(entry, KeptReason::NotIpv4)),
    );
    plan_undesired(state, &entries, own, &mut draft);
    keep_unknown_status_of_desired(state, &entries, &mut draft);
    finish(state, draft)
}

/// A credential's entries by parsed address; entries that are not IPv4 are `unmanaged`.
struct Entries<'a> {
    by_ip: BTreeMap<Ipv4Addr, Vec<&'a PermittedIp>>,
    unmanaged: Vec<&'a PermittedIp>,
}

impl<'a> Entries<'a> {
    fn index(actual: &'a [PermittedIp]) -> Self {
        let mut entries = Entries {
            by_ip: BTreeMap::new(),
            unmanaged: Vec::new(),
        };
        for entry in actual {
            match entry.ip.parse::<Ipv4Addr>() {
                Ok(ip) => entries.by_ip.entry(ip).or_default().push(entry),
                Err(_) => entries.unmanaged.push(entry),
            }
        }
        entries
    }

    /// The entries of `ip`, in listing order.
    fn of(&self, ip: Ipv4Addr) -> &[&'a PermittedIp] {
        self.by_ip.get(&ip).map(Vec::as_slice).unwrap_or_default()
    }
}

/// What the steps have decided so far, before ordering.
#[derive(Default)]
struct Draft {
    /// Creates and activations.
    grants: Vec<Action>,
    /// Deactivations the `own-ip` guard let through.
    deactivations: Vec<Action>,
    blocked: Vec<BlockedAction>,
    kept: Vec<Kept>,
    in_sync: Vec<InSync>,
}

fn action(state: &CredentialState<'_>, change: Change, reason: Reason) -> Action {
    Action {
        credential: state.id,
        change,
        reason,
    }
}

fn keep(entry: &PermittedIp, reason: KeptReason) -> Kept {
    Kept {
        entry: entry.id,
        ip: entry.ip.clone(),
        status: entry.status.clone(),
        reason,
    }
}

/// Desired IPs: in sync when an entry is ACTIVE (further ACTIVE ones are kept as duplicates),
/// else the newest INACTIVE entry is activated, else a create, refused by `unknown-status` when
/// the only entries of the IP have a status this daemon does not know.
fn plan_desired(state: &CredentialState<'_>, entries: &Entries<'_>, draft: &mut Draft) {
    for &ip in state.desired {
        let entries = entries.of(ip);
        let newest = |status: &IpStatus| {
            entries
                .iter()
                .filter(|entry| entry.status == *status)
                .max_by_key(|entry| entry.id)
        };
        if let Some(active) = newest(&IpStatus::Active) {
            draft.in_sync.push(InSync {
                ip,
                entry: active.id,
            });
            let mut duplicates: Vec<&&PermittedIp> = entries
                .iter()
                .filter(|entry| entry.status == IpStatus::Active && entry.id != active.id)
                .collect();
            duplicates.sort_by_key(|entry| entry.id);
            draft.kept.extend(
                duplicates
                    .into_iter()
                    .map(|entry| keep(entry, KeptReason::DuplicateActive)),
            );
        } else if let Some(inactive) = newest(&IpStatus::Inactive) {
            let activate = Change::Activate {
                entry: inactive.id,
                ip,
            };
            draft
                .grants
                .push(action(state, activate, Reason::DesiredInactive));
        } else if entries.is_empty() {
            let create = action(state, Change::Create { ip }, Reason::DesiredMissing);
            draft.grants.push(create);
        } else {
            let create = action(state, Change::Create { ip }, Reason::DesiredMissing);
            draft
                .blocked
                .push(BlockedAction::new(create, BlockReason::UnknownStatus));
        }
    }
}

/// Entries of IPs that are not desired: ACTIVE ones are kept when protected or under
/// `additive`, else deactivated past the `own-ip` guard; unknown statuses are kept.
fn plan_undesired(
    state: &CredentialState<'_>,
    entries: &Entries<'_>,
    own: &OwnRule<'_>,
    draft: &mut Draft,
) {
    let undesired = entries
        .by_ip
        .iter()
        .filter(|(ip, _)| !state.desired.contains(ip))
        .flat_map(|(ip, entries)| entries.iter().map(move |entry| (*ip, *entry)));
    for (ip, entry) in undesired {
        match &entry.status {
            IpStatus::Other(_) => draft.kept.push(keep(entry, KeptReason::UnknownStatus)),
            IpStatus::Inactive => {}
            IpStatus::Active if state.protected.contains(&ip) => {
                draft.kept.push(keep(entry, KeptReason::Protected))
            }
            IpStatus::Active if state.policy == Policy::Additive => {
                draft.kept.push(keep(entry, KeptReason::Additive))
            }
            IpStatus::Active => {
                let deactivate = Change::Deactivate {
                    entry: entry.id,
                    ip: entry.ip.clone(),
                };
                guard_own_ip(
                    state,
                    own,
                    ip,
                    action(state, deactivate, Reason::NotDesired),
                    draft,
                );
            }
        }
    }
}

/// The guards of a deactivation: `own-ip` (never deactivate an IP the daemon may be calling
/// bunq from), then `source-unavailable` (a failed source may have yielded this IP).
fn guard_own_ip(
    state: &CredentialState<'_>,
    own: &OwnRule<'_>,
    ip: Ipv4Addr,
    deactivation: Action,
    draft: &mut Draft,
) {
    let source_failed = state.sources.is_some_and(|facts| !facts.failed.is_empty());
    let refused = own
        .refuses(ip)
        .or(source_failed.then_some(BlockReason::SourceUnavailable));
    match refused {
        Some(why) => draft.blocked.push(BlockedAction::new(deactivation, why)),
        None => draft.deactivations.push(deactivation),
    }
}

/// Unknown-status entries of desired IPs are kept too (never touched, never duplicated).
fn keep_unknown_status_of_desired(
    state: &CredentialState<'_>,
    entries: &Entries<'_>,
    draft: &mut Draft,
) {
    for &ip in state.desired {
        draft.kept.extend(
            entries
                .of(ip)
                .iter()
                .filter(|entry| matches!(entry.status, IpStatus::Other(_)))
                .map(|entry| keep(entry, KeptReason::UnknownStatus)),
        );
    }
}

/// Ordering: grants before deactivations, each list in address order; plus the drift since the
/// previous run.
fn finish(state: &CredentialState<'_>, draft: Draft) -> CredentialPlan {
    let Draft {
        mut grants,
        mut deactivations,
        mut blocked,
        mut kept,
        in_sync,
    } = draft;
    order::sort_grants(&mut grants);
    order::sort_deactivations(&mut deactivations);
    grants.extend(deactivations);
    order::sort_blocked(&mut blocked);
    order::sort_kept(&mut kept);
    CredentialPlan {
        credential: state.id,
        name: state.name.map(str::to_owned),
        policy: state.policy,
        actions: grants,
        blocked,
        kept,
        in_sync,
        drift: state
            .previous
            .map(|previous| drift(previous, &ip_states(state.actual)))
            .unwrap_or_default(),
        sources: state.sources.cloned().unwrap_or_default(),
    }
}
