//! Parsers never panic on hostile input: the CI side of the fuzz targets in `fuzz/`
//! (docs/fuzzing.md). Properties run over the same entry points as the fuzzers (config parsing and
//! validation, bunq wire models), with bounded case counts so this file runs in seconds.
//! Every input a fuzzer found is pinned below as a regression test with its bytes inline.

// Helpers outside #[test] functions are test code too; a panic is how they report failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;

use bunq_ipsync::bunq::allowlist::{LIST_CREDENTIALS, LIST_IPS, page_items};
use bunq_ipsync::bunq::endpoint::BaseUrl;
use bunq_ipsync::bunq::model::{
    BunqId, CredentialPasswordIp, ErrorBody, IpStatus, Pagination, PermittedIp,
};
use bunq_ipsync::bunq::session::{DEVICE_SERVER, parse_id, parse_installation, parse_session};
use bunq_ipsync::bunq::transport::{ApiResponse, api_error, excerpt_text};
use bunq_ipsync::config::{self, ConfigError, Policy};
use bunq_ipsync::reconcile::plan::{CredentialState, PlanInput, plan};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::support::server_key;

const FILE: &str = "fuzz.yaml";

/// A valid config with every section; mutations start from here.
const VALID: &str = "\
bunq:
  environment: sandbox
  api_key_file: /run/secrets/bunq-api-key
  device_description: bunq-ipsync
sync:
  policy: sync
  interval: 5m
  max_changes: 10
http:
  listen: 127.0.0.1:9477
log:
  format: text
  level: info
credentials:
  - id: 4242
    name: ci-runners
    ips:
      - 203.0.113.10
      - 198.51.100.0/30
    protected: [203.0.113.1]
  - id: 4243
    policy: additive
    ips: [192.0.2.7]
";

/// Pieces of YAML and of this config's vocabulary, so generated documents reach the validator
/// and not only the YAML scanner.
const TOKENS: &[&str] = &[
    "bunq:",
    "sync:",
    "http:",
    "log:",
    "credentials:",
    "environment:",
    "sandbox",
    "production",
    "policy:",
    "additive",
    "interval:",
    "schedule:",
    "max_changes:",
    "ips:",
    "protected:",
    "id:",
    "name:",
    "listen:",
    "base_url:",
    "jitter:",
    "allow_empty:",
    "10.0.0.1",
    "10.0.0.0/30",
    "::1",
    "*",
    "5m",
    "0",
    "-1",
    "99999999999999999999",
    "true",
    "null",
    "~",
    "\n",
    "\n  ",
    "\n    - ",
    "- ",
    ": ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a ",
    "*a",
    "!!str ",
    "'",
    "\"",
    "#",
    "|",
    ">",
    "? ",
    "---",
    "...",
    "\t",
    "é",
    "\u{feff}",
];

/// Parses like the fuzz target and checks the same contract: no panic, and every problem about
/// a field of the document says where it is, inside the text.
fn check_config(text: &str) {
    let Err(error) = config::parse(Path::new(FILE), text) else {
        return;
    };
    assert!(!error.to_string().is_empty());
    let ConfigError::Invalid(errors) = &error else {
        panic!("parse returned a non-validation error: {error:?}");
    };
    assert!(!errors.is_empty());
    // YAML breaks lines at LF, CR and CRLF (libyaml also at NEL, LS and PS); counting each
    // such character gives an upper bound on the lines a location may name.
    let lines = 1 + text
        .chars()
        .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count();
    for issue in errors.issues() {
        if !issue.field.is_empty() {
            assert!(issue.location.is_some(), "no location: {issue}");
        }
        if let Some(location) = issue.location {
            assert!(location.line >= 1 && location.column >= 1, "{issue}");
            assert!(location.line <= lines + 1, "{issue} beyond {lines} lines");
        }
    }
}

fn token_document() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..40).prop_map(|tokens| tokens.concat())
}

/// One edit of the valid config.
#[derive(Clone, Debug)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, token: &'static str },
    DuplicateLine { line: usize },
    SwapLines { a: usize, b: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..20usize).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), prop::sample::select(TOKENS))
            .prop_map(|(at, token)| Mutation::Insert { at, token }),
        any::<usize>().prop_map(|line| Mutation::DuplicateLine { line }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines { a, b }),
    ]
}

