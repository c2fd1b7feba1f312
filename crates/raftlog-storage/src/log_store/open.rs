//! Opening a log (`SegmentLog::open`): finding its segments, finishing an interrupted purge,
//! checking every frame and cutting off a torn tail.
//!
//! Durability:
//! - segments left over from a purge that was interrupted after its purge point became durable
//!   (they hold only purged entries) are deleted, and the directory synced, before the rest is
//!   read;
//! - the last segment is cut at its first invalid frame past the stored committed log id, with
//!   everything after it (`Segment::open`): the kernel writes pages back out of order, so after
//!   a power loss an unsynced append can leave a hole before later intact frames, and nothing
//!   past the first unsynced frame was acknowledged. The stored committed log id is the durable
//!   point because it is never written beyond the durable log (`hard_state.rs`); since it lags
//!   the acknowledged entries by up to a second, damage with intact frames after it is cut only
//!   if it reads as blocks that were never written (zeros), not as flipped bits;
//! - any other damage (in a sealed segment, or at or below the stored committed log id), any gap
//!   between segments, and a log that ends before the stored committed log id, is an error
//!   naming the file and position, and open then changes nothing on disk beyond finishing an
//!   interrupted purge;
//! - the last segment is synced once, so that entries a crashed process wrote but never synced
//!   are durable before this node acknowledges or applies them.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use parking_lot::Mutex;
use parking_lot::RwLock;
use raftlog_types::type_config::LogId;
use raftlog_types::GroupId;

use super::recent_pool::RecentPool;
use super::recent_pool::HOLDS_NO_RECENT;
use super::LogConfig;
use super::LogFiles;
use super::MetaState;
use super::SegmentLog;
use super::Shared;
use crate::durability::DurabilityMark;
use crate::error::Result;
use crate::error::StorageError;
use crate::file_remover::FileRemover;
use crate::fsutil;
use crate::group_commit::GroupCommit;
use crate::meta::LogMeta;
use crate::meta::MetaFile;
use crate::page_cache::PageCacheBudget;
use crate::recent::RecentEntries;
use crate::segment::parse_segment_file_name;
use crate::segment::segment_file_name;
use crate::segment::OpenOptionsForSegment;
use crate::segment::Segment;
use crate::segment::TailState;

/// What every log of a node shares: its flusher, file remover and memory budgets.
pub(crate) struct NodeLogs {
    pub(crate) flusher: GroupCommit,
    pub(crate) remover: FileRemover,
    pub(crate) recent_pool: Arc<RecentPool>,
    pub(crate) page_cache: Arc<PageCacheBudget>,
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

impl SegmentLog {
    /// Opens (or creates) the log stored under `group_dir`.
    ///
    /// Every frame is checked. The last segment's unsynced tail, from its first invalid frame
    /// past the committed log id, is cut off; any other damage, any gap between segments, and
    /// a log ending before its committed log id, is an error naming the file and position, and
    /// nothing on disk changes then beyond finishing an interrupted purge.
    pub(crate) fn open(
        group: GroupId,
        group_dir: &Path,
        config: LogConfig,
        node: NodeLogs,
        applied: Option<LogId>,
    ) -> Result<(SegmentLog, OpenReport)> {
        let NodeLogs {
            flusher,
            remover,
            recent_pool,
            page_cache,
        } = node;
        let log_dir = group_dir.join("log");
        let segment_bytes = config.segment_bytes;
        fsutil::ensure_dir(group_dir)?;
        fsutil::ensure_dir(&log_dir)?;
        let meta_file = MetaFile::open(group_dir)?;
        let mut stored = meta_file.stored().clone();
        // The state machine applies only entries that are committed and durable in this log,
        // and the meta file's committed id is written lazily, so the applied id can be the
        // later of the two: every entry up to it must be here too. Without it, a tail cut
        // short below the applied entry (a damaged disk) read as an unsynced tail, was cut
        // off, and the replica then served offsets whose entries it no longer had.
        if applied.is_some_and(|applied| stored.committed.is_none_or(|c| applied.index > c.index)) {
            stored.committed = applied;
        }

        let mut bases = list_segment_bases(&log_dir)?;
        let purged_segments_removed = match stored.last_purged {
            Some(purged) => remove_purged_segments(&log_dir, &mut bases, purged.index)?,
            None => 0,
        };
        let (mut segments, tail) = open_segments(group, &log_dir, &bases, &stored, &config)?;
        // The last entry not purged; with none left, the purge point.
        let last_log_id = segments
            .iter()
            .filter_map(|segment| segment.last_log_id)
            .rfind(|id| {
                stored
                    .last_purged
                    .is_none_or(|purged| id.index > purged.index)
            })
            .or(stored.last_purged);
        check_holds_committed(&log_dir, &segments, last_log_id, &stored)?;
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
            remover,
            state: RwLock::new(LogFiles {
                segments,
                last_log_id,
                last_purged: stored.last_purged,
                recent: RecentEntries::new(Arc::clone(&recent_pool.budget)),
                active_since: std::time::Instant::now(),
            }),
            meta: Mutex::new(MetaState {
                committed: stored.committed,
                file: meta_file,
                committed_written_at: None,
            }),
            config,
            durability: Arc::new(DurabilityMark::new(
                last_log_id.map_or(0, |id| id.index + 1),
            )),
            recent_pool: Arc::clone(&recent_pool),
            last_append: AtomicU64::new(HOLDS_NO_RECENT),
            page_cache,
            segment_bytes: AtomicU64::new(segment_bytes),
            segment_ms: AtomicU64::new(0),
        };
        let shared = Arc::new(shared);
        recent_pool.register(&shared);
        Ok((SegmentLog { shared }, report))
    }
}

