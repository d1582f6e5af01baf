//! What the last run left behind, per credential: the status of every IP after its writes. The
//! next run compares bunq's state with it to report drift (changes made outside bunq-ipsync, e.g.
//! in the bunq app) before repairing them. Kept in the state directory beside the bunq context.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bunq::model::CredentialId;
use crate::reconcile::plan::IpStates;

/// File name inside the state directory.
pub const FILE_NAME: &str = "last-run.json";

/// The states one run left.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// IP → status per credential.
    pub credentials: BTreeMap<CredentialId, IpStates>,
    /// IPs per credential whose write failed without a trustworthy answer (see
    /// [`crate::reconcile::apply::ActionResult::unconfirmed`]): bunq may hold either state, so
    /// the next run does not report a change of theirs as drift.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unconfirmed: BTreeMap<CredentialId, BTreeSet<String>>,
}

impl RunRecord {
    /// This record, plus what `previous` knew of the credentials this run did not read (an
    /// `apply --credential` run): their drift is still reported by the next full run.
    pub fn carrying_over(mut self, previous: Option<&RunRecord>) -> RunRecord {
        let Some(previous) = previous else {
            return self;
        };
        for (id, states) in &previous.credentials {
            if !self.credentials.contains_key(id) {
                self.credentials.insert(*id, states.clone());
                if let Some(ips) = previous.unconfirmed.get(id) {
                    self.unconfirmed.insert(*id, ips.clone());
                }
            }
        }
        self
    }
}

/// Why the record could not be written. (A record that cannot be read is not an error: drift
/// reporting starts afresh, and the reason is logged.)
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct RecordError {
    /// The record file.
    pub path: PathBuf,
    /// The I/O failure.
    #[source]
    pub source: std::io::Error,
}

/// Reads and writes [`RunRecord`]s in a state directory.
#[derive(Clone, Debug)]
pub struct RecordStore {
    dir: PathBuf,
}

impl RecordStore {
    /// A store in `state_dir` (which the bunq context store has already created with mode 0700).
    pub fn new(state_dir: &Path) -> Self {
        RecordStore {
            dir: state_dir.to_path_buf(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// The last record, or `None` when there is none or it is unreadable (logged).
    pub fn load(&self) -> Option<RunRecord> {
        let path = self.path();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
            Err(err) => {
                tracing::warn!(file = %path.display(), %err, "cannot read the last-run record; drift reporting starts afresh");
                return None;
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(record) => Some(record),
            Err(err) => {
                tracing::warn!(file = %path.display(), %err, "last-run record is corrupt; drift reporting starts afresh");
                None
            }
        }
    }

    /// Replaces the record atomically.
    pub fn save(&self, record: &RunRecord) -> Result<(), RecordError> {
        let path = self.path();
        let bytes = serde_json::to_vec_pretty(record).map_err(|err| RecordError {
            path: path.clone(),
            source: err.into(),
        })?;
        crate::atomic_file::write(&path, &bytes).map_err(|source| RecordError { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bunq::model::IpStatus;

    fn record(id: CredentialId, ip: &str, status: IpStatus) -> RunRecord {
        RunRecord {
            credentials: [(id, [(ip.to_owned(), status)].into())].into(),
            unconfirmed: [(id, [ip.to_owned()].into())].into(),
        }
    }

    #[test]
    fn credentials_the_run_did_not_read_keep_their_previous_states() {
        let previous = RunRecord {
            credentials: record(1, "10.0.0.1", IpStatus::Active)
                .credentials
                .into_iter()
                .chain(record(2, "10.0.0.2", IpStatus::Active).credentials)
                .collect(),
            unconfirmed: record(2, "10.0.0.2", IpStatus::Active).unconfirmed,
        };
        let now = RunRecord {
            credentials: record(1, "10.0.0.1", IpStatus::Inactive).credentials,
            unconfirmed: BTreeMap::new(),
        };

        let merged = now.carrying_over(Some(&previous));

        assert_eq!(merged.credentials[&1]["10.0.0.1"], IpStatus::Inactive);
        assert_eq!(merged.credentials[&2]["10.0.0.2"], IpStatus::Active);
        assert!(!merged.unconfirmed.contains_key(&1));
        assert!(merged.unconfirmed[&2].contains("10.0.0.2"));
        let alone = record(1, "10.0.0.1", IpStatus::Active);
        assert_eq!(alone.clone().carrying_over(None), alone);
    }
}
