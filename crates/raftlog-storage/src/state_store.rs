//! The node's sled database: one per node, one tree per group.
//!
//! What is durable where, and why that is enough:
//! - The Raft log (segment files) is the source of truth and is fsynced before any ack.
//! - sled holds state *derived* from the log (applied index, membership, offsets, snapshots).
//!   sled writes are crash-consistent but not synced on each write (sled flushes in the
//!   background, every 500 ms by default, and its `flush` uses `sync_file_range`, sled #1452).
//!   After a crash sled may be a little behind; its applied index is behind by the same amount,
//!   because each `apply` call commits its state changes and the applied index in one atomic
//!   batch. openraft then re-applies the log from that index, rebuilding exactly the lost state.

use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

use raftlog_types::GroupId;

use crate::error::Result;
use crate::error::StorageError;
use crate::fsutil;

/// How long `open` waits for sled's lock before deciding another process holds it.
const LOCK_WAIT_MAX: Duration = Duration::from_secs(3);

/// The node's state database.
#[derive(Clone)]
pub struct StateStore {
    db: sled::Db,
    path: PathBuf,
}

impl StateStore {
    /// Opens (or creates) the database in `path`.
    pub fn open(path: &Path) -> Result<StateStore> {
        fsutil::ensure_dir(path)?;
        // sled releases its file lock from background threads shortly after the last handle
        // is dropped, so a reopen in the same process (or right after a previous process
        // exited) may briefly find it held. Another live process keeps it: that is an error.
        let deadline = Instant::now() + LOCK_WAIT_MAX;
        loop {
            match sled::Config::new()
                .path(path)
                .mode(sled::Mode::HighThroughput)
                .open()
            {
                Ok(db) => {
                    return Ok(StateStore {
                        db,
                        path: path.to_path_buf(),
                    })
                }
                // sled reports a held lock as ErrorKind::Other with this message.
                Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                    if Instant::now() >= deadline {
                        return Err(StorageError::Locked {
                            path: path.to_path_buf(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(source) => {
                    return Err(StorageError::StateStore {
                        path: path.to_path_buf(),
                        source,
                    })
                }
            }
        }
    }

    /// The tree holding one group's state, created on first use.
    pub fn group_tree(&self, group: GroupId) -> Result<sled::Tree> {
        let mut name = b"group/".to_vec();
        name.extend_from_slice(&group.0.to_be_bytes());
        self.db.open_tree(name).map_err(|source| self.error(source))
    }

    /// Removes a group's tree, e.g. when its partition is deleted.
    pub fn drop_group(&self, group: GroupId) -> Result<()> {
        let mut name = b"group/".to_vec();
        name.extend_from_slice(&group.0.to_be_bytes());
        self.db
            .drop_tree(name)
            .map(|_| ())
            .map_err(|source| self.error(source))
    }

    /// Forces everything written so far to disk (`sync_file_range` on Linux, see above).
    pub fn flush(&self) -> Result<()> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|source| self.error(source))
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn error(&self, source: sled::Error) -> StorageError {
        StorageError::StateStore {
            path: self.path.clone(),
            source,
        }
    }
}
