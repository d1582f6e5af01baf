//! The config contract: what operators write, what they get back when it is wrong.

// Helpers outside #[test] functions are test code too; a panic is how they report failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bunq_ipsync::bunq::{BaseUrl, BunqError};
use bunq_ipsync::config::{
    self, Config, ConfigError, CronSchedule, Environment, LogFormat, Policy, api_key_file_with,
    resolve_api_key_with, resolve_path_with,
};

const FILE: &str = "config.yaml";

/// A valid config; tests append or replace lines to break one thing at a time.
const MINIMAL: &str = "\
bunq:
  environment: sandbox
sync:
  policy: sync
credentials:
  - id: 4242
    ips:
      - 203.0.113.10
";

fn parse(text: &str) -> Result<Config, ConfigError> {
    config::parse(Path::new(FILE), text)
}

fn valid(text: &str) -> Config {
    match parse(text) {
        Ok(config) => config,
        Err(error) => panic!("expected a valid config, got:\n{error}"),
    }
}

/// The error lines, one per problem.
fn errors(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("expected the config to be refused"),
        Err(error) => error.to_string().lines().map(str::to_owned).collect(),
    }
}

fn single_error(text: &str) -> String {
    let lines = errors(text);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    lines.into_iter().next().unwrap_or_default()
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

/// Fails showing `text` unless it starts with `prefix`.
#[track_caller]
fn assert_starts_with(text: &str, prefix: &str) {
    assert!(text.starts_with(prefix), "{text}");
}

/// Fails showing `text` unless it contains `part`.
#[track_caller]
fn assert_contains(text: &str, part: &str) {
    assert!(text.contains(part), "{text}");
}

#[test]
fn example_config_is_valid() {
    let config = valid(include_str!("../config.example.yaml"));
    assert_eq!(config.credentials.len(), 1);
    let credential = &config.credentials[0];
    assert_eq!(credential.id, 4242);
    assert_eq!(credential.name.as_deref(), Some("ci-runners"));
    let expected: Vec<Ipv4Addr> = [
        "198.51.100.0",
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.3",
        "203.0.113.10",
    ]
    .iter()
    .map(|text| ip(text))
    .collect();
    assert_eq!(credential.ips.iter().copied().collect::<Vec<_>>(), expected);
}

#[test]
fn omitted_keys_take_their_documented_defaults() {
    let config = valid(MINIMAL);
    assert_eq!(config.source, PathBuf::from(FILE));
    assert_eq!(config.bunq.environment, Environment::Sandbox);
    assert_eq!(
        config.bunq.base_url.as_str(),
        "https://public-api.sandbox.bunq.com/v1"
    );
    assert!(!config.bunq.base_url_overridden);
    assert_eq!(config.bunq.device_description, "bunq-ipsync");
    assert_eq!(config.bunq.state_dir, PathBuf::from("/var/lib/bunq-ipsync"));
    assert_eq!(config.sync.interval, Duration::from_secs(300));
    assert_eq!(config.sync.max_changes, 10);
    assert_eq!(config.sync.max_cidr_addresses, 256);
    assert_eq!(config.sync.jitter, Duration::ZERO);
    assert_eq!(config.sync.schedule, None);
    assert_eq!(config.http.listen.to_string(), "127.0.0.1:9477");
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.log.level, "info");
    let credential = &config.credentials[0];
    assert_eq!(credential.policy, Policy::Sync);
    assert!(credential.protected.is_empty());
    assert!(!credential.allow_empty);
}

#[test]
fn production_uses_the_production_base_url() {
    let config = valid(&MINIMAL.replace("sandbox", "production"));
    assert_eq!(config.bunq.environment, Environment::Production);
    assert_eq!(config.bunq.base_url.as_str(), "https://api.bunq.com/v1");
}

