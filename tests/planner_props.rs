//! Properties of the planner over generated allowlists: convergence, the safety rules, ordering.
//! Each property applies the plan with `simulate_apply`, a pure model of bunq's write endpoints.

// Helpers outside #[test] functions are test code too; a panic is how they report failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use bunq_ipsync::bunq::model::{CredentialId, EntryId, IpStatus, PermittedIp};
use bunq_ipsync::config::Policy;
use bunq_ipsync::reconcile::plan::{
    Change, CredentialState, OwnAccess, Plan, PlanInput, PlanOutcome, Rule, WILDCARD, plan,
};
use proptest::prelude::*;

const CREDENTIAL: CredentialId = 77;

/// Eight managed addresses, plus two texts bunq may hold that are not IPv4.
const POOL: [&str; 10] = [
    "10.0.0.0",
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.3",
    "10.0.0.4",
    "10.0.0.5",
    "10.0.0.6",
    "10.0.0.7",
    WILDCARD,
    "2001:db8::1",
];

/// Applies actions the way bunq would, refusing any action that bunq (or our rules) would not
/// accept: activating something not INACTIVE, deactivating something not ACTIVE, unknown ids.
fn simulate_apply(
    actual: &[PermittedIp],
    actions: &[&bunq_ipsync::reconcile::plan::Action],
) -> Vec<PermittedIp> {
    let mut entries = actual.to_vec();
    for action in actions {
        match &action.change {
            Change::Create { ip } => {
                let id = entries.iter().map(|entry| entry.id).max().unwrap_or(0) + 1;
                entries.push(PermittedIp::new(id, ip.to_string(), IpStatus::Active));
            }
            Change::Activate { entry, ip } => {
                let flip = (IpStatus::Inactive, IpStatus::Active);
                set_status(&mut entries, *entry, &ip.to_string(), flip, "activate");
            }
            Change::Deactivate { entry, ip } => {
                let flip = (IpStatus::Active, IpStatus::Inactive);
                set_status(&mut entries, *entry, ip, flip, "deactivate");
            }
        }
    }
    entries
}

/// Moves entry `id` (holding `ip`) from `from` to `to`, as bunq applies `change`; an unknown
/// entry, another status or another IP fails the test.
fn set_status(
    entries: &mut [PermittedIp],
    id: EntryId,
    ip: &str,
    (from, to): (IpStatus, IpStatus),
    change: &str,
) {
    let target = entries
        .iter_mut()
        .find(|existing| existing.id == id)
        .unwrap_or_else(|| panic!("{change} of an unknown entry"));
    assert_eq!(target.status, from, "{change} of a non-{from} entry");
    assert_eq!(target.ip, ip);
    target.status = to;
}

/// ACTIVE ip texts.
fn active(entries: &[PermittedIp]) -> BTreeSet<String> {
    entries
        .iter()
        .filter(|entry| entry.status == IpStatus::Active)
        .map(|entry| entry.ip.clone())
        .collect()
}

fn texts(set: &BTreeSet<Ipv4Addr>) -> BTreeSet<String> {
    set.iter().map(Ipv4Addr::to_string).collect()
}

/// One generated case.
#[derive(Clone, Debug)]
struct Case {
    policy: Policy,
    desired: BTreeSet<Ipv4Addr>,
    protected: BTreeSet<Ipv4Addr>,
    actual: Vec<PermittedIp>,
    /// The registration IP when this is the daemon's own credential.
    own: Option<Ipv4Addr>,
    /// Whether the daemon's own credential was identified (here or elsewhere).
    own_known: bool,
    /// `bunq.egress_ips`.
    egress: Option<BTreeSet<Ipv4Addr>>,
    max_changes: usize,
}

impl Case {
    fn plan(&self) -> Plan {
        self.plan_of(&self.actual, self.max_changes)
    }

