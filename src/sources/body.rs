//! The bodies of file and URL sources: one IPv4 address or CIDR per line (blank lines and `#`
//! comments allowed, also after an address), or a JSON array of such strings. Every item goes
//! through the config's address rule ([`crate::address`]); the first bad one fails the whole
//! source with its line (or item) number, because a source that is half read is not a desired
//! state to act on.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::{SourceError, SourceSettings, within_cap};
use crate::address::parse_item;

/// The config key named in CIDR-cap errors.
const CIDR_CAP_KEY: &str = "sync.max_cidr_addresses";

/// Parses a text body, or a JSON array when the body starts with `[`.
pub(super) fn parse(
    text: &str,
    settings: &SourceSettings,
) -> Result<BTreeSet<Ipv4Addr>, SourceError> {
    let addresses = if text.trim_start().starts_with('[') {
        parse_json(text, settings)?
    } else {
        parse_lines(text, settings)?
    };
    if addresses.is_empty() {
        return Err(SourceError::NoAddresses("the body lists none"));
    }
    within_cap(addresses, settings.max_addresses)
}

fn parse_lines(text: &str, settings: &SourceSettings) -> Result<BTreeSet<Ipv4Addr>, SourceError> {
    let mut addresses = BTreeSet::new();
    for (index, line) in text.lines().enumerate() {
        let value = line.split('#').next().unwrap_or("").trim();
        if value.is_empty() {
            continue;
        }
        let item =
            parse_item(value, settings.max_cidr_addresses, CIDR_CAP_KEY).map_err(|message| {
                SourceError::BadLine {
                    line: index + 1,
                    message,
                }
            })?;
        addresses.extend(item.addresses());
    }
    Ok(addresses)
}

fn parse_json(text: &str, settings: &SourceSettings) -> Result<BTreeSet<Ipv4Addr>, SourceError> {
    let items: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|err| {
        SourceError::BadBody(format!(
            "not a JSON array ({})",
            crate::bunq::error::json_error_summary(&err)
        ))
    })?;
    let mut addresses = BTreeSet::new();
    for (index, item) in items.iter().enumerate() {
        let Some(value) = item.as_str() else {
            return Err(SourceError::BadBody(format!(
                "item {} is not a string",
                index + 1
            )));
        };
        let item = parse_item(value.trim(), settings.max_cidr_addresses, CIDR_CAP_KEY).map_err(
            |message| SourceError::BadLine {
                line: index + 1,
                message,
            },
        )?;
        addresses.extend(item.addresses());
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SourceSettings {
        SourceSettings {
            max_addresses: 8,
            max_cidr_addresses: 4,
            ..SourceSettings::default()
        }
    }

    fn ips(list: &[&str]) -> BTreeSet<Ipv4Addr> {
        list.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    #[test]
    fn text_lines_allow_blank_lines_comments_and_cidrs() {
        let body = "# NAT egress\n\n203.0.113.10\n198.51.100.0/31  # pair\n   \n203.0.113.10\n";
        assert_eq!(
            parse(body, &settings()),
            Ok(ips(&["198.51.100.0", "198.51.100.1", "203.0.113.10"]))
        );
    }

    #[test]
    fn a_bad_line_fails_the_source_with_its_line_number_and_the_config_reason() {
        let body = "203.0.113.10\n# ok\n203.0.113.9/30\n";
        match parse(body, &settings()) {
            Err(SourceError::BadLine { line: 3, message }) => {
                assert!(message.contains("host bits set"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        let err = parse("10.0.0.0/29\n", &settings()).unwrap_err();
        assert!(
            err.to_string().contains("line 1:")
                && err.to_string().contains("sync.max_cidr_addresses (4)"),
            "{err}"
        );
    }

    #[test]
    fn a_json_array_of_strings_is_read_item_by_item() {
        assert_eq!(
            parse(r#"["203.0.113.10", "198.51.100.7"]"#, &settings()),
            Ok(ips(&["198.51.100.7", "203.0.113.10"]))
        );
        assert!(matches!(
            parse(r#"["203.0.113.10", "nope"]"#, &settings()),
            Err(SourceError::BadLine { line: 2, .. })
        ));
        assert!(matches!(
            parse(r#"["203.0.113.10", 7]"#, &settings()),
            Err(SourceError::BadBody(_))
        ));
        assert!(matches!(
            parse(r#"[{"ip": "203.0.113.10"}"#, &settings()),
            Err(SourceError::BadBody(_))
        ));
    }

    #[test]
    fn an_empty_body_and_too_many_addresses_fail() {
        assert_eq!(
            parse("# nothing yet\n", &settings()),
            Err(SourceError::NoAddresses("the body lists none"))
        );
        assert_eq!(
            parse("[]", &settings()),
            Err(SourceError::NoAddresses("the body lists none"))
        );
        let body = "192.0.2.0/30\n198.51.100.0/30\n203.0.113.1\n";
        assert_eq!(
            parse(body, &settings()),
            Err(SourceError::TooMany { count: 9, max: 8 })
        );
    }
}
