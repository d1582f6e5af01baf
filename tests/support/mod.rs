//! The one support layer of the integration tests: every test file that needs a simulated bunq,
//! a mockito bunq, a config or the daemon as a child process takes it from here (`mod support;`),
//! so each of those facts is written once.
//!
//! * [`bank`]: the shared server key, simulator options and [`Account`] (simulator, seeded API
//!   key, temp dir with key file and state dir).
//! * [`config_text`]: the YAML a test writes for the config (the `bunq:` section and credential
//!   items).
//! * [`mock_bunq`]: mockito answers signed like bunq's and the three registration mocks.
//! * [`daemon`]: the end-to-end harness (the real binary as a child process).
//! * [`promql`]: the metric names a PromQL expression reads, and those a `/metrics` text holds.
//! * [`account_harness!`]: an area's own harness as a newtype over [`Account`].
//! * [`ONE_OF_EACH_ENTRIES`] and [`ONE_OF_EACH_WANTED`]: a credential that needs one create, one
//!   activation and one deactivation.
//!
//! Each test binary uses a part of this layer, so unused items are expected.

#![allow(dead_code, unused_imports)]

pub mod bank;
pub mod config_text;
pub mod daemon;
pub mod mock_bunq;
pub mod promql;

pub use bank::{Account, client_key, server_key, sim_options};
pub use daemon::*;

/// A credential's entries that, against [`ONE_OF_EACH_WANTED`], need one change of each kind:
/// 192.0.2.1 is ACTIVE but not wanted (deactivate), 203.0.113.11 is INACTIVE and wanted
/// (activate).
pub const ONE_OF_EACH_ENTRIES: [(&str, bunq_ipsync::bunq::model::IpStatus); 2] = [
    ("192.0.2.1", bunq_ipsync::bunq::model::IpStatus::Active),
    ("203.0.113.11", bunq_ipsync::bunq::model::IpStatus::Inactive),
];

/// The desired IPs for [`ONE_OF_EACH_ENTRIES`]: 203.0.113.11 (activate) and 203.0.113.12, which
/// no entry holds (create).
pub const ONE_OF_EACH_WANTED: [&str; 2] = ["203.0.113.11", "203.0.113.12"];

/// Declares an area's harness: `struct $name(Account)` that derefs to the shared [`Account`], so
/// the area's own helpers (its config shape, its runner, its client) sit on top of the one
/// simulator-and-key setup. The delegation is the only part two harnesses share, and a newtype
/// cannot inherit it any other way.
///
/// ```ignore
/// crate::support::account_harness!(
///     /// The CLI's harness.
///     Env
/// );
/// impl Env { async fn start() -> Env { Env(Account::start(sim_options()).await) } }
/// ```
macro_rules! account_harness {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        struct $name($crate::support::Account);

        impl std::ops::Deref for $name {
            type Target = $crate::support::Account;

            fn deref(&self) -> &$crate::support::Account {
                &self.0
            }
        }
    };
}
pub(crate) use account_harness;
