//! The controller: Raft group 0, replicated on the first nodes of the roster, holding the
//! cluster metadata (topics and the replica assignment of every partition).
//!
//! Its state machine keeps the whole metadata as one JSON value in the group's sled tree,
//! written atomically with the applied log id on every apply (metadata is small), and
//! publishes each new version on a watch channel that the partition manager follows.

use std::collections::BTreeMap;
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
use raftlog_types::ControllerCommand;
use raftlog_types::GroupId;
use raftlog_types::NodeId;
use raftlog_types::NodeInfo;
use raftlog_types::TypeConfig;
use serde::Deserialize;
use serde::Serialize;
use tokio::sync::watch;

type RaftStorageError = openraft::StorageError<u64>;

const STATE_KEY: &[u8] = b"controller_state";
const SNAPSHOT_KEY: &[u8] = b"snapshot";

/// One partition's placement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    /// The Raft group replicating it.
    pub group_id: GroupId,
    /// Nodes holding replicas; the first is the preferred leader.
    pub replicas: Vec<NodeId>,
}

/// One topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// Topic name.
    pub name: String,
    /// Partitions in order.
    pub partitions: Vec<PartitionMeta>,
    /// Replicas per partition.
    pub replicas: u32,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// The cluster metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerState {
    /// Topics by name.
    pub topics: BTreeMap<String, TopicMeta>,
    /// The next group id to allocate; group ids are never reused.
    pub next_group_id: u64,
    /// The last producer id issued; ids are never reused.
    #[serde(default)]
    pub last_producer_id: u64,
    /// Committed positions: group → topic → partition → next offset to read.
    #[serde(default)]
    pub group_offsets: BTreeMap<String, BTreeMap<String, BTreeMap<u32, u64>>>,
}

impl ControllerState {
    /// The partition of `topic` replicated by `group`, with its index.
    pub fn partition_of_group(&self, group: GroupId) -> Option<(&TopicMeta, u32)> {
        self.topics.values().find_map(|topic| {
            topic
                .partitions
                .iter()
                .position(|p| p.group_id == group)
                .map(|i| (topic, i as u32))
        })
    }

    fn apply(&mut self, command: ControllerCommand) -> CommandResponse {
        match command {
            ControllerCommand::CreateTopic {
                name,
                assignments,
                created_at_ms,
            } => {
                if self.topics.contains_key(&name) {
                    return CommandResponse::Rejected {
                        reason: ErrorReason::TopicExists.as_str_name().into(),
                        message: format!("topic {name:?} already exists"),
                    };
                }
                let first_group_id = self.next_group_id.max(1);
                let replicas = assignments.first().map_or(0, |r| r.len() as u32);
                let partitions = assignments
                    .into_iter()
                    .enumerate()
                    .map(|(i, replicas)| PartitionMeta {
                        group_id: GroupId(first_group_id + i as u64),
                        replicas,
                    })
                    .collect::<Vec<_>>();
                self.next_group_id = first_group_id + partitions.len() as u64;
                self.topics.insert(
                    name.clone(),
                    TopicMeta {
                        name,
                        partitions,
                        replicas,
                        created_at_ms,
                    },
                );
                CommandResponse::TopicCreated { first_group_id }
            }
            ControllerCommand::AllocateProducerId => {
                self.last_producer_id += 1;
                CommandResponse::ProducerIdAllocated {
                    producer_id: self.last_producer_id,
                }
            }
            ControllerCommand::CommitOffsets { group, offsets } => {
                let topics = self.group_offsets.entry(group).or_default();
                for (topic, partition, offset) in offsets {
                    topics.entry(topic).or_default().insert(partition, offset);
                }
                CommandResponse::OffsetsCommitted
            }
            ControllerCommand::DeleteTopic { name } => match self.topics.remove(&name) {
                Some(_) => {
                    // A re-created topic starts empty: positions in the old one mean nothing.
                    for topics in self.group_offsets.values_mut() {
                        topics.remove(&name);
                    }
                    self.group_offsets.retain(|_, topics| !topics.is_empty());
                    CommandResponse::TopicDeleted
                }
                None => CommandResponse::Rejected {
                    reason: ErrorReason::TopicNotFound.as_str_name().into(),
                    message: format!("topic {name:?} does not exist"),
                },
            },
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct PersistedState {
    last_applied: Option<LogId>,
    membership: StoredMembership<NodeId, NodeInfo>,
    state: ControllerState,
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
        let persisted = match tree.get(STATE_KEY).map_err(|e| store_error(store, e))? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                raftlog_storage::StorageError::StateDecode {
                    group: GroupId::CONTROLLER,
                    key: "controller_state".into(),
                    reason: e.to_string(),
                }
            })?,
            None => PersistedState::default(),
        };
        let (publisher, _) = watch::channel(Arc::new(persisted.state.clone()));
        Ok(ControllerStateMachine {
            tree,
            persisted,
            publisher,
            durability,
        })
    }

    /// Follows every new version of the metadata.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ControllerState>> {
        self.publisher.subscribe()
    }

    // openraft's error type is large; this helper only forwards it to openraft.
    #[allow(clippy::result_large_err)]
    fn store(&self, persisted: &PersistedState) -> Result<(), RaftStorageError> {
        let bytes = serde_json::to_vec(persisted).map_err(sm_error)?;
        self.tree.insert(STATE_KEY, bytes).map_err(sm_error)?;
        Ok(())
    }
}

