//! The partition state machine: assigns offsets to appended batches in apply order and keeps the
//! offset index, the applied log id and the membership in the group's sled tree.
//!
//! Keys, all in the group's own tree (big-endian so that byte order is numeric order):
//! - `applied_state`: last applied log id, membership and next offset, as one JSON value, so that
//!   they always change together;
//! - `snapshot`: the current snapshot (its meta and data);
//! - `o` + base offset (u64 BE) → log index (u64 BE) + record count (u32 BE): which log entry
//!   holds the batch starting at that offset.
//!
//! Each `apply` call writes all its changes in one atomic sled batch; see `state_store` for why
//! sled is not synced on every write.

use std::io::Cursor;

use openraft::storage::RaftStateMachine;
use openraft::storage::Snapshot;
use openraft::EntryPayload;
use openraft::OptionalSend;
use openraft::RaftSnapshotBuilder;
use openraft::SnapshotMeta;
use openraft::StoredMembership;
use raftlog_types::type_config::Entry;
use raftlog_types::type_config::LogId;
use raftlog_types::Command;
use raftlog_types::CommandResponse;
use raftlog_types::GroupId;
use raftlog_types::NodeId;
use raftlog_types::NodeInfo;
use raftlog_types::TypeConfig;
use serde::Deserialize;
use serde::Serialize;

use crate::error::raft_sm_read_error;
use crate::error::raft_sm_write_error;
use crate::error::Result;
use crate::error::StorageError;
use crate::state_store::StateStore;

type RaftStorageError = openraft::StorageError<u64>;

const APPLIED_STATE_KEY: &[u8] = b"applied_state";
const SNAPSHOT_KEY: &[u8] = b"snapshot";
const OFFSET_INDEX_PREFIX: u8 = b'o';

/// State that changes with every applied entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedState {
    /// The last entry applied.
    pub last_applied: Option<LogId>,
    /// The last membership applied.
    pub membership: StoredMembership<NodeId, NodeInfo>,
    /// Offset the next appended record receives: the partition's high watermark.
    pub next_offset: u64,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, NodeInfo>,
    data: Vec<u8>,
}

/// Where a batch of records lives in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLocation {
    /// Offset of the batch's first record.
    pub base_offset: u64,
    /// Number of records in the batch.
    pub record_count: u32,
    /// Index of the log entry holding the batch.
    pub log_index: u64,
}

/// The state machine of one partition group.
pub struct PartitionStateMachine {
    group: GroupId,
    store: StateStore,
    tree: sled::Tree,
    state: AppliedState,
    /// Published after every apply, for readers waiting on new records.
    high_watermark: tokio::sync::watch::Sender<u64>,
}

/// A read-only view of a partition's applied state, usable while the state machine itself is
/// owned by openraft: the offset index and a high watermark that readers can wait on.
#[derive(Clone)]
pub struct PartitionView {
    group: GroupId,
    store: StateStore,
    tree: sled::Tree,
    high_watermark: tokio::sync::watch::Receiver<u64>,
}

fn offset_key(offset: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = OFFSET_INDEX_PREFIX;
    key[1..].copy_from_slice(&offset.to_be_bytes());
    key
}

fn offset_value(log_index: u64, record_count: u32) -> [u8; 12] {
    let mut value = [0u8; 12];
    value[..8].copy_from_slice(&log_index.to_be_bytes());
    value[8..].copy_from_slice(&record_count.to_be_bytes());
    value
}

