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
