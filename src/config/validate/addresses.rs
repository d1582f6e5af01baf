//! The address rules every IP list shares (`credentials[].ips`, `protected`, `bunq.egress_ips`,
//! `bunq.permitted_ips`): each item under [`crate::address`]'s rule (which dynamic sources share),
//! and nothing listed twice.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::problems::Problems;
pub(super) use crate::address::parse_address;
use crate::address::parse_item;
use crate::config::locate::FieldPath;
use crate::config::raw::Text;

/// Expands a list of addresses and CIDRs, reporting bad items and addresses listed twice.
/// `None` when any item was bad.
pub(super) fn expand_list(
    items: Vec<Text>,
    path: &FieldPath,
    cap: u32,
    problems: &mut Problems,
) -> Option<BTreeSet<Ipv4Addr>> {
    expand_indexed(items.into_iter().enumerate().collect(), path, cap, problems)
}

/// [`expand_list`] for the address items of a list that also holds other items (sources):
/// each item with its index in the list, so problems name the right one.
pub(super) fn expand_indexed(
    items: Vec<(usize, Text)>,
    path: &FieldPath,
    cap: u32,
    problems: &mut Problems,
) -> Option<BTreeSet<Ipv4Addr>> {
    let mut owner: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    let mut texts: BTreeMap<usize, String> = BTreeMap::new();
    let mut valid = true;
    for (index, Text(value)) in items {
        let item_path = path.index(index);
        let addresses = match parse_item(&value, cap, "sync.max_cidr_addresses") {
            Ok(item) => item.addresses(),
            Err(message) => {
                problems.add(&item_path, message);
                valid = false;
                texts.insert(index, value);
                continue;
            }
        };
        let mut reported = false;
        for ip in addresses {
            if let Some(first) = owner.get(&ip) {
                if !reported {
                    let first_text = texts.get(first).map_or("", String::as_str);
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
        texts.insert(index, value);
    }
    valid.then(|| owner.into_keys().collect())
}
