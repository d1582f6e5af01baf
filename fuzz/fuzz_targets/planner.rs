//! The planner on arbitrary (`arbitrary`-derived) desired and actual states: `plan()` never
//! panics, and the plan keeps the planner's contract (see `src/reconcile/plan/mod.rs`):
//!
//! * every write is valid against the actual entries (activate only INACTIVE, deactivate only
//!   ACTIVE, create only where no entry exists), and touches each entry at most once;
//! * nothing desired or protected is deactivated, and `additive` never deactivates;
//! * creates and activations come before deactivations;
//! * the run is blocked exactly when it has more than `max_changes` actions;
//! * every desired IP is exactly one of: in sync, created, activated, blocked by unknown-status;
//! * applying the plan never removes the daemon's last grant to its own IP;
//! * `own-ip`: with the own credential unknown nothing is deactivated anywhere; on the own
//!   credential the registration IP and `egress_ips` are never deactivated, and without
//!   `egress_ips` nothing is;
//! * an entry whose IP is not plain IPv4 is never written and always reported as kept;
//! * applying plans converges: the third plan has nothing to do;
//! * the same input gives the same plan; text and JSON rendering never panic.

#![no_main]

use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;

use arbitrary::Arbitrary;
use bunq_ipsync::bunq::model::{IpStatus, PermittedIp};
use bunq_ipsync::config::Policy;
use bunq_ipsync::reconcile::plan::{
    Change, CredentialState, IpStates, OwnAccess, Plan, PlanInput, Rule, WILDCARD, plan,
    states_after,
};
use bunq_ipsync::reconcile::report::{render_json, render_text};
use libfuzzer_sys::fuzz_target;

/// An address as bunq may report it: mostly from a small pool so that desired, protected and
/// actual overlap, sometimes anything.
#[derive(Arbitrary, Debug, Clone)]
enum FuzzIp {
    Pool(u8),
    Any(u32),
    Wildcard,
    Text(String),
}

impl FuzzIp {
    fn text(&self) -> String {
        match self {
            FuzzIp::Pool(n) => pool(*n).to_string(),
            FuzzIp::Any(n) => Ipv4Addr::from(*n).to_string(),
            FuzzIp::Wildcard => WILDCARD.to_owned(),
            FuzzIp::Text(text) => text.clone(),
        }
    }
}

fn pool(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n % 12)
}

#[derive(Arbitrary, Debug, Clone)]
enum FuzzStatus {
    Active,
    Inactive,
    Other(String),
}

impl FuzzStatus {
    fn status(&self) -> IpStatus {
        match self {
            FuzzStatus::Active => IpStatus::Active,
            FuzzStatus::Inactive => IpStatus::Inactive,
            FuzzStatus::Other(text) => IpStatus::from_wire(text),
        }
    }
}

/// Entry ids: mostly small (so they collide and get dropped as duplicates now and then), some
/// anywhere in u64 (bunq's ids are opaque numbers).
#[derive(Arbitrary, Debug)]
enum FuzzId {
    Small(u16),
    Any(u64),
}

#[derive(Arbitrary, Debug)]
struct FuzzEntry {
    id: FuzzId,
    ip: FuzzIp,
    status: FuzzStatus,
}

#[derive(Arbitrary, Debug)]
struct FuzzCredential {
    id: u8,
    additive: bool,
    desired: Vec<u8>,
    protected: Vec<u8>,
    actual: Vec<FuzzEntry>,
    previous: Option<Vec<(FuzzIp, FuzzStatus)>>,
}

#[derive(Arbitrary, Debug)]
struct FuzzInput {
    credentials: Vec<FuzzCredential>,
    max_changes: u8,
    /// (index into credentials, pool address)
    own: Vec<(u8, u8)>,
    /// The own credential could not be identified.
    own_unknown: bool,
    /// `bunq.egress_ips` as pool addresses.
    egress: Option<Vec<u8>>,
}

/// The owned data a [`PlanInput`] borrows.
struct Owned {
    id: u64,
    name: Option<String>,
    policy: Policy,
    desired: BTreeSet<Ipv4Addr>,
    protected: BTreeSet<Ipv4Addr>,
    actual: Vec<PermittedIp>,
    previous: Option<IpStates>,
}

fn owned(input: &FuzzInput) -> Vec<Owned> {
    input
        .credentials
        .iter()
        .take(8)
        .map(|credential| {
            // bunq never reports two entries with the same id.
            let mut ids = HashSet::new();
            let actual = credential
                .actual
                .iter()
                .take(64)
                .map(|entry| {
                    let id = match entry.id {
                        FuzzId::Small(id) => u64::from(id),
                        FuzzId::Any(id) => id,
                    };
                    (id, entry)
                })
                .filter(|(id, _)| ids.insert(*id))
                .map(|(id, entry)| PermittedIp {
                    id,
                    ip: entry.ip.text(),
                    status: entry.status.status(),
                    created: None,
                    updated: None,
                })
                .collect();
            Owned {
                id: u64::from(credential.id),
                name: (credential.id % 2 == 0).then(|| format!("c{}", credential.id)),
                policy: if credential.additive {
                    Policy::Additive
                } else {
                    Policy::Sync
                },
                desired: credential.desired.iter().map(|n| pool(*n)).collect(),
                protected: credential.protected.iter().map(|n| pool(*n)).collect(),
                actual,
                previous: credential.previous.as_ref().map(|previous| {
                    previous
                        .iter()
                        .map(|(ip, status)| (ip.text(), status.status()))
                        .collect()
                }),
            }
        })
        .collect()
}