#[test]
fn ipv6_address_is_refused_with_file_line_column_and_field() {
    let text = "\
bunq:
  environment: sandbox
sync:
  policy: sync
credentials:
  - id: 1
    ips: [192.0.2.1]
  - id: 2
    ips:
      - 192.0.2.1
      - 192.0.2.2
      - 2001:db8::1
";
    assert_eq!(
        single_error(text),
        r#"config.yaml:12:9: credentials[1].ips[2]: "2001:db8::1" is IPv6; bunq accepts IPv4 only"#
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let text = "\
bunq:
  environment: staging
sync:
  policy: sync
  max_changes: 0
credentials:
  - id: 1
    ips: [192.0.2.300, 192.0.2.1/24]
";
    let lines = errors(text);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_starts_with(&lines[0], "config.yaml:2:16: bunq.environment: \"staging\"");
    assert_starts_with(
        &lines[1],
        "config.yaml:5:16: sync.max_changes: 0 would block",
    );
    assert_starts_with(&lines[2], "config.yaml:8:11: credentials[0].ips[0]:");
    assert_starts_with(&lines[3], "config.yaml:8:24: credentials[0].ips[1]:");
}

/// `MINIMAL` with `lines` (indented `key: value` lines) added to `sync:` after the policy.
fn with_sync(lines: &str) -> String {
    MINIMAL.replace("  policy: sync\n", &format!("  policy: sync\n{lines}"))
}

/// `MINIMAL` with `lines` (indented `key: value` lines) added to `bunq:` after the environment.
fn with_bunq(lines: &str) -> String {
    MINIMAL.replace(
        "  environment: sandbox\n",
        &format!("  environment: sandbox\n{lines}"),
    )
}

/// `MINIMAL` with the credential's one `ips` item replaced by `item`.
fn with_ip(item: &str) -> String {
    MINIMAL.replace("203.0.113.10", item)
}

/// `MINIMAL` with the credential's `ips:` block replaced by `lines`.
fn without_ips(lines: &str) -> String {
    MINIMAL.replace("    ips:\n      - 203.0.113.10\n", lines)
}

/// What the one error line of a refused config says.
#[derive(Clone, Copy, Debug)]
enum Says {
    /// The whole line.
    Exactly(&'static str),
    /// Its start (the file, line, column and field).
    StartsWith(&'static str),
    /// Its end.
    EndsWith(&'static str),
    /// Somewhere in it.
    Contains(&'static str),
}

impl Says {
    fn holds_for(self, line: &str) -> bool {
        match self {
            Says::Exactly(text) => line == text,
            Says::StartsWith(text) => line.starts_with(text),
            Says::EndsWith(text) => line.ends_with(text),
            Says::Contains(text) => line.contains(text),
        }
    }
}

/// A config with exactly one problem: the case's name, its text, and what its one error line
/// says.
struct Refusal {
    name: &'static str,
    text: String,
    says: &'static [Says],
}

fn refusal(name: &'static str, text: impl Into<String>, says: &'static [Says]) -> Refusal {
    Refusal {
        name,
        text: text.into(),
        says,
    }
}

/// One-problem configs: The `sync:` section: its keys, the policy and `max_changes`.
fn sync_refusals() -> Vec<Refusal> {
    use Says::{Contains, EndsWith, StartsWith};
    vec![
        refusal(
            "unknown_key_is_refused_with_its_location",
            with_sync("  max_change: 3\n"),
            &[StartsWith(
                "config.yaml:5:3: sync: unknown field `max_change`",
            )],
        ),
        refusal(
            "missing_policy_is_required_and_the_message_says_why",
            MINIMAL.replace("  policy: sync\n", "  interval: 5m\n"),
            &[
                StartsWith("config.yaml:4:3: sync.policy: is required and has no default"),
                Contains("sync"),
                Contains("additive"),
                Contains("observe"),
            ],
        ),
        refusal(
            "missing_sync_section_reports_the_policy_as_required",
            MINIMAL.replace("sync:\n  policy: sync\n", ""),
            &[Contains("sync.policy: is required")],
        ),
        refusal(
            "unknown_policy_is_refused",
            MINIMAL.replace("policy: sync", "policy: mirror"),
            &[EndsWith(
                r#"sync.policy: "mirror" is not a policy; use sync, additive or observe"#,
            )],
        ),
        refusal(
            "duplicate_yaml_key_is_refused",
            with_sync("  policy: additive\n"),
            &[Contains("duplicate")],
        ),
        refusal(
            "max_changes_zero_is_refused",
            with_sync("  max_changes: 0\n"),
            &[Contains("sync.max_changes: 0 would block every run")],
        ),
        refusal(
            "negative_max_changes_is_refused",
            with_sync("  max_changes: -1\n"),
            &[Contains(
                r#"sync.max_changes: "-1" is not a positive whole number"#,
            )],
        ),
    ]
}

/// One-problem configs: `sync.interval`, `sync.jitter` and `sync.schedule`.
fn timing_refusals() -> Vec<Refusal> {
    use Says::{Contains, EndsWith, StartsWith};
    vec![
        refusal(
            "bad_duration_is_refused_with_an_example",
            with_sync("  interval: five minutes\n"),
            &[
                StartsWith(r#"config.yaml:5:13: sync.interval: "five minutes" is not a duration"#),
                EndsWith("write e.g. 30s, 5m or 1h"),
            ],
        ),
        refusal(
            "interval_below_the_minimum_is_refused",
            with_sync("  interval: 1s\n"),
            &[Contains("shorter than the minimum of 10s")],
        ),
        refusal(
            "jitter_not_shorter_than_interval_is_refused",
            with_sync("  interval: 1m\n  jitter: 1m\n"),
            &[Contains(
                "sync.jitter: 1m is not shorter than sync.interval (1m)",
            )],
        ),
        refusal(
            "cron_schedule_with_five_fields_is_refused",
            with_sync("  schedule: \"*/10 * * * *\"\n"),
            &[Contains("has 5 fields; write sec min hour")],
        ),
        refusal(
            "cron_schedule_with_a_bad_field_is_refused",
            with_sync("  schedule: \"0 */10 * * * Funday\"\n"),
            &[Contains("is not a valid cron expression")],
        ),
        refusal(
            "schedule_and_interval_together_are_refused",
            with_sync("  interval: 5m\n  schedule: \"0 */10 * * * *\"\n"),
            &[Contains(
                "set either sync.interval or sync.schedule, not both",
            )],
        ),
    ]
}

/// One-problem configs: The items of a credential's `ips`.
fn ip_refusals() -> Vec<Refusal> {
    use Says::{Contains, EndsWith, Exactly};
    vec![
        refusal(
            "text_that_is_not_an_ip_is_refused",
            with_ip("gateway.example"),
            &[Exactly(
                r#"config.yaml:8:9: credentials[0].ips[0]: "gateway.example" is not an IPv4 address or CIDR"#,
            )],
        ),
        refusal(
            "ipv6_cidr_is_refused_as_ipv6",
            with_ip("2001:db8::/126"),
            &[EndsWith("is IPv6; bunq accepts IPv4 only")],
        ),
        refusal(
            "wildcard_is_refused_with_a_reason",
            with_ip("'*'"),
            &[Contains("cannot be managed through the API")],
        ),
        refusal(
            "cidr_larger_than_the_cap_is_refused",
            with_ip("10.0.0.0/23"),
            &[EndsWith(
                "\"10.0.0.0/23\" expands to 512 addresses, more than sync.max_cidr_addresses (256)",
            )],
        ),
        refusal(
            "cidr_cap_applies_even_when_the_policy_is_missing",
            with_ip("10.0.0.0/23").replace("  policy: sync\n", "  max_cidr_addresses: 512\n"),
            &[Contains("sync.policy: is required")],
        ),
        refusal(
            "cidr_with_host_bits_set_is_refused_and_the_network_is_suggested",
            with_ip("198.51.100.1/30"),
            &[Contains(
                "has host bits set; write the network 198.51.100.0/30",
            )],
        ),
        refusal(
            "the_same_ip_twice_is_refused_naming_the_first",
            format!("{MINIMAL}      - 203.0.113.10\n"),
            &[Exactly(
                r#"config.yaml:9:9: credentials[0].ips[1]: "203.0.113.10" is already listed as [0]"#,
            )],
        ),
        refusal(
            "an_ip_inside_a_listed_cidr_is_refused_as_overlap",
            format!("{MINIMAL}      - 203.0.113.8/30\n"),
            &[EndsWith(
                r#"credentials[0].ips[1]: "203.0.113.8/30" overlaps [0] ("203.0.113.10"): 203.0.113.10 is listed twice"#,
            )],
        ),
    ]
}

/// One-problem configs: A credential's other keys: `id`, `protected`, `allow_empty`, the shape of `ips`.
fn credential_refusals() -> Vec<Refusal> {
    use Says::{Contains, EndsWith, Exactly, StartsWith};
    vec![
        refusal(
            "unknown_key_in_a_credential_is_refused",
            format!("{MINIMAL}    protect: [192.0.2.1]\n"),
            &[StartsWith(
                "config.yaml:9:5: credentials[0]: unknown field `protect`",
            )],
        ),
        refusal(
            "duplicate_credential_ids_are_refused",
            format!("{MINIMAL}  - id: 4242\n    ips: [192.0.2.1]\n"),
            &[Exactly(
                "config.yaml:9:9: credentials[1].id: credential 4242 is already listed as credentials[0]; merge the two entries",
            )],
        ),
        refusal(
            "missing_credential_id_is_refused",
            MINIMAL.replace("  - id: 4242\n    ips:", "  - ips:"),
            &[Contains("credentials[0].id: is required")],
        ),
        refusal(
            "protected_entry_that_is_not_an_ip_is_refused",
            format!("{MINIMAL}    protected: [admin-vpn]\n"),
            &[Exactly(
                r#"config.yaml:9:17: credentials[0].protected[0]: "admin-vpn" is not an IPv4 address or CIDR"#,
            )],
        ),
        refusal(
            "empty_ips_without_allow_empty_is_refused",
            without_ips("    ips: []\n"),
            &[
                StartsWith("config.yaml:7:10: credentials[0].ips: is empty"),
                Contains("allow_empty: true"),
            ],
        ),
        refusal(
            "missing_ips_without_allow_empty_is_refused",
            without_ips("    name: old\n"),
            &[Contains("credentials[0].ips: is empty")],
        ),
        refusal(
            "allow_empty_must_be_a_boolean",
            format!("{MINIMAL}    allow_empty: sometimes\n"),
            &[EndsWith(
                r#"credentials[0].allow_empty: "sometimes" is not true or false"#,
            )],
        ),
        refusal(
            "wrong_structure_names_the_field",
            without_ips("    ips: 203.0.113.10\n"),
            &[StartsWith(
                "config.yaml:7:10: credentials[0].ips: invalid type",
            )],
        ),
    ]
}

/// One-problem configs: The `bunq:`, `http:` and `log:` sections, and the file as a whole.
fn bunq_and_file_refusals() -> Vec<Refusal> {
    use Says::{Contains, Exactly, StartsWith};
    vec![
        refusal(
            "unknown_environment_is_refused",
            MINIMAL.replace("sandbox", "staging"),
            &[Exactly(
                r#"config.yaml:2:16: bunq.environment: "staging" is not an environment; use sandbox or production"#,
            )],
        ),
        refusal(
            "missing_environment_is_refused",
            MINIMAL.replace("  environment: sandbox\n", "  device_description: x\n"),
            &[Contains("bunq.environment: is required")],
        ),
        refusal(
            "plain_http_base_url_to_a_remote_host_is_refused_with_the_reason",
            with_bunq("  base_url: http://api.example.com/v1\n"),
            &[
                StartsWith(
                    r#"config.yaml:3:13: bunq.base_url: "http://api.example.com/v1" refused: plain http"#,
                ),
                Contains("unencrypted"),
            ],
        ),
        refusal(
            "base_url_with_another_scheme_is_refused",
            with_bunq("  base_url: ftp://127.0.0.1/v1\n"),
            &[Contains("scheme \"ftp\" is not supported")],
        ),
        refusal(
            "permitted_ips_must_be_ipv4_addresses",
            with_bunq("  permitted_ips: [192.0.2.1, '::1']\n"),
            &[Contains(r#"bunq.permitted_ips[1]: "::1" is IPv6"#)],
        ),
        refusal(
            "an_empty_egress_ips_list_is_refused",
            with_bunq("  egress_ips: []\n"),
            &[StartsWith("config.yaml:3:15: bunq.egress_ips: is empty")],
        ),
        refusal(
            "api_key_credential_must_be_a_file_name",
            with_bunq("  api_key_credential: ../key\n"),
            &[Contains(
                "bunq.api_key_credential: \"../key\" is not a systemd credential name",
            )],
        ),
        refusal(
            "bad_listen_address_is_refused",
            format!("{MINIMAL}http:\n  listen: localhost\n"),
            &[StartsWith(
                r#"config.yaml:10:11: http.listen: "localhost" is not a socket address"#,
            )],
        ),
        refusal(
            "log_directive_with_a_bad_level_is_refused",
            format!("{MINIMAL}log:\n  level: bunq_ipsync=loud\n"),
            &[Contains("log.level")],
        ),
        refusal(
            "empty_file_is_refused",
            "\n# nothing\n",
            &[Exactly("config.yaml: the config file is empty")],
        ),
    ]
}

/// Every config of these tables has one problem: it yields one error line, and that line says
/// everything its case lists; a failure names the case.
#[test]
fn configs_with_one_problem_are_refused_with_its_location_and_message() {
    let tables = [
        sync_refusals(),
        timing_refusals(),
        ip_refusals(),
        credential_refusals(),
        bunq_and_file_refusals(),
    ];
    for case in tables.into_iter().flatten() {
        let name = case.name;
        let lines = match parse(&case.text) {
            Ok(_) => panic!("{name}: expected the config to be refused"),
            Err(error) => error
                .to_string()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        };
        assert_eq!(lines.len(), 1, "{name}: {lines:#?}");
        for says in case.says {
            assert!(
                says.holds_for(&lines[0]),
                "{name}: {says:?} in {}",
                lines[0]
            );
        }
    }
}

#[test]
fn per_credential_policy_overrides_the_default() {
    let config = valid(&format!("{MINIMAL}    policy: additive\n"));
    assert_eq!(config.sync.policy, Policy::Sync);
    assert_eq!(config.credentials[0].policy, Policy::Additive);
}

#[test]
fn observe_is_a_policy_globally_and_per_credential() {
    let global = valid(&MINIMAL.replace("policy: sync", "policy: observe"));
    assert_eq!(global.sync.policy, Policy::Observe);
    assert_eq!(global.credentials[0].policy, Policy::Observe);
    let per_credential = valid(&format!("{MINIMAL}    policy: observe\n"));
    assert_eq!(per_credential.sync.policy, Policy::Sync);
    assert_eq!(per_credential.credentials[0].policy, Policy::Observe);
    assert!(!Policy::Observe.writes());
    assert!(Policy::Sync.writes() && Policy::Additive.writes());
}

#[test]
fn cidr_cap_is_configurable() {
    let text = with_sync("  max_cidr_addresses: 512\n").replace("203.0.113.10", "10.0.0.0/23");
    assert_eq!(valid(&text).credentials[0].ips.len(), 512);
}

#[test]
fn slash_32_is_a_single_address() {
    let config = valid(&with_ip("203.0.113.10/32"));
    assert_eq!(
        config.credentials[0]
            .ips
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        vec![ip("203.0.113.10")]
    );
}

#[test]
fn the_same_ip_on_two_credentials_is_allowed() {
    let text = format!("{MINIMAL}  - id: 4243\n    ips: [203.0.113.10]\n");
    assert_eq!(valid(&text).credentials.len(), 2);
}

#[test]
fn protected_ips_are_parsed_and_expanded() {
    let config = valid(&format!(
        "{MINIMAL}    protected: [192.0.2.1, 192.0.2.4/31]\n"
    ));
    let protected: Vec<Ipv4Addr> = config.credentials[0].protected.iter().copied().collect();
    assert_eq!(
        protected,
        vec![ip("192.0.2.1"), ip("192.0.2.4"), ip("192.0.2.5")]
    );
}

#[test]
fn empty_ips_with_allow_empty_is_accepted() {
    let text = without_ips("    ips: []\n    allow_empty: true\n");
    let config = valid(&text);
    assert!(config.credentials[0].ips.is_empty());
    assert!(config.credentials[0].allow_empty);
}

#[test]
fn durations_are_parsed() {
    let text = with_sync("  interval: 2m\n  renew_before: 30m\n  jitter: 15s\n");
    let config = valid(&text);
    assert_eq!(config.sync.interval, Duration::from_secs(120));
    assert_eq!(config.sync.renew_before, Duration::from_secs(1800));
    assert_eq!(config.sync.jitter, Duration::from_secs(15));
}

#[test]
fn cron_schedule_with_seconds_is_accepted() {
    let text = with_sync("  schedule: \"0 */10 * * * *\"\n");
    assert_eq!(
        valid(&text)
            .sync
            .schedule
            .as_ref()
            .map(CronSchedule::expression),
        Some("0 */10 * * * *")
    );
}

#[test]
fn listen_address_is_parsed() {
    let config = valid(&format!("{MINIMAL}http:\n  listen: 0.0.0.0:9000\n"));
    assert_eq!(config.http.listen.to_string(), "0.0.0.0:9000");
}

#[test]
fn plain_http_base_url_to_loopback_is_accepted_without_trailing_slash() {
    for url in [
        "http://127.0.0.1:8080/v1/",
        "http://localhost:8080/v1/",
        "http://[::1]:8080/v1/",
    ] {
        let text = with_bunq(&format!("  base_url: {url}\n"));
        let config = valid(&text);
        assert_eq!(config.bunq.base_url.as_str(), url.trim_end_matches('/'));
        assert!(config.bunq.base_url_overridden);
    }
}

#[test]
fn base_url_with_user_info_is_refused_as_the_client_refuses_it() {
    let url = "https://user:pw@api.example.com/v1";
    let text = with_bunq(&format!("  base_url: {url}\n"));
    let error = single_error(&text);
    assert!(
        error.starts_with(&format!(
            r#"config.yaml:3:13: bunq.base_url: "{url}" refused: "#
        )),
        "{error}"
    );
    assert!(error.contains("no user name or password"), "{error}");
    assert!(BaseUrl::parse(url).is_err());
}

/// The config and the client apply one rule (`BaseUrl::parse`): every URL gets the same verdict,
/// and a refusal gives the same reason, in both places. User info once passed the config's
/// check and failed only when the client was built.
#[test]
fn base_url_verdicts_of_the_config_and_the_client_agree() {
    for url in [
        "https://api.example.com/v1",
        "https://user:pw@api.example.com/v1",
        "https://user@api.example.com/v1",
        "http://127.0.0.1:8080/v1/",
        "http://user@127.0.0.1:8080/v1",
        "http://api.example.com/v1",
        "https://api.example.com/v1?x=1",
        "https://api.example.com/v1#top",
        "ftp://127.0.0.1/v1",
        "not a url",
    ] {
        let text = with_bunq(&format!("  base_url: \"{url}\"\n"));
        match (parse(&text), BaseUrl::parse(url)) {
            (Ok(config), Ok(base)) => assert_eq!(config.bunq.base_url, base, "{url}"),
            (Err(error), Err(BunqError::BaseUrl { reason, .. })) => {
                let error = error.to_string();
                assert!(
                    error.contains(&format!("refused: {reason}")),
                    "{url}: {error}"
                );
            }
            (config, client) => panic!("{url}: config says {config:?}, client says {client:?}"),
        }
    }
}

#[test]
fn bad_log_format_and_level_are_refused() {
    let lines = errors(&format!("{MINIMAL}log:\n  format: xml\n  level: loud\n"));
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].contains(r#"log.format: "xml" is not a log format"#),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(r#"log.level: "loud" is not a log filter"#),
        "{}",
        lines[1]
    );
}

#[test]
fn log_directive_list_is_accepted() {
    let config = valid(&format!("{MINIMAL}log:\n  level: bunq_ipsync=debug,warn\n"));
    assert_eq!(config.log.level, "bunq_ipsync=debug,warn");
}

#[test]
fn json_log_format_is_accepted() {
    assert_eq!(
        valid(&format!("{MINIMAL}log:\n  format: json\n  level: debug\n"))
            .log
            .format,
        LogFormat::Json
    );
}

/// `MINIMAL` with `bunq.egress_ips` set to the given YAML list items (one per line).
fn with_egress_ips(items: &[&str]) -> String {
    let mut list = String::from("  egress_ips:\n");
    for item in items {
        list.push_str(&format!("    - {item}\n"));
    }
    with_bunq(&list)
}

#[test]
fn egress_ips_are_optional_and_unset_by_default() {
    assert_eq!(valid(MINIMAL).bunq.egress_ips, None);
}

#[test]
fn egress_ips_take_addresses_and_cidrs_expanded() {
    let config = valid(&with_egress_ips(&["192.0.2.7", "198.51.100.0/30"]));
    let egress: Vec<Ipv4Addr> = config.bunq.egress_ips.unwrap().into_iter().collect();
    assert_eq!(
        egress,
        [
            "192.0.2.7",
            "198.51.100.0",
            "198.51.100.1",
            "198.51.100.2",
            "198.51.100.3"
        ]
        .map(ip)
        .to_vec()
    );
}

#[test]
fn egress_ips_follow_the_address_rules_of_credential_ips_with_file_line_and_column() {
    let lines = errors(&with_egress_ips(&[
        "gateway.example",
        "'::1'",
        "'*'",
        "192.0.2.1/30",
        "10.0.0.0/23",
        "192.0.2.9",
        "192.0.2.9",
    ]));
    assert_eq!(lines.len(), 6, "{lines:#?}");
    assert_eq!(
        lines[0],
        r#"config.yaml:4:7: bunq.egress_ips[0]: "gateway.example" is not an IPv4 address or CIDR"#
    );
    assert!(
        lines[1].starts_with("config.yaml:5:7: bunq.egress_ips[1]: \"::1\" is IPv6"),
        "{lines:#?}"
    );
    assert!(
        lines[2].contains("bunq.egress_ips[2]: \"*\" (allow every IP) cannot be managed"),
        "{lines:#?}"
    );
    assert!(
        lines[3].contains("bunq.egress_ips[3]: \"192.0.2.1/30\" has host bits set"),
        "{lines:#?}"
    );
    assert!(
        lines[4].ends_with(
            "bunq.egress_ips[4]: \"10.0.0.0/23\" expands to 512 addresses, more than sync.max_cidr_addresses (256)"
        ),
        "{lines:#?}"
    );
    assert_eq!(
        lines[5],
        r#"config.yaml:10:7: bunq.egress_ips[6]: "192.0.2.9" is already listed as [5]"#
    );
}

#[test]
fn egress_ips_are_checked_against_the_configured_cidr_cap() {
    let text = with_egress_ips(&["10.0.0.0/23"]).replace(
        "  policy: sync\n",
        "  policy: sync\n  max_cidr_addresses: 512\n",
    );
    assert_eq!(valid(&text).bunq.egress_ips.unwrap().len(), 512);
}

#[test]
fn yaml_syntax_error_names_line_and_column() {
    let error = single_error("bunq:\n  environment: [sandbox\nsync:\n");
    assert_starts_with(&error, "config.yaml:");
    assert!(
        !error.starts_with("config.yaml: "),
        "no location in {error}"
    );
}

#[test]
fn load_reads_the_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, MINIMAL.replace("policy: sync", "policy: both")).unwrap();
    let error = config::load(&path).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!("{}:4:11: sync.policy:", path.display())),
        "{error}"
    );
}

#[test]
fn load_of_a_missing_file_names_the_path() {
    let error = config::load(Path::new("/nonexistent/bunq-ipsync.yaml")).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
    assert!(
        error.to_string().contains("/nonexistent/bunq-ipsync.yaml"),
        "{error}"
    );
}

// ---- config path and API key sources ----

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
    let map: BTreeMap<String, OsString> = pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), OsString::from(value)))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn config_path_from_the_command_line_wins() {
    let env = env_of(&[("BUNQ_IPSYNC_CONFIG", "/from/env.yaml")]);
    assert_eq!(
        resolve_path_with(Some(Path::new("/from/cli.yaml")), &env),
        PathBuf::from("/from/cli.yaml")
    );
}

