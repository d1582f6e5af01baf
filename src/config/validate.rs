//! The second stage: raw document → typed [`Config`], collecting every problem.
//!
//! Each check records a `(field path, message)`; at the end every path is located in the source
//! (see [`super::locate`]) so that each problem names file, line, column and field. Nothing stops
//! at the first problem: an operator fixing a config sees the whole list at once.
//!
//! Decisions worth knowing:
//! * A CIDR with host bits set (`198.51.100.1/30`) is refused, not normalized: the writer may
//!   have meant the single host, and guessing would widen an allowlist silently.
//! * A CIDR means every address in it, network and broadcast included (`/30` = 4 addresses).
//! * The same address twice in one credential (literally, or through overlapping CIDRs) is an
//!   error naming both items: it usually means a copy-paste slip.
//! * `bunq.environment` and `sync.policy` are required: both are choices with no safe guess.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};

use super::error::{ConfigErrors, ConfigIssue};
use super::locate::{FieldPath, locate};
use super::model::{
    BunqSettings, Config, CredentialSpec, DEFAULT_DEVICE_DESCRIPTION, DEFAULT_INTERVAL,
    DEFAULT_LISTEN, DEFAULT_LOG_LEVEL, DEFAULT_MAX_CHANGES, DEFAULT_MAX_CIDR_ADDRESSES,
    DEFAULT_RENEW_BEFORE, DEFAULT_STATE_DIR, Environment, HttpSettings, LogFormat, LogSettings,
    MAX_CIDR_ADDRESSES_LIMIT, MIN_INTERVAL, Policy, SyncSettings,
};
use super::raw::{RawBunq, RawConfig, RawCredential, RawHttp, RawLog, RawSync, Text};

/// Validates `raw` (parsed from `text`, read from `source`).
pub(crate) fn validate(raw: RawConfig, source: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let mut problems = Problems::default();
    let root = FieldPath::root();

    let mut raw_bunq = raw.bunq.unwrap_or_default();
    // Checked after `sync:`, against the same CIDR cap as the credentials' lists.
    let raw_egress_ips = raw_bunq.egress_ips.take();
    let bunq = validate_bunq(raw_bunq, &root.key("bunq"), &mut problems);
    let sync = validate_sync(
        raw.sync.unwrap_or_default(),
        &root.key("sync"),
        &mut problems,
    );
    let egress_ips = raw_egress_ips.and_then(|items| {
        validate_egress_ips(
            items,
            &root.key("bunq").key("egress_ips"),
            sync.max_cidr_addresses,
            &mut problems,
        )
    });
    let bunq = bunq.map(|bunq| BunqSettings { egress_ips, ..bunq });
    let http = validate_http(
        raw.http.unwrap_or_default(),
        &root.key("http"),
        &mut problems,
    );
    let log = validate_log(raw.log.unwrap_or_default(), &root.key("log"), &mut problems);
    let credentials = validate_credentials(
        raw.credentials.unwrap_or_default(),
        &root.key("credentials"),
        &sync,
        &mut problems,
    );

    match (bunq, sync.settings, problems.is_empty()) {
        (Some(bunq), Some(sync), true) => Ok(Config {
            source: source.to_path_buf(),
            bunq,
            sync,
            http,
            log,
            credentials,
        }),
        _ => Err(problems.into_errors(source, text)),
    }
}

/// Problems found so far, as field paths with messages.
#[derive(Default)]
struct Problems(Vec<(FieldPath, String)>);

impl Problems {
    fn add(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.0.push((path.clone(), message.into()));
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn into_errors(self, source: &Path, text: &str) -> ConfigErrors {
        let issues = self
            .0
            .into_iter()
            .map(|(path, message)| ConfigIssue {
                file: source.to_path_buf(),
                location: locate(text, &path),
                field: path.to_string(),
                message,
            })
            .collect();
        ConfigErrors::new(issues)
    }
}

fn validate_bunq(raw: RawBunq, path: &FieldPath, problems: &mut Problems) -> Option<BunqSettings> {
    let environment = match raw.environment {
        None => {
            problems.add(
                &path.key("environment"),
                "is required: sandbox or production (an API key only works in its own environment)",
            );
            None
        }
        Some(Text(value)) => match value.as_str() {
            "sandbox" => Some(Environment::Sandbox),
            "production" => Some(Environment::Production),
            other => {
                problems.add(
                    &path.key("environment"),
                    format!("{other:?} is not an environment; use sandbox or production"),
                );
                None
            }
        },
    };

    let base_url = raw
        .base_url
        .and_then(|Text(url)| match check_base_url(&url) {
            Ok(url) => Some(url),
            Err(reason) => {
                problems.add(&path.key("base_url"), format!("{url:?} refused: {reason}"));
                None
            }
        });

    let api_key_file = raw.api_key_file.and_then(|Text(file)| {
        non_empty(&file, &path.key("api_key_file"), problems).map(PathBuf::from)
    });

    let api_key_credential = raw.api_key_credential.and_then(|Text(name)| {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            problems.add(
                &path.key("api_key_credential"),
                format!("{name:?} is not a systemd credential name (a plain file name, as in LoadCredential=NAME:...)"),
            );
            None
        } else {
            Some(name)
        }
    });