/// The base indexes of the segment files in `log_dir`, in order; other files are ignored.
fn list_segment_bases(log_dir: &Path) -> Result<Vec<u64>> {
    let mut bases = Vec::new();
    for dir_entry in
        std::fs::read_dir(log_dir).map_err(StorageError::io("list directory", log_dir))?
    {
        let dir_entry = dir_entry.map_err(StorageError::io("list directory", log_dir))?;
        if let Some(base) = dir_entry
            .file_name()
            .to_str()
            .and_then(parse_segment_file_name)
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Finishes a purge interrupted after its purge point became durable: a segment whose successor
/// starts at or below `purged + 1` holds only purged entries, so it is deleted (and the
/// directory synced). Returns how many were.
fn remove_purged_segments(log_dir: &Path, bases: &mut Vec<u64>, purged: u64) -> Result<usize> {
    let mut removed = 0;
    while bases.len() >= 2 && bases[1] <= purged + 1 {
        let path = log_dir.join(segment_file_name(bases[0]));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            // Removed meanwhile by the previous opening's file remover.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io("remove purged segment", &path)(e)),
        }
        bases.remove(0);
        removed += 1;
    }
    if removed > 0 {
        fsutil::sync_dir(log_dir)?;
    }
    Ok(removed)
}

/// Fails if the log ends before the stored committed log id. That id is never written beyond
/// the durable log, and committed entries are never truncated, so a shorter log lost files
/// (a deleted segment or `log` directory), and serving it would let this node vote or be
/// counted for entries it no longer has.
fn check_holds_committed(
    log_dir: &Path,
    segments: &[Segment],
    last_log_id: Option<LogId>,
    stored: &LogMeta,
) -> Result<()> {
    let Some(committed) = stored.committed else {
        return Ok(());
    };
    if last_log_id.is_some_and(|last| last.index >= committed.index) {
        return Ok(());
    }
    let path = segments
        .last()
        .map_or_else(|| log_dir.to_path_buf(), |segment| segment.path.clone());
    let position = segments.last().map_or(0, |segment| segment.write_pos);
    Err(StorageError::Corrupt {
        path,
        position,
        reason: format!(
            "entries up to {} are committed, but the log ends at {}: segment files are missing or cut short",
            committed.index,
            last_log_id.map_or_else(|| "no entry".to_string(), |id| id.index.to_string())
        ),
    })
}

/// Opens the segments starting at `bases`, checking that they continue each other and the purge
/// point without a gap; the last one's unsynced tail, if any, is cut off.
fn open_segments(
    group: GroupId,
    log_dir: &Path,
    bases: &[u64],
    stored: &LogMeta,
    config: &LogConfig,
) -> Result<(Vec<Segment>, TailState)> {
    let purged_index = stored.last_purged.map(|id| id.index);
    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
    let mut tail = TailState::Clean;
    for (position, base) in bases.iter().enumerate() {
        let path = log_dir.join(segment_file_name(*base));
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
        if let TailState::TornTailTruncated {
            position,
            reason,
            bytes_dropped,
            intact_frames_dropped,
        } = &segment_tail
        {
            tracing::warn!(
                group = group.0,
                path = %path.display(),
                position,
                bytes_dropped,
                intact_frames_dropped,
                first_dropped_index = segment.next_index,
                reason = %reason,
                "cut off the log's unsynced tail at its first invalid frame"
            );
        }
        tail = segment_tail;
        segments.push(segment);
    }
    Ok((segments, tail))
}
