//! How open the state directory may be. It holds the bunq context (keys and tokens), so it is
//! created `0700` and a laxer one is tightened, with one exception that is expected and
//! harmless: a Kubernetes volume with an `fsGroup` (and any directory set up the same way) is
//! group-owned by a group this process is in, with the setgid bit, and the kubelet keeps it so.
//! There group access is the design, not a mistake, and tightening it would fight the kubelet
//! (or fail: the volume root is usually not ours), so it is noted at INFO, not warned about.
//! Provisioners often create such a root readable by others (`2775`): the others' access is
//! removed where the directory is ours, and left (at INFO) where it is not, since reading the
//! directory shows only file names and the files inside are `0600` in every case. Write access
//! for others, or group access without the fsGroup set-up, is warned about and tightened.

use std::fs::{self, Metadata};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

/// The mode the state directory is created with and tightened to.
pub const DIR_MODE: u32 = 0o700;

const SETGID: u32 = 0o2000;

/// What a state directory's mode and group mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirAccess {
    /// Only the owner: nothing to do.
    Private,
    /// Group access for a group this process is in, set up as a shared volume (setgid), and
    /// no write access for others: an `fsGroup` volume. Only the others' read access is removed.
    SharedGroup {
        /// The directory's group.
        gid: u32,
    },
    /// Anything else open to group or others: tightened, with a warning.
    Lax,
}

/// Classifies a directory with `mode` (including the setgid bit) and group `gid` for a process
/// in `groups` (effective and supplementary group ids).
pub fn classify(mode: u32, gid: u32, groups: &[u32]) -> DirAccess {
    if mode & 0o077 == 0 {
        DirAccess::Private
    } else if mode & 0o002 == 0 && mode & SETGID != 0 && groups.contains(&gid) {
        DirAccess::SharedGroup { gid }
    } else {
        DirAccess::Lax
    }
}

/// This process's effective group and supplementary groups.
fn process_groups() -> Vec<u32> {
    let mut groups: Vec<u32> = rustix::process::getgroups()
        .unwrap_or_default()
        .into_iter()
        .map(|gid| gid.as_raw())
        .collect();
    groups.push(rustix::process::getegid().as_raw());
    groups
}

/// Applies the policy of the module docs to `state_dir` (whose metadata is `meta`). Never fails:
/// a directory that cannot be tightened is reported in the one warning, and its files stay 0600.
pub fn secure(state_dir: &Path, meta: &Metadata) {
    let mode = meta.permissions().mode() & 0o7777;
    match classify(mode, meta.gid(), &process_groups()) {
        DirAccess::Private => {}
        DirAccess::SharedGroup { gid } => {
            // The group bits stay as kubelet set them (`fsGroupChangePolicy: OnRootMismatch`
            // compares them); the others' read access goes where the directory is ours.
            let now = mode & !0o007;
            let kept = now != mode
                && fs::set_permissions(state_dir, fs::Permissions::from_mode(now)).is_err();
            tracing::info!(
                dir = %state_dir.display(),
                mode = format!("{:o}", if kept { mode } else { now }),
                gid,
                "state directory is shared with this process's group (a Kubernetes fsGroup \
                 volume); leaving the group's access, its files are 600"
            );
        }
        DirAccess::Lax => {
            match fs::set_permissions(state_dir, fs::Permissions::from_mode(DIR_MODE)) {
                Ok(()) => tracing::warn!(
                    dir = %state_dir.display(),
                    mode = format!("{mode:o}"),
                    "state directory was accessible to group or others; tightened it to 700"
                ),
                // A directory we do not own (a volume root owned by root, say) cannot be tightened.
                Err(err) => tracing::warn!(
                    dir = %state_dir.display(),
                    mode = format!("{mode:o}"),
                    %err,
                    "state directory is accessible to group or others and cannot be tightened to \
                     700; its files stay 600 (remove the access for others, e.g. with an init \
                     container or on the host)"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn an_fsgroup_volume_is_shared_and_anything_open_to_others_is_lax() {
        let ours = [1000, 65532];
        assert_eq!(classify(0o700, 65532, &ours), DirAccess::Private);
        assert_eq!(classify(0o2700, 65532, &ours), DirAccess::Private);
        assert_eq!(
            classify(0o2770, 65532, &ours),
            DirAccess::SharedGroup { gid: 65532 }
        );
        assert_eq!(
            classify(0o2750, 65532, &ours),
            DirAccess::SharedGroup { gid: 65532 }
        );
        assert_eq!(
            classify(0o2775, 65532, &ours),
            DirAccess::SharedGroup { gid: 65532 },
            "others may read (names only)"
        );
        assert_eq!(
            classify(0o2777, 65532, &ours),
            DirAccess::Lax,
            "others may write"
        );
        assert_eq!(classify(0o770, 65532, &ours), DirAccess::Lax, "no setgid");
        assert_eq!(
            classify(0o2770, 4242, &ours),
            DirAccess::Lax,
            "not our group"
        );
        assert_eq!(classify(0o755, 1000, &ours), DirAccess::Lax);
    }

    /// The log lines [`secure`] writes for a directory of `mode` in the process's own group.
    fn secure_logging(mode: u32) -> (String, u32) {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        fs::create_dir(&state).unwrap();
        // The directory's group is the creator's effective group, one of ours.
        fs::set_permissions(&state, fs::Permissions::from_mode(mode)).unwrap();
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            secure(&state, &fs::metadata(&state).unwrap());
        });
        let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let left = fs::metadata(&state).unwrap().permissions().mode() & 0o7777;
        (log, left)
    }

    /// An fsGroup volume keeps its group access, with an INFO line and no warning; a fresh one
    /// is often 2775 after kubelet's fsGroup pass, and then only the others' access goes (the
    /// default deployment's start stays quiet, and with `fsGroupChangePolicy: OnRootMismatch` a
    /// 700 root would be a mismatch, re-opened at the next mount).
    #[test]
    fn a_shared_group_directory_keeps_its_group_access_with_an_info_line_and_no_warning() {
        for (mode, left_as) in [(0o2770, 0o2770), (0o2775, 0o2770)] {
            let (log, left) = secure_logging(mode);
            assert_eq!(left, left_as, "{mode:o}");
            assert!(log.contains(" INFO ") && log.contains("fsGroup"), "{log}");
            assert!(!log.contains("WARN"), "{log}");
        }
    }

    #[test]
    fn a_directory_open_to_others_is_tightened_with_one_warning() {
        let (log, left) = secure_logging(0o775);
        assert_eq!(left, 0o700);
        assert_eq!(log.matches("WARN").count(), 1, "{log}");
        assert!(log.contains("tightened it to 700"), "{log}");
    }
}
