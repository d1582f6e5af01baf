//! Reviewed plans (issue 13, item 3): `plan --out` saves a plan, `apply --plan` applies it only
//! while bunq still calls for exactly those actions (and it is younger than `--max-age`), and
//! `apply --checksum` is the same gate with the `checksum` of `plan --output json`.

use std::path::{Path, PathBuf};

use bunq_ipsync::bunq::model::IpStatus;
use serde_json::Value;

use super::{Env, Output, assert_stderr_has, assert_stdout_empty, show};

/// `plan --out PLAN.json` (exit 2: the setup always has changes pending), and the saved file.
async fn save_plan(env: &Env, config: &Path) -> (PathBuf, Value) {
    let path = env.dir.path().join("plan.json");
    let path_text = path.display().to_string();
    let out = env
        .run_exits(config, &["plan", "--out", &path_text], 2)
        .await;
    assert!(
        out.stdout.contains("203.0.113.10"),
        "printed as usual: {}",
        show(&out)
    );
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    (path, saved)
}

/// `apply` with `gate` (`--plan FILE ...` or `--checksum SUM`), refused: exit 1, "stale plan"
/// (or another refusal) on stderr.
async fn refused_apply(env: &Env, config: &Path, gate: &[&str]) -> Output {
    let args: Vec<&str> = std::iter::once("apply")
        .chain(gate.iter().copied())
        .collect();
    env.run_exits(config, &args, 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_plan_is_applied_when_bunq_is_unchanged() {
    let (env, ci, config) = Env::replacing_one().await;
    let (path, saved) = save_plan(&env, &config).await;
    assert_eq!(saved["format"], "bunq-ipsync-plan");
    assert_eq!(saved["version"], 1);
    assert_eq!(saved["observed"][ci.to_string()][0]["ip"], "192.0.2.1");
    assert_eq!(saved["config_fingerprint"].as_str().unwrap().len(), 64);
    let lines: Vec<&str> = saved["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line.as_str().unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{saved}");
    assert!(
        lines[0].starts_with(&format!("{ci} create - 203.0.113.10")),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with(&format!("{ci} deactivate ")),
        "{lines:?}"
    );
    let json = env.run_json(&config, "plan", 2).await;
    assert_eq!(
        json["checksum"], saved["checksum"],
        "one checksum for one plan"
    );
    assert_eq!(saved["plan"]["checksum"], saved["checksum"]);

    env.run_exits(
        &config,
        &["apply", "--plan", &path.display().to_string()],
        0,
    )
    .await;
    assert_eq!(env.active(ci), vec!["203.0.113.10"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_plan_is_refused_after_an_out_of_band_change() {
    let (env, ci, config) = Env::replacing_one().await;
    let (path, _) = save_plan(&env, &config).await;
    let planted = env
        .sim
        .add_entry(ci, "198.51.100.5", IpStatus::Active)
        .unwrap();

    let out = refused_apply(&env, &config, &["--plan", &path.display().to_string()]).await;
    assert_stderr_has(&out, "stale plan");
    assert_stderr_has(
        &out,
        &format!("+ {ci} deactivate {planted} 198.51.100.5 (planned now, not in the saved plan)"),
    );
    assert_stderr_has(
        &out,
        &format!(
            "bunq changed since the plan: credential {ci} entry {planted} 198.51.100.5: absent → ACTIVE"
        ),
    );
    assert_stdout_empty(&out);
    env.assert_no_allowlist_write();
    assert_eq!(env.active(ci), vec!["192.0.2.1", "198.51.100.5"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_plan_older_than_max_age_is_refused() {
    let (env, ci, config) = Env::replacing_one().await;
    let (path, _) = save_plan(&env, &config).await;
    let path = path.display().to_string();

    let out = refused_apply(&env, &config, &["--plan", &path, "--max-age", "1ms"]).await;
    assert_stderr_has(&out, "stale plan");
    assert_stderr_has(&out, "longer than --max-age 1ms");
    env.assert_no_allowlist_write();
    assert_eq!(env.active(ci), vec!["192.0.2.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_a_saved_plan_is_refused_before_bunq_is_called() {
    let (env, _, config) = Env::replacing_one().await;
    let edited = env.write(
        "plan.json",
        r#"{"format": "bunq-ipsync-plan", "version": 7}"#,
    );
    let out = refused_apply(&env, &config, &["--plan", &edited.display().to_string()]).await;
    assert_stderr_has(&out, "saved plan version 7 is not supported");
    env.assert_no_request();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_checksum_applies_the_reviewed_actions_and_refuses_others() {
    let (env, ci, config) = Env::replacing_one().await;
    let sum = env.run_json(&config, "plan", 2).await["checksum"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(sum.len(), 64);

    let other = "0".repeat(64);
    let out = refused_apply(&env, &config, &["--checksum", &other]).await;
    assert_stderr_has(&out, "stale plan");
    assert_stderr_has(&out, &format!("have checksum {sum}, not {other}"));
    assert_stderr_has(&out, &format!("{ci} create - 203.0.113.10"));
    env.assert_no_allowlist_write();

    env.run_exits(&config, &["apply", "--checksum", &sum], 0)
        .await;
    assert_eq!(env.active(ci), vec!["203.0.113.10"]);
    // Converged: the same checksum now stands for other actions (none), so it is refused.
    let out = refused_apply(&env, &config, &["--checksum", &sum]).await;
    assert_stderr_has(&out, "stale plan");
}
