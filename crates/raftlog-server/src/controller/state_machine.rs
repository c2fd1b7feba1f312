//! The controller's state machine: it keeps the metadata as one JSON value in the group's sled
//! tree, rewritten when it changes (metadata is small), the applied log id in a small value of
//! its own, and consumer groups' committed offsets a key each (`offsets.rs`), all written in
//! one atomic batch per apply; it publishes each new version of the metadata on a watch
//! channel that the partition replicas follow.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::storage::Snapshot;
use openraft::EntryPayload;
use openraft::OptionalSend;
use openraft::RaftSnapshotBuilder;
use openraft::SnapshotMeta;
use openraft::StorageIOError;
use openraft::StoredMembership;
use raftlog_proto::v1::ErrorReason;
use raftlog_storage::StateStore;
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
use tokio::sync::watch;

use std::collections::BTreeMap;

use raftlog_types::ControllerCommand;

use super::offsets;
use super::offsets::GroupOffsets;
use super::offsets::OffsetWrites;
use super::offsets::OffsetsByGroup;
use super::state::ControllerState;

type RaftStorageError = openraft::StorageError<u64>;

const STATE_KEY: &[u8] = b"controller_state";
/// The last applied log id and membership, written at every apply; absent in trees written
/// before it existed, where `STATE_KEY` holds them.
const APPLIED_KEY: &[u8] = b"controller_applied";
const SNAPSHOT_KEY: &[u8] = b"snapshot";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct PersistedState {
    last_applied: Option<LogId>,
    membership: StoredMembership<NodeId, NodeInfo>,
    state: ControllerState,
}

/// What `APPLIED_KEY` holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogId>,
    membership: StoredMembership<NodeId, NodeInfo>,
}

/// A snapshot's data: the metadata and every committed offset. Snapshots written before
/// offsets had keys of their own hold the metadata alone, with the offsets inside it
/// ([`SnapshotData::decode`] reads both).
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    state: ControllerState,
    committed_offsets: Vec<(String, String, u32, u64)>,
}

impl SnapshotData {
    fn decode(data: &[u8]) -> Result<SnapshotData, serde_json::Error> {
        serde_json::from_slice::<SnapshotData>(data).or_else(|error| {
            match serde_json::from_slice::<ControllerState>(data) {
                Ok(state) => Ok(SnapshotData {
                    state,
                    committed_offsets: Vec::new(),
                }),
                Err(_) => Err(error),
            }
        })
    }

    fn offsets(&mut self) -> OffsetsByGroup {
        let mut offsets = legacy_offsets(&mut self.state);
        for (group, topic, partition, offset) in std::mem::take(&mut self.committed_offsets) {
            offsets
                .entry(group)
                .or_default()
                .insert((topic, partition), offset);
        }
        offsets
    }
}

/// Takes the offsets out of metadata written before they had keys of their own.
fn legacy_offsets(state: &mut ControllerState) -> OffsetsByGroup {
    std::mem::take(&mut state.legacy_group_offsets)
        .into_iter()
        .map(|(group, topics)| {
            let offsets = topics
                .into_iter()
                .flat_map(|(topic, partitions)| {
                    partitions
                        .into_iter()
                        .map(move |(partition, offset)| ((topic.clone(), partition), offset))
                })
                .collect();
            (group, offsets)
        })
        .filter(|(_, offsets): &(String, BTreeMap<(String, u32), u64>)| !offsets.is_empty())
        .collect()
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, NodeInfo>,
    data: Vec<u8>,
}

/// The controller group's state machine.
pub struct ControllerStateMachine {
    tree: sled::Tree,
    persisted: PersistedState,
    publisher: watch::Sender<Arc<ControllerState>>,
    /// Committed offsets, shared with the consumer-group coordinator.
    offsets: GroupOffsets,
    /// How far the controller's log is durable here: nothing is applied before it is.
    durability: raftlog_storage::Durability,
}

fn sm_error(message: impl std::fmt::Display) -> RaftStorageError {
    StorageIOError::write_state_machine(openraft::AnyError::error(message)).into()
}