    let device_description = match raw.device_description {
        None => Some(DEFAULT_DEVICE_DESCRIPTION.to_owned()),
        Some(Text(description)) => {
            non_empty(&description, &path.key("device_description"), problems).map(str::to_owned)
        }
    };

    let state_dir = match raw.state_dir {
        None => Some(PathBuf::from(DEFAULT_STATE_DIR)),
        Some(Text(dir)) => non_empty(&dir, &path.key("state_dir"), problems).map(PathBuf::from),
    };

    let mut permitted_ips = Vec::new();
    let mut seen = BTreeSet::new();
    for (index, Text(value)) in raw
        .permitted_ips
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let item_path = path.key("permitted_ips").index(index);
        match parse_address(&value) {
            Ok(ip) if !seen.insert(ip) => problems.add(&item_path, format!("{ip} is listed twice")),
            Ok(ip) => permitted_ips.push(ip),
            Err(message) => problems.add(&item_path, message),
        }
    }

    let environment = environment?;
    Some(BunqSettings {
        environment,
        base_url_overridden: base_url.is_some(),
        base_url: base_url.unwrap_or_else(|| environment.default_base_url().to_owned()),
        api_key_file,
        api_key_credential,
        device_description: device_description?,
        state_dir: state_dir?,
        permitted_ips,
        egress_ips: None,
    })
}

/// `bunq.egress_ips`: the same address rules as `credentials[].ips` (IPv4, CIDRs with host bits
/// zero and at most `cap` addresses, nothing twice). An empty list is refused: it would claim
/// the daemon calls bunq from nowhere and let every IP but the registration IP of its own
/// credential be deactivated, which is more often a truncated file than an intent.
fn validate_egress_ips(
    items: Vec<Text>,
    path: &FieldPath,
    cap: u32,
    problems: &mut Problems,
) -> Option<BTreeSet<Ipv4Addr>> {
    if items.is_empty() {
        problems.add(
            path,
            "is empty; list the IPs or CIDRs the daemon calls bunq from (its registration IP \
             included if it still calls from there), or remove the key",
        );
        return None;
    }
    expand_list(items, path, cap, problems)
}