/// The nearest char boundary at or below `at % (len + 1)`.
fn boundary(text: &str, at: usize) -> usize {
    let mut at = at % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut text = text.to_owned();
    for mutation in mutations {
        match *mutation {
            Mutation::Delete { at, len } => {
                let start = boundary(&text, at);
                let end = boundary(&text, start.saturating_add(len).min(text.len()));
                text.replace_range(start..end, "");
            }
            Mutation::Insert { at, token } => {
                let at = boundary(&text, at);
                text.insert_str(at, token);
            }
            Mutation::DuplicateLine { line } => {
                let mut lines: Vec<&str> = text.split('\n').collect();
                let index = line % lines.len();
                lines.insert(index, lines[index]);
                text = lines.join("\n");
            }
            Mutation::SwapLines { a, b } => {
                let mut lines: Vec<&str> = text.split('\n').collect();
                let len = lines.len();
                lines.swap(a % len, b % len);
                text = lines.join("\n");
            }
        }
    }
    text
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            "ACTIVE",
            "INACTIVE",
            "1.2.3.4",
            "*",
            "",
            "Id",
            "PermittedIp",
            "id",
            "ip",
            "status",
        ])
        .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Object keys: mostly the ones the wire models read, sometimes anything.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "Response",
            "Pagination",
            "Error",
            "PermittedIp",
            "CredentialPasswordIp",
            "Id",
            "Token",
            "id",
            "ip",
            "status",
            "created",
            "updated",
            "permitted_device",
            "description",
            "future_url",
            "newer_url",
            "older_url",
            "error_description",
            "error_description_translated",
            "expiry_time",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z_]{0,8}",
    ]
}

/// The longest excerpt of a non-JSON body that an error message quotes: 200 characters and `…`.
const EXCERPT_MAX_CHARS: usize = 201;

/// Parses `bytes` with every wire model and client parsing function, like the `bunq_response`
/// fuzz target: the envelope, list pages, create, installation and session responses, error
/// bodies and the pagination link; and checks that the bytes never verify as their own server
/// signature.
fn check_models(bytes: &[u8]) {
    let response = ApiResponse {
        status: 200,
        body: bytes.to_vec().into(),
        response_id: None,
    };
    if let Ok(envelope) = response.envelope(&LIST_IPS) {
        for type_name in ["PermittedIp", "CredentialPasswordIp", "Id", "Token"] {
            let _ = envelope.find(type_name);
            for value in envelope.all(type_name) {
                let _ = serde_json::from_value::<BunqId>(value.clone());
            }
        }
        if let Ok(items) = page_items::<PermittedIp>(&LIST_IPS, &envelope, "PermittedIp") {
            assert_eq!(items.len(), envelope.response.len());
        }
        let _ = page_items::<CredentialPasswordIp>(
            &LIST_CREDENTIALS,
            &envelope,
            "CredentialPasswordIp",
        )
        .map_err(|error| error.to_string());
        let _ = parse_id(&envelope, &DEVICE_SERVER).map_err(|error| error.to_string());
        let _ = parse_installation(&envelope).map_err(|error| error.to_string());
        let _ = parse_session(&envelope, DateTime::<Utc>::UNIX_EPOCH);
        let _ = parse_session(&envelope, DateTime::<Utc>::MAX_UTC);
        if let Some(link) = envelope
            .pagination
            .as_ref()
            .and_then(|p| p.older_url.as_deref())
        {
            check_link(link);
        }
    }
    let _ = api_error(&LIST_IPS, 503, bytes, None).to_string();
    assert!(excerpt_text(bytes).chars().count() <= EXCERPT_MAX_CHARS);
    if let Ok(body) = serde_json::from_slice::<ErrorBody>(bytes) {
        let _ = body.description();
    }
    let _ = serde_json::from_slice::<PermittedIp>(bytes);
    let _ = serde_json::from_slice::<CredentialPasswordIp>(bytes);
    let _ = serde_json::from_slice::<Pagination>(bytes);
    let signature = String::from_utf8_lossy(bytes);
    assert!(server_key().public_key().verify(bytes, &signature).is_err());
}