    fn plan_of(&self, actual: &[PermittedIp], max_changes: usize) -> Plan {
        plan(&PlanInput {
            credentials: vec![CredentialState {
                id: CREDENTIAL,
                name: None,
                policy: self.policy,
                desired: &self.desired,
                protected: &self.protected,
                actual,
                previous: None,
                sources: None,
            }],
            max_changes,
            own_access: self
                .own
                .map(|ip| OwnAccess {
                    credential: CREDENTIAL,
                    ip,
                })
                .into_iter()
                .collect(),
            own_credential_known: self.own_known,
            egress_ips: self.egress.as_ref(),
            sources: Vec::new(),
        })
    }

    /// The addresses `own-ip` must never deactivate here, or `None` when it must deactivate
    /// nothing at all here.
    fn never_deactivated(&self) -> Option<BTreeSet<String>> {
        if !self.own_known {
            return None;
        }
        let Some(own) = self.own else {
            return Some(BTreeSet::new());
        };
        let egress = self.egress.as_ref()?;
        let mut kept = texts(egress);
        kept.insert(own.to_string());
        Some(kept)
    }

    /// Desired IPs whose only entries have an unknown status: the planner must not touch them.
    fn unreachable_desired(&self) -> BTreeSet<String> {
        texts(&self.desired)
            .into_iter()
            .filter(|ip| {
                let entries: Vec<&PermittedIp> =
                    self.actual.iter().filter(|entry| &entry.ip == ip).collect();
                !entries.is_empty()
                    && entries
                        .iter()
                        .all(|entry| matches!(entry.status, IpStatus::Other(_)))
            })
            .collect()
    }
}

fn address(index: usize) -> Ipv4Addr {
    POOL[index].parse().unwrap()
}

fn subset_of_managed() -> impl Strategy<Value = BTreeSet<Ipv4Addr>> {
    any::<u8>().prop_map(|mask| {
        (0..8)
            .filter(|bit| mask & (1 << bit) != 0)
            .map(address)
            .collect()
    })
}

fn status() -> impl Strategy<Value = IpStatus> {
    prop_oneof![
        4 => Just(IpStatus::Active),
        4 => Just(IpStatus::Inactive),
        1 => Just(IpStatus::Other("PENDING".to_owned())),
    ]
}

fn entries() -> impl Strategy<Value = Vec<PermittedIp>> {
    prop::collection::vec((0..POOL.len(), status()), 0..14)
        .prop_flat_map(|items| {
            // Unique ids in an order unrelated to the list order (bunq lists newest first).
            let ids: Vec<u64> = (1..=items.len() as u64).collect();
            (Just(items), Just(ids).prop_shuffle())
        })
        .prop_map(|(items, ids)| {
            items
                .into_iter()
                .zip(ids)
                .map(|((pool, status), id)| PermittedIp::new(id, POOL[pool], status))
                .collect()
        })
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(Policy::Sync), Just(Policy::Additive)],
        subset_of_managed(),
        subset_of_managed(),
        entries(),
        prop::option::of(0..8usize),
        prop::bool::weighted(0.8),
        prop::option::of(subset_of_managed()),
        1..25usize,
    )
        .prop_map(
            |(policy, desired, protected, actual, own, own_known, egress, max_changes)| Case {
                policy,
                desired,
                protected,
                actual,
                // An unidentified own credential has no registration IP to report.
                own: own.filter(|_| own_known).map(address),
                own_known,
                egress,
                max_changes,
            },
        )
}

/// ACTIVE entries whose text is not plain IPv4: the planner never writes them.
fn active_unmanaged(entries: &[PermittedIp]) -> BTreeSet<String> {
    active(entries)
        .into_iter()
        .filter(|ip| ip.parse::<Ipv4Addr>().is_err())
        .collect()
}