/// Accepts https anywhere and plain http only to a loopback host (the simulator, a local
/// proxy); returns the URL without a trailing slash.
fn check_base_url(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|error| format!("not a URL ({error})"))?;
    match parsed.scheme() {
        "https" => {}
        "http" => {
            let host = parsed.host_str().unwrap_or_default();
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host.eq_ignore_ascii_case("localhost")
                || IpAddr::from_str(bare).is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(
                    "plain http is only allowed to a loopback address; the API key and session token \
                     would cross the network unencrypted"
                        .to_owned(),
                );
            }
        }
        other => return Err(format!("scheme {other:?} is not supported; use https")),
    }
    if parsed.host().is_none() {
        return Err("the URL has no host".to_owned());
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("a base URL takes no query or fragment".to_owned());
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn validate_sync(raw: RawSync, path: &FieldPath, problems: &mut Problems) -> ValidSync {
    let policy = match raw.policy {
        None => {
            problems.add(
                &path.key("policy"),
                "is required and has no default: choose sync (deactivate every IP that is not listed) \
                 or additive (only add, never deactivate); a guessed default either leaves access \
                 open or locks callers out",
            );
            None
        }
        Some(Text(value)) => parse_policy(&value, &path.key("policy"), problems),
    };

    let interval = match &raw.interval {
        None => Some(DEFAULT_INTERVAL),
        Some(Text(value)) => parse_duration(value, &path.key("interval"), problems).and_then(|interval| {
            if interval < MIN_INTERVAL {
                problems.add(
                    &path.key("interval"),
                    format!(
                        "{value:?} is shorter than the minimum of {}; every run lists all credentials \
                         and bunq allows 3 GETs per 3 seconds",
                        humantime::format_duration(MIN_INTERVAL)
                    ),
                );
                None
            } else {
                Some(interval)
            }
        }),
    };

    let schedule = raw.schedule.and_then(|Text(expression)| {
        if raw.interval.is_some() {
            problems.add(
                &path.key("schedule"),
                "set either sync.interval or sync.schedule, not both: the schedule replaces the interval",
            );
            return None;
        }
        match check_cron(&expression) {
            Ok(()) => Some(expression.trim().to_owned()),
            Err(message) => {
                problems.add(&path.key("schedule"), message);
                None
            }
        }
    });

    let renew_before = match raw.renew_before {
        None => Some(DEFAULT_RENEW_BEFORE),
        Some(Text(value)) => parse_duration(&value, &path.key("renew_before"), problems),
    };

    let jitter = match raw.jitter {
        None => Some(Duration::ZERO),
        Some(Text(value)) => parse_duration(&value, &path.key("jitter"), problems),
    };
    if let (Some(jitter), Some(interval)) = (jitter, interval)
        && schedule.is_none()
        && jitter >= interval
    {
        problems.add(
            &path.key("jitter"),
            format!(
                "{} is not shorter than sync.interval ({}); runs would overlap their own schedule",
                humantime::format_duration(jitter),
                humantime::format_duration(interval)
            ),
        );
    }

    let max_changes = match raw.max_changes {
        None => Some(DEFAULT_MAX_CHANGES),
        Some(Text(value)) => match value.parse::<usize>() {
            Ok(0) => {
                problems.add(
                    &path.key("max_changes"),
                    "0 would block every run that has anything to do; use at least 1",
                );
                None
            }
            Ok(limit) => Some(limit),
            Err(_) => {
                problems.add(
                    &path.key("max_changes"),
                    format!("{value:?} is not a positive whole number"),
                );
                None
            }
        },
    };

    let max_cidr_addresses = match raw.max_cidr_addresses {
        None => Some(DEFAULT_MAX_CIDR_ADDRESSES),
        Some(Text(value)) => match value.parse::<u32>() {
            Ok(limit) if (1..=MAX_CIDR_ADDRESSES_LIMIT).contains(&limit) => Some(limit),
            _ => {
                problems.add(
                    &path.key("max_cidr_addresses"),
                    format!(
                        "{value:?} must be a whole number from 1 to {MAX_CIDR_ADDRESSES_LIMIT}"
                    ),
                );
                None
            }
        },
    };

    let settings = (|| {
        Some(SyncSettings {
            policy: policy?,
            interval: interval?,
            schedule,
            renew_before: renew_before?,
            jitter: jitter?,
            max_changes: max_changes?,
            max_cidr_addresses: max_cidr_addresses?,
        })
    })();
    ValidSync {
        settings,
        policy,
        // An invalid cap is already reported; check CIDRs against the hard limit meanwhile
        // rather than report them against a cap the operator did not choose.
        max_cidr_addresses: max_cidr_addresses.unwrap_or(MAX_CIDR_ADDRESSES_LIMIT),
    }
}

/// What the sync section yields, also when part of it is invalid: credentials still need the
/// default policy and the CIDR cap to be checked without spurious follow-up errors.
struct ValidSync {
    /// The settings, when every sync key is valid.
    settings: Option<SyncSettings>,
    /// The default policy, when given and valid.
    policy: Option<Policy>,
    /// The CIDR cap to check credentials against.
    max_cidr_addresses: u32,
}

/// Checks a cron expression with the same parser the daemon's scheduler uses.
fn check_cron(expression: &str) -> Result<(), String> {
    let fields = expression.split_whitespace().count();
    if !(6..=7).contains(&fields) {
        return Err(format!(
            "{expression:?} has {fields} fields; write sec min hour day-of-month month day-of-week [year], \
             e.g. \"0 */5 * * * *\""
        ));
    }
    tokio_cron_scheduler::Job::new(expression, |_, _| {})
        .map(|_| ())
        .map_err(|_| format!("{expression:?} is not a valid cron expression"))
}

fn validate_http(raw: RawHttp, path: &FieldPath, problems: &mut Problems) -> HttpSettings {
    let default = DEFAULT_LISTEN;
    let listen = match raw.listen {
        None => default,
        Some(Text(value)) => value.parse::<SocketAddr>().unwrap_or_else(|_| {
            problems.add(
                &path.key("listen"),
                format!("{value:?} is not a socket address like 127.0.0.1:9477 or [::1]:9477"),
            );
            default
        }),
    };
    HttpSettings { listen }
}

fn validate_log(raw: RawLog, path: &FieldPath, problems: &mut Problems) -> LogSettings {
    let format = match raw.format {
        None => LogFormat::Text,
        Some(Text(value)) => match value.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                problems.add(
                    &path.key("format"),
                    format!("{other:?} is not a log format; use text or json"),
                );
                LogFormat::Text
            }
        },
    };
    let level = match raw.level {
        None => DEFAULT_LOG_LEVEL.to_owned(),
        Some(Text(value)) => {
            if !is_log_filter(&value) {
                problems.add(
                    &path.key("level"),
                    format!("{value:?} is not a log filter; use error, warn, info, debug or trace (or a RUST_LOG directive)"),
                );
            }
            value
        }
    };
    LogSettings { format, level }
}

