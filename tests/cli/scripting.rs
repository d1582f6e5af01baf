//! Where people script: `status --output json` and `validate --output json`, and the log
//! format and level from `RUST_LOG`, the flags, `BUNQ_IPSYNC_LOG_*` and the config, in that
//! order, every level checked by the one function `log.level` is checked by.

use super::*;

/// An info line every first `plan` logs (it registers a device): present at `info`, absent at
/// `warn`.
const REGISTERING: &str = "registering a new bunq installation";

const NOT_A_FILTER: &str = "\"warning\" is not a log filter";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_level_that_is_no_level_is_refused_from_the_flag_the_env_and_the_config() {
    let (env, _, config) = Env::in_sync().await;
    let flag = env
        .run_exits(&config, &["--log-level", "warning", "validate"], 1)
        .await;
    assert_stderr_has(&flag, NOT_A_FILTER);
    assert_stdout_empty(&flag);
    let from_env = env
        .run_with_env(
            &config,
            &["validate"],
            &[("BUNQ_IPSYNC_LOG_LEVEL", "warning")],
        )
        .await;
    assert_eq!(from_env.code, 1, "{}", show(&from_env));
    assert_stderr_has(&from_env, NOT_A_FILTER);
    assert_stderr_has(&from_env, "BUNQ_IPSYNC_LOG_LEVEL");
    let text = std::fs::read_to_string(&config).unwrap() + "log:\n  level: warning\n";
    let in_config = env.write("config.yaml", &text);
    let out = env.run_exits(&in_config, &["validate"], 1).await;
    assert_stderr_has(&out, NOT_A_FILTER);
    assert_stderr_has(&out, "log.level");
    assert!(
        env.sim.request_log().is_empty(),
        "a refused level contacted bunq"
    );
}

