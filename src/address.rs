//! The one rule for what an IP item of the desired state may be: a strict dotted-quad IPv4
//! address, or an IPv4 CIDR with its host bits zero that expands to at most a cap of addresses.
//!
//! The config's `ips` and `protected` lists and every dynamic source (a file's lines, a URL's
//! body) go through this rule, so a line that the config would refuse is refused in a source
//! too, with the same explanation. bunq accepts IPv4 only; the wildcard `*` can only be set in
//! the app and is refused here because managing it would defeat the allowlist.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};

/// Default for `sync.max_cidr_addresses`: one CIDR may expand to at most this many addresses.
pub const DEFAULT_MAX_CIDR_ADDRESSES: u32 = 256;

/// One valid item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressItem {
    /// A single address.
    Address(Ipv4Addr),
    /// A network, every address of which is meant (network and broadcast included).
    Network(Ipv4Net),
}

impl AddressItem {
    /// Every address the item stands for.
    pub fn addresses(&self) -> BTreeSet<Ipv4Addr> {
        match self {
            AddressItem::Address(ip) => BTreeSet::from([*ip]),
            AddressItem::Network(net) => {
                ipnet::Ipv4AddrRange::new(net.network(), net.broadcast()).collect()
            }
        }
    }
}

/// Parses `value` as an IPv4 address or a CIDR of at most `cap` addresses. The error explains
/// what is wrong and names the value; `cap_key` names the setting that holds `cap`, for the
/// message.
pub fn parse_item(value: &str, cap: u32, cap_key: &str) -> Result<AddressItem, String> {
    if let Ok(ip) = parse_address(value) {
        return Ok(AddressItem::Address(ip));
    }
    if value.contains('/')
        && let Ok(net) = IpNet::from_str(value)
    {
        return match net {
            IpNet::V6(_) => Err(ipv6_message(value)),
            IpNet::V4(net) => check_network(value, net, cap, cap_key).map(AddressItem::Network),
        };
    }
    parse_address(value).map(AddressItem::Address)
}

fn check_network(value: &str, net: Ipv4Net, cap: u32, cap_key: &str) -> Result<Ipv4Net, String> {
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
            "{value:?} expands to {size} addresses, more than {cap_key} ({cap})"
        ));
    }
    Ok(net)
}

/// Parses a single IPv4 address, explaining IPv6, the wildcard and anything else.
pub fn parse_address(value: &str) -> Result<Ipv4Addr, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sync.max_cidr_addresses";

    #[test]
    fn addresses_and_networks_expand_to_what_they_name() {
        assert_eq!(
            parse_item("203.0.113.7", 16, KEY).unwrap().addresses(),
            BTreeSet::from([Ipv4Addr::new(203, 0, 113, 7)])
        );
        let net = parse_item("203.0.113.8/30", 16, KEY).unwrap().addresses();
        assert_eq!(net.len(), 4);
        assert!(net.contains(&Ipv4Addr::new(203, 0, 113, 11)));
    }

    #[test]
    fn host_bits_a_too_large_network_ipv6_and_the_wildcard_are_refused_with_the_reason() {
        let err = |value: &str| parse_item(value, 16, KEY).unwrap_err();
        assert!(err("203.0.113.9/30").contains("host bits set; write the network 203.0.113.8/30"));
        assert!(
            err("10.0.0.0/24").contains("256 addresses, more than sync.max_cidr_addresses (16)")
        );
        assert!(err("2001:db8::1").contains("IPv6"));
        assert!(err("2001:db8::/64").contains("IPv6"));
        assert!(err("*").contains("cannot be managed through the API"));
        assert!(err("203.0.113").contains("is not an IPv4 address or CIDR"));
        assert!(
            err("0203.0.113.1").contains("is not an IPv4 address"),
            "no octal"
        );
    }
}
