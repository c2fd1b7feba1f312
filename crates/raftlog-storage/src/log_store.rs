//! `SegmentLog`: one group's Raft log, stored in segment files, made durable by group commit.
//!
//! Durability, write path by write path:
//! - `append`: frames are written to the page cache, then the node's flusher `fdatasync`s the
//!   segment; openraft's callback fires only after that sync succeeded.
//! - segment roll: the full segment is trimmed and synced, the new one created, preallocated and
//!   synced, and the directory synced, before any entry goes into the new segment.
//! - `save_vote`: the metadata file is replaced atomically and synced before returning.
//! - `truncate`: later segments are deleted and the directory synced; the cut in the last
//!   remaining segment is synced before returning, so removed entries never come back.
//! - `purge`: the new purge point is made durable first, then whole segments are deleted. A crash
//!   in between leaves segments that the next open deletes, never a hole.
//! - `save_committed`: kept in memory and written (atomically) at most once per
//!   `committed_persist_interval`, and on drop, but never beyond the durable log: a leader
//!   commits on its followers' syncs while its own may still be running. openraft treats it as
//!   optional: a stale value only means fewer entries are re-applied at start-up before the
//!   leader's next heartbeat.
//! - `open`: the last segment is synced once, so that entries a crashed process wrote but never
//!   synced are durable before this node acknowledges or applies them.
//!
//! Reads: the newest entries (up to `RECENT_ENTRIES_BYTES_MAX`) are also kept decoded in memory
//! (`recent.rs`), because replication and apply read them again right after the append; older
//! ones are read from the segments. Appends, truncations and purges update both under one lock.
//! All logs of a node share one budget for those entries (`LogConfig::recent_entries_node_bytes`,
//! `RecentPool`).

use std::fmt::Debug;
use std::fs::File;
use std::ops::Bound;
use std::ops::Range;
use std::ops::RangeBounds;
use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Weak;
use std::time::Duration;
use std::time::Instant;

use openraft::storage::LogFlushed;
use openraft::storage::RaftLogStorage;
use openraft::EntryPayload;
use openraft::LogState;
use openraft::OptionalSend;
use openraft::RaftLogReader;
use parking_lot::Mutex;
use parking_lot::RwLock;
use raftlog_types::limits::ENTRY_BYTES_MAX;
use raftlog_types::limits::RECENT_ENTRIES_NODE_BYTES_DEFAULT;
use raftlog_types::limits::SEGMENT_BYTES_DEFAULT;
use raftlog_types::limits::SEGMENT_BYTES_MAX;
use raftlog_types::limits::SEGMENT_BYTES_MIN;
use raftlog_types::limits::SEGMENT_INDEX_INTERVAL_BYTES;
use raftlog_types::type_config::Entry;
use raftlog_types::type_config::LogId;
use raftlog_types::type_config::Vote;
use raftlog_types::GroupId;
use raftlog_types::TypeConfig;

use crate::durability::Durability;
use crate::durability::DurabilityMark;
use crate::error::raft_log_read_error;
use crate::error::raft_log_write_error;
use crate::error::raft_vote_write_error;
use crate::error::Result;
use crate::error::StorageError;
use crate::frame::encode_frame_in_place;
use crate::frame::FRAME_HEADER_BYTES;
use crate::fsutil;
use crate::fsutil::DiskRead;
use crate::group_commit::Completion;
use crate::group_commit::GroupCommit;
use crate::meta::LogMeta;
use crate::meta::MetaFile;
use crate::page_cache::PageCacheBudget;
use crate::page_cache::COUNTED_READ_BYTES_MIN;
use crate::recent::RecentBudget;
use crate::recent::RecentEntries;
use crate::segment::parse_segment_file_name;
use crate::segment::OpenOptionsForSegment;
use crate::segment::PendingFrame;
use crate::segment::Segment;
use crate::segment::SegmentRead;
use crate::segment::TailState;

type RaftStorageError = openraft::StorageError<u64>;

/// Encoded size of an entry's log id and payload tag, on top of its command.
const ENTRY_OVERHEAD_BYTES: usize = 48;