/// A pagination link the client accepts leads to the base URL's origin, under its path: the
/// session token is sent wherever the link points.
fn check_link(link: &str) {
    for base in ["https://api.bunq.com/v1", "http://127.0.0.1:8080/v1"] {
        let base = BaseUrl::parse(base).unwrap();
        let Ok(path) = base.relative_path_of_link(link) else {
            continue;
        };
        let url = base.join(&path).unwrap();
        let prefix = format!("{}/", base.as_str());
        assert!(url.as_str().starts_with(&prefix), "{link:?} leads to {url}");
    }
}

/// Pagination links: bunq's own shape, other origins, dot segments, encodings, odd characters.
fn link() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "/v1",
        "/v2",
        "/",
        "//",
        "..",
        ".",
        "%2e",
        "%2E%2e",
        "%2f",
        "\\",
        "@",
        ":",
        "?",
        "#",
        "user",
        "1",
        "credential-password-ip",
        "ip",
        "older_id=5",
        "&count=200",
        "https://api.bunq.com",
        "http://127.0.0.1:8080",
        "https://evil.example",
        "//evil.example",
        "http:",
        "https:",
        "javascript:",
        " ",
        "\t",
        "\n",
        "%00",
        "é",
        "xn--",
    ]);
    prop::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn config_parse_never_panics_on_arbitrary_strings(text in "\\PC{0,200}") {
        check_config(&text);
    }

    #[test]
    fn config_parse_never_panics_on_documents_of_yaml_and_config_tokens(text in token_document()) {
        check_config(&text);
    }

    #[test]
    fn config_parse_never_panics_on_mutated_valid_configs(
        mutations in prop::collection::vec(mutation(), 1..6)
    ) {
        check_config(&mutate(VALID, &mutations));
    }

    #[test]
    fn model_parsing_never_panics_on_arbitrary_json_values(value in json_value()) {
        check_models(&serde_json::to_vec(&value).unwrap());
    }

    #[test]
    fn model_parsing_never_panics_on_arbitrary_values_in_envelope_positions(
        item in json_value(),
        pagination in json_value(),
        type_name in prop::sample::select(vec!["PermittedIp", "CredentialPasswordIp", "Id"]),
    ) {
        let envelope = json!({"Response": [{type_name: item}], "Pagination": pagination});
        check_models(&serde_json::to_vec(&envelope).unwrap());
        let error = json!({"Error": [item]});
        check_models(&serde_json::to_vec(&error).unwrap());
    }

    #[test]
    fn accepted_pagination_links_stay_under_the_api_base(link in link()) {
        check_link(&link);
    }

    #[test]
    fn model_parsing_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..256)
    ) {
        check_models(&bytes);
    }
}

#[test]
fn bunq_shaped_pagination_link_is_accepted() {
    // Guards the link property: it only checks links the client accepts.
    let base = BaseUrl::parse("https://api.bunq.com/v1").unwrap();
    let path = base
        .relative_path_of_link("/v1/user/1/credential-password-ip?older_id=5")
        .unwrap();
    assert_eq!(path, "/user/1/credential-password-ip?older_id=5");
}

#[test]
fn the_valid_config_parses() {
    // Guards the mutation property: it must start from a config that is accepted.
    config::parse(Path::new(FILE), VALID).unwrap();
}

// ---- Regressions: inputs the fuzzers found (fuzz/artifacts), bytes inline. ----

/// The issues of `text`, which must be refused.
fn issues(text: &str) -> Vec<config::ConfigIssue> {
    match config::parse(Path::new(FILE), text) {
        Ok(_) => panic!("expected the config to be refused"),
        Err(error) => error.issues().to_vec(),
    }
}

/// Fails unless the first issue `text` yields is about `field` and located on `line`.
#[track_caller]
fn assert_first_issue_at(text: &str, field: &str, line: usize) {
    let issue = &issues(text)[0];
    assert_eq!(issue.field, field);
    assert_eq!(
        issue.location.map(|location| location.line),
        Some(line),
        "{issue}"
    );
}

