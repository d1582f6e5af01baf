//! The address rules every IP list shares (`credentials[].ips`, `protected`, `bunq.egress_ips`,
//! `bunq.permitted_ips`): IPv4 only, CIDRs with host bits zero and a bounded size, nothing twice.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};

use super::problems::Problems;
use crate::config::locate::FieldPath;
use crate::config::raw::Text;

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
pub(super) fn parse_address(value: &str) -> Result<Ipv4Addr, String> {
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
pub(super) fn expand_list(
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