#[test]
fn config_path_falls_back_to_the_environment() {
    let env = env_of(&[("BUNQ_IPSYNC_CONFIG", "/from/env.yaml")]);
    assert_eq!(
        resolve_path_with(None, &env),
        PathBuf::from("/from/env.yaml")
    );
}

#[test]
fn config_path_defaults_to_etc() {
    assert_eq!(
        resolve_path_with(None, &env_of(&[])),
        PathBuf::from("/etc/bunq-ipsync/config.yaml")
    );
}

/// The API key resolved from `config` and `env`.
fn api_key(config: &Config, env: impl Fn(&str) -> Option<OsString>) -> String {
    resolve_api_key_with(config, &env)
        .unwrap()
        .expose()
        .to_owned()
}

/// The error of resolving `config`'s API key with no environment variable set.
fn api_key_error(config: &Config) -> String {
    resolve_api_key_with(config, &env_of(&[]))
        .unwrap_err()
        .to_string()
}

/// A temp dir with the key file `key` holding `contents`, and a config naming it as
/// `bunq.api_key_file` (the dir must outlive the config's use).
fn config_with_key_file_holding(contents: &str) -> (tempfile::TempDir, PathBuf, Config) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, contents).unwrap();
    let config = valid(&with_bunq(&format!("  api_key_file: {}\n", path.display())));
    (dir, path, config)
}