/// Tunables of a segment log.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// A segment is sealed and a new one started once it holds this many bytes.
    pub segment_bytes: u64,
    /// Preallocate each segment to `segment_bytes` so appends do not grow the file.
    pub preallocate: bool,
    /// Bytes of log between two entries of the sparse position index.
    pub index_interval_bytes: u64,
    /// How often, at most, the committed log id is written to disk.
    pub committed_persist_interval: Duration,
    /// Bytes of recent entries all logs of a node together keep decoded in memory.
    pub recent_entries_node_bytes: u64,
    /// Segment bytes all logs of a node together leave in the page cache after writing or
    /// reading them; the oldest beyond it are dropped (`page_cache.rs`). `None` leaves them
    /// all to the kernel.
    pub page_cache_node_bytes: Option<u64>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            preallocate: true,
            index_interval_bytes: SEGMENT_INDEX_INTERVAL_BYTES,
            committed_persist_interval: Duration::from_secs(1),
            recent_entries_node_bytes: RECENT_ENTRIES_NODE_BYTES_DEFAULT,
            page_cache_node_bytes: None,
        }
    }
}

/// A configuration value out of its allowed range.
#[derive(Debug, thiserror::Error)]
#[error("{key} = {value} is out of range: allowed {min} ..= {max}")]
pub struct LogConfigError {
    /// The configuration key.
    pub key: &'static str,
    /// The value given.
    pub value: u64,
    /// Smallest allowed value.
    pub min: u64,
    /// Largest allowed value.
    pub max: u64,
}

impl LogConfig {
    /// Checks every value against its allowed range.
    pub fn validate(&self) -> std::result::Result<(), LogConfigError> {
        let check = |key, value, min, max| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(LogConfigError {
                    key,
                    value,
                    min,
                    max,
                })
            }
        };
        check(
            "segment_bytes",
            self.segment_bytes,
            SEGMENT_BYTES_MIN,
            SEGMENT_BYTES_MAX,
        )?;
        check(
            "index_interval_bytes",
            self.index_interval_bytes,
            1,
            self.segment_bytes,
        )?;
        Ok(())
    }

    fn preallocate_bytes(&self) -> u64 {
        if self.preallocate {
            self.segment_bytes
        } else {
            0
        }
    }
}

/// The Raft log of one group. Cloning gives another handle to the same log: openraft's
/// replication tasks read through clones while the Raft core appends.
#[derive(Clone)]
pub struct SegmentLog {
    shared: Arc<Shared>,
}

struct Shared {
    group: GroupId,
    log_dir: PathBuf,
    config: LogConfig,
    flusher: GroupCommit,
    state: RwLock<LogFiles>,
    meta: Mutex<MetaState>,
    durability: DurabilityMark,
    /// The node's logs, which share one budget for recent entries.
    recent_pool: Arc<RecentPool>,
    /// When this log last appended, on `recent_pool`'s clock; `HOLDS_NO_RECENT` once its
    /// recent entries were given up for another log's.
    last_append: AtomicU64,
    /// The node's budget of segment bytes in the page cache.
    page_cache: Arc<PageCacheBudget>,
}

/// `Shared::last_append` of a log whose recent entries were dropped for another log's.
const HOLDS_NO_RECENT: u64 = u64::MAX;

/// Every log of a node, and the budget their recent entries share.
pub(crate) struct RecentPool {
    budget: Arc<RecentBudget>,
    logs: Mutex<Vec<Weak<Shared>>>,
    clock: AtomicU64,
}

impl RecentPool {
    /// A pool whose logs may keep `limit` bytes of recent entries together.
    pub(crate) fn new(limit: u64) -> Arc<RecentPool> {
        Arc::new(RecentPool {
            budget: Arc::new(RecentBudget::new(limit)),
            logs: Mutex::new(Vec::new()),
            clock: AtomicU64::new(0),
        })
    }

    /// Bytes of recent entries the node's logs hold now.
    pub(crate) fn held(&self) -> u64 {
        self.budget.held()
    }

    fn register(&self, log: &Arc<Shared>) {
        let mut logs = self.logs.lock();
        logs.retain(|log| log.strong_count() > 0);
        logs.push(Arc::downgrade(log));
    }