fn store_error(store: &StateStore, source: sled::Error) -> raftlog_storage::StorageError {
    raftlog_storage::StorageError::StateStore {
        path: store.path().to_path_buf(),
        source,
    }
}

/// Snapshot builder over a copy of the metadata.
pub struct ControllerSnapshotBuilder {
    tree: sled::Tree,
    persisted: PersistedState,
}

impl RaftSnapshotBuilder<TypeConfig> for ControllerSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, RaftStorageError> {
        let data = serde_json::to_vec(&self.persisted.state).map_err(sm_error)?;
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
        let mut next = self.persisted.clone();
        let mut responses = Vec::new();
        for entry in entries {
            next.last_applied = Some(entry.log_id);
            responses.push(match entry.payload {
                EntryPayload::Blank => CommandResponse::None,
                EntryPayload::Membership(membership) => {
                    next.membership = StoredMembership::new(Some(entry.log_id), membership);
                    CommandResponse::None
                }
                EntryPayload::Normal(Command::Controller(command)) => next.state.apply(command),
                EntryPayload::Normal(Command::AppendBatches(_)) => CommandResponse::Rejected {
                    reason: ErrorReason::Internal.as_str_name().into(),
                    message: "the controller group holds no records".into(),
                },
            });
        }
        self.store(&next)?;
        // Metadata changes are rare; flushing them keeps a restarted node from serving stale
        // metadata until the controller log is re-applied (sled buffers writes in-process).
        self.tree.flush_async().await.map_err(sm_error)?;
        let changed = next.state != self.persisted.state;
        self.persisted = next;
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
        let state: ControllerState = serde_json::from_slice(&data).map_err(sm_error)?;
        let persisted = PersistedState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            state,
        };
        self.store(&persisted)?;
        let stored = serde_json::to_vec(&StoredSnapshot {
            meta: meta.clone(),
            data,
        })
        .map_err(sm_error)?;
        self.tree.insert(SNAPSHOT_KEY, stored).map_err(sm_error)?;
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

/// Spreads `partitions` × `replicas` over `nodes`: partition `p` starts at node `p + offset`
/// and takes the following nodes in roster order, so replicas and preferred leaders rotate.
pub fn assign_replicas(
    nodes: &[NodeId],
    partitions: u32,
    replicas: u32,
    offset: usize,
) -> Vec<Vec<NodeId>> {
    (0..partitions as usize)
        .map(|p| {
            (0..replicas as usize)
                .map(|r| nodes[(offset + p + r) % nodes.len()])
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_rotates_leaders_and_never_repeats_a_node() {
        let assignment = assign_replicas(&[1, 2, 3], 3, 3, 0);
        assert_eq!(
            assignment,
            vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]]
        );
        for replicas in assign_replicas(&[1, 2, 3, 4, 5], 10, 3, 7) {
            let mut unique = replicas.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), 3);
        }
    }

    #[test]
    fn create_and_delete_allocate_fresh_group_ids() {
        let mut state = ControllerState::default();
        let create = |name: &str| ControllerCommand::CreateTopic {
            name: name.into(),
            assignments: vec![vec![1], vec![1]],
            created_at_ms: 0,
        };
        assert_eq!(
            state.apply(create("a")),
            CommandResponse::TopicCreated { first_group_id: 1 }
        );
        assert!(matches!(
            state.apply(create("a")),
            CommandResponse::Rejected { .. }
        ));
        assert_eq!(
            state.apply(ControllerCommand::DeleteTopic { name: "a".into() }),
            CommandResponse::TopicDeleted
        );
        assert_eq!(
            state.apply(create("a")),
            CommandResponse::TopicCreated { first_group_id: 3 }
        );
    }
}