impl ControllerStateMachine {
    /// Opens the controller state in the node's state store.
    pub fn open(
        store: &StateStore,
        durability: raftlog_storage::Durability,
    ) -> Result<ControllerStateMachine, raftlog_storage::StorageError> {
        let tree = store.group_tree(GroupId::CONTROLLER)?;
        let decode_error =
            |key: &str, e: serde_json::Error| raftlog_storage::StorageError::StateDecode {
                group: GroupId::CONTROLLER,
                key: key.into(),
                reason: e.to_string(),
            };
        let mut persisted: PersistedState =
            match tree.get(STATE_KEY).map_err(|e| store_error(store, e))? {
                Some(bytes) => serde_json::from_slice(&bytes)
                    .map_err(|e| decode_error("controller_state", e))?,
                None => PersistedState::default(),
            };
        if let Some(bytes) = tree.get(APPLIED_KEY).map_err(|e| store_error(store, e))? {
            let applied: Applied = serde_json::from_slice(&bytes)
                .map_err(|e| decode_error("controller_applied", e))?;
            persisted.last_applied = applied.last_applied;
            persisted.membership = applied.membership;
        }
        let mut offsets = OffsetsByGroup::new();
        for item in tree.scan_prefix(offsets::prefix()) {
            let (key, value) = item.map_err(|e| store_error(store, e))?;
            let Some((group, topic, partition, offset)) = offsets::decode(&key, &value) else {
                return Err(raftlog_storage::StorageError::StateDecode {
                    group: GroupId::CONTROLLER,
                    key: String::from_utf8_lossy(&key).into_owned(),
                    reason: "not a committed offset".into(),
                });
            };
            offsets
                .entry(group)
                .or_default()
                .insert((topic, partition), offset);
        }
        // Metadata written before offsets had keys of their own: move them there, once.
        let legacy = legacy_offsets(&mut persisted.state);
        if !legacy.is_empty() {
            let mut batch = sled::Batch::default();
            for (group, committed) in &legacy {
                for ((topic, partition), offset) in committed {
                    batch.insert(
                        offsets::key(group, topic, *partition),
                        &offset.to_be_bytes(),
                    );
                }
            }
            let state =
                serde_json::to_vec(&persisted).map_err(|e| decode_error("controller_state", e))?;
            batch.insert(STATE_KEY, state);
            tree.apply_batch(batch).map_err(|e| store_error(store, e))?;
            tree.flush().map_err(|e| store_error(store, e))?;
            for (group, committed) in legacy {
                offsets.entry(group).or_default().extend(committed);
            }
        }
        let (publisher, _) = watch::channel(Arc::new(persisted.state.clone()));
        Ok(ControllerStateMachine {
            tree,
            persisted,
            publisher,
            offsets: GroupOffsets::new(offsets),
            durability,
        })
    }

    /// The committed offsets, as this state machine applies them.
    pub(crate) fn offsets(&self) -> GroupOffsets {
        self.offsets.clone()
    }

    /// Follows every new version of the metadata.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<ControllerState>> {
        self.publisher.subscribe()
    }

    /// Writes, in one atomic batch: the applied log id, the metadata if `state_changed`, and
    /// the offsets `writes` names.
    // openraft's error type is large; this helper only forwards it to openraft.
    #[allow(clippy::result_large_err)]
    fn store(
        &self,
        persisted: &PersistedState,
        state_changed: bool,
        writes: OffsetWrites,
    ) -> Result<(), RaftStorageError> {
        let mut batch = sled::Batch::default();
        let applied = Applied {
            last_applied: persisted.last_applied,
            membership: persisted.membership.clone(),
        };
        batch.insert(APPLIED_KEY, serde_json::to_vec(&applied).map_err(sm_error)?);
        if state_changed {
            batch.insert(STATE_KEY, serde_json::to_vec(persisted).map_err(sm_error)?);
        }
        for key in writes.removed {
            batch.remove(key);
        }
        for (key, offset) in writes.set {
            batch.insert(key, &offset.to_be_bytes());
        }
        self.tree.apply_batch(batch).map_err(sm_error)?;
        Ok(())
    }
}

fn store_error(store: &StateStore, source: sled::Error) -> raftlog_storage::StorageError {
    raftlog_storage::StorageError::StateStore {
        path: store.path().to_path_buf(),
        source,
    }
}

/// Snapshot builder over a copy of the metadata and the offsets.
pub struct ControllerSnapshotBuilder {
    tree: sled::Tree,
    persisted: PersistedState,
    offsets: OffsetsByGroup,
}