fn config_with_key_file(path: &Path) -> Config {
    let text = with_bunq(&format!(
        "  api_key_file: {}\n  api_key_credential: bunq-key\n",
        path.display()
    ));
    valid(&text)
}

#[test]
fn api_key_from_the_environment_wins() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_key_file(&dir.path().join("key"));
    let env = env_of(&[
        ("BUNQ_API_KEY", " sandbox_env \n"),
        ("CREDENTIALS_DIRECTORY", "/nowhere"),
    ]);
    assert_eq!(api_key(&config, env), "sandbox_env");
}

#[test]
fn api_key_from_the_systemd_credential_comes_before_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bunq-key"), "sandbox_credential\n").unwrap();
    std::fs::write(dir.path().join("key"), "sandbox_file\n").unwrap();
    let config = config_with_key_file(&dir.path().join("key"));
    let env = env_of(&[("CREDENTIALS_DIRECTORY", dir.path().to_str().unwrap())]);
    assert_eq!(api_key(&config, env), "sandbox_credential");
}

#[test]
fn the_watched_key_file_is_the_one_the_key_is_read_from() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key");
    let config = config_with_key_file(&file);
    let credentials = env_of(&[("CREDENTIALS_DIRECTORY", "/run/credentials/bunq-ipsync")]);
    assert_eq!(
        api_key_file_with(&config, &credentials),
        Some(PathBuf::from("/run/credentials/bunq-ipsync/bunq-key"))
    );
    let only_file = valid(&with_bunq(&format!("  api_key_file: {}\n", file.display())));
    assert_eq!(api_key_file_with(&only_file, &env_of(&[])), Some(file));
    // $BUNQ_API_KEY cannot change under a running process: nothing to watch.
    let from_env = env_of(&[("BUNQ_API_KEY", "sandbox_env")]);
    assert_eq!(api_key_file_with(&only_file, &from_env), None);
}