    /// Brings the node back within its budget after `appender` (whose state is locked, its
    /// recent entries `own`) appended: the recent entries of the logs that appended least
    /// recently go first, since the busy logs' entries are the ones about to be read. A log that
    /// is being read right now is passed over rather than waited for (its reader may be waiting
    /// for ours), and if no other log can give anything up, the appender drops its own oldest.
    fn make_room(&self, appender: &Arc<Shared>, own: &mut RecentEntries) {
        let mut passed_over: Vec<*const Shared> = Vec::new();
        while self.budget.is_exceeded() {
            let victim = {
                let logs = self.logs.lock();
                logs.iter()
                    .filter_map(Weak::upgrade)
                    .filter(|log| {
                        !Arc::ptr_eq(log, appender)
                            && log.last_append.load(Ordering::Relaxed) != HOLDS_NO_RECENT
                            && !passed_over.contains(&Arc::as_ptr(log))
                    })
                    .min_by_key(|log| log.last_append.load(Ordering::Relaxed))
            };
            let Some(victim) = victim else {
                while self.budget.is_exceeded() && own.evict_oldest() {}
                return;
            };
            let locked = victim.state.try_write();
            if let Some(mut files) = locked {
                files.recent.clear();
                victim.last_append.store(HOLDS_NO_RECENT, Ordering::Relaxed);
            } else {
                passed_over.push(Arc::as_ptr(&victim));
            }
        }
    }
}

struct LogFiles {
    /// Segments in index order; only the last one is written to.
    segments: Vec<Segment>,
    /// Log id of the last entry, or the last purged one if no entry is left.
    last_log_id: Option<LogId>,
    /// Entries up to and including this one are gone.
    last_purged: Option<LogId>,
    /// The newest entries, decoded: what replication and apply read right after an append.
    recent: RecentEntries,
}

struct MetaState {
    file: MetaFile,
    /// The committed log id as openraft last reported it; may be ahead of the file.
    committed: Option<LogId>,
    committed_written_at: Option<Instant>,
}

impl MetaState {
    /// The committed log id to write down: openraft's, unless this node's own log is not yet
    /// durable that far (then the one already on disk).
    fn committed_to_store(&self, durable_next: u64) -> Option<LogId> {
        match self.committed {
            Some(id) if id.index >= durable_next => self.file.stored().committed,
            committed => committed,
        }
    }
}

/// What `SegmentLog::open` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Number of segment files in use.
    pub segments: usize,
    /// Segments left over from an interrupted purge and deleted.
    pub purged_segments_removed: usize,
    /// How the tail of the last segment was found.
    pub tail: TailState,
}

impl LogFiles {
    fn next_index(&self) -> Option<u64> {
        self.last_log_id.map(|id| id.index + 1)
    }
}

