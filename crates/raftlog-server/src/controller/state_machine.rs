//! The controller's state machine: it keeps the whole metadata as one JSON value in the group's
//! sled tree, written atomically with the applied log id on every apply (metadata is small),
//! and publishes each new version on a watch channel that the partition replicas follow.

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

use super::state::ControllerState;

type RaftStorageError = openraft::StorageError<u64>;

const STATE_KEY: &[u8] = b"controller_state";
const SNAPSHOT_KEY: &[u8] = b"snapshot";

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
                EntryPayload::Normal(
                    Command::AppendBatches(_) | Command::StampedAppendBatches { .. },
                ) => CommandResponse::Rejected {
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
