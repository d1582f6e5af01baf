//! Dynamic sources: the `dns:`, `file:` and `url:` items of `credentials[].ips`, and the
//! `sources:` section that says how they are resolved. Only syntax is checked here; resolving
//! is `validate --resolve`'s and every run's job.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::problems::Problems;
use super::scalars::parse_duration;
use crate::bunq::endpoint::is_loopback_host;
use crate::config::locate::FieldPath;
use crate::config::raw::{RawSources, Text};
use crate::sources::{MIN_REFRESH_FLOOR, Source, SourceSettings};

/// The keys a source item may have; exactly one of them.
const SOURCE_KEYS: [&str; 3] = ["dns", "file", "url"];
/// Default port of `sources.dns.nameservers` items written without one.
const DNS_PORT: u16 = 53;

/// One source item of an `ips` list (`{dns: name}` and the like).
pub(super) fn source_item(
    entries: Vec<(String, Text)>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<Source> {
    let mut entries = entries.into_iter();
    let (Some((key, Text(value))), None) = (entries.next(), entries.next()) else {
        problems.add(
            path,
            "a source item has exactly one key: dns, file or url (write one item per source)",
        );
        return None;
    };
    let Some(key) = SOURCE_KEYS.into_iter().find(|known| *known == key) else {
        problems.add(
            path,
            format!("{key:?} is not a source; use dns, file or url"),
        );
        return None;
    };
    let path = path.key(key);
    let checked = match key {
        "dns" => dns_name(&value).map(Source::Dns),
        "file" => file_path(&value).map(Source::File),
        _ => source_url(&value).map(Source::Url),
    };
    checked.map_err(|message| problems.add(&path, message)).ok()
}

/// A host name: labels of letters, digits and hyphens, not an address.
fn dns_name(value: &str) -> Result<String, String> {
    let name = value.trim().trim_end_matches('.').to_ascii_lowercase();
    if name.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "{value:?} is an address, not a name; list it as a static item"
        ));
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "{value:?} is not a DNS name (labels of letters, digits and hyphens, e.g. home.example.org)"
        ));
    }
    Ok(name)
}

/// An absolute path: the daemon's working directory is not the config's.
fn file_path(value: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(value.trim());
    if !path.is_absolute() {
        return Err(format!(
            "{value:?} is not an absolute path; the daemon does not run in the config's directory"
        ));
    }
    Ok(path)
}

/// https, or plain http to loopback only (as `bunq.base_url`): the body decides who may use a
/// bank key, so nothing on the way may change it.
fn source_url(value: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(value.trim()).map_err(|err| {
        format!("is not a URL ({err}); write e.g. https://ops.example.com/egress")
    })?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback_host(&url) => Ok(url),
        "http" => Err(
            "plain http is allowed only to loopback; use https (the body decides which IPs may use the key)"
                .to_owned(),
        ),
        other => Err(format!("scheme {other:?} is not supported; use https")),
    }
}

/// `sources:`.
pub(super) fn validate_sources(
    raw: RawSources,
    path: &FieldPath,
    max_cidr_addresses: u32,
    problems: &mut Problems,
) -> Option<SourceSettings> {
    let defaults = SourceSettings::default();
    let dns = raw.dns.unwrap_or_default();
    let dns_path = path.key("dns");
    let nameservers = dns
        .nameservers
        .map(|items| nameservers(items, &dns_path.key("nameservers"), problems));
    let dns_timeout = positive(
        dns.timeout,
        defaults.dns_timeout,
        &dns_path.key("timeout"),
        problems,
    );
    let url_timeout = positive(
        raw.url.unwrap_or_default().timeout,
        defaults.url_timeout,
        &path.key("url").key("timeout"),
        problems,
    );
    let max_addresses = match raw.max_addresses {
        None => Some(defaults.max_addresses),
        Some(Text(value)) => match value.parse::<u32>() {
            Ok(max) if max > 0 => Some(max),
            _ => {
                problems.add(
                    &path.key("max_addresses"),
                    format!("{value:?} is not a positive whole number"),
                );
                None
            }
        },
    };
    let min_refresh = match raw.min_refresh {
        None => Some(defaults.min_refresh),
        Some(Text(value)) => parse_duration(&value, &path.key("min_refresh"), problems).and_then(
            |refresh| {
                if refresh < MIN_REFRESH_FLOOR {
                    problems.add(
                        &path.key("min_refresh"),
                        format!(
                            "{value:?} is shorter than 1s; a name with a short TTL would be asked in a loop"
                        ),
                    );
                    None
                } else {
                    Some(refresh)
                }
            },
        ),
    };
    Some(SourceSettings {
        nameservers,
        dns_timeout: dns_timeout?,
        url_timeout: url_timeout?,
        max_addresses: max_addresses?,
        min_refresh: min_refresh?,
        max_cidr_addresses,
    })
}

/// `sources.dns.nameservers`: every item an address, and at least one.
fn nameservers(items: Vec<Text>, path: &FieldPath, problems: &mut Problems) -> Vec<SocketAddr> {
    let servers = items
        .into_iter()
        .enumerate()
        .filter_map(|(index, Text(value))| {
            nameserver(&value)
                .map_err(|message| problems.add(&path.index(index), message))
                .ok()
        })
        .collect::<Vec<_>>();
    if servers.is_empty() {
        problems.add(
            path,
            "is empty; leave it out to use the system resolver (/etc/resolv.conf)",
        );
    }
    servers
}

/// `127.0.0.1:5353`, `[::1]:53` or a bare address (port 53).
fn nameserver(value: &str) -> Result<SocketAddr, String> {
    let value = value.trim();
    if let Ok(address) = value.parse::<SocketAddr>() {
        return Ok(address);
    }
    value
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .map_err(|_| {
            format!("{value:?} is not a nameserver address like 127.0.0.1:5353 or 192.0.2.53")
        })
}

/// A duration key that must be more than zero.
pub(super) fn positive(
    raw: Option<Text>,
    default: Duration,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<Duration> {
    let Some(Text(value)) = raw else {
        return Some(default);
    };
    let duration = parse_duration(&value, path, problems)?;
    if duration.is_zero() {
        problems.add(path, "must be more than 0s");
        return None;
    }
    Some(duration)
}
