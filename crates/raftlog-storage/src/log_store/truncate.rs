//! Removing entries from a log: at its end (`truncate`, when a new leader overwrites entries
//! that were never committed) and at its start (`purge`, once a snapshot covers them).
//!
//! Durability:
//! - `truncate`: later segments are deleted and the directory synced; the cut in the last
//!   remaining segment is synced before returning, so removed entries never come back.
//! - `purge`: the new purge point is made durable first, then whole segments leave the log and
//!   are unlinked by the node's file remover (`file_remover.rs`), off the group's core and
//!   outside the log's lock. A crash before that leaves segments that the next open deletes
//!   (`open.rs`), never a hole.

use std::time::Instant;

use raftlog_types::type_config::LogId;

use super::SegmentLog;
use crate::error::Result;
use crate::error::StorageError;
use crate::fsutil;

impl SegmentLog {
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
        let preallocate_bytes = shared.preallocate_bytes();
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
        let mut removed = Vec::new();
        while files
            .segments
            .first()
            .is_some_and(|s| s.next_index <= log_id.index + 1)
        {
            removed.push(files.segments.remove(0).path);
        }
        drop(files);
        let segments_removed = removed.len();
        shared.remover.remove(shared.log_dir.clone(), removed)?;
        tracing::info!(
            group = shared.group.0,
            index = log_id.index,
            segments_removed,
            "purged log"
        );
        Ok(())
    }
}
