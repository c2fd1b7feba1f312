//! The offset index, which says where each accepted batch of records lives in the log, and
//! [`PartitionView`], through which readers use it, with the high watermark, while the state
//! machine itself is owned by openraft.
//!
//! An entry is `o` + base offset → log index, record count and the batch's position in its
//! entry (16 bytes, big-endian). Entries applied since the last write to sled are also in
//! memory (`RecentIndex`), so readers find every applied batch; an entry leaves memory only once
//! it is in sled. The only write here is trimming the entries below the log start
//! (`PartitionView::trim_index_below_log_start`).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicI64;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use raftlog_types::GroupId;

use super::OFFSET_INDEX_PREFIX;
use crate::error::Result;
use crate::error::StorageError;
use crate::state_store::StateStore;

/// Offset-index entries applied but not yet in sled: base offset → index value.
pub(super) type RecentIndex = Arc<parking_lot::RwLock<BTreeMap<u64, [u8; 16]>>>;

/// Where a batch of records lives in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLocation {
    /// Offset of the batch's first record.
    pub base_offset: u64,
    /// Number of records in the batch.
    pub record_count: u32,
    /// Index of the log entry holding the batch.
    pub log_index: u64,
    /// Position of the batch among the entry's batches (0 for single-batch entries).
    pub batch_position: u32,
}

/// A read-only view of a partition's applied state, usable while the state machine itself is
/// owned by openraft: the offset index and a high watermark that readers can wait on.
#[derive(Clone)]
pub struct PartitionView {
    pub(super) group: GroupId,
    pub(super) store: StateStore,
    pub(super) tree: sled::Tree,
    pub(super) high_watermark: tokio::sync::watch::Receiver<u64>,
    pub(super) recent_index: RecentIndex,
    pub(super) log_start: Arc<AtomicU64>,
    pub(super) leader_time_ms: Arc<AtomicI64>,
}

pub(super) fn offset_key(offset: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = OFFSET_INDEX_PREFIX;
    key[1..].copy_from_slice(&offset.to_be_bytes());
    key
}

pub(super) fn offset_value(log_index: u64, record_count: u32, batch_position: u32) -> [u8; 16] {
    let mut value = [0u8; 16];
    value[..8].copy_from_slice(&log_index.to_be_bytes());
    value[8..12].copy_from_slice(&record_count.to_be_bytes());
    value[12..].copy_from_slice(&batch_position.to_be_bytes());
    value
}

/// What `offset_value` encoded: log index, record count and batch position; `None` for a value
/// of any other length.
fn decode_offset_value(value: &[u8]) -> Option<(u64, u32, u32)> {
    if value.len() != 16 {
        return None;
    }
    let log_index = u64::from_be_bytes(value[..8].try_into().ok()?);
    let record_count = u32::from_be_bytes(value[8..12].try_into().ok()?);
    let batch_position = u32::from_be_bytes(value[12..].try_into().ok()?);
    Some((log_index, record_count, batch_position))
}

impl PartitionView {
    /// Offset the next record will receive: every offset below it is committed and applied.
    pub fn high_watermark(&self) -> u64 {
        *self.high_watermark.borrow()
    }

    /// A receiver that changes whenever the high watermark moves.
    pub fn watch_high_watermark(&self) -> tokio::sync::watch::Receiver<u64> {
        self.high_watermark.clone()
    }

    /// The partition's first offset: records below it were deleted (0 until retention or
    /// `DeleteRecords` moves it). Never above the high watermark read after it.
    pub fn log_start_offset(&self) -> Result<u64> {
        Ok(self.log_start.load(Ordering::Acquire))
    }

    /// The partition's leader time as of the last apply (`AppliedState::leader_time_ms`).
    pub fn leader_time_ms(&self) -> i64 {
        self.leader_time_ms.load(Ordering::Acquire)
    }

    /// The state machine's segment-end checkpoints, oldest first: where retention can cut.
    pub fn checkpoints(&self) -> Result<Vec<super::checkpoint::CheckpointMark>> {
        super::checkpoint::checkpoint_marks(&self.store, &self.tree, self.group)
    }

    /// Removes up to `limit` offset-index entries of batches wholly below the log start, oldest
    /// first; returns how many. Readers never look below the log start, so this only frees
    /// space; an entry left behind (one written from memory after this ran) is harmless and goes
    /// the next time.
    pub fn trim_index_below_log_start(&self, limit: usize) -> Result<usize> {
        let log_start = self.log_start.load(Ordering::Acquire);
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for item in self.tree.range(offset_key(0)..offset_key(log_start)) {
            if removed >= limit {
                break;
            }
            let (key, value) = item.map_err(|e| self.store.error(e))?;
            let base = <[u8; 8]>::try_from(&key[1..])
                .map(u64::from_be_bytes)
                .map_err(|_| self.bad_index_entry())?;
            let (_, record_count, _) =
                decode_offset_value(&value).ok_or_else(|| self.bad_index_entry())?;
            if base + u64::from(record_count) > log_start {
                break;
            }
            batch.remove(key);
            removed += 1;
        }
        if removed > 0 {
            self.tree
                .apply_batch(batch)
                .map_err(|e| self.store.error(e))?;
        }
        Ok(removed)
    }

    /// The batch containing `offset`, if it is below the high watermark and still indexed.
    pub fn locate(&self, offset: u64) -> Result<Option<BatchLocation>> {
        if offset >= self.high_watermark() {
            return Ok(None);
        }
        // The recent index holds every entry applied since the last write to sled, so an offset
        // at or above its first entry is found there; one below it, in sled.
        let recent = self
            .recent_index
            .read()
            .range(..=offset)
            .next_back()
            .map(|(base, value)| (*base, *value));
        if let Some((base, value)) = recent {
            return self.decode_location(offset, base, &value);
        }
        let found = self
            .tree
            .range(offset_key(0)..=offset_key(offset))
            .next_back()
            .transpose()
            .map_err(|e| self.store.error(e))?;
        let Some((key, value)) = found else {
            return Ok(None);
        };
        let base = <[u8; 8]>::try_from(&key[1..])
            .map(u64::from_be_bytes)
            .map_err(|_| self.bad_index_entry())?;
        self.decode_location(offset, base, &value)
    }

    fn bad_index_entry(&self) -> StorageError {
        StorageError::StateDecode {
            group: self.group,
            key: "offset index".into(),
            reason: "wrong key or value length".into(),
        }
    }

    /// The batch at `base` (index entry `value`), if it holds `offset`.
    fn decode_location(
        &self,
        offset: u64,
        base: u64,
        value: &[u8],
    ) -> Result<Option<BatchLocation>> {
        let (log_index, record_count, batch_position) =
            decode_offset_value(value).ok_or_else(|| self.bad_index_entry())?;
        let location = BatchLocation {
            base_offset: base,
            log_index,
            record_count,
            batch_position,
        };
        Ok((offset < location.base_offset + u64::from(location.record_count)).then_some(location))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_values_decode_to_what_was_encoded_and_no_other_length_does() {
        let value = offset_value(7, 3, 2);
        assert_eq!(decode_offset_value(&value), Some((7, 3, 2)));
        assert_eq!(decode_offset_value(&value[..12]), None);
        assert_eq!(
            decode_offset_value(&[value.as_slice(), &[0]].concat()),
            None
        );
    }
}