/// The same case with an unlimited change budget.
fn unlimited(case: Case) -> Case {
    Case {
        max_changes: usize::MAX,
        ..case
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn sync_makes_the_active_set_exactly_desired_plus_what_the_rules_keep(case in case().prop_map(unlimited)) {
        let case = Case { policy: Policy::Sync, ..case };
        let plan = case.plan();
        let after = simulate_apply(&case.actual, &plan.applicable_actions());
        let kept_by_rules: BTreeSet<String> = plan.credentials[0]
            .kept
            .iter()
            .filter(|kept| kept.status == IpStatus::Active)
            .map(|kept| kept.ip.clone())
            .chain(plan.credentials[0].blocked.iter().filter(|blocked| blocked.rule == Rule::OwnIp).map(|blocked| blocked.action.change.ip()))
            .collect();
        let reachable: BTreeSet<String> = texts(&case.desired).difference(&case.unreachable_desired()).cloned().collect();
        let expected: BTreeSet<String> = reachable.union(&kept_by_rules).cloned().collect();
        prop_assert_eq!(active(&after), expected);
    }

    #[test]
    fn sync_without_rules_firing_yields_exactly_the_desired_set_and_unmanaged_entries(case in case().prop_map(unlimited)) {
        let case = Case { policy: Policy::Sync, own: None, own_known: true, protected: BTreeSet::new(), ..case };
        let plan = case.plan();
        prop_assume!(plan.outcome() != PlanOutcome::Blocked);
        let after = simulate_apply(&case.actual, &plan.applicable_actions());
        let expected: BTreeSet<String> = texts(&case.desired).union(&active_unmanaged(&case.actual)).cloned().collect();
        prop_assert_eq!(active(&after), expected);
    }

    #[test]
    fn no_entry_that_is_not_plain_ipv4_is_ever_written(case in case()) {
        let plan = case.plan();
        for action in plan.actions() {
            let ip = action.change.ip();
            prop_assert!(ip.parse::<Ipv4Addr>().is_ok(), "writes {}", ip);
        }
        for entry in case.actual.iter().filter(|entry| entry.ip.parse::<Ipv4Addr>().is_err()) {
            prop_assert!(plan.credentials[0].kept.iter().any(|kept| kept.entry == entry.id), "{} not reported", entry.ip);
        }
    }

    #[test]
    fn own_ip_never_deactivates_what_the_daemon_may_call_from(case in case()) {
        let plan = case.plan();
        let deactivated: Vec<String> = plan.actions().iter().filter(|action| action.change.is_deactivation()).map(|action| action.change.ip()).collect();
        match case.never_deactivated() {
            None => prop_assert!(deactivated.is_empty(), "{:?}", deactivated),
            Some(never) => {
                for ip in &deactivated {
                    prop_assert!(!never.contains(ip), "deactivates {}", ip);
                }
            }
        }
        // Creates and activations are never held back by own-ip.
        prop_assert!(plan.credentials[0].blocked.iter().all(|blocked| blocked.rule != Rule::OwnIp || blocked.action.change.is_deactivation()));
    }

    #[test]
    fn additive_yields_a_superset_of_before_and_desired(case in case().prop_map(unlimited)) {
        let case = Case { policy: Policy::Additive, ..case };
        let plan = case.plan();
        let after = active(&simulate_apply(&case.actual, &plan.applicable_actions()));
        prop_assert!(after.is_superset(&active(&case.actual)));
        let reachable: BTreeSet<String> = texts(&case.desired).difference(&case.unreachable_desired()).cloned().collect();
        prop_assert!(after.is_superset(&reachable));
    }

    #[test]
    fn additive_never_deactivates(case in case()) {
        let case = Case { policy: Policy::Additive, ..case };
        let plan = case.plan();
        prop_assert!(plan.actions().iter().all(|action| !action.change.is_deactivation()));
        prop_assert!(plan.credentials[0].blocked.iter().all(|blocked| !blocked.action.change.is_deactivation()));
    }

    #[test]
    fn a_converged_state_plans_nothing(case in case().prop_map(unlimited)) {
        let first = case.plan();
        prop_assume!(first.credentials[0].blocked.is_empty());
        let after = simulate_apply(&case.actual, &first.applicable_actions());
        let second = case.plan_of(&after, usize::MAX);
        prop_assert!(second.actions().is_empty(), "{:?}", second.actions());
        prop_assert_eq!(second.outcome(), PlanOutcome::NothingToDo);
    }

    /// Entries that are not IPv4 (`*` included) are never written, so no case needs a second
    /// run: what one run leaves is final.
    #[test]
    fn one_run_reaches_a_fixed_point(case in case().prop_map(unlimited)) {
        let first = case.plan_of(&case.actual, usize::MAX);
        let actual = simulate_apply(&case.actual, &first.applicable_actions());
        let second = case.plan_of(&actual, usize::MAX);
        prop_assert!(second.actions().is_empty(), "{:?}", second.actions());
    }

    #[test]
    fn protected_ips_are_never_deactivated(case in case()) {
        let plan = case.plan();
        for action in plan.actions() {
            if let Change::Deactivate { ip, .. } = &action.change {
                prop_assert!(!texts(&case.protected).contains(ip), "deactivates protected {}", ip);
            }
        }
    }

    #[test]
    fn the_daemon_keeps_access_through_its_own_ip(case in case().prop_map(unlimited)) {
        let Some(own) = case.own else { return Ok(()); };
        let grants = |entries: &[PermittedIp]| {
            entries.iter().any(|entry| entry.status == IpStatus::Active && (entry.ip == WILDCARD || entry.ip == own.to_string()))
        };
        let plan = case.plan();
        // Without counting on any create or activation of this run to succeed.
        let deactivations: Vec<_> = plan.applicable_actions().into_iter().filter(|action| action.change.is_deactivation()).collect();
        let after = simulate_apply(&case.actual, &deactivations);
        if grants(&case.actual) {
            prop_assert!(grants(&after));
        }
    }

    #[test]
    fn no_create_when_an_entry_exists_and_never_two_for_one_ip(case in case()) {
        let plan = case.plan();
        let mut created = BTreeSet::new();
        for action in plan.actions() {
            if let Change::Create { ip } = &action.change {
                prop_assert!(!case.actual.iter().any(|entry| entry.ip == ip.to_string()), "create of existing {}", ip);
                prop_assert!(created.insert(*ip), "two creates for {}", ip);
            }
        }
    }

    #[test]
    fn creates_and_activations_precede_deactivations(case in case()) {
        let plan = case.plan();
        let kinds: Vec<bool> = plan.applicable_actions().iter().map(|action| action.change.is_deactivation()).collect();
        let first_deactivation = kinds.iter().position(|&deactivation| deactivation).unwrap_or(kinds.len());
        prop_assert!(kinds[first_deactivation..].iter().all(|&deactivation| deactivation));
    }

    #[test]
    fn more_changes_than_the_limit_leave_nothing_applicable(case in case()) {
        let plan = case.plan();
        if plan.actions().len() > case.max_changes {
            prop_assert!(plan.applicable_actions().is_empty());
            prop_assert_eq!(plan.outcome(), PlanOutcome::Blocked);
        } else {
            prop_assert_eq!(plan.applicable_actions(), plan.actions());
        }
    }

    #[test]
    fn unknown_status_entries_are_never_touched(case in case().prop_map(unlimited)) {
        let plan = case.plan();
        let after = simulate_apply(&case.actual, &plan.applicable_actions());
        for before in case.actual.iter().filter(|entry| matches!(entry.status, IpStatus::Other(_))) {
            let now = after.iter().find(|entry| entry.id == before.id).unwrap();
            prop_assert_eq!(&now.status, &before.status);
        }
    }

    #[test]
    fn the_plan_does_not_depend_on_listing_order(case in case()) {
        let mut reversed = case.clone();
        reversed.actual.reverse();
        prop_assert_eq!(case.plan(), reversed.plan());
    }

    #[test]
    fn observe_plans_what_sync_plans_and_never_writes_or_hits_the_limit(case in case()) {
        let synced = Case { policy: Policy::Sync, max_changes: usize::MAX, ..case.clone() }.plan();
        let observed = Case { policy: Policy::Observe, ..case }.plan();
        prop_assert_eq!(&observed.credentials[0].actions, &synced.credentials[0].actions);
        prop_assert_eq!(&observed.credentials[0].blocked, &synced.credentials[0].blocked);
        prop_assert_eq!(&observed.credentials[0].kept, &synced.credentials[0].kept);
        prop_assert!(observed.applicable_actions().is_empty());
        prop_assert_eq!(observed.run_block, None);
        prop_assert_eq!(observed.summary().observe, observed.actions().len());
    }
}
