//! Errors of the multi-Raft host.

use raftlog_types::GroupId;

/// What can go wrong hosting Raft groups.
#[derive(Debug, thiserror::Error)]
pub enum RaftHostError {
    /// openraft refused the group's configuration.
    #[error("invalid Raft configuration for group {group}")]
    Config {
        /// The group.
        group: GroupId,
        /// openraft's complaint.
        #[source]
        source: Box<openraft::ConfigError>,
    },
    /// openraft could not start the group (its storage failed).
    #[error("could not start Raft group {group}")]
    Start {
        /// The group.
        group: GroupId,
        /// What stopped it.
        #[source]
        source: Box<openraft::error::Fatal<u64>>,
    },
    /// The group's stored vote could not be rewritten before it started.
    #[error("could not store the vote of Raft group {group}")]
    Storage {
        /// The group.
        group: GroupId,
        /// What the storage said.
        #[source]
        source: Box<raftlog_storage::StorageError>,
    },
    /// The group is already running on this node.
    #[error("Raft group {group} is already running")]
    AlreadyRunning {
        /// The group.
        group: GroupId,
    },
}