#[test]
fn api_key_credential_without_credentials_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_key_file(&dir.path().join("key"));
    assert_contains(&api_key_error(&config), "$CREDENTIALS_DIRECTORY is not set");
}

#[test]
fn api_key_file_is_read_and_trimmed() {
    let (_dir, _path, config) = config_with_key_file_holding("  sandbox_file_key\n\n");
    assert_eq!(api_key(&config, env_of(&[])), "sandbox_file_key");
}

#[test]
fn unreadable_api_key_file_names_the_path() {
    let config = valid(&with_bunq("  api_key_file: /nonexistent/bunq-key\n"));
    assert_starts_with(
        &api_key_error(&config),
        "cannot read the API key file /nonexistent/bunq-key",
    );
}

#[test]
fn empty_api_key_file_is_an_error_naming_the_path() {
    let (_dir, path, config) = config_with_key_file_holding("\n");
    assert_eq!(
        api_key_error(&config),
        format!("the API key from {} is empty", path.display())
    );
}

#[test]
fn empty_api_key_variable_is_an_error_not_a_fallback() {
    let config = valid(MINIMAL);
    let error = resolve_api_key_with(&config, &env_of(&[("BUNQ_API_KEY", "  ")])).unwrap_err();
    assert!(matches!(error, ConfigError::ApiKeyEmpty { .. }), "{error}");
}