impl SegmentLog {
    /// Opens (or creates) the log stored under `group_dir`.
    ///
    /// Every frame is checked. A torn final write is cut off; any other damage, and any gap
    /// between segments, is an error naming the file and position, with nothing changed on disk.
    pub(crate) fn open(
        group: GroupId,
        group_dir: &Path,
        config: LogConfig,
        flusher: GroupCommit,
        recent_pool: Arc<RecentPool>,
        page_cache: Arc<PageCacheBudget>,
    ) -> Result<(SegmentLog, OpenReport)> {
        let log_dir = group_dir.join("log");
        fsutil::ensure_dir(group_dir)?;
        fsutil::ensure_dir(&log_dir)?;
        let meta_file = MetaFile::open(group_dir)?;
        let stored = meta_file.stored().clone();
        let purged_index = stored.last_purged.map(|id| id.index);

        let mut bases = Vec::new();
        for dir_entry in
            std::fs::read_dir(&log_dir).map_err(StorageError::io("list directory", &log_dir))?
        {
            let dir_entry = dir_entry.map_err(StorageError::io("list directory", &log_dir))?;
            if let Some(base) = dir_entry
                .file_name()
                .to_str()
                .and_then(parse_segment_file_name)
            {
                bases.push(base);
            }
        }
        bases.sort_unstable();

        // A segment whose successor starts at or below purged + 1 holds only purged entries:
        // a purge was interrupted after its purge point became durable.
        let mut purged_segments_removed = 0;
        if let Some(purged) = purged_index {
            while bases.len() >= 2 && bases[1] <= purged + 1 {
                let path = log_dir.join(crate::segment::segment_file_name(bases[0]));
                std::fs::remove_file(&path)
                    .map_err(StorageError::io("remove purged segment", &path))?;
                bases.remove(0);
                purged_segments_removed += 1;
            }
            if purged_segments_removed > 0 {
                fsutil::sync_dir(&log_dir)?;
            }
        }

        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
        let mut tail = TailState::Clean;
        let mut last_log_id = stored.last_purged;
        for (position, base) in bases.iter().enumerate() {
            let path = log_dir.join(crate::segment::segment_file_name(*base));
            if let Some(previous) = segments.last() {
                if previous.next_index != *base {
                    return Err(StorageError::Corrupt {
                        path,
                        position: 0,
                        reason: format!(
                            "segment starts at index {base} but the previous one ends before {}: entries are missing",
                            previous.next_index
                        ),
                    });
                }
            } else if let Some(purged) = purged_index {
                if *base > purged + 1 {
                    return Err(StorageError::Corrupt {
                        path,
                        position: 0,
                        reason: format!("first segment starts at index {base}, but only entries up to {purged} were purged"),
                    });
                }
            }
            let options = OpenOptionsForSegment {
                is_last: position + 1 == bases.len(),
                committed_index: stored.committed.map(|id| id.index),
                index_interval_bytes: config.index_interval_bytes,
            };
            let (segment, segment_tail) = Segment::open(&path, *base, &options)?;
            if let TailState::TornTailTruncated { position, reason } = &segment_tail {
                tracing::warn!(group = group.0, path = %path.display(), position, reason = %reason, "cut off a torn write at the log's tail");
            }
            tail = segment_tail;
            if let Some(id) = segment.last_log_id {
                if purged_index.is_none_or(|purged| id.index > purged) {
                    last_log_id = Some(id);
                }
            }
            segments.push(segment);
        }
        if let Some(active) = segments.last_mut() {
            active.reopen_for_append(config.preallocate_bytes())?;
            active
                .file
                .sync_data()
                .map_err(StorageError::io("fdatasync segment", &active.path))?;
        }

        tracing::info!(group = group.0, segments = segments.len(), last_index = ?last_log_id.map(|id| id.index), "opened log");
        let report = OpenReport {
            segments: segments.len(),
            purged_segments_removed,
            tail,
        };
        let shared = Shared {
            group,
            log_dir,
            flusher,
            state: RwLock::new(LogFiles {
                segments,
                last_log_id,
                last_purged: stored.last_purged,
                recent: RecentEntries::new(Arc::clone(&recent_pool.budget)),
            }),
            meta: Mutex::new(MetaState {
                committed: stored.committed,
                file: meta_file,
                committed_written_at: None,
            }),
            config,
            durability: DurabilityMark::new(last_log_id.map_or(0, |id| id.index + 1)),
            recent_pool: Arc::clone(&recent_pool),
            last_append: AtomicU64::new(HOLDS_NO_RECENT),
            page_cache,
        };
        let shared = Arc::new(shared);
        recent_pool.register(&shared);
        Ok((SegmentLog { shared }, report))
    }

    /// The group this log belongs to.
    pub fn group(&self) -> GroupId {
        self.shared.group
    }

    /// Log id of the last entry (or the last purged one), as openraft's `get_log_state` reports.
    pub fn last_log_id(&self) -> Option<LogId> {
        self.shared.state.read().last_log_id
    }

    /// Last purged log id.
    pub fn last_purged_log_id(&self) -> Option<LogId> {
        self.shared.state.read().last_purged
    }

