//! Exact renderings of small plans.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::*;
use crate::bunq::model::IpStatus;
use crate::config::Policy;
use crate::reconcile::fixtures::{active, entry};
use crate::reconcile::plan::{CredentialState, IpStates, OwnAccess, Plan, PlanInput, plan};

fn ips(list: &[&str]) -> BTreeSet<Ipv4Addr> {
    list.iter().map(|ip| ip.parse().unwrap()).collect()
}

/// Two credentials: one with every kind of line, one converged.
fn sample_plan(max_changes: usize) -> Plan {
    let desired = ips(&["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
    let protected = ips(&["198.51.100.9"]);
    let actual = [
        active(1, "203.0.113.5"),
        active(3, "198.51.100.1"),
        active(5, "198.51.100.9"),
        active(7, "192.0.2.3"),
        entry(12, "192.0.2.2", "INACTIVE"),
    ];
    let previous = IpStates::from([
        ("192.0.2.2".to_owned(), IpStatus::Active),
        ("192.0.2.3".to_owned(), IpStatus::Active),
        ("198.51.100.9".to_owned(), IpStatus::Active),
        ("203.0.113.5".to_owned(), IpStatus::Active),
        ("198.51.100.1".to_owned(), IpStatus::Active),
    ]);
    let other_desired = ips(&["192.0.2.50"]);
    let none = ips(&[]);
    let other_actual = [active(40, "192.0.2.50")];
    let egress = ips(&["203.0.113.6"]);
    plan(&PlanInput {
        credentials: vec![
            CredentialState {
                id: 4242,
                name: Some("ci-runners"),
                policy: Policy::Sync,
                desired: &desired,
                protected: &protected,
                actual: &actual,
                previous: Some(&previous),
                sources: None,
            },
            CredentialState {
                id: 5000,
                name: None,
                policy: Policy::Additive,
                desired: &other_desired,
                protected: &none,
                actual: &other_actual,
                previous: None,
                sources: None,
            },
        ],
        max_changes,
        own_access: vec![OwnAccess {
            credential: 4242,
            ip: "203.0.113.5".parse().unwrap(),
        }],
        own_credential_known: true,
        egress_ips: Some(&egress),
        sources: Vec::new(),
    })
}

const SAMPLE_TEXT: &str = "\
Credential 4242 (ci-runners), policy sync: 1 desired IP ACTIVE
  IP            ENTRY  CURRENT → WANTED   REASON
  192.0.2.1     -      none → ACTIVE      desired, no entry yet
  192.0.2.2     12     INACTIVE → ACTIVE  desired, reuses the newest INACTIVE entry
  198.51.100.1  3      ACTIVE → INACTIVE  not desired (policy sync)
  198.51.100.9  5      ACTIVE (kept)      protected, never deactivated
  BLOCKED [own-ip] deactivate 203.0.113.5 entry 1: the daemon's device was registered from this IP (permitted_device.ip) on the credential it signs in with; it is never deactivated
  DRIFT 192.0.2.2: ACTIVE → INACTIVE since the last run (changed outside bunq-ipsync)
Credential 5000, policy additive: in sync, 1 desired IP ACTIVE
Plan: 1 to create, 1 to activate, 1 to deactivate, 1 blocked (own-ip), 1 kept, 1 drifted
";

#[test]
fn text_plan_is_a_table_per_credential_then_a_summary() {
    assert_eq!(render_text(&sample_plan(10)), SAMPLE_TEXT);
}

#[test]
fn text_plan_of_a_blocked_run_says_nothing_will_be_applied() {
    let text = render_text(&sample_plan(2));
    assert!(text.ends_with(
        "BLOCKED [max-changes]: 3 changes, more than sync.max_changes (2); nothing will be applied\n\
         Plan: 1 to create, 1 to activate, 1 to deactivate, 1 blocked (own-ip, max-changes), 1 kept, 1 drifted\n"
    ), "{text}");
    assert!(
        text.contains("192.0.2.1     -      none → ACTIVE"),
        "the full plan is still printed:\n{text}"
    );
}

#[test]
fn summary_of_nothing_to_do_has_zero_counts() {
    let empty = Plan {
        credentials: vec![],
        max_changes: 10,
        run_block: None,
        sources: Vec::new(),
    };
    assert_eq!(
        summary_line(&empty),
        "Plan: 0 to create, 0 to activate, 0 to deactivate, 0 blocked"
    );
}

#[test]
fn json_plan_has_the_documented_shape() {
    let json: serde_json::Value =
        serde_json::from_str(&render_json(&sample_plan(10)).unwrap()).unwrap();
    let expected = serde_json::json!({
        "format_version": 1,
        "outcome": "blocked",
        // sha256 of "4242 activate 12 192.0.2.2\n4242 create - 192.0.2.1\n4242 deactivate 3
        // 198.51.100.1\n" (checked with sha256sum): the sorted canonical action lines.
        "checksum": "8541e035673ca7676cfac30b86a6ef78de4fd539ce219b341905024079f8e37d",
        "exit_code": 3,
        "max_changes": 10,
        "run_blocked": null,
        "summary": {"create": 1, "activate": 1, "deactivate": 1, "blocked": 1, "kept": 1, "in_sync": 2,
                    "drift": 1, "observe": 0, "blocking_rules": ["own-ip"]},
        "credentials": [
            {
                "id": 4242, "name": "ci-runners", "policy": "sync",
                "actions": [
                    {"action": "create", "ip": "192.0.2.1", "entry": null, "current": null, "wanted": "ACTIVE",
                     "reason": "desired-missing", "reason_text": "desired, no entry yet", "source": null, "observe": false},
                    {"action": "activate", "ip": "192.0.2.2", "entry": 12, "current": "INACTIVE", "wanted": "ACTIVE",
                     "reason": "desired-inactive", "reason_text": "desired, reuses the newest INACTIVE entry", "source": null, "observe": false},
                    {"action": "deactivate", "ip": "198.51.100.1", "entry": 3, "current": "ACTIVE", "wanted": "INACTIVE",
                     "reason": "not-desired", "reason_text": "not desired (policy sync)", "source": null, "observe": false}
                ],
                "blocked": [
                    {"action": "deactivate", "ip": "203.0.113.5", "entry": 1, "current": "ACTIVE", "wanted": "INACTIVE",
                     "reason": "not-desired", "reason_text": "not desired (policy sync)", "source": null, "observe": false,
                     "rule": "own-ip", "rule_text": "would remove the daemon's own IP from the credential it signs in with",
                     "block_reason": "registration-ip",
                     "block_reason_text": "the daemon's device was registered from this IP (permitted_device.ip) on the credential it signs in with; it is never deactivated"}
                ],
                "kept": [
                    {"ip": "198.51.100.9", "entry": 5, "status": "ACTIVE", "reason": "protected",
                     "reason_text": "protected, never deactivated"}
                ],
                "in_sync": [{"ip": "192.0.2.3", "entry": 7, "source": null}],
                "drift": [{"ip": "192.0.2.2", "before": "ACTIVE", "now": "INACTIVE"}],
                "failed_sources": []
            },
            {
                "id": 5000, "name": null, "policy": "additive",
                "actions": [], "blocked": [], "kept": [],
                "in_sync": [{"ip": "192.0.2.50", "entry": 40, "source": null}],
                "drift": [],
                "failed_sources": []
            }
        ],
        "sources": []
    });
    assert_eq!(json, expected);
}

#[test]
fn json_of_a_blocked_run_names_the_rule_and_limit() {
    let json: serde_json::Value =
        serde_json::from_str(&render_json(&sample_plan(2)).unwrap()).unwrap();
    assert_eq!(
        json["run_blocked"],
        serde_json::json!({"rule": "max-changes", "changes": 3, "limit": 2})
    );
    assert_eq!(json["exit_code"], 3);
}

#[test]
fn json_rendering_is_deterministic_and_ends_with_a_newline() {
    let first = render_json(&sample_plan(10)).unwrap();
    assert_eq!(first, render_json(&sample_plan(10)).unwrap());
    assert!(first.ends_with("}\n"));
}

/// One credential under `observe` with a desired IP missing and an undesired ACTIVE entry.
fn observed_plan() -> Plan {
    let desired = ips(&["192.0.2.1"]);
    let none = ips(&[]);
    let actual = [active(3, "198.51.100.1")];
    plan(&PlanInput {
        credentials: vec![CredentialState {
            id: 4242,
            name: None,
            policy: Policy::Observe,
            desired: &desired,
            protected: &none,
            actual: &actual,
            previous: None,
            sources: None,
        }],
        max_changes: 1,
        own_access: vec![],
        own_credential_known: true,
        egress_ips: Some(&none),
        sources: Vec::new(),
    })
}

#[test]
fn text_plan_marks_observe_actions_and_counts_them() {
    let text = render_text(&observed_plan());
    assert!(text.contains("none → ACTIVE (observe)"), "{text}");
    assert!(text.contains("ACTIVE → INACTIVE (observe)"), "{text}");
    assert!(
        text.ends_with(
            "Plan: 1 to create, 0 to activate, 1 to deactivate, 0 blocked, 2 observe only (not written)\n"
        ),
        "{text}"
    );
    assert!(
        !text.contains("BLOCKED"),
        "observe actions never hit max-changes:\n{text}"
    );
}

#[test]
fn json_plan_flags_observe_actions() {
    let json: serde_json::Value =
        serde_json::from_str(&render_json(&observed_plan()).unwrap()).unwrap();
    let credential = &json["credentials"][0];
    assert_eq!(credential["policy"], "observe");
    let flags: Vec<&serde_json::Value> = credential["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|action| &action["observe"])
        .collect();
    assert_eq!(flags, [&serde_json::json!(true), &serde_json::json!(true)]);
    assert_eq!(json["summary"]["observe"], 2);
    assert_eq!(json["outcome"], "changes_pending");
    assert_eq!(json["exit_code"], 2);
    assert_eq!(json["run_blocked"], serde_json::Value::Null);
}