impl PartitionStateMachine {
    /// Opens the state of `group` in the node's state store.
    pub fn open(group: GroupId, store: &StateStore) -> Result<PartitionStateMachine> {
        let tree = store.group_tree(group)?;
        let state = match tree.get(APPLIED_STATE_KEY).map_err(|e| store.error(e))? {
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| StorageError::StateDecode {
                    group,
                    key: "applied_state".into(),
                    reason: e.to_string(),
                })?
            }
            None => AppliedState::default(),
        };
        let (high_watermark, _) = tokio::sync::watch::channel(state.next_offset);
        Ok(PartitionStateMachine {
            group,
            store: store.clone(),
            tree,
            state,
            high_watermark,
        })
    }

    /// A view for readers.
    pub fn view(&self) -> PartitionView {
        PartitionView {
            group: self.group,
            store: self.store.clone(),
            tree: self.tree.clone(),
            high_watermark: self.high_watermark.subscribe(),
        }
    }

    /// The applied state as of the last `apply`.
    pub fn applied(&self) -> &AppliedState {
        &self.state
    }

    fn decode_error(&self, key: &str, reason: String) -> StorageError {
        StorageError::StateDecode {
            group: self.group,
            key: key.into(),
            reason,
        }
    }

    fn encode_state(&self, state: &AppliedState) -> Result<Vec<u8>> {
        serde_json::to_vec(state).map_err(|e| self.decode_error("applied_state", e.to_string()))
    }

    /// Applies entries in order; returns one response per entry.
    pub fn apply_entries(
        &mut self,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<Vec<CommandResponse>> {
        let mut next = self.state.clone();
        let mut batch = sled::Batch::default();
        let mut responses = Vec::new();
        for entry in entries {
            next.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => CommandResponse::None,
                EntryPayload::Membership(membership) => {
                    next.membership = StoredMembership::new(Some(entry.log_id), membership);
                    CommandResponse::None
                }
                EntryPayload::Normal(Command::Controller(_)) => CommandResponse::Rejected {
                    reason: "NOT_A_CONTROLLER".into(),
                    message: format!("group {} is a partition, not the controller", self.group),
                },
                EntryPayload::Normal(Command::AppendBatch(records)) => {
                    let base_offset = next.next_offset;
                    let record_count = u32::try_from(records.len()).map_err(|_| {
                        self.decode_error(
                            "offset index",
                            format!("entry {} holds too many records", entry.log_id.index),
                        )
                    })?;
                    if record_count > 0 {
                        batch.insert(
                            &offset_key(base_offset),
                            &offset_value(entry.log_id.index, record_count),
                        );
                    }
                    next.next_offset += u64::from(record_count);
                    CommandResponse::Appended {
                        base_offset,
                        record_count,
                    }
                }
            };
            responses.push(response);
        }
        batch.insert(APPLIED_STATE_KEY, self.encode_state(&next)?);
        self.tree
            .apply_batch(batch)
            .map_err(|e| self.store.error(e))?;
        self.high_watermark.send_replace(next.next_offset);
        self.state = next;
        Ok(responses)
    }

    fn read_snapshot(&self) -> Result<Option<StoredSnapshot>> {
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
        let mut state: AppliedState = serde_json::from_slice(&data)
            .map_err(|e| self.decode_error("snapshot data", e.to_string()))?;
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        let mut batch = sled::Batch::default();
        for key in self.tree.scan_prefix([OFFSET_INDEX_PREFIX]).keys() {
            batch.remove(key.map_err(|e| self.store.error(e))?);
        }
        batch.insert(APPLIED_STATE_KEY, self.encode_state(&state)?);
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        let stored = serde_json::to_vec(&stored)
            .map_err(|e| self.decode_error("snapshot", e.to_string()))?;
        batch.insert(SNAPSHOT_KEY, stored);
        self.tree
            .apply_batch(batch)
            .map_err(|e| self.store.error(e))?;
        self.high_watermark.send_replace(state.next_offset);
        self.state = state;
        tracing::info!(group = self.group.0, index = ?meta.last_log_id.map(|id| id.index), "installed snapshot");
        Ok(())
    }
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

    /// First offset still indexed (0 until retention deletes records).
    pub fn log_start_offset(&self) -> Result<u64> {
        let first = self
            .tree
            .scan_prefix([OFFSET_INDEX_PREFIX])
            .keys()
            .next()
            .transpose()
            .map_err(|e| self.store.error(e))?;
        Ok(match first {
            Some(key) => <[u8; 8]>::try_from(&key[1..])
                .map(u64::from_be_bytes)
                .unwrap_or(0),
            None => self.high_watermark(),
        })
    }

    /// The batch containing `offset`, if it is below the high watermark and still indexed.
    pub fn locate(&self, offset: u64) -> Result<Option<BatchLocation>> {
        if offset >= *self.high_watermark.borrow() {
            return Ok(None);
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
        let (Ok(base), Ok(index), Ok(count)) = (
            <[u8; 8]>::try_from(&key[1..]),
            <[u8; 8]>::try_from(&value[..8]),
            <[u8; 4]>::try_from(&value[8..]),
        ) else {
            return Err(StorageError::StateDecode {
                group: self.group,
                key: "offset index".into(),
                reason: "wrong key or value length".into(),
            });
        };
        let location = BatchLocation {
            base_offset: u64::from_be_bytes(base),
            log_index: u64::from_be_bytes(index),
            record_count: u32::from_be_bytes(count),
        };
        Ok((offset < location.base_offset + u64::from(location.record_count)).then_some(location))
    }
}

/// Builds a snapshot of the state as it was when the builder was made.
pub struct PartitionSnapshotBuilder {
    group: GroupId,
    store: StateStore,
    tree: sled::Tree,
    state: AppliedState,
}

impl RaftSnapshotBuilder<TypeConfig> for PartitionSnapshotBuilder {
    async fn build_snapshot(
        &mut self,
    ) -> std::result::Result<Snapshot<TypeConfig>, RaftStorageError> {
        let build = || -> Result<Snapshot<TypeConfig>> {
            let data = serde_json::to_vec(&self.state).map_err(|e| StorageError::StateDecode {
                group: self.group,
                key: "snapshot".into(),
                reason: e.to_string(),
            })?;
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
            let stored = StoredSnapshot {
                meta: meta.clone(),
                data: data.clone(),
            };
            let stored = serde_json::to_vec(&stored).map_err(|e| StorageError::StateDecode {
                group: self.group,
                key: "snapshot".into(),
                reason: e.to_string(),
            })?;
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

impl RaftStateMachine<TypeConfig> for PartitionStateMachine {
    type SnapshotBuilder = PartitionSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> std::result::Result<(Option<LogId>, StoredMembership<NodeId, NodeInfo>), RaftStorageError>
    {
        Ok((self.state.last_applied, self.state.membership.clone()))
    }

    async fn apply<I>(
        &mut self,
        entries: I,
    ) -> std::result::Result<Vec<CommandResponse>, RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.apply_entries(entries)
            .map_err(|e| raft_sm_write_error(&e))
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        PartitionSnapshotBuilder {
            group: self.group,
            store: self.store.clone(),
            tree: self.tree.clone(),
            state: self.state.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> std::result::Result<Box<Cursor<Vec<u8>>>, RaftStorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> std::result::Result<(), RaftStorageError> {
        self.install(meta, snapshot.into_inner())
            .map_err(|e| raft_sm_write_error(&e))
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> std::result::Result<Option<Snapshot<TypeConfig>>, RaftStorageError> {
        let stored = self.read_snapshot().map_err(|e| raft_sm_read_error(&e))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