    /// Appends entries, which must continue the log without a gap. They are readable when this
    /// returns; `on_durable` runs once they are fsynced (or with the error that prevented it).
    pub fn append_entries(
        &self,
        entries: impl IntoIterator<Item = Entry>,
        on_durable: Completion,
    ) -> Result<()> {
        let shared = &self.shared;
        let mut files = shared.state.write();
        let mut buffer: Vec<u8> = Vec::new();
        let mut frames: Vec<PendingFrame> = Vec::new();
        // An empty log accepts any first index, unless an (empty) segment already names it.
        let mut expected = files
            .next_index()
            .or_else(|| files.segments.last().map(|s| s.next_index));
        let purged_index = files.last_purged.map(|id| id.index);
        // Kept for `recent` once written; an append that fails leaves `recent` as it was.
        let mut appended: Vec<(Entry, u64)> = Vec::new();
        // The uncounted ends of segments sealed by this append, synced by the seal.
        let mut sealed_rests = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            // Purged entries are committed and applied; Raft's log matching means a re-sent one
            // is the same entry, so there is nothing to store. (openraft's suite does this.)
            if purged_index.is_some_and(|purged| index <= purged) {
                continue;
            }
            if let Some(expected) = expected {
                if index != expected {
                    return Err(StorageError::Hole {
                        group: shared.group,
                        reason: format!("appending entry {index} where {expected} is next"),
                    });
                }
            }
            expected = Some(index + 1);

            let frame_start = buffer.len();
            if let EntryPayload::Normal(command) = &entry.payload {
                buffer.reserve(
                    FRAME_HEADER_BYTES + ENTRY_OVERHEAD_BYTES + command.encoded_bytes_hint(),
                );
            }
            buffer.resize(frame_start + FRAME_HEADER_BYTES, 0);
            buffer =
                postcard::to_extend(&entry, buffer).map_err(|source| StorageError::Encode {
                    group: shared.group,
                    index,
                    source,
                })?;
            let frame_bytes = (buffer.len() - frame_start) as u64;
            if frame_bytes - FRAME_HEADER_BYTES as u64 > ENTRY_BYTES_MAX {
                return Err(StorageError::EntryTooLarge {
                    group: shared.group,
                    index,
                    size_bytes: frame_bytes,
                    limit_bytes: ENTRY_BYTES_MAX,
                });
            }
            encode_frame_in_place(&mut buffer[frame_start..]);

            let needs_new_segment = match files.segments.last() {
                None => true,
                Some(active) => {
                    let used = active.write_pos + frame_start as u64;
                    let has_entries = active.entry_count() > 0 || frame_start > 0;
                    has_entries && used + frame_bytes > shared.config.segment_bytes
                }
            };
            if needs_new_segment {
                if let Some(active) = files.segments.last_mut() {
                    active.write_frames(&buffer[..frame_start], &frames)?;
                    active.seal()?;
                    if let Some(rest) = active.take_rest_after_seal() {
                        sealed_rests.push((Arc::clone(&active.file), rest));
                    }
                }
                buffer.drain(..frame_start);
                frames.clear();
                let segment = Segment::create(
                    &shared.log_dir,
                    index,
                    shared.config.preallocate_bytes(),
                    shared.config.index_interval_bytes,
                )?;
                tracing::debug!(group = shared.group.0, index, path = %segment.path.display(), "rolled to a new segment");
                files.segments.push(segment);
            }
            let buffer_pos = (buffer.len() as u64) - frame_bytes;
            frames.push(PendingFrame {
                buffer_pos,
                log_id: entry.log_id,
            });
            appended.push((entry, frame_bytes));
        }
        let Some(last) = frames.last().map(|f| f.log_id) else {
            drop(files);
            on_durable(Ok(()));
            return Ok(());
        };
        let Some(active) = files.segments.last_mut() else {
            return Err(StorageError::Hole {
                group: shared.group,
                reason: "no segment to write to".into(),
            });
        };
        active.write_frames(&buffer, &frames)?;
        let written_run = active.take_uncounted_run();
        let file = Arc::clone(&active.file);
        let path = Arc::new(active.path.clone());
        files.last_log_id = Some(last);
        for (entry, encoded_bytes) in appended {
            files.recent.push(entry, encoded_bytes);
        }
        let pool = &shared.recent_pool;
        shared.last_append.store(
            pool.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        if pool.budget.is_exceeded() {
            pool.make_room(&self.shared, &mut files.recent);
        }
        let epoch = shared.durability.written(last.index);
        drop(files);
        for (file, rest) in sealed_rests {
            shared.page_cache.note_cached(&file, rest);
        }
        let durable = Arc::clone(&self.shared);
        let synced_file = Arc::clone(&file);
        shared.flusher.request_sync(
            file,
            path,
            Box::new(move |result| {
                let synced = result.is_ok();
                if synced {
                    durable.durability.synced(epoch, last.index);
                }
                on_durable(result);
                // After the acknowledgement: the page-cache advice must not delay it.
                if let (true, Some(run)) = (synced, written_run) {
                    durable.page_cache.note_cached(&synced_file, run);
                }
            }),
        )
    }

