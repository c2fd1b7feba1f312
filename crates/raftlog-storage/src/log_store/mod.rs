//! `SegmentLog`: one group's Raft log, stored in segment files, made durable by group commit.
//!
//! One log is a directory of segment files (`segment.rs`) and a metadata file (`meta.rs`),
//! shared by every clone of its `SegmentLog`. The rooms, each stating the durability of the
//! write paths it holds:
//! - `config.rs`: the tunables ([`LogConfig`]) and their ranges;
//! - `open.rs`: `open` — finishing an interrupted purge, cutting off a torn tail, syncing the last
//!   segment once;
//! - `append.rs`: `append` and the segment roll, synced by the node's flusher before openraft's
//!   callback fires;
//! - `truncate.rs`: `truncate` and `purge`, durable when they return;
//! - `hard_state.rs`: `save_vote` (durable when it returns) and `save_committed` (written at
//!   most once per interval, never beyond the durable log);
//! - `read.rs`: the reads and their planner (`EntriesRead`); no writes;
//! - `recent_pool.rs`: the node-wide budget of decoded recent entries; memory only;
//! - `openraft_adapter.rs`: `RaftLogReader` and `RaftLogStorage`, mapping openraft's calls onto
//!   the above.
//!
//! Reads: the newest entries (up to `RECENT_ENTRIES_BYTES_MAX`) are also kept decoded in memory
//! (`recent.rs`), because replication and apply read them again right after the append; older
//! ones are read from the segments. Appends, truncations and purges update both under one lock.
//! All logs of a node share one budget for those entries (`LogConfig::recent_entries_node_bytes`,
//! `RecentPool`).

mod append;
mod config;
mod hard_state;
mod open;
mod openraft_adapter;
mod read;
mod recent_pool;
mod truncate;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use parking_lot::RwLock;
use raftlog_types::limits::SEGMENT_BYTES_MAX;
use raftlog_types::limits::SEGMENT_BYTES_MIN;
use raftlog_types::type_config::LogId;
use raftlog_types::GroupId;

pub use self::config::LogConfig;
pub use self::config::LogConfigError;
pub(crate) use self::open::NodeLogs;
pub use self::open::OpenReport;
pub(crate) use self::recent_pool::RecentPool;
use crate::durability::Durability;
use crate::durability::DurabilityMark;
use crate::file_remover::FileRemover;
use crate::group_commit::GroupCommit;
use crate::meta::MetaFile;
use crate::page_cache::PageCacheBudget;
use crate::recent::RecentEntries;
use crate::segment::Segment;

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
    /// Unlinks purged segments off the core's path.
    remover: FileRemover,
    state: RwLock<LogFiles>,
    meta: Mutex<MetaState>,
    /// Shared with the completions of syncs in flight, which must not keep the whole log (and
    /// its recent entries) alive after its last handle is gone.
    durability: Arc<DurabilityMark>,
    /// The node's logs, which share one budget for recent entries.
    recent_pool: Arc<RecentPool>,
    /// When this log last appended, on `recent_pool`'s clock; `HOLDS_NO_RECENT` once its
    /// recent entries were given up for another log's.
    last_append: AtomicU64,
    /// The node's budget of segment bytes in the page cache.
    page_cache: Arc<PageCacheBudget>,
    /// Size at which the active segment is sealed: `config.segment_bytes` at first, then the
    /// topic's `segment.bytes` as the node learns it (`SegmentLog::set_segment_bytes`).
    segment_bytes: AtomicU64,
    /// Age in ms at which the active segment is sealed at the next append (0: never): the
    /// topic's `segment.ms`, so that time retention can delete a slow partition's old records.
    segment_ms: AtomicU64,
}

impl Shared {
    /// The active segment is sealed once it holds this many bytes.
    fn segment_bytes(&self) -> u64 {
        self.segment_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How far a new segment may be preallocated: 0 when preallocation is off.
    fn preallocate_bytes(&self) -> u64 {
        if self.config.preallocate {
            self.segment_bytes()
        } else {
            0
        }
    }
}

/// One segment as retention sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentSpan {
    /// Index of its first entry.
    pub base_index: u64,
    /// Index after its last entry.
    pub next_index: u64,
    /// Bytes of log it holds.
    pub bytes: u64,
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
    /// When the active segment was created or opened (its age, for `segment.ms`).
    active_since: Instant,
}

struct MetaState {
    file: MetaFile,
    /// The committed log id as openraft last reported it; may be ahead of the file.
    committed: Option<LogId>,
    committed_written_at: Option<Instant>,
}

impl LogFiles {
    fn next_index(&self) -> Option<u64> {
        self.last_log_id.map(|id| id.index + 1)
    }
}

impl SegmentLog {
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

    /// Encoded bytes of the recent entries this log keeps in memory.
    pub fn recent_entries_bytes(&self) -> u64 {
        self.shared.state.read().recent.bytes()
    }

    /// How far this log is durable, for its state machine and its replies to leaders.
    pub fn durability(&self) -> Durability {
        self.shared.durability.subscribe(self.shared.group)
    }

    /// Seals segments at `bytes` from the next append on (clamped to
    /// `SEGMENT_BYTES_MIN ..= SEGMENT_BYTES_MAX`): the topic's `segment.bytes`. Segments already
    /// sealed keep their size.
    pub fn set_segment_bytes(&self, bytes: u64) {
        let bytes = bytes.clamp(SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX);
        let previous = self
            .shared
            .segment_bytes
            .swap(bytes, std::sync::atomic::Ordering::Relaxed);
        if previous != bytes {
            tracing::info!(
                group = self.shared.group.0,
                segment_bytes = bytes,
                "segment size changed"
            );
        }
    }

    /// Returns once the files of every purge so far are unlinked (they are removed in the
    /// background, `file_remover.rs`), or after 30 s.
    pub fn wait_for_purged_files(&self) {
        self.shared
            .remover
            .wait_idle(std::time::Duration::from_secs(30));
    }

    /// Seals the active segment at the next append once it is `ms` old (the topic's
    /// `segment.ms`; 0: never).
    pub fn set_segment_ms(&self, ms: u64) {
        self.shared
            .segment_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// The size at which the active segment is sealed.
    pub fn segment_bytes(&self) -> u64 {
        self.shared.segment_bytes()
    }

    /// The segments, oldest first; the last one is the active segment. Entries at or below the
    /// purge point that a segment still holds are counted in its `bytes`.
    pub fn segments(&self) -> Vec<SegmentSpan> {
        self.shared
            .state
            .read()
            .segments
            .iter()
            .map(|segment| SegmentSpan {
                base_index: segment.base_index,
                next_index: segment.next_index,
                bytes: segment.write_pos,
            })
            .collect()
    }

    /// The first indexes of segments in `first ..= last`, other than the log's first segment:
    /// where the state machine checkpoints its state, so that a purge can stop at a segment's
    /// end (`state_machine::checkpoint`).
    pub(crate) fn segment_starts_within(&self, first: u64, last: u64) -> Vec<u64> {
        let files = self.shared.state.read();
        files
            .segments
            .iter()
            .skip(1)
            .map(|segment| segment.base_index)
            .filter(|base| (first..=last).contains(base))
            .collect()
    }
}
