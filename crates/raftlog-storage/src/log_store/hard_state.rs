//! The log's hard state: the vote and the committed log id, kept with the purge point in the
//! group's metadata file (`meta.rs`).
//!
//! Durability:
//! - `save_vote`: written to the metadata file and synced before returning. The write replaces
//!   the metadata atomically: it goes to the slot that does not hold the current one, so a crash
//!   mid-write leaves the previous vote (`meta.rs`).
//! - `save_committed`: kept in memory and written (the same way) at most once per
//!   `committed_persist_interval`, and on drop, but never beyond the durable log: a leader
//!   commits on its followers' syncs while its own may still be running. openraft treats it as
//!   optional: a stale value only means fewer entries are re-applied at start-up before the
//!   leader's next heartbeat.

use std::time::Instant;

use raftlog_types::type_config::LogId;
use raftlog_types::type_config::Vote;

use super::MetaState;
use super::SegmentLog;
use super::Shared;
use crate::error::Result;
use crate::error::StorageError;
use crate::meta::LogMeta;

impl MetaState {
    /// The committed log id to write down: openraft's, unless this node's own log is not yet
    /// durable that far (then the one already on disk).
    pub(super) fn committed_to_store(&self, durable_next: u64) -> Option<LogId> {
        match self.committed {
            Some(id) if id.index >= durable_next => self.file.stored().committed,
            committed => committed,
        }
    }
}

impl SegmentLog {
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
    pub(super) fn note_committed(&self, committed: Option<LogId>) -> bool {
        let mut meta = self.shared.meta.lock();
        meta.committed = committed;
        let due = meta
            .committed_written_at
            .is_none_or(|at| at.elapsed() >= self.shared.config.committed_persist_interval);
        due && meta.file.stored().committed
            != meta.committed_to_store(self.shared.durability.durable_next())
    }

    /// Writes the committed log id recorded last (as far as the log is durable), if it changed.
    pub(super) fn write_committed(&self) -> Result<()> {
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
    pub(super) async fn write_meta_off_runtime(
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