    /// Encoded bytes of the recent entries this log keeps in memory.
    pub fn recent_entries_bytes(&self) -> u64 {
        self.shared.state.read().recent.bytes()
    }

    /// How far this log is durable, for its state machine and its replies to leaders.
    pub fn durability(&self) -> Durability {
        self.shared.durability.subscribe(self.shared.group)
    }

    /// Reads the entries in `range` that exist (purged and future ones are skipped).
    pub fn read_entries<RB: RangeBounds<u64>>(&self, range: RB) -> Result<Vec<Entry>> {
        // Segments are read under the lock: these may be entries a truncation is removing.
        let files = self.shared.state.read();
        let plan = EntriesRead::plan(&files, range);
        let read = plan.run(DiskRead::Wait);
        drop(files);
        self.count_read(read)
    }

    /// Reads committed entries in `range`, as [`SegmentLog::read_entries`] does, but reads the
    /// segment files after releasing the log's lock, so a read that waits for the disk holds up
    /// no append; with `DiskRead::CachedOnly` it never waits for the disk at all
    /// (`StorageError::NotCached`). Only for entries that cannot be truncated meanwhile.
    pub fn read_committed_entries(&self, range: Range<u64>, disk: DiskRead) -> Result<Vec<Entry>> {
        let plan = EntriesRead::plan(&self.shared.state.read(), range);
        self.count_read(plan.run(disk))
    }

    /// Counts the larger segment reads against the page-cache budget (outside the lock: a
    /// release walks the file's cached pages).
    fn count_read(&self, read: Result<(Vec<Entry>, Vec<CountedRead>)>) -> Result<Vec<Entry>> {
        let (entries, counted) = read?;
        for (file, bytes) in counted {
            self.shared.page_cache.note_cached(&file, bytes);
        }
        Ok(entries)
    }

    /// Removes entries from `index` on; durable when this returns.
    pub fn truncate_from(&self, index: u64) -> Result<()> {
        let shared = &self.shared;
        let mut files = shared.state.write();
        // Only a cut that removes entries syncs what remains (below); others change nothing.
        let removes_entries = files.last_log_id.is_some_and(|last| index <= last.index);
        files.recent.truncate_from(index);
        let mut removed_files = false;
        while files.segments.last().is_some_and(|s| s.base_index >= index) {
            if let Some(segment) = files.segments.pop() {
                std::fs::remove_file(&segment.path)
                    .map_err(StorageError::io("remove truncated segment", &segment.path))?;
                removed_files = true;
            }
        }
        if removed_files {
            fsutil::sync_dir(&shared.log_dir)?;
        }
        let last_purged = files.last_purged;
        let preallocate_bytes = shared.config.preallocate_bytes();
        let last_log_id = match files.segments.last_mut() {
            Some(active) => {
                active.truncate_from(index, preallocate_bytes)?;
                if removed_files {
                    active.reopen_for_append(preallocate_bytes)?;
                }
                active.last_log_id
            }
            None => None,
        };
        files.last_log_id = match (last_log_id, last_purged) {
            (Some(id), Some(purged)) if id.index <= purged.index => Some(purged),
            (None, purged) => purged,
            (id, _) => id,
        };
        if removes_entries {
            shared
                .durability
                .truncated(files.last_log_id.map_or(0, |id| id.index + 1));
        }
        tracing::info!(group = shared.group.0, index, "truncated log");
        Ok(())
    }