fn states<'a>(owned: &'a [Owned], actual: &'a [Vec<PermittedIp>]) -> Vec<CredentialState<'a>> {
    owned
        .iter()
        .zip(actual)
        .map(|(credential, actual)| CredentialState {
            id: credential.id,
            name: credential.name.as_deref(),
            policy: credential.policy,
            desired: &credential.desired,
            protected: &credential.protected,
            actual,
            previous: credential.previous.as_ref(),
            sources: None,
        })
        .collect()
}

/// Applies every action of each credential the way bunq would; `None` when a new entry id
/// would not fit in u64 (the model's limit, not the planner's).
fn apply(plan: &Plan, actual: &[Vec<PermittedIp>]) -> Option<Vec<Vec<PermittedIp>>> {
    plan.credentials
        .iter()
        .zip(actual)
        .map(|(credential, entries)| {
            let mut entries = entries.clone();
            for action in &credential.actions {
                match &action.change {
                    Change::Create { ip } => {
                        let id = entries
                            .iter()
                            .map(|e| e.id)
                            .max()
                            .unwrap_or(0)
                            .checked_add(1)?;
                        entries.push(PermittedIp {
                            id,
                            ip: ip.to_string(),
                            status: IpStatus::Active,
                            created: None,
                            updated: None,
                        });
                    }
                    Change::Activate { entry, .. } | Change::Deactivate { entry, .. } => {
                        let target = entries
                            .iter_mut()
                            .find(|e| e.id == *entry)
                            .expect("action on an entry that does not exist");
                        target.status = action.change.wanted();
                    }
                }
            }
            Some(entries)
        })
        .collect()
}

fn parses_to(text: &str, ip: Ipv4Addr) -> bool {
    text.parse::<Ipv4Addr>() == Ok(ip)
}

fn grants(entries: &[PermittedIp], own: Ipv4Addr) -> bool {
    entries
        .iter()
        .any(|e| e.status == IpStatus::Active && (e.ip == WILDCARD || parses_to(&e.ip, own)))
}

