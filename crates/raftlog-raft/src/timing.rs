//! Raft timers, shared by every group of a node.

use std::sync::Arc;

use raftlog_types::limits::APPEND_ENTRIES_ENTRIES_MAX;
use raftlog_types::GroupId;

use crate::error::RaftHostError;

/// How long a leader holds back a commit index for the next AppendEntries with entries to carry
/// it (openraft patch 3). A synchronous producer's next record comes well within it; sending the
/// index on its own would delay that record's replication by a round trip (p50 of one
/// synchronous producer: 1.5–1.7 ms → 1.3 ms on the development VM). Only followers' view of
/// the high watermark waits, and at most this long.
const COMMIT_NOTIFY_DELAY_US: u64 = 5_000;

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
        // Elections and heartbeats are driven by the host (`RaftHost::spawn_election_timer`,
        // `spawn_heartbeats`), so openraft's timers are off. Its election timeout still sets
        // the leader lease: a replica refuses votes until it has not heard from its leader for
        // `election_timeout_max`. That lease is kept below the host's shortest election timeout,
        // so a candidate the host starts is never refused for a leader that is already gone.
        //
        // openraft gives up on a vote request after its `election_timeout_min`, which is otherwise
        // unused here, so it is set just below the lease: a voter that is slow to answer (it saves
        // each vote with an fdatasync, and after a node dies it gets hundreds at once) still has
        // its grant counted, rather than leaving the candidate to stand again a timeout later.
        let lease_ms = (self.election_timeout_min_ms * 3 / 4).max(self.heartbeat_interval_ms + 2);
        let config = openraft::Config {
            cluster_name: format!("group-{group}"),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: lease_ms - 1,
            election_timeout_max: lease_ms,
            max_payload_entries: APPEND_ENTRIES_ENTRIES_MAX,
            commit_notify_delay_us: COMMIT_NOTIFY_DELAY_US,
            snapshot_policy: openraft::SnapshotPolicy::Never,
            enable_heartbeat: false,
            enable_tick: false,
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