    /// Purges entries up to and including `log_id`; the purge point is durable first.
    pub fn purge_upto(&self, log_id: LogId) -> Result<()> {
        let shared = &self.shared;
        {
            let mut meta = shared.meta.lock();
            let mut next = meta.file.stored().clone();
            next.last_purged = Some(log_id);
            next.committed = meta.committed_to_store(shared.durability.durable_next());
            meta.file.store(next)?;
            meta.committed_written_at = Some(Instant::now());
        }
        let mut files = shared.state.write();
        files.last_purged = Some(log_id);
        files.recent.purge_upto(log_id.index);
        if files
            .last_log_id
            .is_none_or(|last| last.index < log_id.index)
        {
            files.last_log_id = Some(log_id);
        }
        shared.durability.purged(log_id.index);
        let mut removed = 0;
        while files
            .segments
            .first()
            .is_some_and(|s| s.next_index <= log_id.index + 1)
        {
            let segment = files.segments.remove(0);
            std::fs::remove_file(&segment.path)
                .map_err(StorageError::io("remove purged segment", &segment.path))?;
            removed += 1;
        }
        if removed > 0 {
            fsutil::sync_dir(&shared.log_dir)?;
        }
        tracing::info!(
            group = shared.group.0,
            index = log_id.index,
            segments_removed = removed,
            "purged log"
        );
        Ok(())
    }

    /// Saves the vote; durable when this returns.
    pub fn store_vote(&self, vote: &Vote) -> Result<()> {
        let mut meta = self.shared.meta.lock();
        let mut next = meta.file.stored().clone();
        next.vote = Some(*vote);
        next.committed = meta.committed_to_store(self.shared.durability.durable_next());
        meta.file.store(next)?;
        meta.committed_written_at = Some(Instant::now());
        Ok(())
    }

    /// The last saved vote.
    pub fn vote(&self) -> Option<Vote> {
        self.shared.meta.lock().file.stored().vote
    }

    /// Records the committed log id; written to disk at most once per configured interval.
    pub fn store_committed(&self, committed: Option<LogId>) -> Result<()> {
        if self.note_committed(committed) {
            self.write_committed()?;
        }
        Ok(())
    }

    /// Records the committed log id in memory; true if it is due to be written to disk.
    fn note_committed(&self, committed: Option<LogId>) -> bool {
        let mut meta = self.shared.meta.lock();
        meta.committed = committed;
        let due = meta
            .committed_written_at
            .is_none_or(|at| at.elapsed() >= self.shared.config.committed_persist_interval);
        due && meta.file.stored().committed
            != meta.committed_to_store(self.shared.durability.durable_next())
    }

    /// Writes the committed log id recorded last (as far as the log is durable), if it changed.
    fn write_committed(&self) -> Result<()> {
        let mut meta = self.shared.meta.lock();
        let committed = meta.committed_to_store(self.shared.durability.durable_next());
        if meta.file.stored().committed != committed {
            let next = LogMeta {
                committed,
                ..meta.file.stored().clone()
            };
            meta.file.store(next)?;
            meta.committed_written_at = Some(Instant::now());
        }
        Ok(())
    }

    /// Runs a metadata write, which ends in an `fdatasync`, on tokio's blocking pool. On a
    /// runtime worker it stalls every task queued behind it: when a node dies, each survivor
    /// saves hundreds of votes within a few hundred milliseconds, and on a busy host those
    /// stalls kept the peer server from accepting vote requests until their senders timed out.
    async fn write_meta_off_runtime(
        &self,
        write: impl FnOnce(&SegmentLog) -> Result<()> + Send + 'static,
    ) -> Result<()> {
        let log = self.clone();
        tokio::task::spawn_blocking(move || write(&log))
            .await
            .map_err(|source| StorageError::MetaWriteAbandoned {
                group: self.shared.group,
                source,
            })?
    }

