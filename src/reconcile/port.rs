//! The ports of the reconciler: what a run may read from bunq ([`AllowlistReader`]) and what
//! only the executor may write ([`AllowlistWriter`]). Traits only; the bunq client implements
//! them in [`crate::reconcile::bunq_adapter`], test doubles implement them in the tests.
//!
//! They live apart from [`crate::reconcile::run`] and [`crate::reconcile::apply`] so that both
//! depend on the seam, not on each other.

use std::future::Future;
use std::net::Ipv4Addr;

use crate::bunq::BunqError;
pub use crate::bunq::model::EntryRef;
use crate::bunq::model::{CredentialId, CredentialPasswordIp, EntryId, IpStatus, PermittedIp};

/// The reads a run needs. Plan-only code gets nothing more than this.
pub trait AllowlistReader: Sync {
    /// Every credential of the user (all pages).
    fn list_credentials(
        &self,
    ) -> impl Future<Output = Result<Vec<CredentialPasswordIp>, BunqError>> + Send;

    /// All entries of one credential (all pages).
    fn list_ips(
        &self,
        credential: CredentialId,
    ) -> impl Future<Output = Result<Vec<PermittedIp>, BunqError>> + Send;

    /// The description the daemon's device was actually registered with, when known. bunq shows
    /// this one as the own credential's `permitted_device.description`, so it wins over the
    /// config's `device_description`, which may have been edited after registration (the saved
    /// registration is reused). `None`: use the config's.
    fn registered_device_description(&self) -> Option<String> {
        None
    }
}

/// The writes; only the executor calls them.
pub trait AllowlistWriter: AllowlistReader {
    /// Adds an ACTIVE entry; returns its id. Never retried blindly by the implementation.
    fn create_ip(
        &self,
        credential: CredentialId,
        ip: Ipv4Addr,
    ) -> impl Future<Output = Result<EntryId, BunqError>> + Send;

    /// Sets the status of the entry `at`.
    fn set_ip_status(
        &self,
        at: EntryRef,
        status: IpStatus,
    ) -> impl Future<Output = Result<(), BunqError>> + Send;
}
