//! `bunq:`: which API, how the daemon identifies itself, where the API key and state live, and
//! which IPs it registers and calls from.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use super::addresses::{expand_list, parse_address};
use super::problems::Problems;
use super::scalars::non_empty;
use crate::bunq::{BaseUrl, BunqError, Environment};
use crate::config::locate::FieldPath;
use crate::config::model::{BunqSettings, DEFAULT_DEVICE_DESCRIPTION, DEFAULT_STATE_DIR};
use crate::config::raw::{RawBunq, Text};

/// The section without `egress_ips` (checked later, against `sync.max_cidr_addresses`).
/// `None` when a key without a usable default is invalid.
pub(super) fn validate_bunq(
    raw: RawBunq,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<BunqSettings> {
    let environment = environment(raw.environment, &path.key("environment"), problems);
    let base_url = raw
        .base_url
        .and_then(|Text(url)| base_url(&url, &path.key("base_url"), problems));
    let api_key_file = raw.api_key_file.and_then(|Text(file)| {
        non_empty(&file, &path.key("api_key_file"), problems).map(PathBuf::from)
    });
    let api_key_credential = raw
        .api_key_credential
        .and_then(|Text(name)| credential_name(name, &path.key("api_key_credential"), problems));
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
    let permitted_ips = permitted_ips(
        raw.permitted_ips.unwrap_or_default(),
        &path.key("permitted_ips"),
        problems,
    );

    let environment = environment?;
    Some(BunqSettings {
        environment,
        base_url_overridden: base_url.is_some(),
        base_url: base_url.unwrap_or_else(|| environment.base_url()),
        api_key_file,
        api_key_credential,
        device_description: device_description?,
        state_dir: state_dir?,
        permitted_ips,
        egress_ips: None,
    })
}

/// `bunq.environment`: required, since an API key only works in its own environment.
fn environment(
    raw: Option<Text>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<Environment> {
    let Some(Text(value)) = raw else {
        problems.add(
            path,
            "is required: sandbox or production (an API key only works in its own environment)",
        );
        return None;
    };
    let environment = Environment::from_config_str(&value);
    if environment.is_none() {
        problems.add(
            path,
            format!("{value:?} is not an environment; use sandbox or production"),
        );
    }
    environment
}

/// `bunq.base_url`: validated by the client's own rule, [`BaseUrl::parse`], so the config
/// accepts exactly the URLs the client will talk to; the message names the field instead of
/// repeating "base URL".
fn base_url(url: &str, path: &FieldPath, problems: &mut Problems) -> Option<BaseUrl> {
    match BaseUrl::parse(url) {
        Ok(base) => Some(base),
        Err(error) => {
            let reason = match error {
                BunqError::BaseUrl { reason, .. } => reason,
                other => other.to_string(),
            };
            problems.add(path, format!("{url:?} refused: {reason}"));
            None
        }
    }
}

/// `bunq.api_key_credential`: a file name under `$CREDENTIALS_DIRECTORY`, never a path.
fn credential_name(name: String, path: &FieldPath, problems: &mut Problems) -> Option<String> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        problems.add(
            path,
            format!(
                "{name:?} is not a systemd credential name (a plain file name, as in \
                 LoadCredential=NAME:...)"
            ),
        );
        None
    } else {
        Some(name)
    }
}

/// `bunq.permitted_ips`: single IPv4 addresses (bunq takes no CIDRs at registration), each once.
fn permitted_ips(items: Vec<Text>, path: &FieldPath, problems: &mut Problems) -> Vec<Ipv4Addr> {
    let mut permitted_ips = Vec::new();
    let mut seen = BTreeSet::new();
    for (index, Text(value)) in items.into_iter().enumerate() {
        let item_path = path.index(index);
        match parse_address(&value) {
            Ok(ip) if !seen.insert(ip) => problems.add(&item_path, format!("{ip} is listed twice")),
            Ok(ip) => permitted_ips.push(ip),
            Err(message) => problems.add(&item_path, message),
        }
    }
    permitted_ips
}

/// `bunq.egress_ips`: the same address rules as `credentials[].ips` (IPv4, CIDRs with host bits
/// zero and at most `cap` addresses, nothing twice). An empty list is refused: it would claim
/// the daemon calls bunq from nowhere and let every IP but the registration IP of its own
/// credential be deactivated, which is more often a truncated file than an intent.
pub(super) fn validate_egress_ips(
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
