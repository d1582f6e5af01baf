//! Scenario tests of the planner, one behaviour each. Property tests are in
//! `tests/planner_props.rs`.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::*;
use crate::bunq::model::{CredentialId, CredentialPasswordIp, EntryId, IpStatus, PermittedIp};
use crate::config::{CredentialSpec, Policy};
use crate::reconcile::fixtures::{active, entry};

fn ips(list: &[&str]) -> BTreeSet<Ipv4Addr> {
    list.iter().map(|ip| ip.parse().unwrap()).collect()
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

/// A credential under `sync` with nothing protected beyond `protected`, no previous run and no
/// sources.
fn sync_state<'a>(
    id: CredentialId,
    desired: &'a BTreeSet<Ipv4Addr>,
    protected: &'a BTreeSet<Ipv4Addr>,
    actual: &'a [PermittedIp],
) -> CredentialState<'a> {
    CredentialState {
        id,
        name: None,
        policy: Policy::Sync,
        desired,
        protected,
        actual,
        previous: None,
        sources: None,
    }
}

/// A run of `credentials` limited to `max_changes`, with the own credential known but none of
/// them (no own access), `bunq.egress_ips` not set and no sources.
fn run_of(credentials: Vec<CredentialState<'_>>, max_changes: usize) -> PlanInput<'_> {
    PlanInput {
        credentials,
        max_changes,
        own_access: vec![],
        own_credential_known: true,
        egress_ips: None,
        sources: Vec::new(),
    }
}

const CREDENTIAL: CredentialId = 4242;

/// A planner case for one credential ([`CREDENTIAL`]): its policy and desired IPs, refined by
/// the builder methods; by default nothing is protected, the own credential is known with no
/// registration IP on it, `bunq.egress_ips` is set but adds nothing, and the limit is generous.
#[derive(Clone, Copy)]
struct Case<'a> {
    policy: Policy,
    desired: &'a [&'a str],
    protected: &'a [&'a str],
    own: Own<'a>,
    max_changes: usize,
}

fn case<'a>(policy: Policy, desired: &'a [&'a str]) -> Case<'a> {
    Case {
        policy,
        desired,
        protected: &[],
        own: Own {
            access: &[],
            known: true,
            egress: Some(&[]),
        },
        max_changes: 100,
    }
}

fn sync<'a>(desired: &'a [&'a str]) -> Case<'a> {
    case(Policy::Sync, desired)
}

fn additive<'a>(desired: &'a [&'a str]) -> Case<'a> {
    case(Policy::Additive, desired)
}

impl<'a> Case<'a> {
    /// `protected_ips`.
    fn protect(self, protected: &'a [&'a str]) -> Case<'a> {
        Case { protected, ..self }
    }

    /// The own credential is known and `access` lists its `(credential, registration IP)`
    /// pairs, so only those are protected by `own-ip`.
    fn owned_by(self, access: &'a [(CredentialId, &'a str)]) -> Case<'a> {
        Case {
            own: Own { access, ..self.own },
            ..self
        }
    }

    /// This credential is the daemon's own, registered from 203.0.113.5.
    fn owned(self) -> Case<'a> {
        self.owned_by(&[(CREDENTIAL, "203.0.113.5")])
    }

    /// Everything the planner is told about the daemon's own access.
    fn own(self, own: Own<'a>) -> Case<'a> {
        Case { own, ..self }
    }

    /// `bunq.egress_ips` (`None`: not set).
    fn egress(self, egress: Option<&'a [&'a str]>) -> Case<'a> {
        Case {
            own: Own { egress, ..self.own },
            ..self
        }
    }

    /// `sync.max_changes`.
    fn limit(self, max_changes: usize) -> Case<'a> {
        Case {
            max_changes,
            ..self
        }
    }

    /// The plan for `actual` as the credential's listing.
    fn plan(self, actual: &[PermittedIp]) -> Plan {
        plan_full(
            self.policy,
            self.desired,
            self.protected,
            actual,
            self.own,
            self.max_changes,
        )
    }
}

/// What the planner is told about the daemon's own access.
#[derive(Clone, Copy)]
struct Own<'a> {
    /// `(credential, registration IP)` pairs.
    access: &'a [(CredentialId, &'a str)],
    /// Whether the own credential was identified.
    known: bool,
    /// `bunq.egress_ips`.
    egress: Option<&'a [&'a str]>,
}

fn plan_full(
    policy: Policy,
    desired: &[&str],
    protected: &[&str],
    actual: &[PermittedIp],
    own: Own<'_>,
    max_changes: usize,
) -> Plan {
    let desired = ips(desired);
    let protected = ips(protected);
    let egress = own.egress.map(ips);
    let access = own.access;
    let state = CredentialState {
        name: Some("ci"),
        policy,
        ..sync_state(CREDENTIAL, &desired, &protected, actual)
    };
    plan(&PlanInput {
        own_access: access
            .iter()
            .map(|(credential, ip)| OwnAccess {
                credential: *credential,
                ip: ip.parse().unwrap(),
            })
            .collect(),
        own_credential_known: own.known,
        egress_ips: egress.as_ref(),
        ..run_of(vec![state], max_changes)
    })
}

