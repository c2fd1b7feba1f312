//! How a partition's applied changes reach sled: held back in memory (`PendingWrites`) and
//! written in one atomic sled batch per `APPLIES_PER_PERSIST_MAX` applies, or once the oldest
//! has waited `PERSIST_INTERVAL`.
//!
//! Why not one batch per `apply`: every sled batch seals sled's IO buffer and hands it to sled's
//! thread pool, which wakes all of its idle threads. Per apply, that is time on the produce path
//! and thread wake-ups on every node (`docs/ARCHITECTURE.md`; the measurements are in
//! `benchmarks/HISTORY.md`).
//!
//! Durability: none needed beyond crash consistency. Everything here is derived from the Raft
//! log: after a crash openraft re-applies the entries past the persisted applied log id, and the
//! offsets come out the same. A batch is atomic, so the applied log id on disk never gets ahead
//! of the index entries and producer states it covers. Until their batch is written, readers
//! find new index entries in memory (`RecentIndex`). See `state_store` for why sled is not
//! synced on every write.

use std::collections::BTreeMap;
use std::time::Duration;
use std::time::Instant;

use super::PartitionStateMachine;
use crate::error::Result;

/// Applies whose sled writes may be held back and written together.
const APPLIES_PER_PERSIST_MAX: usize = 64;
/// How long, at most, the oldest held-back write waits for the next apply to write it.
const PERSIST_INTERVAL: Duration = Duration::from_millis(200);

/// Changes to a group's tree not yet written to sled; a later change of a key replaces an
/// earlier one.
#[derive(Default)]
pub(super) struct PendingWrites {
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Applies whose changes are held back.
    applies: usize,
    /// When the oldest of them was applied.
    since: Option<Instant>,
}

impl PendingWrites {
    pub(super) fn insert(&mut self, key: &[u8], value: impl Into<Vec<u8>>) {
        self.writes.insert(key.to_vec(), Some(value.into()));
    }

    pub(super) fn remove(&mut self, key: &[u8]) {
        self.writes.insert(key.to_vec(), None);
    }

    /// Counts one more apply whose changes are held back.
    pub(super) fn count_apply(&mut self) {
        self.applies += 1;
        self.since.get_or_insert_with(Instant::now);
    }

    /// Whether the held-back changes are to be written now.
    pub(super) fn is_due(&self) -> bool {
        self.applies >= APPLIES_PER_PERSIST_MAX
            || self
                .since
                .is_some_and(|since| since.elapsed() >= PERSIST_INTERVAL)
    }

    fn into_batch(self) -> sled::Batch {
        let mut batch = sled::Batch::default();
        for (key, value) in self.writes {
            match value {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
        }
        batch
    }
}

impl PartitionStateMachine {
    /// Writes every held-back change to sled in one atomic batch.
    pub fn persist(&mut self) -> Result<()> {
        if self.pending.writes.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.tree
            .apply_batch(pending.into_batch())
            .map_err(|e| self.store.error(e))?;
        // Every entry there came from the batch just written.
        self.recent_index.write().clear();
        Ok(())
    }
}