impl RaftSnapshotBuilder<TypeConfig> for ControllerSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, RaftStorageError> {
        let committed_offsets = std::mem::take(&mut self.offsets)
            .into_iter()
            .flat_map(|(group, committed)| {
                committed
                    .into_iter()
                    .map(move |((topic, partition), offset)| {
                        (group.clone(), topic, partition, offset)
                    })
            })
            .collect();
        let data = serde_json::to_vec(&SnapshotData {
            state: self.persisted.state.clone(),
            committed_offsets,
        })
        .map_err(sm_error)?;
        let snapshot_id = match self.persisted.last_applied {
            Some(id) => format!("controller-{}-{}", id.leader_id.term, id.index),
            None => "controller-empty".to_owned(),
        };
        let meta = SnapshotMeta {
            last_log_id: self.persisted.last_applied,
            last_membership: self.persisted.membership.clone(),
            snapshot_id,
        };
        let stored = serde_json::to_vec(&StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        })
        .map_err(sm_error)?;
        self.tree.insert(SNAPSHOT_KEY, stored).map_err(sm_error)?;
        // openraft purges the log below the snapshot next: it must be on disk first, or a crash
        // could leave neither the purged entries nor a snapshot of them.
        self.tree.flush_async().await.map_err(sm_error)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for ControllerStateMachine {
    type SnapshotBuilder = ControllerSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, NodeInfo>), RaftStorageError> {
        Ok((
            self.persisted.last_applied,
            self.persisted.membership.clone(),
        ))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries = self
            .durability
            .wait_for_entries(entries)
            .await
            .map_err(sm_error)?;
        // The metadata is copied only for an entry that may change it: an offset commit, by far
        // the most frequent entry, then costs what it commits, whatever the number of topics
        // and groups (the lifecycle issue's apply-cost benchmark, `benches/controller_apply.rs`).
        let mut last_applied = self.persisted.last_applied;
        let mut membership = None;
        let mut next_state: Option<ControllerState> = None;
        let mut writes = OffsetWrites::default();
        let mut responses = Vec::new();
        for entry in entries {
            last_applied = Some(entry.log_id);
            responses.push(match entry.payload {
                EntryPayload::Blank => CommandResponse::None,
                EntryPayload::Membership(changed) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), changed));
                    CommandResponse::None
                }
                EntryPayload::Normal(Command::Controller(ControllerCommand::CommitOffsets {
                    group,
                    offsets,
                })) => {
                    self.offsets.commit(&group, offsets, &mut writes);
                    CommandResponse::OffsetsCommitted
                }
                EntryPayload::Normal(Command::Controller(command)) => {
                    let deleted = match &command {
                        ControllerCommand::DeleteTopic { name } => Some(name.clone()),
                        _ => None,
                    };
                    let response = next_state
                        .get_or_insert_with(|| self.persisted.state.clone())
                        .apply(command);
                    if let (Some(topic), CommandResponse::TopicDeleted) = (deleted, &response) {
                        // A re-created topic starts empty: positions in the old one mean nothing.
                        self.offsets.forget_topic(&topic, &mut writes);
                    }
                    response
                }
                EntryPayload::Normal(
                    Command::AppendBatches(_)
                    | Command::StampedAppendBatches { .. }
                    | Command::AdvanceLogStart { .. },
                ) => CommandResponse::Rejected {
                    reason: ErrorReason::Internal.as_str_name().into(),
                    message: "the controller group holds no records".into(),
                },
            });
        }
        self.persisted.last_applied = last_applied;
        if let Some(membership) = membership {
            self.persisted.membership = membership;
        }
        let changed = match next_state {
            Some(state) if state != self.persisted.state => {
                self.persisted.state = state;
                true
            }
            _ => false,
        };
        self.store(&self.persisted, changed, writes)?;
        // Flushing keeps a restarted node from serving stale metadata or offsets until the
        // controller log is re-applied (sled buffers writes in-process).
        self.tree.flush_async().await.map_err(sm_error)?;
        if changed {
            self.publisher
                .send_replace(Arc::new(self.persisted.state.clone()));
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        ControllerSnapshotBuilder {
            tree: self.tree.clone(),
            persisted: self.persisted.clone(),
            offsets: self.offsets.all(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, RaftStorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), RaftStorageError> {
        let data = snapshot.into_inner();
        let mut decoded = SnapshotData::decode(&data).map_err(sm_error)?;
        let offsets = decoded.offsets();
        let persisted = PersistedState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            state: decoded.state,
        };
        // Every offset key is replaced by the snapshot's.
        let mut writes = OffsetWrites::default();
        for item in self.tree.scan_prefix(offsets::prefix()) {
            let (key, _) = item.map_err(sm_error)?;
            writes.removed.push(key.to_vec());
        }
        for (group, committed) in &offsets {
            for ((topic, partition), offset) in committed {
                writes
                    .set
                    .push((offsets::key(group, topic, *partition), *offset));
            }
        }
        self.store(&persisted, true, writes)?;
        self.offsets.replace(offsets);
        let stored = serde_json::to_vec(&StoredSnapshot {
            meta: meta.clone(),
            data,
        })
        .map_err(sm_error)?;
        self.tree.insert(SNAPSHOT_KEY, stored).map_err(sm_error)?;
        // As after building one: openraft purges the log up to the installed snapshot next.
        self.tree.flush_async().await.map_err(sm_error)?;
        self.persisted = persisted;
        self.publisher
            .send_replace(Arc::new(self.persisted.state.clone()));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, RaftStorageError> {
        let Some(bytes) = self.tree.get(SNAPSHOT_KEY).map_err(sm_error)? else {
            return Ok(None);
        };
        let stored: StoredSnapshot = serde_json::from_slice(&bytes).map_err(sm_error)?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use raftlog_storage::LogConfig;
    use raftlog_storage::NodeStorage;

    use super::*;

    /// Metadata written before offsets had keys of their own is read with its offsets, which
    /// move to their keys once (and stay there, not in the metadata).
    #[test]
    fn offsets_inside_older_metadata_move_to_their_own_keys() {
        let dir = tempfile::tempdir().unwrap();
        let storage = NodeStorage::open(dir.path(), LogConfig::default()).unwrap();
        let (log, _, _) = storage.open_group(GroupId::CONTROLLER).unwrap();
        let tree = storage
            .state_store()
            .group_tree(GroupId::CONTROLLER)
            .unwrap();
        let older = serde_json::json!({
            "last_applied": null,
            "membership": StoredMembership::<NodeId, NodeInfo>::default(),
            "state": {
                "topics": {},
                "next_group_id": 3,
                "group_offsets": {"billing": {"orders": {"0": 7, "1": 3}}},
            },
        });
        tree.insert(STATE_KEY, serde_json::to_vec(&older).unwrap())
            .unwrap();

        let opened = ControllerStateMachine::open(storage.state_store(), log.durability()).unwrap();
        let expected =
            BTreeMap::from([(("orders".to_owned(), 0), 7), (("orders".to_owned(), 1), 3)]);
        assert_eq!(opened.offsets().of_group("billing"), expected);
        drop(opened);
        let state: serde_json::Value =
            serde_json::from_slice(&tree.get(STATE_KEY).unwrap().unwrap()).unwrap();
        assert!(state["state"].get("group_offsets").is_none(), "{state}");
        assert_eq!(state["state"]["next_group_id"], 3);
        let reopened =
            ControllerStateMachine::open(storage.state_store(), log.durability()).unwrap();
        assert_eq!(reopened.offsets().of_group("billing"), expected);
    }

    #[test]
    fn snapshots_carry_the_offsets_and_older_ones_are_read_too() {
        let expected = BTreeMap::from([(
            "billing".to_owned(),
            BTreeMap::from([(("orders".to_owned(), 0), 7)]),
        )]);
        let data = serde_json::to_vec(&SnapshotData {
            state: ControllerState::default(),
            committed_offsets: vec![("billing".into(), "orders".into(), 0, 7)],
        })
        .unwrap();
        assert_eq!(SnapshotData::decode(&data).unwrap().offsets(), expected);
        // Older: the metadata alone, offsets inside it, partitions as JSON object keys.
        let older = br#"{"topics": {}, "next_group_id": 1, "group_offsets": {"billing": {"orders": {"0": 7}}}}"#;
        assert_eq!(SnapshotData::decode(older).unwrap().offsets(), expected);
        assert!(SnapshotData::decode(b"[1, 2]").is_err());
    }
}
