//! `credentials:`: each managed credential's id, label, policy and IP lists (addresses and
//! sources).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::addresses::{expand_indexed, expand_list};
use super::problems::Problems;
use super::scalars::{non_empty, parse_policy};
use super::sources::source_item;
use super::sync::ValidSync;
use crate::config::locate::FieldPath;
use crate::config::model::CredentialSpec;
use crate::config::raw::{RawCredential, RawIpItem, Text};
use crate::sources::Source;

/// Every credential that is valid, in file order; problems for the others.
pub(super) fn validate_credentials(
    raw: Vec<RawCredential>,
    path: &FieldPath,
    sync: &ValidSync,
    problems: &mut Problems,
) -> Vec<CredentialSpec> {
    let mut first_index_of_id: BTreeMap<u64, usize> = BTreeMap::new();
    raw.into_iter()
        .enumerate()
        .filter_map(|(index, credential)| {
            let path = path.index(index);
            let id = credential_id(
                credential.id.as_ref(),
                index,
                &path,
                &mut first_index_of_id,
                problems,
            );
            validate_credential(credential, id, &path, sync, problems)
        })
        .collect()
}

/// `credentials[i].id`: a positive whole number, listed once (the first listing owns it).
fn credential_id(
    raw: Option<&Text>,
    index: usize,
    path: &FieldPath,
    first_index_of_id: &mut BTreeMap<u64, usize>,
    problems: &mut Problems,
) -> Option<u64> {
    let path = path.key("id");
    let Some(Text(value)) = raw else {
        problems.add(
            &path,
            "is required: the credential-password-ip id (see `bunq-ipsync export`)",
        );
        return None;
    };
    match value.parse::<u64>() {
        Ok(id) if id > 0 => {
            if let Some(first) = first_index_of_id.get(&id) {
                problems.add(
                    &path,
                    format!(
                        "credential {id} is already listed as credentials[{first}]; merge the two \
                         entries"
                    ),
                );
                None
            } else {
                first_index_of_id.insert(id, index);
                Some(id)
            }
        }
        _ => {
            problems.add(
                &path,
                format!("{value:?} is not a credential id (a positive whole number)"),
            );
            None
        }
    }
}

/// The rest of one credential, given its checked `id`.
fn validate_credential(
    credential: RawCredential,
    id: Option<u64>,
    path: &FieldPath,
    sync: &ValidSync,
    problems: &mut Problems,
) -> Option<CredentialSpec> {
    let cap = sync.max_cidr_addresses;
    let name = credential
        .name
        .and_then(|Text(name)| non_empty(&name, &path.key("name"), problems).map(str::to_owned));
    let policy = match credential.policy {
        None => sync.policy,
        Some(Text(value)) => parse_policy(&value, &path.key("policy"), problems),
    };
    let allow_empty = credential.allow_empty.map_or(Some(false), |Text(value)| {
        boolean(&value, &path.key("allow_empty"), problems)
    });
    let (ips, sources) = ip_items(
        credential.ips.unwrap_or_default(),
        &path.key("ips"),
        cap,
        problems,
    );
    if let (Some(ips), Some(sources), Some(false)) = (&ips, &sources, allow_empty)
        && ips.is_empty()
        && sources.is_empty()
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
    Some(CredentialSpec {
        id: id?,
        name,
        ips: ips?,
        sources: sources?,
        policy: policy?,
        protected: protected?,
        allow_empty: allow_empty?,
    })
}

/// `credentials[i].ips`: the static addresses (checked together, so overlaps are found) and the
/// sources, each named once.
fn ip_items(
    items: Vec<RawIpItem>,
    path: &FieldPath,
    cap: u32,
    problems: &mut Problems,
) -> (Option<BTreeSet<Ipv4Addr>>, Option<Vec<Source>>) {
    let mut addresses = Vec::new();
    let mut sources: Vec<Source> = Vec::new();
    let mut valid_sources = true;
    for (index, item) in items.into_iter().enumerate() {
        match item {
            RawIpItem::Text(text) => addresses.push((index, text)),
            RawIpItem::Source(entries) => {
                let item_path = path.index(index);
                match source_item(entries, &item_path, problems) {
                    Some(source) if sources.contains(&source) => {
                        problems.add(&item_path, format!("{source} is already listed"));
                        valid_sources = false;
                    }
                    Some(source) => sources.push(source),
                    None => valid_sources = false,
                }
            }
        }
    }
    let addresses = expand_indexed(addresses, path, cap, problems);
    (addresses, valid_sources.then_some(sources))
}

/// `credentials[i].allow_empty`: `true` or `false`.
pub(super) fn boolean(value: &str, path: &FieldPath, problems: &mut Problems) -> Option<bool> {
    match value {
        "true" => Some(true),
        "false" => Some(false),
        other => {
            problems.add(path, format!("{other:?} is not true or false"));
            None
        }
    }
}
