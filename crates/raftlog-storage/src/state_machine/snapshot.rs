//! Snapshots of a partition: what they carry (the applied state and the producers; records
//! stay in the log), building one, and installing one received from a leader.
//!
//! Where a snapshot is taken: openraft purges the log up to the snapshot, and a replica that
//! installs it replicates only the entries after it; so a snapshot must never cover an entry
//! holding a record at or above the log start, or that record would be gone from the replica.
//! It is the current state if every record is below the log start, else the newest segment-end
//! checkpoint (`checkpoint.rs`) whose records all are; else there is nothing new to take, and
//! the builder hands back the snapshot already stored (or none), which openraft ignores as not
//! newer. Its log start is its own next offset: nothing below it is left once the log is purged
//! there, and the `AdvanceLogStart` entries after it move the start on as they did here.
//!
//! Durability: a built snapshot is stored in the group's tree (`snapshot` key);
//! `get_snapshot_builder` first writes the held-back applied state, so that the stored snapshot
//! is not ahead of the stored applied state. Installing replaces the whole state, the snapshot
//! included, in one atomic sled batch, and drops what was held back. Unlike the rest of the
//! state, a snapshot needs more than crash consistency: openraft purges the log up to it as soon
//! as it is built or installed, and a purged entry cannot be applied again. So both flush sled
//! (which syncs it) before they return: after any crash, the stored state has at least what the
//! purged entries made. Without it, a node killed within sled's flush interval of a purge came
//! back with its applied state behind its purged log, and its Raft core panicked at start (the
//! Jepsen retention run under kills found it).

use std::collections::BTreeMap;
use std::io::Cursor;

use openraft::storage::Snapshot;
use openraft::RaftSnapshotBuilder;
use openraft::SnapshotMeta;
use raftlog_types::GroupId;
use raftlog_types::NodeId;
use raftlog_types::NodeInfo;
use raftlog_types::TypeConfig;
use serde::Deserialize;
use serde::Serialize;

use super::checkpoint::newest_purgeable_checkpoint;
use super::checkpoint::remove_checkpoints_upto;
use super::persist::PendingWrites;
use super::producers::producer_key;
use super::AppliedState;
use super::PartitionStateMachine;
use super::ProducerState;
use super::APPLIED_STATE_KEY;
use super::CHECKPOINT_PREFIX;
use super::OFFSET_INDEX_PREFIX;
use super::PRODUCER_PREFIX;
use super::SNAPSHOT_KEY;
use crate::error::raft_sm_write_error;
use crate::error::Result;
use crate::error::StorageError;
use crate::state_store::StateStore;

type RaftStorageError = openraft::StorageError<u64>;

/// What a snapshot (and a checkpoint) carries: the applied state and the producers (records
/// stay in the log).
#[derive(Serialize, Deserialize)]
pub(super) struct SnapshotData {
    pub(super) state: AppliedState,
    pub(super) producers: BTreeMap<u64, ProducerState>,
}

/// The current snapshot as stored under `snapshot`: its meta and its data.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredSnapshot {
    pub(super) meta: SnapshotMeta<NodeId, NodeInfo>,
    pub(super) data: Vec<u8>,
}

impl PartitionStateMachine {
    /// A builder of a snapshot of the state as it is now; the caller writes the held-back state
    /// first (`get_snapshot_builder`) and passes the error if that failed, which the builder
    /// then returns instead of a snapshot.
    pub(super) fn snapshot_builder(
        &self,
        state_write_error: Option<StorageError>,
    ) -> PartitionSnapshotBuilder {
        PartitionSnapshotBuilder {
            state_write_error,
            group: self.group,
            store: self.store.clone(),
            tree: self.tree.clone(),
            state: self.state.clone(),
            producers: self.producers.clone(),
        }
    }

    /// The stored snapshot, if there is one.
    pub(super) fn read_snapshot(&self) -> Result<Option<StoredSnapshot>> {
        let Some(bytes) = self
            .tree
            .get(SNAPSHOT_KEY)
            .map_err(|e| self.store.error(e))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| self.decode_error("snapshot", e.to_string()))
    }

    /// Replaces the whole state with a snapshot's.
    pub fn install(&mut self, meta: &SnapshotMeta<NodeId, NodeInfo>, data: Vec<u8>) -> Result<()> {
        let snapshot: SnapshotData = serde_json::from_slice(&data)
            .map_err(|e| self.decode_error("snapshot data", e.to_string()))?;
        let mut state = snapshot.state;
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        // The snapshot replaces everything, including what was not yet written.
        self.pending = PendingWrites::default();
        let mut batch = sled::Batch::default();
        for prefix in [OFFSET_INDEX_PREFIX, PRODUCER_PREFIX, CHECKPOINT_PREFIX] {
            for key in self.tree.scan_prefix([prefix]).keys() {
                batch.remove(key.map_err(|e| self.store.error(e))?);
            }
        }
        for (id, producer) in &snapshot.producers {
            let value = serde_json::to_vec(producer)
                .map_err(|e| self.decode_error("producer", e.to_string()))?;
            batch.insert(&producer_key(*id), value);
        }
        batch.insert(APPLIED_STATE_KEY, self.encode_state(&state)?);
        let stored = serde_json::to_vec(&StoredSnapshot {
            meta: meta.clone(),
            data,
        })
        .map_err(|e| self.decode_error("snapshot", e.to_string()))?;
        batch.insert(SNAPSHOT_KEY, stored);
        self.tree
            .apply_batch(batch)
            .map_err(|e| self.store.error(e))?;
        self.recent_index.write().clear();
        self.high_watermark.send_replace(state.next_offset);
        self.log_start
            .store(state.log_start_offset, std::sync::atomic::Ordering::Release);
        self.leader_time_ms
            .store(state.leader_time_ms, std::sync::atomic::Ordering::Release);
        self.state = state;
        self.producers = snapshot.producers;
        tracing::info!(group = self.group.0, index = ?meta.last_log_id.map(|id| id.index), "installed snapshot");
        Ok(())
    }
}