/// Runs a first `plan` (one that registers, so it logs [`REGISTERING`] at info) with `args`
/// before the subcommand and `vars` in the environment, and says whether info lines were logged.
async fn logs_info(env: &Env, config: &Path, args: &[&str], vars: &[(&str, &str)]) -> bool {
    let _ = std::fs::remove_dir_all(env.state_dir());
    let mut full = args.to_vec();
    full.push("plan");
    let out = env.run_with_env(config, &full, vars).await;
    assert_eq!(out.code, 0, "{full:?} {vars:?}: {}", show(&out));
    out.stderr.contains(REGISTERING)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_level_comes_from_rust_log_then_the_flag_then_the_env_then_the_config() {
    let (env, _, quiet) = Env::in_sync().await;
    let text = std::fs::read_to_string(&quiet).unwrap() + "log:\n  level: warn\n";
    let quiet = env.write("config.yaml", &text);
    assert!(!logs_info(&env, &quiet, &[], &[]).await, "config: warn");
    let info_env = [("BUNQ_IPSYNC_LOG_LEVEL", "info")];
    assert!(
        logs_info(&env, &quiet, &[], &info_env).await,
        "env over config"
    );
    let warn_flag = ["--log-level", "warn"];
    assert!(
        !logs_info(&env, &quiet, &warn_flag, &info_env).await,
        "flag over env"
    );
    assert!(
        logs_info(&env, &quiet, &warn_flag, &[("RUST_LOG", "info")]).await,
        "RUST_LOG over the flag"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_format_comes_from_the_flag_then_the_env_then_the_config() {
    let (env, _, config) = Env::in_sync().await;
    let json_lines = |out: &Output| {
        !out.stderr.is_empty()
            && out
                .stderr
                .lines()
                .all(|line| serde_json::from_str::<Value>(line).is_ok())
    };
    let _ = std::fs::remove_dir_all(env.state_dir());
    let json_env = [("BUNQ_IPSYNC_LOG_FORMAT", "json")];
    let out = env.run_with_env(&config, &["plan"], &json_env).await;
    assert!(json_lines(&out), "env: json\n{}", show(&out));
    let _ = std::fs::remove_dir_all(env.state_dir());
    let out = env
        .run_with_env(&config, &["--log-format", "text", "plan"], &json_env)
        .await;
    assert!(!json_lines(&out), "flag over env\n{}", show(&out));
    assert_stderr_has(&out, REGISTERING);
    let out = env
        .run_with_env(&config, &["validate"], &[("BUNQ_IPSYNC_LOG_FORMAT", "xml")])
        .await;
    assert_eq!(out.code, 1, "{}", show(&out));
    assert_stderr_has(&out, "xml");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_is_one_versioned_document_that_names_no_secret() {
    let (env, _, config) = Env::wanting_one().await;
    let none = env.run_json(&config, "status", 0).await;
    assert_eq!(none["format_version"], 1);
    assert_eq!(none["lock"], Value::Null, "no state directory yet");
    assert_eq!(none["context"], Value::Null);
    assert!(!env.state_dir().exists(), "status created the state dir");

    env.run_exits(&config, &["plan"], 2).await;
    let saved = env.run_json(&config, "status", 0).await;
    assert_eq!(saved["lock"]["held"], false);
    assert_eq!(saved["problem"], Value::Null);
    let context = &saved["context"];
    assert_eq!(context["format_version"], 1);
    assert_eq!(context["api_key"]["configured_key"], "matches");
    assert_eq!(
        context["api_key"]["fingerprint_prefix"]
            .as_str()
            .unwrap()
            .len(),
        16
    );
    assert_eq!(context["installation"], true);
    assert!(context["device"]["id"].is_u64(), "{saved}");
    assert_eq!(context["device"]["description"], "ipsync-cli-test");
    assert_eq!(context["session"]["user_id"], env.key.user_id);
    assert_eq!(context["session"]["valid"], true);
    assert!(context["session"]["remaining_secs"].as_u64().unwrap() > 0);
    assert!(
        saved["state_file"]
            .as_str()
            .unwrap()
            .ends_with("bunq-context.json")
    );

    // Held by a daemon whose session expired: the document says why, and status exits 1.
    env.set_saved_session_expiry(Utc::now() - chrono::Duration::minutes(1));
    let held = env.hold_as_daemon();
    let out = env
        .run_exits(&config, &["status", "--output", "json"], 1)
        .await;
    let expired = out.json();
    assert_eq!(expired["lock"]["held"], true);
    assert_eq!(expired["lock"]["holder_pid"], std::process::id());
    assert_eq!(expired["context"]["session"]["valid"], false);
    assert_eq!(expired["context"]["session"]["remaining_secs"], 0);
    let problem = expired["problem"].as_str().unwrap();
    assert!(problem.contains("expired"), "{problem}");
    assert_stderr_has(&out, problem);
    env.assert_files_untouched(&held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_json_summarises_a_valid_config_and_lists_every_problem_of_an_invalid_one() {
    let (env, _, config) = Env::with_ci(&[], &["203.0.113.10", "198.51.100.0/30"]).await;
    let valid = env.run_json(&config, "validate", 0).await;
    assert_eq!(valid["format_version"], 1);
    assert_eq!(valid["valid"], true);
    assert_eq!(valid["config"], config.display().to_string());
    assert_eq!(valid["problems"], serde_json::json!([]));
    let summary = &valid["summary"];
    assert_eq!(summary["credentials"], 1);
    assert_eq!(summary["desired_ips"], 5, "CIDR expanded");
    assert_eq!(summary["sources"], 0);
    assert_eq!(summary["policy"], "sync");
    assert_eq!(summary["egress_ips"], Value::Null);
    assert_eq!(
        valid["sources"],
        Value::Null,
        "nothing resolved without --resolve"
    );

    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("203.0.113.10", "2001:db8::1")
        + "log:\n  level: warning\n";
    let invalid = env.write("invalid.yaml", &text);
    let out = env
        .run_exits(&invalid, &["validate", "--output", "json"], 1)
        .await;
    let document = out.json();
    assert_eq!(document["valid"], false);
    assert_eq!(document["summary"], Value::Null);
    let problems = document["problems"].as_array().unwrap();
    let fields: Vec<&str> = problems
        .iter()
        .map(|problem| problem["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields.len(), 2, "{document}");
    assert!(fields[0].starts_with("credentials[0].ips"), "{fields:?}");
    assert_eq!(fields[1], "log.level");
    assert!(problems.iter().all(|problem| problem["line"].is_u64()));
    assert!(
        problems[1]["message"]
            .as_str()
            .unwrap()
            .contains(NOT_A_FILTER)
    );
    assert_stderr_has(&out, "log.level");

    let missing = env.dir.path().join("missing.yaml");
    let out = env
        .run_exits(&missing, &["validate", "--output", "json"], 1)
        .await;
    let document = out.json();
    assert_eq!(document["valid"], false);
    assert_eq!(
        document["problems"][0]["file"],
        missing.display().to_string()
    );
    assert!(env.sim.request_log().is_empty(), "validate contacted bunq");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_resolve_json_lists_what_every_source_yields_like_the_plan_json() {
    let env = Env::start().await;
    let ci = env.credential_with(&[]);
    let nat = env.write("nat.txt", "# egress\n198.51.100.7\n");
    let item = format!("file: {}", nat.display());
    let config = env.config("sync", 10, ci, &["203.0.113.10", &item]);
    let args = ["validate", "--resolve", "--output", "json"];
    let document = env.run_exits(&config, &args, 0).await.json();
    assert_eq!(document["valid"], true);
    assert_eq!(
        document["sources"],
        serde_json::json!([{
            "source": format!("file:{}", nat.display()),
            "ok": true,
            "addresses": ["198.51.100.7"],
            "error": null,
            "ttl": null,
        }])
    );

    std::fs::remove_file(&nat).unwrap();
    let out = env.run_exits(&config, &args, 1).await;
    let document = out.json();
    assert_eq!(document["valid"], false);
    assert_eq!(document["sources"][0]["ok"], false);
    assert!(document["sources"][0]["error"].is_string(), "{document}");
    assert_stderr_has(&out, "1 of 1 source(s) failed");
}