/// A plain level, or a `RUST_LOG` style directive list. A bare word that is not a level is
/// refused: `EnvFilter` would read it as a target name and silently drop every other log line.
fn is_log_filter(value: &str) -> bool {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let is_level = |word: &str| LEVELS.contains(&word.trim().to_ascii_lowercase().as_str());
    let value = value.trim();
    if is_level(value) {
        return true;
    }
    (value.contains('=') || value.contains(','))
        && value.split(',').all(|directive| {
            let directive = directive.trim();
            !directive.is_empty() && (directive.contains('=') || is_level(directive))
        })
        && tracing_subscriber::EnvFilter::builder()
            .parse(value)
            .is_ok()
}

fn validate_credentials(
    raw: Vec<RawCredential>,
    path: &FieldPath,
    sync: &ValidSync,
    problems: &mut Problems,
) -> Vec<CredentialSpec> {
    let default_policy = sync.policy;
    let cap = sync.max_cidr_addresses;
    let mut first_index_of_id: BTreeMap<u64, usize> = BTreeMap::new();
    let mut credentials = Vec::new();

    for (index, credential) in raw.into_iter().enumerate() {
        let path = path.index(index);
        let id = match credential.id {
            None => {
                problems.add(
                    &path.key("id"),
                    "is required: the credential-password-ip id (see `bunq-ipsync export`)",
                );
                None
            }
            Some(Text(value)) => match value.parse::<u64>() {
                Ok(id) if id > 0 => {
                    if let Some(first) = first_index_of_id.get(&id) {
                        problems.add(
                            &path.key("id"),
                            format!("credential {id} is already listed as credentials[{first}]; merge the two entries"),
                        );
                        None
                    } else {
                        first_index_of_id.insert(id, index);
                        Some(id)
                    }
                }
                _ => {
                    problems.add(
                        &path.key("id"),
                        format!("{value:?} is not a credential id (a positive whole number)"),
                    );
                    None
                }
            },
        };

        let name = credential.name.and_then(|Text(name)| {
            non_empty(&name, &path.key("name"), problems).map(str::to_owned)
        });

        let policy = match credential.policy {
            None => default_policy,
            Some(Text(value)) => parse_policy(&value, &path.key("policy"), problems),
        };

        let allow_empty = match credential.allow_empty {
            None => Some(false),
            Some(Text(value)) => match value.as_str() {
                "true" => Some(true),
                "false" => Some(false),
                other => {
                    problems.add(
                        &path.key("allow_empty"),
                        format!("{other:?} is not true or false"),
                    );
                    None
                }
            },
        };

        let ips = expand_list(
            credential.ips.unwrap_or_default(),
            &path.key("ips"),
            cap,
            problems,
        );
        if let (Some(ips), Some(false)) = (&ips, allow_empty)
            && ips.is_empty()
        {
            problems.add(
                &path.key("ips"),
                "is empty: under sync this deactivates every IP of the credential, and an empty list \
                 is more often a truncated file than an intent; set allow_empty: true if it is meant",
            );
        }
        let protected = expand_list(
            credential.protected.unwrap_or_default(),
            &path.key("protected"),
            cap,
            problems,
        );

        if let (Some(id), Some(ips), Some(policy), Some(protected), Some(allow_empty)) =
            (id, ips, policy, protected, allow_empty)
        {
            credentials.push(CredentialSpec {
                id,
                name,
                ips,
                policy,
                protected,
                allow_empty,
            });
        }
    }
    credentials
}

