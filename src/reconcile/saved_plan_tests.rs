use super::*;
use crate::config::Policy;
use crate::reconcile::fixtures::active;
use crate::reconcile::plan::{Change, CredentialPlan, Reason};
use crate::test_util::assert_contains;

fn create(credential: CredentialId, ip: &str) -> Action {
    Action {
        credential,
        change: Change::Create {
            ip: ip.parse().unwrap(),
        },
        reason: Reason::DesiredMissing,
    }
}

fn deactivate(credential: CredentialId, entry: EntryId, ip: &str) -> Action {
    Action {
        credential,
        change: Change::Deactivate {
            entry,
            ip: ip.to_owned(),
        },
        reason: Reason::NotDesired,
    }
}

fn plan_of(actions: Vec<Action>) -> Plan {
    let mut by_credential: BTreeMap<CredentialId, Vec<Action>> = BTreeMap::new();
    for action in actions {
        by_credential
            .entry(action.credential)
            .or_default()
            .push(action);
    }
    Plan {
        credentials: by_credential
            .into_iter()
            .map(|(credential, actions)| CredentialPlan {
                credential,
                name: None,
                policy: Policy::Sync,
                actions,
                blocked: Vec::new(),
                kept: Vec::new(),
                in_sync: Vec::new(),
                drift: Vec::new(),
                sources: Default::default(),
            })
            .collect(),
        max_changes: 10,
        run_block: None,
        sources: Vec::new(),
    }
}

fn two_actions() -> Vec<Action> {
    vec![create(1, "192.0.2.1"), deactivate(1, 7, "198.51.100.7")]
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    rfc3339.parse().unwrap()
}

#[test]
fn lines_are_canonical_and_sorted() {
    let plan = plan_of(vec![
        deactivate(2, 7, "198.51.100.7"),
        create(1, "192.0.2.1"),
    ]);
    assert_eq!(
        action_lines(&plan),
        vec!["1 create - 192.0.2.1", "2 deactivate 7 198.51.100.7"]
    );
}

#[test]
fn checksum_is_sha256_hex_of_the_lines() {
    // sha256 of the empty input: a plan without actions.
    assert_eq!(
        checksum(&plan_of(Vec::new())),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let sum = checksum(&plan_of(two_actions()));
    assert_eq!(sum.len(), 64);
    assert!(sum.bytes().all(|byte| byte.is_ascii_hexdigit()));
}

#[test]
fn checksum_does_not_depend_on_action_order() {
    let mut reversed = two_actions();
    reversed.reverse();
    assert_eq!(
        checksum(&plan_of(two_actions())),
        checksum(&plan_of(reversed))
    );
}

#[test]
fn checksum_changes_with_every_action_field() {
    let base = checksum(&plan_of(two_actions()));
    let variants = [
        // Another credential.
        vec![create(2, "192.0.2.1"), deactivate(1, 7, "198.51.100.7")],
        // Another kind on the same entry and IP.
        vec![
            create(1, "192.0.2.1"),
            Action {
                credential: 1,
                change: Change::Activate {
                    entry: 7,
                    ip: "198.51.100.7".parse().unwrap(),
                },
                reason: Reason::DesiredInactive,
            },
        ],
        // Another entry.
        vec![create(1, "192.0.2.1"), deactivate(1, 8, "198.51.100.7")],
        // Another IP.
        vec![create(1, "192.0.2.2"), deactivate(1, 7, "198.51.100.7")],
        // One action fewer.
        vec![create(1, "192.0.2.1")],
    ];
    for variant in variants {
        assert_ne!(checksum(&plan_of(variant.clone())), base, "{variant:?}");
    }
}

fn saved(actions: Vec<Action>, created_at: &str) -> SavedPlan {
    SavedPlan::new(
        &plan_of(actions),
        observed_entries(&entries_now()),
        "config-sum".into(),
        at(created_at),
        serde_json::json!({"format_version": 1}),
    )
}

#[test]
fn a_saved_plan_round_trips_and_names_its_format() {
    let plan = saved(two_actions(), "2026-01-01T10:00:00Z");
    let text = plan.render().unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["format"], "bunq-ipsync-plan");
    assert_eq!(value["version"], 1);
    assert_eq!(value["observed"]["1"][0]["status"], "ACTIVE");
    let parsed = SavedPlan::parse(&text).unwrap();
    assert_eq!(parsed.actions, plan.actions);
    assert_eq!(parsed.checksum, plan.checksum);
    assert_eq!(parsed.created_at, plan.created_at);
}

