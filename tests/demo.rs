//! `bunq-ipsync demo`: the README's first command runs the real code path end to end.

use std::process::Command;

#[test]
fn demo_plans_applies_repairs_drift_and_ends_converged_with_zero_writes() {
    let output = Command::new(env!("CARGO_BIN_EXE_bunq-ipsync"))
        .arg("demo")
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        output.status
    );

    let steps: Vec<&str> = stdout.split("\n== ").collect();
    assert_eq!(
        steps.len(),
        5,
        "four numbered steps after the banner:\n{stdout}"
    );
    let (plan, apply, drift, converged) = (steps[1], steps[2], steps[3], steps[4]);

    assert!(
        plan.contains("Plan: 5 to create, 1 to activate, 1 to deactivate"),
        "{plan}"
    );
    assert!(
        plan.contains("exit code 2"),
        "plan reports changes pending: {plan}"
    );
    assert!(
        apply.contains("Apply: 7 applied, 0 failed, 0 skipped, 0 blocked"),
        "{apply}"
    );
    assert!(apply.contains("exit code 0"), "{apply}");
    assert!(
        drift.contains("DRIFT 192.0.2.99: INACTIVE → ACTIVE"),
        "{drift}"
    );
    assert!(drift.contains("Apply: 1 applied"), "{drift}");
    assert!(converged.contains("Apply: 0 applied"), "{converged}");
    assert!(converged.contains("0 of them writes"), "{converged}");
    assert!(stdout.contains("protected, never deactivated"), "{stdout}");
}
