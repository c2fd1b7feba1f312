//! Group commit: one flusher thread per node makes appended entries durable.
//!
//! Appenders write their frames into the page cache and hand the flusher a request. The flusher
//! takes every request queued since its last round and calls `fdatasync` once per distinct file;
//! it runs the requests' completions in the order they were queued, each as soon as the files
//! of it and of every request before it are synced. Many appends, across all groups of the
//! node, so share one sync per file.
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
        GroupCommit::start_with(None)
    }

    /// Starts the flusher thread; with `sync_delay_file` (a test failpoint, see
    /// [`SYNC_DELAY_FAILPOINT_ENV`]), each sync first sleeps the milliseconds that file holds,
    /// if it exists.
    pub fn start_with(sync_delay_file: Option<PathBuf>) -> Result<GroupCommit> {
        let (sender, receiver) = mpsc::sync_channel(GROUP_COMMIT_QUEUE_MAX);
        let stats = Arc::new(GroupCommitStats::default());
        let thread_stats = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("raftlog-group-commit".into())
            .spawn(move || run_flusher(receiver, &thread_stats, sync_delay_file))
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

/// The environment variable that arms the sync-delay failpoint: set to `1`, a node's flusher
/// sleeps before each sync for the milliseconds written in `<data dir>/`[`SYNC_DELAY_FILE`]
/// (none while the file is absent). A test uses it on one node to make its own syncs lag its
/// followers' (the power-loss test of finding 1 in the safety issue); the delay is in the
/// flusher, so appends and replication go on meanwhile, as they do on a slow disk.
pub const SYNC_DELAY_FAILPOINT_ENV: &str = "RAFTLOG_FAILPOINT_SYNC_DELAY";
/// The file, in a node's data dir, that the sync-delay failpoint reads.
pub const SYNC_DELAY_FILE: &str = "failpoint-sync-delay-ms";

/// The sync-delay failpoint's file for `data_dir`, if the failpoint is armed.
pub(crate) fn sync_delay_failpoint(data_dir: &std::path::Path) -> Option<PathBuf> {
    (std::env::var_os(SYNC_DELAY_FAILPOINT_ENV).is_some_and(|value| value == "1"))
        .then(|| data_dir.join(SYNC_DELAY_FILE))
}

fn run_flusher(
    receiver: mpsc::Receiver<SyncRequest>,
    stats: &GroupCommitStats,
    sync_delay_file: Option<PathBuf>,
) {
    run_rounds(receiver, stats, |file| {
        if let Some(path) = &sync_delay_file {
            let delay_ms = std::fs::read_to_string(path)
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok());
            if let Some(delay_ms) = delay_ms {
                std::thread::sleep(std::time::Duration::from_millis(delay_ms));
            }
        }
        file.sync_data()
    });
}

/// What one file's sync came to: `None` if it succeeded, else the error to give each request.
type SyncOutcome = Option<(io::ErrorKind, String)>;

/// Takes rounds of requests and syncs each distinct file once per round, in the order in which
/// the files first appear in the queue. Completions run in queue order, each as soon as its
/// own file and every earlier request's file are synced: a request for the round's first file
/// does not wait for the syncs of files queued after it (measured with scenario b3 in
/// benchmarks/HISTORY.md), and a group's later
/// entries, even in a new segment, are still never reported durable before its earlier ones.
fn run_rounds(
    receiver: mpsc::Receiver<SyncRequest>,
    stats: &GroupCommitStats,
    sync: impl Fn(&File) -> io::Result<()>,
) {
    let mut round: Vec<SyncRequest> = Vec::new();
    let mut synced_waiting: Vec<SyncRequest> = Vec::new();
    while let Ok(first) = receiver.recv() {
        round.push(first);
        while round.len() < ROUND_REQUESTS_MAX {
            match receiver.try_recv() {
                Ok(request) => round.push(request),
                Err(_) => break,
            }
        }

        let mut outcomes: HashMap<*const File, SyncOutcome> = HashMap::new();
        for request in round.drain(..) {
            let key = Arc::as_ptr(&request.file);
            if !outcomes.contains_key(&key) {
                complete(synced_waiting.drain(..), &outcomes, stats);
                let outcome = sync(&request.file).err().map(|e| {
                    tracing::error!(path = %request.path.display(), error = %e, "fdatasync failed");
                    (
                        e.kind(),
                        format!("fdatasync {}: {e}", request.path.display()),
                    )
                });
                stats.syncs.fetch_add(1, Ordering::Relaxed);
                outcomes.insert(key, outcome);
            }
            synced_waiting.push(request);
        }
        complete(synced_waiting.drain(..), &outcomes, stats);
        stats.rounds.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs the completions of requests whose files are synced, in queue order.
fn complete(
    requests: impl Iterator<Item = SyncRequest>,
    outcomes: &HashMap<*const File, SyncOutcome>,
    stats: &GroupCommitStats,
) {
    for request in requests {
        let result = match outcomes.get(&Arc::as_ptr(&request.file)) {
            Some(Some((kind, message))) => Err(io::Error::new(*kind, message.clone())),
            _ => Ok(()),
        };
        // Counted before the completion runs: a caller woken by it reads the count next.
        stats.requests.fetch_add(1, Ordering::Relaxed);
        (request.completion)(result);
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use parking_lot::Mutex;

    use super::*;

    #[test]
    fn a_request_completes_before_later_files_are_synced_and_in_queue_order() -> anyhow::Result<()>
    {
        let dir = tempfile::tempdir()?;
        let open = |name: &str| -> io::Result<(Arc<File>, Arc<PathBuf>)> {
            let path = dir.path().join(name);
            Ok((Arc::new(File::create(&path)?), Arc::new(path)))
        };
        let (file_a, path_a) = open("a.seg")?;
        let (file_b, path_b) = open("b.seg")?;
        let names = HashMap::from([(file_a.as_raw_fd(), "a"), (file_b.as_raw_fd(), "b")]);
        let events = Arc::new(Mutex::new(Vec::<String>::new()));

        let (sender, receiver) = mpsc::sync_channel(8);
        for (name, file, path) in [
            ("a1", &file_a, &path_a),
            ("b1", &file_b, &path_b),
            ("a2", &file_a, &path_a),
        ] {
            let events = Arc::clone(&events);
            let completion: Completion = Box::new(move |result| {
                let outcome = match result {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => format!("error: {e}"),
                };
                events.lock().push(format!("{name} {outcome}"));
            });
            sender
                .send(SyncRequest {
                    file: Arc::clone(file),
                    path: Arc::clone(path),
                    completion,
                })
                .map_err(|_| anyhow::anyhow!("the flusher's queue is closed"))?;
        }
        drop(sender);

        let stats = GroupCommitStats::default();
        let sync_events = Arc::clone(&events);
        run_rounds(receiver, &stats, |file| {
            let name = names[&file.as_raw_fd()];
            sync_events.lock().push(format!("sync {name}"));
            if name == "b" {
                return Err(io::Error::other("disk on fire"));
            }
            Ok(())
        });

        let path_b = path_b.display();
        assert_eq!(
            *events.lock(),
            [
                "sync a".to_owned(),
                "a1 ok".to_owned(),
                "sync b".to_owned(),
                format!("b1 error: fdatasync {path_b}: disk on fire"),
                "a2 ok".to_owned(),
            ]
        );
        assert_eq!(stats.syncs.load(Ordering::Relaxed), 2);
        assert_eq!(stats.requests.load(Ordering::Relaxed), 3);
        assert_eq!(stats.rounds.load(Ordering::Relaxed), 1);
        Ok(())
    }
}
