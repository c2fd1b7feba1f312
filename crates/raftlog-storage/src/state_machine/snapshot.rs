//! Snapshots of a partition: what they carry (the applied state and the producers; records
//! stay in the log), building one, and installing one received from a leader.
//!
//! Durability: like the rest of the state, snapshots need crash consistency only. A built
//! snapshot is stored in the group's tree (`snapshot` key); `get_snapshot_builder` first writes
//! the held-back applied state, so that the stored snapshot is not ahead of the stored applied
//! state. Installing replaces the whole state, the snapshot included, in one atomic sled batch,
//! and drops what was held back.

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

use super::persist::PendingWrites;
use super::producers::producer_key;
use super::AppliedState;
use super::PartitionStateMachine;
use super::ProducerState;
use super::APPLIED_STATE_KEY;
use super::OFFSET_INDEX_PREFIX;
use super::PRODUCER_PREFIX;
use super::SNAPSHOT_KEY;
use crate::error::raft_sm_write_error;
use crate::error::Result;
use crate::error::StorageError;
use crate::state_store::StateStore;

type RaftStorageError = openraft::StorageError<u64>;

/// What a snapshot carries: the applied state and the producers (records stay in the log).
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    state: AppliedState,
    producers: BTreeMap<u64, ProducerState>,
}

/// The current snapshot as stored under `snapshot`: its meta and its data.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredSnapshot {
    pub(super) meta: SnapshotMeta<NodeId, NodeInfo>,
    pub(super) data: Vec<u8>,
}

impl PartitionStateMachine {
    /// A builder of a snapshot of the state as it is now; the caller writes the held-back state
    /// first (`get_snapshot_builder`).
    pub(super) fn snapshot_builder(&self) -> PartitionSnapshotBuilder {
        PartitionSnapshotBuilder {
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
        for prefix in [OFFSET_INDEX_PREFIX, PRODUCER_PREFIX] {
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
        self.state = state;
        self.producers = snapshot.producers;
        tracing::info!(group = self.group.0, index = ?meta.last_log_id.map(|id| id.index), "installed snapshot");
        Ok(())
    }
}

/// Builds a snapshot of the state as it was when the builder was made.
pub struct PartitionSnapshotBuilder {
    group: GroupId,
    store: StateStore,
    tree: sled::Tree,
    state: AppliedState,
    producers: BTreeMap<u64, ProducerState>,
}

impl RaftSnapshotBuilder<TypeConfig> for PartitionSnapshotBuilder {
    async fn build_snapshot(
        &mut self,
    ) -> std::result::Result<Snapshot<TypeConfig>, RaftStorageError> {
        let build = || -> Result<Snapshot<TypeConfig>> {
            let encode_error = |e: serde_json::Error| StorageError::StateDecode {
                group: self.group,
                key: "snapshot".into(),
                reason: e.to_string(),
            };
            let data = serde_json::to_vec(&SnapshotData {
                state: self.state.clone(),
                producers: self.producers.clone(),
            })
            .map_err(encode_error)?;
            let snapshot_id = match self.state.last_applied {
                Some(id) => format!(
                    "{}-{}-{}",
                    id.leader_id.term, id.index, self.state.next_offset
                ),
                None => format!("empty-{}", self.state.next_offset),
            };
            let meta = SnapshotMeta {
                last_log_id: self.state.last_applied,
                last_membership: self.state.membership.clone(),
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
            Ok(Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data)),
            })
        };
        build().map_err(|e| raft_sm_write_error(&e))
    }
}