/// Builds a snapshot of the state as it was when the builder was made.
pub struct PartitionSnapshotBuilder {
    /// Why the held-back applied state could not be written before the builder was made.
    state_write_error: Option<StorageError>,
    group: GroupId,
    store: StateStore,
    tree: sled::Tree,
    state: AppliedState,
    producers: BTreeMap<u64, ProducerState>,
}

impl PartitionSnapshotBuilder {
    /// The state to snapshot, as of the newest entry below which every record is deleted; `None`
    /// if that is not past the stored snapshot `stored_index`.
    fn purgeable_image(&self, stored_index: Option<u64>) -> Result<Option<SnapshotData>> {
        let Some(applied) = self.state.last_applied else {
            return Ok(None);
        };
        let mut image = if self.state.next_offset <= self.state.log_start_offset {
            Some(SnapshotData {
                state: self.state.clone(),
                producers: self.producers.clone(),
            })
        } else {
            newest_purgeable_checkpoint(
                &self.store,
                &self.tree,
                self.group,
                applied.index,
                self.state.log_start_offset,
            )?
        };
        if let Some(image) = &mut image {
            image.state.log_start_offset = image.state.next_offset;
        }
        let newer = |image: &SnapshotData| {
            image
                .state
                .last_applied
                .is_some_and(|id| stored_index.is_none_or(|stored| id.index > stored))
        };
        Ok(image.filter(newer))
    }

    fn build(&self) -> Result<Snapshot<TypeConfig>> {
        let encode_error = |e: serde_json::Error| StorageError::StateDecode {
            group: self.group,
            key: "snapshot".into(),
            reason: e.to_string(),
        };
        let stored: Option<StoredSnapshot> = match self
            .tree
            .get(SNAPSHOT_KEY)
            .map_err(|e| self.store.error(e))?
        {
            Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(encode_error)?),
            None => None,
        };
        let stored_index = stored
            .as_ref()
            .and_then(|s| s.meta.last_log_id.map(|id| id.index));
        let Some(image) = self.purgeable_image(stored_index)? else {
            // Nothing new: openraft ignores a snapshot that is not newer than its own.
            let stored = stored.unwrap_or(StoredSnapshot {
                meta: SnapshotMeta {
                    last_log_id: None,
                    last_membership: Default::default(),
                    snapshot_id: "none".into(),
                },
                data: Vec::new(),
            });
            return Ok(Snapshot {
                meta: stored.meta,
                snapshot: Box::new(Cursor::new(stored.data)),
            });
        };
        let data = serde_json::to_vec(&image).map_err(encode_error)?;
        let state = &image.state;
        let snapshot_id = match state.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, state.next_offset),
            None => format!("empty-{}", state.next_offset),
        };
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
            snapshot_id,
        };
        let stored = serde_json::to_vec(&StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        })
        .map_err(encode_error)?;
        self.tree
            .insert(SNAPSHOT_KEY, stored)
            .map_err(|e| self.store.error(e))?;
        if let Some(index) = state.last_applied.map(|id| id.index) {
            remove_checkpoints_upto(&self.store, &self.tree, index)?;
        }
        tracing::info!(
            group = self.group.0,
            index = ?state.last_applied.map(|id| id.index),
            next_offset = state.next_offset,
            "took a snapshot below the log start"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for PartitionSnapshotBuilder {
    async fn build_snapshot(
        &mut self,
    ) -> std::result::Result<Snapshot<TypeConfig>, RaftStorageError> {
        if let Some(error) = self.state_write_error.take() {
            // The stored applied state may be behind the one snapshotted: no snapshot, or the
            // log could be purged past what a restart can rebuild.
            return Err(raft_sm_write_error(&error));
        }
        let snapshot = self.build().map_err(|e| raft_sm_write_error(&e))?;
        // openraft purges the log up to the snapshot next: it and the state it covers must be
        // on disk first (see the module's Durability).
        self.tree
            .flush_async()
            .await
            .map_err(|e| raft_sm_write_error(&self.store.error(e)))?;
        Ok(snapshot)
    }
}
