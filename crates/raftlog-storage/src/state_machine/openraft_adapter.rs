//! openraft's `RaftStateMachine` for [`PartitionStateMachine`]: each call is one of the state
//! machine's own methods, with its error turned into openraft's. `apply` first waits until the
//! entries are durable in this node's log, so nothing is applied that a crash could take back.

use std::io::Cursor;

use openraft::storage::RaftStateMachine;
use openraft::storage::Snapshot;
use openraft::OptionalSend;
use openraft::SnapshotMeta;
use openraft::StoredMembership;
use raftlog_types::type_config::Entry;
use raftlog_types::type_config::LogId;
use raftlog_types::CommandResponse;
use raftlog_types::NodeId;
use raftlog_types::NodeInfo;
use raftlog_types::TypeConfig;

use super::PartitionSnapshotBuilder;
use super::PartitionStateMachine;
use crate::error::raft_sm_read_error;
use crate::error::raft_sm_write_error;

type RaftStorageError = openraft::StorageError<u64>;

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
        let entries = self
            .durability
            .wait_for_entries(entries)
            .await
            .map_err(|e| raft_sm_write_error(&e))?;
        self.apply_entries(entries)
            .map_err(|e| raft_sm_write_error(&e))
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // The stored snapshot must not be ahead of the stored applied state.
        let written = self.persist();
        if let Err(error) = &written {
            tracing::error!(group = self.group.0, %error, "could not write the applied state before a snapshot");
        }
        self.snapshot_builder(written.err())
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
            .map_err(|e| raft_sm_write_error(&e))?;
        // openraft purges the log up to the snapshot next (see `snapshot.rs`, Durability).
        self.tree
            .flush_async()
            .await
            .map(|_| ())
            .map_err(|e| raft_sm_write_error(&self.store.error(e)))
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
