//! Raft timers, shared by every group of a node.

use std::sync::Arc;

use raftlog_types::limits::APPEND_ENTRIES_ENTRIES_MAX;
use raftlog_types::GroupId;

use crate::error::RaftHostError;

/// Heartbeat and election timers, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaftTiming {
    /// Leader heartbeat period.
    pub heartbeat_interval_ms: u64,
    /// Lower bound of the randomized election timeout.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomized election timeout.
    pub election_timeout_max_ms: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming {
            heartbeat_interval_ms: 250,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
        }
    }
}

impl RaftTiming {
    /// openraft's configuration for one group. Snapshots are never taken and logs never purged
    /// (see DESIGN.md): lagging and new replicas catch up from the log itself.
    pub fn openraft_config(&self, group: GroupId) -> Result<Arc<openraft::Config>, RaftHostError> {
        let config = openraft::Config {
            cluster_name: format!("group-{group}"),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            max_payload_entries: APPEND_ENTRIES_ENTRIES_MAX,
            snapshot_policy: openraft::SnapshotPolicy::Never,
            // The host sends every group's heartbeats together (`RaftHost::spawn_heartbeats`).
            enable_heartbeat: false,
            ..Default::default()
        };
        config
            .validate()
            .map(Arc::new)
            .map_err(|source| RaftHostError::Config {
                group,
                source: Box::new(source),
            })
    }
}
