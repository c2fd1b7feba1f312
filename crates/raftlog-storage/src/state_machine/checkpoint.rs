//! Checkpoints: the partition's state after the last entry of each sealed segment, kept so that
//! a snapshot can be taken there and the log purged up to a segment's end.
//!
//! Why: a partition snapshot carries the state derived from the log (offsets, producers, the log
//! start), never records, so the log may only be purged up to an entry below which every record
//! was deleted (`AdvanceLogStart`). The state at such an entry is in the past by the time
//! retention deletes it; it is written down when the state machine passes each segment's end,
//! as Kafka keeps a producer-state snapshot per segment. A snapshot is then the newest
//! checkpoint (or the current state) whose next offset is at most the log start
//! (`snapshot.rs`), and the replica purges whole segments below it.
//!
//! `c` + log index (u64 BE) → the checkpoint's next offset (u64 BE) and leader time (i64 BE),
//! so that choosing one needs no decoding, followed by the state and producers as JSON
//! (`SnapshotData`). One per segment;
//! those at or below the snapshot are removed when it is taken, the rest when the replica
//! installs a snapshot from its leader. Durability: written with the apply that passes the
//! segment's end, in the same atomic sled batch (`persist.rs`); after a crash the re-applied
//! entries write it again.

use std::collections::BTreeMap;

use super::snapshot::SnapshotData;
use super::AppliedState;
use super::PartitionStateMachine;
use super::ProducerState;
use super::CHECKPOINT_PREFIX;
use crate::error::Result;
use crate::error::StorageError;
use crate::state_store::StateStore;

/// The next offset and leader time before the JSON.
const HEADER_BYTES: usize = 16;

/// A checkpoint as retention sees it, without its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointMark {
    /// The last entry it covers: the last of a segment.
    pub log_index: u64,
    /// The offset the next record after it got: every record up to `log_index` is below it.
    pub next_offset: u64,
    /// The partition's leader time after `log_index` (0 if no entry up to it was stamped).
    pub leader_time_ms: i64,
}

/// The header of a checkpoint value.
fn decode_header(log_index: u64, value: &[u8]) -> Option<CheckpointMark> {
    let next_offset = u64::from_be_bytes(value.get(..8)?.try_into().ok()?);
    let leader_time_ms = i64::from_be_bytes(value.get(8..HEADER_BYTES)?.try_into().ok()?);
    Some(CheckpointMark {
        log_index,
        next_offset,
        leader_time_ms,
    })
}

/// Every checkpoint of `tree`, oldest first (one per sealed segment).
pub(super) fn checkpoint_marks(
    store: &StateStore,
    tree: &sled::Tree,
    group: raftlog_types::GroupId,
) -> Result<Vec<CheckpointMark>> {
    let mut marks = Vec::new();
    for item in tree.scan_prefix([CHECKPOINT_PREFIX]) {
        let (key, value) = item.map_err(|e| store.error(e))?;
        let mark = <[u8; 8]>::try_from(&key[1..])
            .ok()
            .map(u64::from_be_bytes)
            .and_then(|index| decode_header(index, &value))
            .ok_or_else(|| StorageError::StateDecode {
                group,
                key: "checkpoint".into(),
                reason: "wrong key or header length".into(),
            })?;
        marks.push(mark);
    }
    Ok(marks)
}

pub(super) fn checkpoint_key(index: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = CHECKPOINT_PREFIX;
    key[1..].copy_from_slice(&index.to_be_bytes());
    key
}

impl PartitionStateMachine {
    /// The checkpoint of `state` (after the entry before `segment_start`), or `None` if `state`
    /// is not that entry's (it was applied elsewhere, e.g. installed from a snapshot).
    pub(super) fn encode_checkpoint(
        &self,
        state: &AppliedState,
        producers: &BTreeMap<u64, ProducerState>,
        segment_start: u64,
    ) -> Result<Option<(u64, Vec<u8>)>> {
        let Some(index) = segment_start.checked_sub(1) else {
            return Ok(None);
        };
        if state.last_applied.map(|id| id.index) != Some(index) {
            return Ok(None);
        }
        let mut value = state.next_offset.to_be_bytes().to_vec();
        value.extend_from_slice(&state.leader_time_ms.to_be_bytes());
        serde_json::to_writer(
            &mut value,
            &SnapshotData {
                state: state.clone(),
                producers: producers.clone(),
            },
        )
        .map_err(|e| self.decode_error("checkpoint", e.to_string()))?;
        Ok(Some((index, value)))
    }
}

/// The newest checkpoint at or below `upto` whose next offset is at most `log_start`: every
/// record of the entries up to it is deleted. Decodes only that one.
pub(super) fn newest_purgeable_checkpoint(
    store: &StateStore,
    tree: &sled::Tree,
    group: raftlog_types::GroupId,
    upto: u64,
    log_start: u64,
) -> Result<Option<SnapshotData>> {
    let decode_error = |reason: String| StorageError::StateDecode {
        group,
        key: "checkpoint".into(),
        reason,
    };
    for item in tree.range(checkpoint_key(0)..=checkpoint_key(upto)).rev() {
        let (_key, value) = item.map_err(|e| store.error(e))?;
        let mark = decode_header(0, &value)
            .ok_or_else(|| decode_error("shorter than its header".into()))?;
        if mark.next_offset <= log_start {
            let data: SnapshotData =
                serde_json::from_slice(value.get(HEADER_BYTES..).unwrap_or(&[]))
                    .map_err(|e| decode_error(e.to_string()))?;
            return Ok(Some(data));
        }
    }
    Ok(None)
}

/// Removes the checkpoints at or below `upto` (all of them with `u64::MAX`).
pub(super) fn remove_checkpoints_upto(
    store: &StateStore,
    tree: &sled::Tree,
    upto: u64,
) -> Result<usize> {
    let mut batch = sled::Batch::default();
    let mut removed = 0;
    for key in tree.range(checkpoint_key(0)..=checkpoint_key(upto)).keys() {
        batch.remove(key.map_err(|e| store.error(e))?);
        removed += 1;
    }
    tree.apply_batch(batch).map_err(|e| store.error(e))?;
    Ok(removed)
}
