//! Removing purged segment files off the Raft core's path: one thread per node unlinks them
//! and syncs their directory.
//!
//! Why: openraft purges a group's log on the group's core task, and unlinking a segment frees
//! its extents, which takes milliseconds per 16 MiB here; retention purging a dozen segments at
//! once held a partition's appends (and its log's lock) for over 100 ms. The purge point is
//! made durable before a file is queued, so a file still queued at a crash holds only purged
//! entries, and the next open removes it (`log_store/open.rs`).
//!
//! Bounds: at most `REMOVE_QUEUE_MAX` batches wait; beyond that the caller removes its files
//! itself. The thread ends when the last handle is dropped, after removing what was queued;
//! `NodeStorage` waits for what it queued when it is dropped (`wait_idle`), so a data dir opened
//! again in the same process never races the previous opening's removals.

use std::path::PathBuf;
use std::sync::mpsc;

use crate::error::Result;
use crate::error::StorageError;
use crate::fsutil;

/// Batches of files waiting at most.
const REMOVE_QUEUE_MAX: usize = 1024;

enum RemoveJob {
    /// Unlink these files of `dir`, then sync `dir`.
    Remove { dir: PathBuf, files: Vec<PathBuf> },
    /// Answer once every job queued before it is done.
    Barrier(mpsc::SyncSender<()>),
}

/// A handle to the node's file remover; cloning shares the same thread.
#[derive(Clone)]
pub(crate) struct FileRemover {
    sender: mpsc::SyncSender<RemoveJob>,
}

impl FileRemover {
    /// Starts the remover thread.
    pub(crate) fn start() -> Result<FileRemover> {
        let (sender, receiver) = mpsc::sync_channel::<RemoveJob>(REMOVE_QUEUE_MAX);
        std::thread::Builder::new()
            .name("raftlog-file-remover".into())
            .spawn(move || {
                for job in receiver {
                    match job {
                        RemoveJob::Remove { dir, files } => {
                            if let Err(error) = remove_now(&dir, &files) {
                                // What is left holds only purged entries: the next open
                                // removes it.
                                tracing::warn!(dir = %dir.display(), %error, "could not remove purged segments");
                            }
                        }
                        RemoveJob::Barrier(done) => drop(done.send(())),
                    }
                }
            })
            .map_err(|source| StorageError::Io {
                op: "spawn file-remover thread",
                path: PathBuf::new(),
                source,
            })?;
        Ok(FileRemover { sender })
    }

    /// Removes `files` of `dir` (and syncs `dir`) on the remover thread, or here if its queue
    /// is full or it has stopped.
    pub(crate) fn remove(&self, dir: PathBuf, files: Vec<PathBuf>) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        match self.sender.try_send(RemoveJob::Remove { dir, files }) {
            Ok(()) => Ok(()),
            Err(
                mpsc::TrySendError::Full(RemoveJob::Remove { dir, files })
                | mpsc::TrySendError::Disconnected(RemoveJob::Remove { dir, files }),
            ) => remove_now(&dir, &files),
            Err(_) => Ok(()),
        }
    }

    /// Waits (up to `timeout`) until every removal queued before this call is done.
    pub(crate) fn wait_idle(&self, timeout: std::time::Duration) {
        let (done, wait) = mpsc::sync_channel(1);
        if self.sender.send(RemoveJob::Barrier(done)).is_ok() {
            let _ = wait.recv_timeout(timeout);
        }
    }
}

/// Unlinks `files` (one already gone is fine) and syncs `dir`.
fn remove_now(dir: &std::path::Path, files: &[PathBuf]) -> Result<()> {
    for path in files {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io("remove purged segment", path)(e)),
        }
    }
    fsutil::sync_dir(dir)
}
