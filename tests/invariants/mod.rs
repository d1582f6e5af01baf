//! The invariants every fault must respect, shared by the fault-injection suite
//! (`tests/faults.rs`) and the soak (`tests/soak.rs`): take a [`Snapshot`] before a run, call
//! [`assert_invariants`] after it. Nothing but the daemon may change the bank during the run.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use bunq_ipsync::bunq::context::{CONTEXT_FILE_NAME, ContextStore};
use bunq_ipsync::bunq::model::{CredentialId, IpStatus, PermittedIp};
use bunq_ipsync::simulator::{LoggedRequest, Simulator};

/// What bunq and the state directory held before a run.
pub struct Snapshot {
    /// Entries of every managed credential.
    pub managed: BTreeMap<CredentialId, Vec<PermittedIp>>,
    /// Entries of credentials the daemon must never write to (its own).
    pub unmanaged: BTreeMap<CredentialId, Vec<PermittedIp>>,
    /// Requests in the simulator's log so far; the run's requests come after.
    pub log_len: usize,
    /// The state directory.
    pub state_dir: PathBuf,
    /// The saved installation token, when a readable context was there.
    pub installation: Option<String>,
}

impl Snapshot {
    /// Takes the snapshot.
    pub fn take(
        sim: &Simulator,
        managed: &[CredentialId],
        unmanaged: &[CredentialId],
        state_dir: &Path,
    ) -> Snapshot {
        let entries = |ids: &[CredentialId]| {
            ids.iter()
                .map(|id| (*id, sim.entries(*id).unwrap()))
                .collect()
        };
        Snapshot {
            managed: entries(managed),
            unmanaged: entries(unmanaged),
            log_len: sim.request_log().len(),
            state_dir: state_dir.to_path_buf(),
            installation: saved_installation(state_dir),
        }
    }
}

/// The installation token in the saved context, if there is a readable one.
pub fn saved_installation(state_dir: &Path) -> Option<String> {
    if !state_dir.join(CONTEXT_FILE_NAME).exists() {
        return None;
    }
    let context = ContextStore::open(state_dir).ok()?.load().ok()??;
    context
        .installation
        .map(|installation| installation.token.expose().to_owned())
}

/// Checks, against what bunq held `before` the run:
///
/// * no IP has two entries on the managed credential `cred` (the setups never seed any, and
///   out-of-band drift only adds entries for IPs that have none);
/// * no entry of `cred` ACTIVE before is INACTIVE now if its IP is desired or protected, and no
///   entry vanished;
/// * every unmanaged credential's allowlist (the daemon's own) is exactly as before;
/// * the context is not lost: a readable saved installation is still there and unchanged, and
///   the run made no installation or device-server call.
///
/// Returns the number of entries of `cred` (for reports).
pub fn assert_invariants(
    sim: &Simulator,
    before: &Snapshot,
    cred: CredentialId,
    desired: &BTreeSet<Ipv4Addr>,
    protected: &BTreeSet<Ipv4Addr>,
) -> usize {
    let now = sim.entries(cred).unwrap();
    let mut per_ip: BTreeMap<&str, usize> = BTreeMap::new();
    for entry in &now {
        *per_ip.entry(&entry.ip).or_default() += 1;
    }
    let duplicates: Vec<_> = per_ip.iter().filter(|(_, count)| **count > 1).collect();
    assert!(
        duplicates.is_empty(),
        "duplicate entries on {cred} {duplicates:?}: {now:?}"
    );

    let keep: BTreeSet<String> = desired.union(protected).map(Ipv4Addr::to_string).collect();
    for old in before.managed.get(&cred).into_iter().flatten() {
        let Some(new) = now.iter().find(|entry| entry.id == old.id) else {
            panic!("entry {} ({}) of {cred} vanished", old.id, old.ip);
        };
        if old.status == IpStatus::Active && keep.contains(&old.ip) {
            assert_eq!(
                new.status,
                IpStatus::Active,
                "wrongful deactivation of {} (entry {} of {cred})",
                old.ip,
                old.id
            );
        }
    }

    for (other, entries) in &before.unmanaged {
        assert_eq!(
            &sim.entries(*other).unwrap(),
            entries,
            "credential {other} is not managed and must not change"
        );
    }

    let log = sim.request_log();
    let registrations: Vec<&LoggedRequest> = log
        .get(before.log_len..)
        .unwrap_or_default()
        .iter()
        .filter(|request| {
            request.path.ends_with("/installation") || request.path.ends_with("/device-server")
        })
        .collect();
    assert!(
        registrations.is_empty(),
        "the run registered again: {registrations:?}"
    );
    if let Some(token) = &before.installation {
        assert_eq!(
            saved_installation(&before.state_dir).as_ref(),
            Some(token),
            "the saved installation was lost or replaced"
        );
    }
    now.len()
}
