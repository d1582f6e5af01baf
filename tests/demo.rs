//! `bunq-ipsync demo`: the README's first command runs the real code path end to end.

use std::process::Command;

/// Fails showing `text` (a step of the demo's output, or all of it) unless it contains `part`.
#[track_caller]
fn assert_has(text: &str, part: &str) {
    assert!(text.contains(part), "{text}");
}

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
        9,
        "eight numbered steps after the banner:\n{stdout}"
    );
    let (plan, apply, drift, converged) = (steps[1], steps[2], steps[3], steps[8]);
    let (moved, failed, back) = (steps[4], steps[5], steps[6]);

    assert_has(plan, "Plan: 6 to create, 1 to activate, 1 to deactivate");
    assert!(
        plan.contains("exit code 2"),
        "plan reports changes pending: {plan}"
    );
    assert_has(apply, "Apply: 8 applied, 0 failed, 0 skipped, 0 blocked");
    assert_has(apply, "exit code 0");
    assert_has(drift, "DRIFT 192.0.2.99: INACTIVE → ACTIVE");
    assert_has(drift, "Apply: 1 applied");
    assert_has(converged, "Apply: 0 applied");
    assert_has(converged, "0 of them writes");
    // The JSON webhook got each kind at most once per run: applied (steps 2, 3, 4, 6, 7), drift
    // (3, 5, 7), blocked (5), failed (the stale checksum in 7) and recovered (7).
    let webhook = converged
        .split("The JSON webhook")
        .nth(1)
        .expect("the demo shows what the webhook received");
    let kinds: Vec<&str> = webhook
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(
        kinds,
        [
            "applied",
            "applied",
            "drift",
            "applied",
            "blocked",
            "drift",
            "applied",
            "failed",
            "applied",
            "drift",
            "recovered"
        ],
        "{webhook}"
    );
    assert_has(&stdout, "protected, never deactivated");

    // The home server's DDNS name moves, fails, comes back.
    assert_has(
        moved,
        "203.0.113.51  -      none → ACTIVE      desired, no entry yet (from dns:home.example.org)",
    );
    let grant = moved.find("create 203.0.113.51").expect(moved);
    let retire = moved.find("deactivate 203.0.113.50").expect(moved);
    assert!(grant < retire, "granted before retired: {moved}");
    assert_has(failed, "SOURCE FAILED dns:home.example.org: NXDOMAIN");
    assert_has(failed, "BLOCKED [source-unavailable] deactivate 192.0.2.77");
    assert_has(failed, "exit code 3");
    assert_has(back, "deactivate 192.0.2.77");
    assert_has(back, "Apply: 1 applied");

    // Change control: the reviewed checksum is refused once bunq changed, nothing is written,
    // and the checksum of the plan reviewed again is applied.
    let reviewed = steps[7];
    assert_has(reviewed, "reviewed checksum ");
    assert_has(
        reviewed,
        "stale plan: the actions bunq now calls for have checksum",
    );
    assert_has(reviewed, "exit code 1, nothing written");
    let refused = reviewed
        .find("exit code 1, nothing written")
        .expect(reviewed);
    let applied = reviewed.find("Apply: 2 applied").expect(reviewed);
    assert!(refused < applied, "refused before applied: {reviewed}");
    assert!(
        !reviewed[..refused].contains("applied  credential"),
        "the stale apply wrote: {reviewed}"
    );

    // Drift is told by the walkthrough's tables, not by a log line between them; the waits for
    // bunq's windows (seven writes in step 2 exceed the simulator's POST window) are said.
    assert!(!stderr.contains("drift"), "{stderr}");
    assert_has(&stderr, "waiting for bunq's rate-limit window request=POST");
}