/// The changes the plan would apply (not blocked).
fn applicable(plan: &Plan) -> Vec<Change> {
    plan.applicable_actions()
        .iter()
        .map(|action| action.change.clone())
        .collect()
}

/// Nothing to do: no change planned or blocked, entry `id` kept as not IPv4.
fn assert_only_kept_as_not_ipv4(plan: &Plan, id: EntryId) {
    assert!(changes(plan).is_empty());
    assert!(blocked(plan).is_empty());
    assert_eq!(kept(plan), vec![(id, KeptReason::NotIpv4)]);
    assert_eq!(plan.outcome(), PlanOutcome::NothingToDo);
}

/// The own-IP rule held the plan back (a blocked run) while `still_applicable` still applies.
fn assert_held_back_by_own_ip(plan: &Plan, still_applicable: Vec<Change>) {
    assert_eq!(applicable(plan), still_applicable);
    assert_eq!(plan.outcome(), PlanOutcome::Blocked);
    assert_eq!(plan.summary().blocking_rules, vec![Rule::OwnIp]);
}

fn changes(plan: &Plan) -> Vec<Change> {
    plan.credentials[0]
        .actions
        .iter()
        .map(|action| action.change.clone())
        .collect()
}

fn create(text: &str) -> Change {
    Change::Create { ip: ip(text) }
}

fn activate(entry: EntryId, text: &str) -> Change {
    Change::Activate {
        entry,
        ip: ip(text),
    }
}

fn deactivate(entry: EntryId, text: &str) -> Change {
    Change::Deactivate {
        entry,
        ip: text.to_owned(),
    }
}

fn kept(plan: &Plan) -> Vec<(EntryId, KeptReason)> {
    plan.credentials[0]
        .kept
        .iter()
        .map(|kept| (kept.entry, kept.reason))
        .collect()
}

fn blocked(plan: &Plan) -> Vec<(Change, Rule)> {
    plan.credentials[0]
        .blocked
        .iter()
        .map(|blocked| (blocked.action.change.clone(), blocked.rule))
        .collect()
}

/// `(change, exact reason)` of every blocked action of credential `index`.
fn blocked_why(plan: &Plan, index: usize) -> Vec<(Change, BlockReason)> {
    plan.credentials[index]
        .blocked
        .iter()
        .map(|blocked| (blocked.action.change.clone(), blocked.why))
        .collect()
}

#[test]
fn desired_ip_without_entry_is_created() {
    let plan = sync(&["192.0.2.1"]).plan(&[]);
    assert_eq!(changes(&plan), vec![create("192.0.2.1")]);
    assert_eq!(
        plan.credentials[0].actions[0].reason,
        Reason::DesiredMissing
    );
}

#[test]
fn desired_ip_with_an_active_entry_plans_nothing() {
    let plan = sync(&["192.0.2.1"]).plan(&[active(7, "192.0.2.1")]);
    assert!(changes(&plan).is_empty());
    assert_eq!(
        plan.credentials[0].in_sync,
        vec![InSync {
            ip: ip("192.0.2.1"),
            entry: 7
        }]
    );
    assert_eq!(plan.outcome(), PlanOutcome::NothingToDo);
}

#[test]
fn desired_ip_with_only_inactive_entries_activates_the_newest() {
    let actual = [
        entry(3, "192.0.2.1", "INACTIVE"),
        entry(9, "192.0.2.1", "INACTIVE"),
        entry(5, "192.0.2.1", "INACTIVE"),
    ];
    let plan = sync(&["192.0.2.1"]).plan(&actual);
    assert_eq!(changes(&plan), vec![activate(9, "192.0.2.1")]);
    assert_eq!(
        plan.credentials[0].actions[0].reason,
        Reason::DesiredInactive
    );
}

#[test]
fn desired_ip_with_an_inactive_entry_is_never_created_again() {
    let plan = sync(&["192.0.2.1"]).plan(&[entry(3, "192.0.2.1", "INACTIVE")]);
    assert!(
        !changes(&plan)
            .iter()
            .any(|change| change.kind() == ChangeKind::Create)
    );
}

#[test]
fn extra_active_entries_of_a_desired_ip_are_kept_and_reported() {
    let actual = [active(3, "192.0.2.1"), active(9, "192.0.2.1")];
    let plan = sync(&["192.0.2.1"]).plan(&actual);
    assert!(changes(&plan).is_empty());
    assert_eq!(plan.credentials[0].in_sync[0].entry, 9);
    assert_eq!(kept(&plan), vec![(3, KeptReason::DuplicateActive)]);
    assert_eq!(plan.outcome(), PlanOutcome::NothingToDo);
}

#[test]
fn undesired_active_entry_is_deactivated_under_sync() {
    let plan = sync(&[]).plan(&[active(4, "198.51.100.7")]);
    assert_eq!(changes(&plan), vec![deactivate(4, "198.51.100.7")]);
    assert_eq!(plan.credentials[0].actions[0].reason, Reason::NotDesired);
}