fn parse_policy(value: &str, path: &FieldPath, problems: &mut Problems) -> Option<Policy> {
    match value {
        "sync" => Some(Policy::Sync),
        "additive" => Some(Policy::Additive),
        other => {
            problems.add(
                path,
                format!("{other:?} is not a policy; use sync or additive"),
            );
            None
        }
    }
}

fn parse_duration(value: &str, path: &FieldPath, problems: &mut Problems) -> Option<Duration> {
    match humantime::parse_duration(value) {
        Ok(duration) => Some(duration),
        Err(error) => {
            problems.add(
                path,
                format!("{value:?} is not a duration ({error}); write e.g. 30s, 5m or 1h"),
            );
            None
        }
    }
}

fn non_empty<'v>(value: &'v str, path: &FieldPath, problems: &mut Problems) -> Option<&'v str> {
    if value.trim().is_empty() {
        problems.add(path, "must not be empty");
        None
    } else {
        Some(value)
    }
}

/// One item of an `ips` or `protected` list.
enum IpItem {
    Address(Ipv4Addr),
    Network(Ipv4Net),
}

/// Parses `value` as an IPv4 address or CIDR with at most `cap` addresses.
fn parse_item(value: &str, cap: u32) -> Result<IpItem, String> {
    if let Ok(ip) = parse_address(value) {
        return Ok(IpItem::Address(ip));
    }
    if value.contains('/') {
        match IpNet::from_str(value) {
            Ok(IpNet::V6(_)) => return Err(ipv6_message(value)),
            Ok(IpNet::V4(net)) => {
                if net.trunc() != net {
                    return Err(format!(
                        "{value:?} has host bits set; write the network {} or a single address without /{}",
                        net.trunc(),
                        net.prefix_len()
                    ));
                }
                let size = 1u64 << (32 - u32::from(net.prefix_len()));
                if size > u64::from(cap) {
                    return Err(format!(
                        "{value:?} expands to {size} addresses, more than sync.max_cidr_addresses ({cap})"
                    ));
                }
                return Ok(IpItem::Network(net));
            }
            Err(_) => {}
        }
    }
    parse_address(value).map(IpItem::Address)
}

/// Parses a single IPv4 address, explaining IPv6, the wildcard and anything else.
fn parse_address(value: &str) -> Result<Ipv4Addr, String> {
    match IpAddr::from_str(value) {
        Ok(IpAddr::V4(ip)) => Ok(ip),
        Ok(IpAddr::V6(_)) => Err(ipv6_message(value)),
        Err(_) if value.trim() == "*" => Err(
            "\"*\" (allow every IP) cannot be managed through the API and would defeat the allowlist"
                .to_owned(),
        ),
        Err(_) if value.contains(':') && IpNet::from_str(value).is_ok() => Err(ipv6_message(value)),
        Err(_) => Err(format!("{value:?} is not an IPv4 address or CIDR")),
    }
}

fn ipv6_message(value: &str) -> String {
    format!("{value:?} is IPv6; bunq accepts IPv4 only")
}

/// Expands a list of addresses and CIDRs, reporting bad items and addresses listed twice.
/// `None` when any item was bad.
fn expand_list(
    items: Vec<Text>,
    path: &FieldPath,
    cap: u32,
    problems: &mut Problems,
) -> Option<BTreeSet<Ipv4Addr>> {
    let mut owner: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    let mut texts = Vec::with_capacity(items.len());
    let mut valid = true;
    for (index, Text(value)) in items.into_iter().enumerate() {
        let item_path = path.index(index);
        let addresses: Vec<Ipv4Addr> = match parse_item(&value, cap) {
            Ok(IpItem::Address(ip)) => vec![ip],
            Ok(IpItem::Network(net)) => {
                ipnet::Ipv4AddrRange::new(net.network(), net.broadcast()).collect()
            }
            Err(message) => {
                problems.add(&item_path, message);
                valid = false;
                texts.push(value);
                continue;
            }
        };
        let mut reported = false;
        for ip in addresses {
            if let Some(first) = owner.get(&ip) {
                if !reported {
                    let first_text = texts.get(*first).map_or("", String::as_str);
                    let overlap = if first_text == value {
                        format!("{value:?} is already listed as [{first}]")
                    } else {
                        format!(
                            "{value:?} overlaps [{first}] ({first_text:?}): {ip} is listed twice"
                        )
                    };
                    problems.add(&item_path, overlap);
                    reported = true;
                    valid = false;
                }
            } else {
                owner.insert(ip, index);
            }
        }
        texts.push(value);
    }
    valid.then(|| owner.into_keys().collect())
}
