//! Appending to a log (`SegmentLog::append_entries`), and rolling to a new segment when the
//! active one is full.
//!
//! Durability:
//! - `append`: frames are written to the page cache, then the node's flusher `fdatasync`s the
//!   segment; openraft's callback fires only after that sync succeeded. The entries are
//!   readable (from memory and the page cache) as soon as the call returns, but the log's
//!   durability mark, which the state machine waits on before applying, moves only on the sync.
//! - segment roll: the full segment is trimmed and synced, the new one created, preallocated and
//!   synced, and the directory synced, before any entry goes into the new segment.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use openraft::EntryPayload;
use raftlog_types::limits::ENTRY_BYTES_MAX;
use raftlog_types::type_config::Entry;

use super::SegmentLog;
use crate::error::Result;
use crate::error::StorageError;
use crate::frame::encode_frame_in_place;
use crate::frame::FRAME_HEADER_BYTES;
use crate::group_commit::Completion;
use crate::segment::PendingFrame;
use crate::segment::Segment;

/// Encoded size of an entry's log id and payload tag, on top of its command.
const ENTRY_OVERHEAD_BYTES: usize = 48;

impl SegmentLog {
    /// Appends entries, which must continue the log without a gap. They are readable when this
    /// returns; `on_durable` runs once they are fsynced (or with the error that prevented it).
    pub fn append_entries(
        &self,
        entries: impl IntoIterator<Item = Entry>,
        on_durable: Completion,
    ) -> Result<()> {
        let shared = &self.shared;
        let mut files = shared.state.write();
        // Seen by the leader watchdog while a write hangs (raftlog-raft's `watchdog.rs`).
        let _writing = shared.durability.writing();
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
        let segment_ms = shared.segment_ms.load(Ordering::Relaxed);
        let active_expired = segment_ms > 0
            && files.active_since.elapsed() >= std::time::Duration::from_millis(segment_ms);
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
                    let expired = active_expired && frames.is_empty();
                    has_entries && (used + frame_bytes > shared.segment_bytes() || expired)
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
                    shared.preallocate_bytes(),
                    shared.config.index_interval_bytes,
                )?;
                tracing::debug!(group = shared.group.0, index, path = %segment.path.display(), "rolled to a new segment");
                files.segments.push(segment);
                files.active_since = std::time::Instant::now();
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
        // The completion holds what it updates, not the log: a log dropped while its sync is
        // in flight frees its memory at once.
        let durability = Arc::clone(&shared.durability);
        let page_cache = Arc::clone(&shared.page_cache);
        let synced_file = Arc::clone(&file);
        shared.flusher.request_sync(
            file,
            path,
            Box::new(move |result| {
                let synced = result.is_ok();
                if synced {
                    durability.synced(epoch, last.index);
                }
                on_durable(result);
                // After the acknowledgement: the page-cache advice must not delay it.
                if let (true, Some(run)) = (synced, written_run) {
                    page_cache.note_cached(&synced_file, run);
                }
            }),
        )
    }
}
