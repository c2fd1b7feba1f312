//! Group commit: one flusher thread per node makes appended entries durable.
//!
//! Appenders write their frames into the page cache and hand the flusher a request. The flusher
//! takes every request queued since its last round, calls `fdatasync` once per distinct file,
//! and only then runs the requests' completions, in the order they were queued. Many appends,
//! across all groups of the node, so share one sync per file.
//!
//! A failed `fdatasync` is final for that request: after such a failure Linux may have dropped
//! the dirty pages (the "fsyncgate" lesson), so retrying could report success for lost data.
//! The error reaches openraft, which stops the group rather than acknowledge.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;

use raftlog_types::limits::GROUP_COMMIT_QUEUE_MAX;

use crate::error::Result;
use crate::error::StorageError;

/// Called once the request's file is synced, or with the error that prevented it.
pub type Completion = Box<dyn FnOnce(io::Result<()>) + Send + 'static>;

/// Requests taken in one round at most, so completions of an early append are not delayed
/// behind an unbounded drain.
const ROUND_REQUESTS_MAX: usize = 4096;

struct SyncRequest {
    file: Arc<File>,
    path: Arc<PathBuf>,
    completion: Completion,
}

/// Counters of the flusher's work, for benchmarks and metrics.
#[derive(Debug, Default)]
pub struct GroupCommitStats {
    /// Sync requests completed.
    pub requests: AtomicU64,
    /// `fdatasync` calls made.
    pub syncs: AtomicU64,
    /// Rounds: each takes every request queued since the previous one.
    pub rounds: AtomicU64,
}

/// A handle to the node's flusher; cloning shares the same thread. The thread ends when the
/// last handle is dropped, after completing every request already queued.
#[derive(Clone)]
pub struct GroupCommit {
    sender: mpsc::SyncSender<SyncRequest>,
    stats: Arc<GroupCommitStats>,
}

impl GroupCommit {
    /// Starts the flusher thread.
    pub fn start() -> Result<GroupCommit> {
        let (sender, receiver) = mpsc::sync_channel(GROUP_COMMIT_QUEUE_MAX);
        let stats = Arc::new(GroupCommitStats::default());
        let thread_stats = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("raftlog-group-commit".into())
            .spawn(move || run_flusher(receiver, &thread_stats))
            .map_err(|source| StorageError::Io {
                op: "spawn group-commit thread",
                path: PathBuf::new(),
                source,
            })?;
        Ok(GroupCommit { sender, stats })
    }

    /// Queues a sync of `file`; `completion` runs on the flusher thread once it is done. Blocks
    /// while `GROUP_COMMIT_QUEUE_MAX` requests are already waiting: that is the back pressure
    /// that keeps appenders from outrunning the disk without bound.
    pub fn request_sync(
        &self,
        file: Arc<File>,
        path: Arc<PathBuf>,
        completion: Completion,
    ) -> Result<()> {
        self.sender
            .send(SyncRequest {
                file,
                path,
                completion,
            })
            .map_err(|_| StorageError::FlusherStopped)
    }

    /// The flusher's counters.
    pub fn stats(&self) -> &GroupCommitStats {
        &self.stats
    }
}

fn run_flusher(receiver: mpsc::Receiver<SyncRequest>, stats: &GroupCommitStats) {
    let mut round: Vec<SyncRequest> = Vec::new();
    while let Ok(first) = receiver.recv() {
        round.push(first);
        while round.len() < ROUND_REQUESTS_MAX {
            match receiver.try_recv() {
                Ok(request) => round.push(request),
                Err(_) => break,
            }
        }

        let mut outcomes: HashMap<*const File, Option<(io::ErrorKind, String)>> = HashMap::new();
        for request in &round {
            let key = Arc::as_ptr(&request.file);
            if outcomes.contains_key(&key) {
                continue;
            }
            let outcome = request.file.sync_data().err().map(|e| {
                tracing::error!(path = %request.path.display(), error = %e, "fdatasync failed");
                (
                    e.kind(),
                    format!("fdatasync {}: {e}", request.path.display()),
                )
            });
            stats.syncs.fetch_add(1, Ordering::Relaxed);
            outcomes.insert(key, outcome);
        }

        let completed = round.len() as u64;
        for request in round.drain(..) {
            let result = match outcomes.get(&Arc::as_ptr(&request.file)) {
                Some(Some((kind, message))) => Err(io::Error::new(*kind, message.clone())),
                _ => Ok(()),
            };
            (request.completion)(result);
        }
        stats.requests.fetch_add(completed, Ordering::Relaxed);
        stats.rounds.fetch_add(1, Ordering::Relaxed);
    }
}