#[test]
fn every_active_entry_of_an_undesired_ip_is_deactivated() {
    let actual = [active(4, "198.51.100.7"), active(2, "198.51.100.7")];
    let plan = sync(&[]).plan(&actual);
    assert_eq!(
        changes(&plan),
        vec![deactivate(2, "198.51.100.7"), deactivate(4, "198.51.100.7")]
    );
}

#[test]
fn undesired_inactive_entry_is_left_alone_silently() {
    let plan = sync(&[]).plan(&[entry(4, "198.51.100.7", "INACTIVE")]);
    assert!(changes(&plan).is_empty());
    assert!(kept(&plan).is_empty());
    assert_eq!(plan.outcome(), PlanOutcome::NothingToDo);
}

#[test]
fn undesired_active_entry_is_kept_under_additive() {
    let plan = additive(&["192.0.2.1"]).plan(&[active(4, "198.51.100.7")]);
    assert_eq!(changes(&plan), vec![create("192.0.2.1")]);
    assert_eq!(kept(&plan), vec![(4, KeptReason::Additive)]);
}

#[test]
fn protected_ip_is_kept_under_sync_without_blocking() {
    let plan = sync(&[])
        .protect(&["198.51.100.7"])
        .plan(&[active(4, "198.51.100.7")]);
    assert!(changes(&plan).is_empty());
    assert_eq!(kept(&plan), vec![(4, KeptReason::Protected)]);
    assert_eq!(plan.outcome(), PlanOutcome::NothingToDo);
    assert!(plan.fired_rules().contains(&Rule::Protected));
    assert!(plan.summary().blocking_rules.is_empty());
}

#[test]
fn protected_desired_ip_that_is_inactive_is_still_activated() {
    let plan = sync(&["198.51.100.7"])
        .protect(&["198.51.100.7"])
        .plan(&[entry(4, "198.51.100.7", "INACTIVE")]);
    assert_eq!(changes(&plan), vec![activate(4, "198.51.100.7")]);
}

#[test]
fn wildcard_entry_is_kept_as_not_ipv4_under_sync_and_never_written() {
    let plan = sync(&["192.0.2.1"]).plan(&[active(1, "192.0.2.1"), active(2, "*")]);
    assert_only_kept_as_not_ipv4(&plan, 2);
}

#[test]
fn entries_that_are_not_plain_ipv4_are_kept_whatever_their_status_and_policy() {
    // Texts a strict IPv4 parser refuses: the wildcard, IPv6 (an active one is never matched
    // to a desired IP either), junk, padding, leading zeros.
    let actual = [
        active(1, "*"),
        entry(2, "2001:db8::1", "INACTIVE"),
        entry(3, "not-an-ip", "PENDING"),
        active(4, " 192.0.2.1"),
        active(5, "192.0.2.01"),
        active(6, "192.0.2.0/24"),
        active(7, "2001:db8::7"),
    ];
    for policy in [Policy::Sync, Policy::Additive] {
        let plan = case(policy, &["192.0.2.1"]).plan(&actual);
        assert_eq!(changes(&plan), vec![create("192.0.2.1")], "{policy}");
        assert!(blocked(&plan).is_empty(), "{policy}");
        let mut reasons = kept(&plan);
        reasons.sort();
        assert_eq!(
            reasons,
            (1..=7)
                .map(|id| (id, KeptReason::NotIpv4))
                .collect::<Vec<_>>(),
            "{policy}"
        );
        assert_eq!(plan.outcome(), PlanOutcome::ChangesPending, "{policy}");
    }
}

#[test]
fn entries_that_are_not_ipv4_are_kept_on_the_own_credential_and_never_block() {
    let actual = [active(1, "203.0.113.5"), active(2, "*")];
    for own in [
        Own {
            access: &[(CREDENTIAL, "203.0.113.5")],
            known: true,
            egress: None,
        },
        Own {
            access: &[],
            known: false,
            egress: None,
        },
    ] {
        let plan = sync(&["203.0.113.5"]).own(own).plan(&actual);
        assert_only_kept_as_not_ipv4(&plan, 2);
    }
}

#[test]
fn unknown_status_entries_are_kept_and_never_touched() {
    let actual = [
        entry(2, "198.51.100.7", "PENDING"),
        active(3, "192.0.2.1"),
        entry(5, "192.0.2.1", "LOCKED"),
    ];
    let plan = sync(&["192.0.2.1"]).plan(&actual);
    assert!(changes(&plan).is_empty());
    assert_eq!(
        kept(&plan),
        vec![
            (5, KeptReason::UnknownStatus),
            (2, KeptReason::UnknownStatus)
        ]
    );
}