#[test]
fn no_api_key_source_is_a_clear_error() {
    let error = resolve_api_key_with(&valid(MINIMAL), &env_of(&[])).unwrap_err();
    assert!(matches!(error, ConfigError::ApiKeyMissing));
    assert!(error.to_string().contains("BUNQ_API_KEY"));
}

#[test]
fn api_key_never_appears_in_debug_output() {
    let env = env_of(&[("BUNQ_API_KEY", "sandbox_very_secret")]);
    let key = resolve_api_key_with(&valid(MINIMAL), &env).unwrap();
    assert!(!format!("{key:?}").contains("very_secret"));
}

// ---------------------------------------------------------------------------------------------
// Dynamic sources: `ips` items naming a DNS name, a file or a URL, and the `sources:` section

/// `MINIMAL`'s credential with these `ips` items (YAML, one per line) and extra top-level text.
fn with_ip_items(items: &[&str], extra: &str) -> String {
    let mut text = String::from(
        "bunq:\n  environment: sandbox\nsync:\n  policy: sync\ncredentials:\n  - id: 4242\n    ips:\n",
    );
    for item in items {
        text.push_str(&format!("      - {item}\n"));
    }
    text.push_str(extra);
    text
}

#[test]
fn ips_items_may_name_dns_file_and_url_sources_beside_static_addresses() {
    use bunq_ipsync::sources::Source;
    let config = valid(&with_ip_items(
        &[
            "203.0.113.10",
            "dns: Home.Example.org.",
            "file: /etc/bunq-ipsync/nat-egress.txt",
            "url: https://ops.example.com/egress",
            "url: http://127.0.0.1:8080/ips",
        ],
        "",
    ));
    let credential = &config.credentials[0];
    assert_eq!(
        credential.ips.iter().copied().collect::<Vec<_>>(),
        vec![ip("203.0.113.10")]
    );
    let names: Vec<String> = credential.sources.iter().map(Source::to_string).collect();
    assert_eq!(
        names,
        vec![
            "dns:home.example.org",
            "file:/etc/bunq-ipsync/nat-egress.txt",
            "url:https://ops.example.com/egress",
            "url:http://127.0.0.1:8080/ips",
        ]
    );
    let defaults = bunq_ipsync::sources::SourceSettings {
        max_cidr_addresses: config.sync.max_cidr_addresses,
        ..Default::default()
    };
    assert_eq!(
        config.sources, defaults,
        "an absent sources: section gives the defaults"
    );
}