    /// The committed log id last recorded.
    pub fn committed(&self) -> Option<LogId> {
        self.shared.meta.lock().committed
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let durable_next = self.durability.durable_next();
        let meta = self.meta.get_mut();
        let committed = meta.committed_to_store(durable_next);
        if meta.file.stored().committed != committed {
            let next = LogMeta {
                committed,
                ..meta.file.stored().clone()
            };
            if let Err(error) = meta.file.store(next) {
                tracing::warn!(group = self.group.0, %error, "could not write the committed log id on close");
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for SegmentLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> std::result::Result<Vec<Entry>, RaftStorageError> {
        self.read_entries(range)
            .map_err(|e| raft_log_read_error(&e))
    }
}

impl RaftLogStorage<TypeConfig> for SegmentLog {
    type LogReader = SegmentLog;

    async fn get_log_state(
        &mut self,
    ) -> std::result::Result<LogState<TypeConfig>, RaftStorageError> {
        let files = self.shared.state.read();
        Ok(LogState {
            last_purged_log_id: files.last_purged,
            last_log_id: files.last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> std::result::Result<(), RaftStorageError> {
        let vote = *vote;
        self.write_meta_off_runtime(move |log| log.store_vote(&vote))
            .await
            .map_err(|e| raft_vote_write_error(&e))
    }

    async fn read_vote(&mut self) -> std::result::Result<Option<Vote>, RaftStorageError> {
        Ok(self.vote())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId>,
    ) -> std::result::Result<(), RaftStorageError> {
        if self.note_committed(committed) {
            self.write_meta_off_runtime(SegmentLog::write_committed)
                .await
                .map_err(|e| raft_log_write_error(&e))?;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> std::result::Result<Option<LogId>, RaftStorageError> {
        Ok(self.committed())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> std::result::Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let completion: Completion = Box::new(move |result| callback.log_io_completed(result));
        self.append_entries(entries, completion)
            .map_err(|e| raft_log_write_error(&e))
    }

    async fn truncate(&mut self, log_id: LogId) -> std::result::Result<(), RaftStorageError> {
        self.truncate_from(log_id.index)
            .map_err(|e| raft_log_write_error(&e))
    }

    async fn purge(&mut self, log_id: LogId) -> std::result::Result<(), RaftStorageError> {
        self.purge_upto(log_id)
            .map_err(|e| raft_log_write_error(&e))
    }
}

/// A segment file and the bytes read from it, to count against the page-cache budget.
type CountedRead = (Arc<File>, Range<u64>);

/// The entries of a range, split into segment reads and the entries already in memory.
struct EntriesRead {
    segments: Vec<SegmentRead>,
    from_memory: Vec<Entry>,
}

impl EntriesRead {
    /// The reads of the entries in `range` that exist (purged and future ones are skipped).
    fn plan<RB: RangeBounds<u64>>(files: &LogFiles, range: RB) -> EntriesRead {
        let mut plan = EntriesRead {
            segments: Vec::new(),
            from_memory: Vec::new(),
        };
        let first_kept = files.last_purged.map_or(0, |id| id.index + 1);
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        }
        .max(first_kept);
        let end = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        }
        .min(files.next_index().unwrap_or(0));
        if start >= end {
            return plan;
        }
        // Whatever `recent` holds comes from memory; only older entries from the segments.
        let disk_end = files
            .recent
            .first_index()
            .map_or(end, |first| first.clamp(start, end));
        if start < disk_end {
            let first = files.segments.partition_point(|s| s.next_index <= start);
            for segment in &files.segments[first..] {
                if segment.base_index >= disk_end {
                    break;
                }
                plan.segments.extend(segment.plan_read(start, disk_end));
            }
        }
        files.recent.read(disk_end, end, &mut plan.from_memory);
        plan
    }

    /// The entries in order, and the segment reads large enough to count against the budget.
    fn run(self, disk: DiskRead) -> Result<(Vec<Entry>, Vec<CountedRead>)> {
        let mut entries = Vec::new();
        let mut counted = Vec::new();
        for read in self.segments {
            let file = Arc::clone(&read.file);
            let (read, bytes) = read.run(disk)?;
            if bytes.end - bytes.start >= COUNTED_READ_BYTES_MIN {
                counted.push((file, bytes));
            }
            entries.extend(read);
        }
        entries.extend(self.from_memory);
        Ok((entries, counted))
    }
}