#[test]
fn desired_ip_with_only_an_unknown_status_entry_blocks_the_create() {
    let plan = sync(&["192.0.2.1"]).plan(&[entry(5, "192.0.2.1", "PENDING")]);
    assert!(changes(&plan).is_empty());
    assert_eq!(
        blocked(&plan),
        vec![(create("192.0.2.1"), Rule::UnknownStatus)]
    );
    assert_eq!(plan.outcome(), PlanOutcome::Blocked);
}

#[test]
fn own_ip_deactivation_is_blocked_and_the_rest_still_applies() {
    let actual = [active(1, "203.0.113.5"), active(2, "198.51.100.7")];
    let plan = sync(&["192.0.2.1"]).owned().plan(&actual);
    assert_eq!(
        blocked(&plan),
        vec![(deactivate(1, "203.0.113.5"), Rule::OwnIp)]
    );
    assert_held_back_by_own_ip(
        &plan,
        vec![create("192.0.2.1"), deactivate(2, "198.51.100.7")],
    );
}

#[test]
fn own_ip_is_only_protected_on_the_daemons_own_credential() {
    let plan = sync(&[])
        .owned_by(&[(9999, "203.0.113.5")])
        .plan(&[active(1, "203.0.113.5")]);
    assert_eq!(changes(&plan), vec![deactivate(1, "203.0.113.5")]);
    assert_eq!(plan.outcome(), PlanOutcome::ChangesPending);
}

#[test]
fn every_active_entry_of_the_own_ip_is_blocked_when_all_would_go() {
    let actual = [active(1, "203.0.113.5"), active(4, "203.0.113.5")];
    let plan = sync(&[]).owned().plan(&actual);
    assert!(changes(&plan).is_empty());
    assert_eq!(blocked(&plan).len(), 2);
}

#[test]
fn wildcard_that_is_the_only_grant_of_the_own_ip_is_kept_while_the_own_ip_is_created() {
    let actual = [active(2, "*")];
    let plan = sync(&["203.0.113.5"]).owned().plan(&actual);
    assert_eq!(changes(&plan), vec![create("203.0.113.5")]);
    assert_eq!(kept(&plan), vec![(2, KeptReason::NotIpv4)]);
    assert!(blocked(&plan).is_empty());
}

#[test]
fn unknown_own_credential_blocks_every_deactivation_on_every_managed_credential() {
    let first_actual = [active(1, "198.51.100.1"), entry(2, "192.0.2.2", "INACTIVE")];
    let second_actual = [active(10, "198.51.100.2")];
    let (desired, none) = (ips(&["192.0.2.1", "192.0.2.2"]), ips(&[]));
    let state =
        |id, actual: &'static [PermittedIp], desired| sync_state(id, desired, &none, actual);
    let first_actual: &'static [PermittedIp] = Box::leak(Box::new(first_actual));
    let second_actual: &'static [PermittedIp] = Box::leak(Box::new(second_actual));
    let credentials = vec![
        state(1, first_actual, &desired),
        state(2, second_actual, &none),
    ];
    let plan = plan(&PlanInput {
        own_credential_known: false,
        ..run_of(credentials, 100)
    });
    assert_eq!(
        blocked_why(&plan, 0),
        vec![(
            deactivate(1, "198.51.100.1"),
            BlockReason::OwnCredentialUnknown
        )]
    );
    assert_eq!(
        blocked_why(&plan, 1),
        vec![(
            deactivate(10, "198.51.100.2"),
            BlockReason::OwnCredentialUnknown
        )]
    );
    // Creates and activations still apply; nothing else does.
    assert_held_back_by_own_ip(&plan, vec![create("192.0.2.1"), activate(2, "192.0.2.2")]);
}

#[test]
fn unknown_own_credential_blocks_nothing_when_nothing_would_be_deactivated() {
    let actual = [active(1, "192.0.2.1"), active(2, "198.51.100.1")];
    let unknown = Own {
        access: &[],
        known: false,
        egress: None,
    };
    let sync = case(Policy::Sync, &["192.0.2.1", "198.51.100.1"])
        .own(unknown)
        .plan(&actual);
    assert_eq!(sync.outcome(), PlanOutcome::NothingToDo);
    let additive = case(Policy::Additive, &["192.0.2.1"])
        .own(unknown)
        .plan(&actual);
    assert_eq!(additive.outcome(), PlanOutcome::NothingToDo);
    let protected = case(Policy::Sync, &["192.0.2.1"])
        .protect(&["198.51.100.1"])
        .own(unknown)
        .plan(&actual);
    assert_eq!(protected.outcome(), PlanOutcome::NothingToDo);
    assert_eq!(kept(&protected), vec![(2, KeptReason::Protected)]);
}

#[test]
fn without_egress_ips_every_deactivation_on_the_own_credential_is_blocked() {
    let actual = [
        active(1, "203.0.113.5"),
        active(2, "198.51.100.7"),
        active(3, "198.51.100.8"),
    ];
    let plan = sync(&["192.0.2.1"]).owned().egress(None).plan(&actual);
    assert_eq!(
        blocked_why(&plan, 0),
        vec![
            (deactivate(2, "198.51.100.7"), BlockReason::EgressUnknown),
            (deactivate(3, "198.51.100.8"), BlockReason::EgressUnknown),
            (deactivate(1, "203.0.113.5"), BlockReason::RegistrationIp),
        ]
    );
    assert_eq!(changes(&plan), vec![create("192.0.2.1")]);
    assert_eq!(plan.outcome(), PlanOutcome::Blocked);
}

