//! The single-writer guarantee: one daemon per state directory.
//!
//! Two instances writing the same allowlists would fight each other and share one bunq session
//! context. The first instance takes an advisory lock (`flock`) on `<state_dir>/bunq-ipsync.lock`
//! and writes its pid into the file; a second instance fails fast with [`LockError::Held`],
//! naming the directory and the holder's pid. The kernel releases the lock when the process
//! dies, so a crash never leaves a stale lock behind; the file itself is left in place (removing
//! a lock file races with the next acquirer).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The lock file's name inside the state directory.
pub const LOCK_FILE_NAME: &str = "bunq-ipsync.lock";

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "another bunq-ipsync instance is already running on state directory {}{}; \
         stop it first, or give this instance its own state directory",
        state_dir.display(),
        holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    Held {
        /// The contested state directory.
        state_dir: PathBuf,
        /// The holder's pid as written in the lock file, if readable.
        holder: Option<u32>,
    },
    /// The lock file could not be opened, locked or written.
    #[error("cannot use lock file {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct StateLock {
    /// The open, locked file: the lock lives as long as this descriptor.
    file: File,
    /// For messages.
    path: PathBuf,
}

impl StateLock {
    /// Takes the lock on `state_dir` without waiting, recording this process's pid.
    pub fn acquire(state_dir: &Path) -> Result<StateLock, LockError> {
        let path = state_dir.join(LOCK_FILE_NAME);
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        // No truncate on open: the current holder's pid must stay readable for the message.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    state_dir: state_dir.to_path_buf(),
                    holder: read_pid(&mut file),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        file.set_len(0).map_err(io_err)?;
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        writeln!(file, "{}", std::process::id()).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        Ok(StateLock { file, path })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // Clear the pid first so nobody reads a dead holder's pid; closing the file releases the
        // lock even if either call fails.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_file_holds_own_pid() {
        let dir = tempfile::tempdir().unwrap();
        let lock = StateLock::acquire(dir.path()).unwrap();
        let text = std::fs::read_to_string(lock.path()).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
    }

    #[test]
    fn held_error_names_state_dir_and_pid() {
        let err = LockError::Held {
            state_dir: PathBuf::from("/var/lib/bunq-ipsync"),
            holder: Some(4242),
        };
        assert_eq!(
            err.to_string(),
            "another bunq-ipsync instance is already running on state directory \
             /var/lib/bunq-ipsync (pid 4242); stop it first, or give this instance its own \
             state directory"
        );
    }
}
