//! The order of everything a plan lists: IPv4 addresses numerically, anything else after them by
//! text, ties by entry id. Plans read, and diff, the same on every run.

use std::net::Ipv4Addr;

use super::action::Action;
use super::kept::Kept;
use super::rule::BlockedAction;

/// Sort key that puts IPv4 addresses in numeric order, then anything else by text.
pub(super) fn ip_order(text: &str) -> (u8, u32, &str) {
    match text.parse::<Ipv4Addr>() {
        Ok(ip) => (0, u32::from(ip), text),
        Err(_) => (1, 0, text),
    }
}

/// Creates and activations, by address.
pub(super) fn sort_grants(actions: &mut [Action]) {
    actions.sort_by(|a, b| ip_order(&a.change.ip()).cmp(&ip_order(&b.change.ip())));
}

/// Deactivations, by address, then entry.
pub(super) fn sort_deactivations(actions: &mut [Action]) {
    actions.sort_by(|a, b| {
        (ip_order(&a.change.ip()), a.change.entry())
            .cmp(&(ip_order(&b.change.ip()), b.change.entry()))
    });
}

/// Refused actions, by address, then entry.
pub(super) fn sort_blocked(blocked: &mut [BlockedAction]) {
    blocked.sort_by(|a, b| {
        (ip_order(&a.action.change.ip()), a.action.change.entry())
            .cmp(&(ip_order(&b.action.change.ip()), b.action.change.entry()))
    });
}

/// Kept entries, by address, then entry.
pub(super) fn sort_kept(kept: &mut [Kept]) {
    kept.sort_by(|a, b| (ip_order(&a.ip), a.entry).cmp(&(ip_order(&b.ip), b.entry)));
}