#[test]
fn without_egress_ips_other_credentials_are_unaffected() {
    let plan = sync(&[])
        .owned_by(&[(9999, "203.0.113.5")])
        .egress(None)
        .plan(&[active(1, "198.51.100.7")]);
    assert_eq!(changes(&plan), vec![deactivate(1, "198.51.100.7")]);
    assert_eq!(plan.outcome(), PlanOutcome::ChangesPending);
}

#[test]
fn egress_ips_are_never_deactivated_on_the_own_credential_and_other_ips_are() {
    let actual = [
        active(1, "203.0.113.5"),
        active(2, "198.51.100.7"),
        active(3, "198.51.100.8"),
    ];
    let plan = sync(&[])
        .owned()
        .egress(Some(&["198.51.100.7"]))
        .plan(&actual);
    assert_eq!(
        blocked_why(&plan, 0),
        vec![
            (deactivate(2, "198.51.100.7"), BlockReason::EgressIp),
            (deactivate(1, "203.0.113.5"), BlockReason::RegistrationIp),
        ]
    );
    assert_eq!(changes(&plan), vec![deactivate(3, "198.51.100.8")]);
}

#[test]
fn egress_ips_do_not_protect_other_credentials() {
    let plan = sync(&[])
        .owned_by(&[(9999, "203.0.113.5")])
        .egress(Some(&["198.51.100.7"]))
        .plan(&[active(1, "198.51.100.7")]);
    assert_eq!(changes(&plan), vec![deactivate(1, "198.51.100.7")]);
}