#[test]
fn a_credential_with_only_sources_needs_no_allow_empty() {
    let config = valid(&with_ip_items(&["dns: home.example.org"], ""));
    assert!(config.credentials[0].ips.is_empty());
    assert_eq!(config.credentials[0].sources.len(), 1);
}

#[test]
fn bad_source_items_are_refused_with_file_line_and_field() {
    let lines = errors(&with_ip_items(
        &[
            "dns: 203.0.113.7",
            "dns: not_a..name",
            "file: relative/path.txt",
            "url: http://ops.example.com/egress",
            "url: ftp://ops.example.com/egress",
            "{dns: a.example, url: 'https://b.example'}",
            "ldap: x",
            "dns: twice.example",
            "dns: twice.example",
        ],
        "",
    ));
    assert_eq!(lines.len(), 8, "{lines:#?}");
    let expect = [
        (
            "config.yaml:8:",
            "credentials[0].ips[0].dns:",
            "is an address, not a name",
        ),
        (
            "config.yaml:9:",
            "credentials[0].ips[1].dns:",
            "is not a DNS name",
        ),
        (
            "config.yaml:10:",
            "credentials[0].ips[2].file:",
            "is not an absolute path",
        ),
        (
            "config.yaml:11:",
            "credentials[0].ips[3].url:",
            "plain http is allowed only to loopback",
        ),
        (
            "config.yaml:12:",
            "credentials[0].ips[4].url:",
            "scheme \"ftp\" is not supported",
        ),
        (
            "config.yaml:13:",
            "credentials[0].ips[5]:",
            "exactly one key",
        ),
        (
            "config.yaml:14:",
            "credentials[0].ips[6]:",
            "\"ldap\" is not a source",
        ),
        (
            "config.yaml:16:",
            "credentials[0].ips[8]:",
            "dns:twice.example is already listed",
        ),
    ];
    for (line, (at, field, message)) in lines.iter().zip(expect) {
        assert!(
            line.starts_with(at) && line.contains(field) && line.contains(message),
            "{line} should be at {at} {field} {message}"
        );
    }
}