#[test]
fn parse_refuses_another_format_version_or_an_edited_action() {
    let text = saved(two_actions(), "2026-01-01T10:00:00Z")
        .render()
        .unwrap();
    let other_format = text.replace("bunq-ipsync-plan", "terraform");
    assert!(matches!(
        SavedPlan::parse(&other_format),
        Err(SavedPlanError::Format(_))
    ));
    let other_version = text.replace("\"version\": 1", "\"version\": 2");
    assert!(matches!(
        SavedPlan::parse(&other_version),
        Err(SavedPlanError::Version(2))
    ));
    let edited = text.replace("1 create - 192.0.2.1", "1 create - 192.0.2.9");
    assert!(matches!(
        SavedPlan::parse(&edited),
        Err(SavedPlanError::Tampered)
    ));
    assert!(matches!(
        SavedPlan::parse("{}"),
        Err(SavedPlanError::Parse(_))
    ));
}

fn entries_now() -> BTreeMap<CredentialId, Vec<PermittedIp>> {
    [(1, vec![active(7, "198.51.100.7")])].into()
}

/// The gate of [`two_actions`] saved at 10:00 (with the config `config-sum`), checked within
/// [`DEFAULT_MAX_AGE`] against a config whose fingerprint is now `config_now`.
fn gate_of_two_actions(config_now: &str) -> PlanGate {
    PlanGate::saved(
        saved(two_actions(), "2026-01-01T10:00:00Z"),
        DEFAULT_MAX_AGE,
        config_now.into(),
    )
}

#[test]
fn the_gate_of_a_saved_plan_passes_the_same_actions_within_its_age() {
    let gate = gate_of_two_actions("config-sum");
    let mut reordered = two_actions();
    reordered.reverse();
    gate.check(
        &plan_of(reordered),
        &entries_now(),
        at("2026-01-01T10:59:00Z"),
    )
    .unwrap();
}

#[test]
fn the_gate_refuses_a_saved_plan_older_than_its_max_age() {
    let gate = gate_of_two_actions("config-sum");
    let stale = gate
        .check(
            &plan_of(two_actions()),
            &entries_now(),
            at("2026-01-01T11:00:01Z"),
        )
        .unwrap_err();
    let text = stale.to_string();
    assert!(text.starts_with("stale plan: "), "{text}");
    assert_contains(&text, "1h");
}

#[test]
fn the_gate_refuses_other_actions_and_names_the_difference() {
    let gate = gate_of_two_actions("another-config");
    let now = [(
        1,
        vec![PermittedIp::new(7, "198.51.100.7", IpStatus::Inactive)],
    )]
    .into();
    let stale = gate
        .check(
            &plan_of(vec![create(1, "192.0.2.1")]),
            &now,
            at("2026-01-01T10:01:00Z"),
        )
        .unwrap_err();
    let text = stale.to_string();
    assert!(text.starts_with("stale plan: "), "{text}");
    assert_contains(
        &text,
        "- 1 deactivate 7 198.51.100.7 (saved, not planned now)",
    );
    assert_contains(
        &text,
        "credential 1 entry 7 198.51.100.7: ACTIVE → INACTIVE",
    );
    assert_contains(&text, "the config file changed");
    assert!(!text.contains("+ 1 create"), "{text}");
}

#[test]
fn the_checksum_gate_passes_only_the_matching_checksum() {
    let plan = plan_of(two_actions());
    let now = at("2026-01-01T10:00:00Z");
    let sum = checksum(&plan);
    PlanGate::checksum(&sum.to_ascii_uppercase())
        .unwrap()
        .check(&plan, &entries_now(), now)
        .unwrap();
    let other = plan_of(vec![create(1, "192.0.2.1")]);
    let stale = PlanGate::checksum(&sum)
        .unwrap()
        .check(&other, &entries_now(), now)
        .unwrap_err();
    let text = stale.to_string();
    assert_contains(&text, &checksum(&other));
    assert_contains(&text, "1 create - 192.0.2.1");
    assert!(matches!(
        PlanGate::checksum("abc"),
        Err(SavedPlanError::BadChecksum)
    ));
}