/// Every combination the own-ip rule distinguishes, for one undesired ACTIVE entry under `sync`.
#[test]
fn own_ip_rule_decides_every_combination() {
    const REGISTRATION: &str = "203.0.113.5";
    const EGRESS: &str = "198.51.100.7";
    const OTHER: &str = "198.51.100.8";
    for known in [true, false] {
        for on_own in [true, false] {
            for egress in [None, Some(&[EGRESS][..])] {
                for ip in [REGISTRATION, EGRESS, OTHER] {
                    let credential = if on_own { CREDENTIAL } else { 9999 };
                    let access = [(credential, REGISTRATION)];
                    let own = Own {
                        access: if known { &access } else { &[] },
                        known,
                        egress,
                    };
                    let plan = sync(&[]).own(own).plan(&[entry(1, ip, "ACTIVE")]);
                    let expected = if !known {
                        Some(BlockReason::OwnCredentialUnknown)
                    } else if !on_own {
                        None
                    } else if ip == REGISTRATION {
                        Some(BlockReason::RegistrationIp)
                    } else if egress.is_none() {
                        Some(BlockReason::EgressUnknown)
                    } else if ip == EGRESS {
                        Some(BlockReason::EgressIp)
                    } else {
                        None
                    };
                    let case = format!("known {known}, own {on_own}, egress {egress:?}, ip {ip}");
                    match expected {
                        Some(why) => {
                            assert_eq!(
                                blocked_why(&plan, 0),
                                vec![(deactivate(1, ip), why)],
                                "{case}"
                            );
                            assert!(changes(&plan).is_empty(), "{case}");
                            assert_eq!(plan.outcome(), PlanOutcome::Blocked, "{case}");
                        }
                        None => {
                            assert!(blocked(&plan).is_empty(), "{case}");
                            assert_eq!(changes(&plan), vec![deactivate(1, ip)], "{case}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn every_block_reason_has_its_own_code_and_its_rule() {
    let reasons = [
        BlockReason::RegistrationIp,
        BlockReason::EgressIp,
        BlockReason::EgressUnknown,
        BlockReason::OwnCredentialUnknown,
        BlockReason::UnknownStatus,
    ];
    let codes: BTreeSet<&str> = reasons.iter().map(|reason| reason.code()).collect();
    assert_eq!(codes.len(), reasons.len());
    for reason in &reasons[..4] {
        assert_eq!(reason.rule(), Rule::OwnIp);
    }
    assert_eq!(BlockReason::UnknownStatus.rule(), Rule::UnknownStatus);
    assert!(
        BlockReason::OwnCredentialUnknown
            .description()
            .contains("bunq.device_description")
    );
    assert!(
        BlockReason::EgressUnknown
            .description()
            .contains("bunq.egress_ips")
    );
}

#[test]
fn more_changes_than_the_limit_block_the_whole_run_but_keep_the_plan() {
    let plan = sync(&["192.0.2.1", "192.0.2.2", "192.0.2.3"])
        .limit(2)
        .plan(&[]);
    assert_eq!(
        plan.run_block,
        Some(RunBlock {
            rule: Rule::MaxChanges,
            changes: 3,
            limit: 2
        })
    );
    assert!(plan.applicable_actions().is_empty());
    assert_eq!(plan.actions().len(), 3);
    assert_eq!(plan.outcome(), PlanOutcome::Blocked);
    assert_eq!(plan.summary().blocking_rules, vec![Rule::MaxChanges]);
}

#[test]
fn exactly_the_limit_is_allowed() {
    let plan = sync(&["192.0.2.1", "192.0.2.2"]).limit(2).plan(&[]);
    assert_eq!(plan.run_block, None);
    assert_eq!(plan.applicable_actions().len(), 2);
}

#[test]
fn actions_blocked_by_own_ip_do_not_count_toward_the_limit() {
    let actual = [active(1, "203.0.113.5")];
    let plan = sync(&["192.0.2.1"]).owned().limit(1).plan(&actual);
    assert_eq!(plan.run_block, None);
    assert_eq!(plan.applicable_actions().len(), 1);
}

#[test]
fn creates_and_activations_precede_deactivations_across_credentials() {
    let first_desired = ips(&[]);
    let second_desired = ips(&["192.0.2.9"]);
    let none = ips(&[]);
    let first_actual = [active(1, "198.51.100.1")];
    let second_actual = [entry(2, "192.0.2.9", "INACTIVE")];
    let state = |id, desired, actual| sync_state(id, desired, &none, actual);
    let plan = plan(&run_of(
        vec![
            state(1, &first_desired, &first_actual[..]),
            state(2, &second_desired, &second_actual[..]),
        ],
        10,
    ));
    let order: Vec<(CredentialId, ChangeKind)> = plan
        .applicable_actions()
        .iter()
        .map(|action| (action.credential, action.change.kind()))
        .collect();
    assert_eq!(
        order,
        vec![(2, ChangeKind::Activate), (1, ChangeKind::Deactivate)]
    );
}

#[test]
fn actions_are_ordered_by_address_numerically() {
    let plan = sync(&["192.0.2.10", "192.0.2.9"]).plan(&[]);
    assert_eq!(
        changes(&plan),
        vec![create("192.0.2.9"), create("192.0.2.10")]
    );
}

#[test]
fn pending_changes_without_blocks_are_pending() {
    assert_eq!(
        sync(&["192.0.2.1"]).plan(&[]).outcome(),
        PlanOutcome::ChangesPending
    );
}

#[test]
fn summary_counts_each_kind() {
    let actual = [
        entry(1, "192.0.2.2", "INACTIVE"),
        active(2, "198.51.100.1"),
        active(3, "192.0.2.3"),
    ];
    let summary = sync(&["192.0.2.1", "192.0.2.2", "192.0.2.3"])
        .plan(&actual)
        .summary();
    assert_eq!(
        summary,
        PlanSummary {
            create: 1,
            activate: 1,
            deactivate: 1,
            blocked: 0,
            kept: 0,
            in_sync: 1,
            drift: 0,
            observe: 0,
            blocking_rules: vec![]
        }
    );
}

fn plan_with_previous(actual: &[PermittedIp], previous: Option<&IpStates>) -> Plan {
    let desired = ips(&["192.0.2.1"]);
    let none = ips(&[]);
    let state = CredentialState {
        policy: Policy::Additive,
        previous,
        ..sync_state(CREDENTIAL, &desired, &none, actual)
    };
    plan(&run_of(vec![state], 10))
}

#[test]
fn status_toggled_outside_the_daemon_is_reported_as_drift() {
    let previous = IpStates::from([("192.0.2.1".to_owned(), IpStatus::Active)]);
    let plan = plan_with_previous(&[entry(1, "192.0.2.1", "INACTIVE")], Some(&previous));
    assert_eq!(
        plan.credentials[0].drift,
        vec![Drift {
            ip: "192.0.2.1".into(),
            before: Some(IpStatus::Active),
            now: Some(IpStatus::Inactive)
        }]
    );
    assert_eq!(changes(&plan), vec![activate(1, "192.0.2.1")]);
}

#[test]
fn entry_added_outside_the_daemon_is_reported_as_drift() {
    let previous = IpStates::from([("192.0.2.1".to_owned(), IpStatus::Active)]);
    let actual = [active(1, "192.0.2.1"), active(2, "198.51.100.1")];
    let plan = plan_with_previous(&actual, Some(&previous));
    assert_eq!(
        plan.credentials[0].drift,
        vec![Drift {
            ip: "198.51.100.1".into(),
            before: None,
            now: Some(IpStatus::Active)
        }]
    );
    assert_eq!(
        plan.outcome(),
        PlanOutcome::NothingToDo,
        "drift alone under additive changes nothing"
    );
}

#[test]
fn entry_gone_outside_the_daemon_is_reported_as_drift() {
    let previous = IpStates::from([("192.0.2.1".to_owned(), IpStatus::Active)]);
    let plan = plan_with_previous(&[], Some(&previous));
    assert_eq!(
        plan.credentials[0].drift,
        vec![Drift {
            ip: "192.0.2.1".into(),
            before: Some(IpStatus::Active),
            now: None
        }]
    );
}

#[test]
fn first_run_reports_no_drift() {
    let plan = plan_with_previous(&[active(2, "198.51.100.1")], None);
    assert!(plan.credentials[0].drift.is_empty());
}

#[test]
fn ip_states_prefer_active_over_inactive_over_unknown() {
    let states = ip_states(&[
        entry(1, "192.0.2.1", "INACTIVE"),
        active(2, "192.0.2.1"),
        entry(3, "192.0.2.2", "PENDING"),
        entry(4, "192.0.2.2", "INACTIVE"),
        entry(5, "192.0.2.3", "PENDING"),
    ]);
    assert_eq!(states["192.0.2.1"], IpStatus::Active);
    assert_eq!(states["192.0.2.2"], IpStatus::Inactive);
    assert_eq!(states["192.0.2.3"], IpStatus::Other("PENDING".into()));
}

#[test]
fn states_after_applying_the_plan_are_converged() {
    let actual = [entry(1, "192.0.2.2", "INACTIVE"), active(2, "198.51.100.1")];
    let plan = sync(&["192.0.2.1", "192.0.2.2"]).plan(&actual);
    let after = plan.credentials[0].states_after(&actual);
    assert_eq!(
        after,
        IpStates::from([
            ("192.0.2.1".to_owned(), IpStatus::Active),
            ("192.0.2.2".to_owned(), IpStatus::Active),
            ("198.51.100.1".to_owned(), IpStatus::Inactive),
        ])
    );
}

#[test]
fn credential_state_takes_desired_protected_and_policy_from_the_spec() {
    let spec = CredentialSpec {
        id: 7,
        name: Some("ops".into()),
        ips: ips(&["192.0.2.1"]),
        sources: Vec::new(),
        policy: Policy::Additive,
        protected: ips(&["192.0.2.9"]),
        allow_empty: false,
    };
    let state = CredentialState::new(&spec, &[], None);
    assert_eq!(
        (state.id, state.name, state.policy),
        (7, Some("ops"), Policy::Additive)
    );
    assert_eq!(state.desired, &spec.ips);
    assert_eq!(state.protected, &spec.protected);
}

fn listed(id: CredentialId, description: Option<&str>, ip: Option<&str>) -> CredentialPasswordIp {
    CredentialPasswordIp {
        id,
        created: None,
        updated: None,
        status: Some("ACTIVE".into()),
        expiry_time: None,
        permitted_device: Some(crate::bunq::model::PermittedDevice {
            description: description.map(str::to_owned),
            ip: ip.map(str::to_owned),
        }),
    }
}

#[test]
fn own_access_is_found_by_device_description() {
    let credentials = [
        listed(1, Some("laptop"), Some("198.51.100.1")),
        listed(2, Some("bunq-ipsync"), Some("203.0.113.5")),
        listed(3, None, None),
    ];
    assert_eq!(
        own_access(&credentials, "bunq-ipsync"),
        vec![OwnAccess {
            credential: 2,
            ip: ip("203.0.113.5")
        }]
    );
}

#[test]
fn own_access_ignores_a_device_without_an_ipv4_address() {
    let credentials = [
        listed(2, Some("bunq-ipsync"), Some("2001:db8::1")),
        listed(3, Some("bunq-ipsync"), None),
    ];
    assert!(own_access(&credentials, "bunq-ipsync").is_empty());
}

#[test]
fn the_change_limit_counts_every_credential_of_the_run() {
    let desired = ips(&["192.0.2.1", "192.0.2.2"]);
    let none = ips(&[]);
    let state = |id| sync_state(id, &desired, &none, &[]);
    let plan = plan(&run_of(vec![state(1), state(2)], 3));
    assert_eq!(plan.run_block.map(|block| block.changes), Some(4));
    assert!(plan.applicable_actions().is_empty());
}

#[test]
fn action_displays_as_one_audit_line() {
    let action = Action {
        credential: 4242,
        change: deactivate(3, "198.51.100.1"),
        reason: Reason::NotDesired,
    };
    assert_eq!(
        action.to_string(),
        "credential 4242: deactivate 198.51.100.1 entry 3 ACTIVE → INACTIVE: not desired (policy sync)"
    );
    let create = Action {
        credential: 1,
        change: create("192.0.2.1"),
        reason: Reason::DesiredMissing,
    };
    assert_eq!(
        create.to_string(),
        "credential 1: create 192.0.2.1 none → ACTIVE: desired, no entry yet"
    );
}

// ---------------------------------------------------------------------------------------------
// source-unavailable

/// Two credentials under `sync`: 1 with a failed source (`failed`) or not, 2 without sources;
/// each has one desired IP missing and one undesired ACTIVE entry.
fn plan_sources(failed: bool) -> Plan {
    let desired = ips(&["203.0.113.10", "198.51.100.7"]);
    let other = ips(&["192.0.2.10"]);
    let none = BTreeSet::new();
    let actual_one = [active(1, "203.0.113.99")];
    let actual_two = [active(2, "192.0.2.99")];
    let facts = SourceFacts {
        provenance: [(ip("198.51.100.7"), "dns:home.example".to_owned())].into(),
        failed: if failed {
            vec![FailedSource {
                source: "dns:gone.example".into(),
                error: "NXDOMAIN (the name does not exist)".into(),
            }]
        } else {
            Vec::new()
        },
    };
    let state = |id, desired, actual| sync_state(id, desired, &none, actual);
    let credentials = vec![
        state(1, &desired, &actual_one).with_sources(&desired, &facts),
        state(2, &other, &actual_two),
    ];
    plan(&PlanInput {
        own_access: vec![OwnAccess {
            credential: 9,
            ip: ip("10.0.0.1"),
        }],
        ..run_of(credentials, 100)
    })
}

#[test]
fn a_failed_source_blocks_only_that_credentials_deactivations_and_grants_still_apply() {
    let plan = plan_sources(true);
    let one = &plan.credentials[0];
    assert_eq!(
        one.actions
            .iter()
            .map(|a| a.change.clone())
            .collect::<Vec<_>>(),
        vec![
            Change::Create {
                ip: ip("198.51.100.7")
            },
            Change::Create {
                ip: ip("203.0.113.10")
            },
        ],
        "the IPs it does know are still granted"
    );
    assert_eq!(one.blocked.len(), 1);
    assert_eq!(one.blocked[0].rule, Rule::SourceUnavailable);
    assert_eq!(one.blocked[0].why, BlockReason::SourceUnavailable);
    assert_eq!(one.blocked[0].why.code(), "source-unavailable");
    assert_eq!(one.sources.failed[0].source, "dns:gone.example");
    let two = &plan.credentials[1];
    assert!(two.blocked.is_empty(), "other credentials are unaffected");
    assert!(two.actions.iter().any(|a| a.change.is_deactivation()));
    assert_eq!(plan.outcome(), PlanOutcome::Blocked);
    assert!(
        plan.summary()
            .blocking_rules
            .contains(&Rule::SourceUnavailable)
    );
}

#[test]
fn with_every_source_resolved_the_credential_is_planned_as_usual_and_knows_each_ips_source() {
    let plan = plan_sources(false);
    let one = &plan.credentials[0];
    assert!(one.blocked.is_empty());
    assert!(one.actions.iter().any(|a| a.change.is_deactivation()));
    assert_eq!(one.source_of("198.51.100.7"), Some("dns:home.example"));
    assert_eq!(one.source_of("203.0.113.10"), None, "a static item");
    assert_eq!(plan.outcome(), PlanOutcome::ChangesPending);
}

// ---------------------------------------------------------------------------------------------
// observe

#[test]
fn observe_plans_exactly_like_sync_but_nothing_is_applicable() {
    let actual = [active(4, "198.51.100.7"), entry(3, "192.0.2.2", "INACTIVE")];
    let desired = ["192.0.2.1", "192.0.2.2"];
    let synced = sync(&desired).plan(&actual);
    let observed = case(Policy::Observe, &desired).plan(&actual);
    assert_eq!(changes(&observed), changes(&synced));
    assert_eq!(changes(&observed).len(), 3);
    assert!(applicable(&observed).is_empty());
    assert_eq!(observed.observed_actions(), observed.actions());
    assert!(observed.writable_actions().is_empty());
    // `plan` exits as for sync: the changes are pending.
    assert_eq!(observed.outcome(), PlanOutcome::ChangesPending);
    assert_eq!(observed.summary().observe, 3);
    assert_eq!(synced.summary().observe, 0);
}

#[test]
fn observe_keeps_the_safety_rules_of_sync() {
    let plan = case(Policy::Observe, &[])
        .owned()
        .egress(None)
        .plan(&[active(1, "203.0.113.5"), active(2, "198.51.100.7")]);
    assert_eq!(
        blocked_why(&plan, 0),
        vec![
            (deactivate(2, "198.51.100.7"), BlockReason::EgressUnknown),
            (deactivate(1, "203.0.113.5"), BlockReason::RegistrationIp),
        ]
    );
    assert_eq!(plan.outcome(), PlanOutcome::Blocked);
}

#[test]
fn observe_actions_never_count_toward_the_change_limit() {
    let desired = ips(&["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
    let none = ips(&[]);
    let watched = CredentialState {
        policy: Policy::Observe,
        ..sync_state(1, &desired, &none, &[])
    };
    let managed = sync_state(2, &desired, &none, &[]);
    let plan = plan(&run_of(vec![watched, managed], 3));
    assert_eq!(plan.run_block, None, "3 writes are within the limit of 3");
    let applicable: Vec<CredentialId> = plan
        .applicable_actions()
        .iter()
        .map(|action| action.credential)
        .collect();
    assert_eq!(applicable, vec![2, 2, 2]);
    assert_eq!(plan.observed_actions().len(), 3);
}