#[test]
fn address_items_beside_sources_keep_their_own_index_in_errors() {
    let line = single_error(&with_ip_items(
        &["dns: home.example.org", "203.0.113.10", "203.0.113.10"],
        "",
    ));
    assert!(
        line.contains("credentials[0].ips[2]: \"203.0.113.10\" is already listed as [1]"),
        "{line}"
    );
}

#[test]
fn the_sources_section_sets_nameservers_timeouts_and_caps() {
    let config = valid(&with_ip_items(
        &["dns: home.example.org"],
        "sources:\n  dns:\n    nameservers: [127.0.0.1:5353, 192.0.2.53]\n    timeout: 500ms\n  \
         url:\n    timeout: 3s\n  max_addresses: 8\n  min_refresh: 2s\n",
    ));
    let sources = &config.sources;
    assert_eq!(
        sources.nameservers,
        Some(vec![
            "127.0.0.1:5353".parse().unwrap(),
            "192.0.2.53:53".parse().unwrap()
        ])
    );
    assert_eq!(sources.dns_timeout, Duration::from_millis(500));
    assert_eq!(sources.url_timeout, Duration::from_secs(3));
    assert_eq!(sources.max_addresses, 8);
    assert_eq!(sources.min_refresh, Duration::from_secs(2));
}

#[test]
fn bad_sources_settings_are_refused_each_with_its_field() {
    let lines = errors(&with_ip_items(
        &["dns: home.example.org"],
        "sources:\n  dns:\n    nameservers: [ns.example]\n    timeout: 0s\n  max_addresses: 0\n  \
         min_refresh: 500ms\n  retries: 3\n",
    ));
    let text = lines.join("\n");
    assert!(text.contains("unknown field `retries`"), "{text}");
    let lines = errors(&with_ip_items(
        &["dns: home.example.org"],
        "sources:\n  dns:\n    nameservers: [ns.example]\n    timeout: 0s\n  max_addresses: 0\n  \
         min_refresh: 500ms\n",
    ));
    let text = lines.join("\n");
    assert_eq!(lines.len(), 5, "{text}");
    for expected in [
        "sources.dns.nameservers[0]: \"ns.example\" is not a nameserver address",
        "sources.dns.nameservers: is empty",
        "sources.dns.timeout: must be more than 0s",
        "sources.max_addresses: \"0\" is not a positive whole number",
        "sources.min_refresh: \"500ms\" is shorter than 1s",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
}
