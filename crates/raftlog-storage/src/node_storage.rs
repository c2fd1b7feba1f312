//! `NodeStorage`: everything one node keeps on disk, and how its data directory is laid out.
//!
//! ```text
//! <data_dir>/
//!   groups/<group id>/meta.slots         vote, committed and purged log ids (two slots, in place)
//!   groups/<group id>/log/<index>.seg    the group's Raft log, one file per segment
//!   replicas/<group id>                  empty: this node created a replica of the group
//!   state/                               sled: every group's state machine
//! ```
//!
//! Partition replicas are opened with [`NodeStorage::open_replica`], which creates one only
//! where this node never held it (`replicas.rs`): a replica whose directory is gone is refused,
//! never recreated empty.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use raftlog_types::GroupId;

use crate::error::Result;
use crate::error::StorageError;
use crate::file_remover::FileRemover;
use crate::fsutil;
use crate::group_commit::GroupCommit;
use crate::log_store::LogConfig;
use crate::log_store::NodeLogs;
use crate::log_store::OpenReport;
use crate::log_store::RecentPool;
use crate::log_store::SegmentLog;
use crate::page_cache::PageCacheBudget;
use crate::replicas::ReplicaRecord;
use crate::state_machine::PartitionStateMachine;
use crate::state_store::StateStore;

/// The storage of one node: its groups' logs, the shared flusher and the state database.
pub struct NodeStorage {
    data_dir: PathBuf,
    config: LogConfig,
    flusher: GroupCommit,
    remover: FileRemover,
    state: StateStore,
    recent_pool: Arc<RecentPool>,
    page_cache: Arc<PageCacheBudget>,
    replicas: ReplicaRecord,
}

impl Drop for NodeStorage {
    fn drop(&mut self) {
        // Removals of purged segments still queued finish first: a data dir opened again in this
        // process must not find files vanishing under it.
        self.remover.wait_idle(std::time::Duration::from_secs(30));
    }
}

impl NodeStorage {
    /// Opens the data directory, creating it if missing.
    pub fn open(data_dir: &Path, config: LogConfig) -> Result<NodeStorage> {
        fsutil::ensure_dir(data_dir)?;
        let groups_dir = data_dir.join("groups");
        fsutil::ensure_dir(&groups_dir)?;
        let replicas = ReplicaRecord::open(data_dir, &groups_dir)?;
        let state_dir = data_dir.join("state");
        let state = StateStore::open(&state_dir)?;
        // sled syncs its files but never the directories it creates them in, so after a power
        // loss its database could be gone whole (raftlog-faultfs showed it: `state`, `state/db`,
        // `state/conf` and `state/blobs` vanished at every cut). Make those entries durable.
        for dir in [state_dir.join("blobs"), state_dir.clone()] {
            if dir.is_dir() {
                fsutil::sync_dir(&dir)?;
            }
        }
        fsutil::sync_dir(data_dir)?;
        let sync_delay = crate::group_commit::sync_delay_failpoint(data_dir);
        if let Some(path) = &sync_delay {
            tracing::warn!(path = %path.display(), "test failpoint armed: syncs wait for the delay in this file");
        }
        let flusher = GroupCommit::start_with(sync_delay)?;
        let remover = FileRemover::start()?;
        let recent_pool = RecentPool::new(config.recent_entries_node_bytes);
        let page_cache = PageCacheBudget::new(config.page_cache_node_bytes);
        Ok(NodeStorage {
            data_dir: data_dir.to_path_buf(),
            config,
            flusher,
            remover,
            state,
            recent_pool,
            page_cache,
            replicas,
        })
    }

    /// Opens a partition replica's log and state machine, creating them only if this node never
    /// held the replica. One it held whose directory is gone is `StorageError::ReplicaLost`:
    /// recreated empty, it could vote with an empty log. Once this returns the replica is
    /// recorded (durably), so it is refused from now on if its directory disappears.
    pub fn open_replica(
        &self,
        group: GroupId,
    ) -> Result<(SegmentLog, PartitionStateMachine, OpenReport)> {
        let dir = self.group_dir(group);
        let exists = match std::fs::symlink_metadata(&dir) {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(StorageError::io("stat", &dir)(e)),
        };
        if !exists {
            if self.replicas.holds(group)? {
                return Err(StorageError::ReplicaLost {
                    group,
                    path: dir,
                    marker: self.replicas.marker(group),
                });
            }
            // The directory's entry must be durable before the record says it exists.
            fsutil::ensure_dir(&dir)?;
            fsutil::sync_dir(&self.data_dir.join("groups"))?;
        }
        let opened = self.open_group(group)?;
        self.replicas.record(group)?;
        Ok(opened)
    }

    /// Deletes a replica's files and state, then its record (last, so that a crash part way
    /// leaves a replica that is refused, not one that looks new).
    pub fn delete_replica(&self, group: GroupId) -> Result<()> {
        let dir = self.group_dir(group);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io("remove directory", &dir)(e)),
        }
        fsutil::sync_dir(&self.data_dir.join("groups"))?;
        self.state.drop_group(group)?;
        self.replicas.forget(group)
    }

    /// Opens one group's log and state machine, creating them if the group has no directory.
    /// Nodes open their replicas (controller and partitions) with [`NodeStorage::open_replica`],
    /// which refuses to recreate a lost one; this is for tests and tools.
    pub fn open_group(
        &self,
        group: GroupId,
    ) -> Result<(SegmentLog, PartitionStateMachine, OpenReport)> {
        let applied = PartitionStateMachine::stored_last_applied(group, &self.state)?;
        let (log, report) = SegmentLog::open(
            group,
            &self.group_dir(group),
            self.config.clone(),
            NodeLogs {
                flusher: self.flusher.clone(),
                remover: self.remover.clone(),
                recent_pool: Arc::clone(&self.recent_pool),
                page_cache: Arc::clone(&self.page_cache),
            },
            applied,
        )?;
        let state_machine = PartitionStateMachine::open(group, &self.state, &log)?;
        Ok((log, state_machine, report))
    }

    /// Where a group's files live.
    pub fn group_dir(&self, group: GroupId) -> PathBuf {
        self.data_dir.join("groups").join(group.0.to_string())
    }

    /// The node's group-commit flusher.
    pub fn flusher(&self) -> &GroupCommit {
        &self.flusher
    }

    /// Encoded bytes of recent entries all of the node's logs keep in memory (at most
    /// `LogConfig::recent_entries_node_bytes`, give or take the entries of one append).
    pub fn recent_entries_bytes(&self) -> u64 {
        self.recent_pool.held()
    }

    /// Segment bytes the node counts as in the page cache (at most
    /// `LogConfig::page_cache_node_bytes`, give or take one read or run of writes).
    pub fn page_cache_bytes(&self) -> u64 {
        self.page_cache.held()
    }

    /// The node's state database.
    pub fn state_store(&self) -> &StateStore {
        &self.state
    }
}