/// config_parse crash-2665ddf5: bare CRs are YAML line breaks, so a location may name a line
/// beyond the count of LFs. The harness counted LFs only; the parser was right.
#[test]
fn regression_config_location_counts_bare_carriage_returns_as_lines() {
    const INPUT: &[u8] = b"{bunq: {environment: pdrouction, base_url: \"http://127key_credential: k},\n sy\r\r\r\r\r\r\
            \r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\
            \r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\rnc: {policy: additive, schedule: \"0\"\
            */10 * * * *\", max_changes: 3, max_cidr_addresses: 16},\n http: {listen: \"127.0.0.1:\
            9477\"}, log: {format: json, |evel: \"bunq_ipsync=debug,info\"}, policy: sync},\n     \
            \x20         {id: 2, ips.0.0.1:8080/v1\", a0b_key_credential: k},\n sync: {policy: add\
            itive, schedulsses: 16},\n http: {listen: \"127.0.0.1:9477\"}, log: {format: json, lev\
            el: \"bunq_ipsync=debug,info\"},\n credentials: [{id: 1, name: a, ips: [198.51.100.,\n\
            \x20credentials: [{id: 1, name: a, ips: [198.51.100.0/30, 203.0.113.1], protected: [19\
            2.0.2.1], policy: sync},\n               {id: 2, ips: [], allow_empty: true}]}\n";
    let text = std::str::from_utf8(INPUT).unwrap();
    check_config(text);
    let issue = &issues(text)[0];
    let line = issue.location.unwrap().line;
    assert!(line > text.matches('\n').count() + 1, "{issue}");
}

/// config_parse crash-c4c980ac: a document that is only a tagged scalar. It is read as an
/// empty mapping, and the "is required" issues carry no location.
#[test]
fn regression_config_tagged_null_document_issues_carry_a_location() {
    const INPUT: &[u8] = b"!bnmentcrede*ntialsus\n";
    let text = std::str::from_utf8(INPUT).unwrap();
    for issue in issues(text) {
        assert!(issue.location.is_some(), "{issue}");
    }
}

/// config_parse crash-18debcc9 (found once the `!` exemption was lifted): a document that is a
/// core-schema tagged scalar cannot be walked at all; its issues are located at the start.
#[test]
fn regression_config_core_tagged_scalar_document_issues_carry_a_location() {
    const INPUT: &[u8] = b"!!int ";
    let text = std::str::from_utf8(INPUT).unwrap();
    let found = issues(text);
    assert!(!found.is_empty());
    for issue in found {
        assert!(issue.location.is_some(), "{issue}");
    }
}

/// Found while reducing crash-c4c980ac: a tag on the root mapping hides every location.
#[test]
fn regression_config_issue_under_a_tagged_root_is_located() {
    let text = "--- !cfg\nbunq:\n  environment: nope\nsync:\n  policy: sync\ncredentials:\n  - id: 1\n    ips: [192.0.2.1]\n";
    assert_first_issue_at(text, "bunq.environment", 3);
}

/// Found while reducing crash-c4c980ac: a tag on an inner mapping moves the location of the
/// fields under it to the root.
#[test]
fn regression_config_issue_under_a_tagged_mapping_is_located_at_the_field() {
    let text = "bunq: !x\n  environment: nope\nsync:\n  policy: sync\ncredentials:\n  - id: 1\n    ips: [192.0.2.1]\n";
    assert_first_issue_at(text, "bunq.environment", 2);
}

/// planner crash-36c636f1 and crash-c85c42e4 (same cause): an entry id of u64::MAX plus a planned
/// create. `states_after` numbers the simulated new entry `max id + 1`, which overflows: a panic
/// in debug builds, a wrap to id 0 in release builds.
#[test]
fn regression_planner_states_after_survives_the_largest_entry_id() {
    let desired: BTreeSet<Ipv4Addr> = ["10.0.0.3".parse().unwrap()].into_iter().collect();
    let protected = BTreeSet::new();
    let actual = vec![PermittedIp::new(u64::MAX, "10.0.0.0", IpStatus::Active)];
    let input = PlanInput {
        credentials: vec![CredentialState {
            id: 168,
            name: None,
            policy: Policy::Additive,
            desired: &desired,
            protected: &protected,
            actual: &actual,
            previous: None,
            sources: None,
        }],
        max_changes: 0,
        own_access: Vec::new(),
        own_credential_known: true,
        egress_ips: None,
        sources: Vec::new(),
    };
    let planned = plan(&input);
    let states = planned.credentials[0].states_after(&actual);
    assert_eq!(states.get("10.0.0.3"), Some(&IpStatus::Active));
    assert_eq!(states.get("10.0.0.0"), Some(&IpStatus::Active));
}
