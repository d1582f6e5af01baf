//! IP states: the effective status of each address on a credential, what a run leaves behind
//! ([`states_after`]), and the drift between what the previous run left and what bunq shows now.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::bunq::model::{IpStatus, PermittedIp};

use super::action::{Action, Change};
use super::order::ip_order;

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

/// An IP whose state differs from what the previous run left: changed outside this daemon.
/// Serialized as it is into the plan JSON's `drift` and the notifications (`null`: no entry), so
/// its fields are part of that format ([`crate::reconcile::report::FORMAT_VERSION`]): add, never
/// rename or drop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// The address as bunq reports it.
    pub ip: String,
    /// What the previous run left; `None`: no entry then.
    pub before: Option<IpStatus>,
    /// What bunq reports now; `None`: no entry now.
    pub now: Option<IpStatus>,
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

/// What changed between the previous run's states and the states now, in address order.
pub(super) fn drift(previous: &IpStates, now: &IpStates) -> Vec<Drift> {
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