fn check_plan(input: &PlanInput<'_>, owned: &[Owned], plan: &Plan) {
    assert_eq!(plan.credentials.len(), input.credentials.len());
    let total: usize = plan.credentials.iter().map(|c| c.actions.len()).sum();
    assert_eq!(plan.run_block.is_some(), total > input.max_changes);
    assert_eq!(
        plan.applicable_actions().is_empty(),
        plan.run_block.is_some() || total == 0
    );

    for ((credential, state), spec) in plan.credentials.iter().zip(&input.credentials).zip(owned) {
        assert_eq!(credential.credential, state.id);
        let entry = |id: u64| {
            state
                .actual
                .iter()
                .find(|e| e.id == id)
                .expect("plan names an entry that does not exist")
        };
        let mut touched = HashSet::new();
        let mut seen_deactivation = false;
        let mut accounted: Vec<Ipv4Addr> = Vec::new();
        for action in &credential.actions {
            assert_eq!(action.credential, state.id);
            match &action.change {
                Change::Create { ip } => {
                    assert!(!seen_deactivation, "create after a deactivation");
                    assert!(spec.desired.contains(ip), "create of an undesired IP");
                    assert!(
                        !state.actual.iter().any(|e| parses_to(&e.ip, *ip)),
                        "create of {ip} while an entry exists"
                    );
                    accounted.push(*ip);
                }
                Change::Activate { entry: id, ip } => {
                    assert!(!seen_deactivation, "activation after a deactivation");
                    assert!(touched.insert(*id), "entry {id} touched twice");
                    let target = entry(*id);
                    assert_eq!(target.status, IpStatus::Inactive);
                    assert!(parses_to(&target.ip, *ip));
                    assert!(spec.desired.contains(ip));
                    assert!(
                        !state
                            .actual
                            .iter()
                            .any(|e| e.status == IpStatus::Active && parses_to(&e.ip, *ip)),
                        "activation of {ip} which is already ACTIVE"
                    );
                    accounted.push(*ip);
                }
                Change::Deactivate { entry: id, ip } => {
                    seen_deactivation = true;
                    let parsed: Ipv4Addr = ip.parse().expect("deactivation of a non-IPv4 entry");
                    assert!(input.own_credential_known, "deactivation with the own credential unknown");
                    let own: Vec<Ipv4Addr> = input
                        .own_access
                        .iter()
                        .filter(|own| own.credential == state.id)
                        .map(|own| own.ip)
                        .collect();
                    if !own.is_empty() {
                        assert!(!own.contains(&parsed), "registration IP {ip} deactivated");
                        let egress = input
                            .egress_ips
                            .expect("deactivation on the own credential without egress_ips");
                        assert!(!egress.contains(&parsed), "egress IP {ip} deactivated");
                    }
                    assert!(touched.insert(*id), "entry {id} touched twice");
                    assert_eq!(state.policy, Policy::Sync, "additive deactivated");
                    let target = entry(*id);
                    assert_eq!(target.status, IpStatus::Active);
                    assert_eq!(&target.ip, ip);
                    if let Ok(parsed) = ip.parse::<Ipv4Addr>() {
                        assert!(!spec.desired.contains(&parsed), "desired {ip} deactivated");
                        assert!(
                            !spec.protected.contains(&parsed),
                            "protected {ip} deactivated"
                        );
                    }
                }
            }
        }
        for blocked in &credential.blocked {
            match blocked.rule {
                Rule::OwnIp => assert!(blocked.action.change.is_deactivation()),
                Rule::UnknownStatus => {
                    let Change::Create { ip } = blocked.action.change else {
                        panic!("unknown-status blocked something other than a create");
                    };
                    accounted.push(ip);
                }
                other => panic!("rule {other} blocks a single action"),
            }
            if let Some(id) = blocked.action.change.entry() {
                assert!(touched.insert(id), "entry {id} both planned and blocked");
            }
        }
        for in_sync in &credential.in_sync {
            let target = entry(in_sync.entry);
            assert_eq!(target.status, IpStatus::Active);
            assert!(parses_to(&target.ip, in_sync.ip));
            accounted.push(in_sync.ip);
        }
        accounted.sort();
        let desired: Vec<Ipv4Addr> = spec.desired.iter().copied().collect();
        assert_eq!(
            accounted, desired,
            "desired IPs not accounted for exactly once"
        );
        for kept in &credential.kept {
            assert!(
                !touched.contains(&kept.entry),
                "kept entry {} is touched",
                kept.entry
            );
            assert_eq!(entry(kept.entry).status, kept.status);
        }
        for unmanaged in state.actual.iter().filter(|e| e.ip.parse::<Ipv4Addr>().is_err()) {
            assert!(
                credential.kept.iter().any(|k| k.entry == unmanaged.id),
                "non-IPv4 entry {} not reported as kept",
                unmanaged.id
            );
        }
        for unknown in state
            .actual
            .iter()
            .filter(|e| matches!(e.status, IpStatus::Other(_)))
        {
            assert!(
                credential.kept.iter().any(|k| k.entry == unknown.id),
                "unknown-status entry {} not reported as kept",
                unknown.id
            );
        }
    }
    let _ = render_text(plan);
    let json = render_json(plan).expect("plan renders as JSON");
    let value: serde_json::Value = serde_json::from_str(&json).expect("rendered JSON parses");
    assert_eq!(value["format_version"], 1);
}

fuzz_target!(|input: FuzzInput| {
    let owned = owned(&input);
    let own_access: Vec<OwnAccess> = input
        .own
        .iter()
        .take(4)
        .filter_map(|(index, ip)| {
            let credential = owned.get(usize::from(*index) % owned.len().max(1))?;
            Some(OwnAccess {
                credential: credential.id,
                ip: pool(*ip),
            })
        })
        .collect();
    let max_changes = usize::from(input.max_changes);
    let egress: Option<BTreeSet<Ipv4Addr>> = input
        .egress
        .as_ref()
        .map(|egress| egress.iter().map(|n| pool(*n)).collect());
    // An unidentified own credential has no access path to report.
    let own_access: Vec<OwnAccess> = if input.own_unknown {
        Vec::new()
    } else {
        own_access
    };

    let mut actual: Vec<Vec<PermittedIp>> = owned.iter().map(|o| o.actual.clone()).collect();
    for round in 0..3 {
        let plan_input = PlanInput {
            credentials: states(&owned, &actual),
            max_changes,
            own_access: own_access.clone(),
            own_credential_known: !input.own_unknown,
            egress_ips: egress.as_ref(),
            sources: Vec::new(),
        };
        let first = plan(&plan_input);
        assert_eq!(
            first,
            plan(&plan_input),
            "the same input planned twice differs"
        );
        check_plan(&plan_input, &owned, &first);
        for (credential, entries) in first.credentials.iter().zip(&actual) {
            let _ = states_after(entries, credential.actions.iter());
        }
        if round == 2 {
            assert!(
                first.actions().is_empty(),
                "not converged after two applied plans: {:?}",
                first.actions()
            );
            break;
        }
        let Some(next) = apply(&first, &actual) else {
            return;
        };
        for own in &own_access {
            for ((before, after), state) in actual.iter().zip(&next).zip(&plan_input.credentials) {
                if state.id == own.credential && grants(before, own.ip) {
                    assert!(
                        grants(after, own.ip),
                        "the daemon's own access to {} removed",
                        own.ip
                    );
                }
            }
        }
        actual = next;
    }
});
