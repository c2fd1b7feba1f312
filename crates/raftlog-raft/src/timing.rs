//! Raft timers, shared by every group of a node.

use std::sync::Arc;

use raftlog_types::limits::APPEND_ENTRIES_ENTRIES_MAX;
use raftlog_types::GroupId;

use crate::error::RaftHostError;

/// How long a leader holds back a commit index for the next AppendEntries with entries to carry
/// it (openraft patch 3). A synchronous producer's next record comes well within it; sending the
/// index on its own would delay that record's replication by a round trip (measured in
/// benchmarks/HISTORY.md). Only followers' view of the high watermark waits, and at most this
/// long.
const COMMIT_NOTIFY_DELAY_US: u64 = 5_000;

/// Heartbeat and election timers, in milliseconds: the `[raft]` section of the cluster
/// configuration, and the one place their defaults are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTiming {
    /// Leader heartbeat period (`RAFT_HEARTBEAT_INTERVAL_MS_MIN ..= _MAX`).
    pub heartbeat_interval_ms: u64,
    /// Lower bound of the randomized election timeout; more than 3 heartbeat intervals.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomized election timeout; above the lower bound.
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
    /// The leader lease: a replica refuses votes until it has not heard from its leader for
    /// this long (see `openraft_config`).
    fn lease_ms(&self) -> u64 {
        (self.election_timeout_min_ms * 3 / 4).max(self.heartbeat_interval_ms + 2)
    }

    /// How long a leader waits for a follower's answer to an AppendEntries before it gives up
    /// on it; the next heartbeat sends it again. Half the shortest election timeout (at least a
    /// heartbeat interval), so that a follower slow to answer still hears its leader well
    /// within its election timeout; always below the lease.
    pub fn append_entries_timeout_ms(&self) -> u64 {
        self.heartbeat_interval_ms
            .max(self.election_timeout_min_ms / 2)
    }

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
        //
        // openraft's `heartbeat_interval` is only how long it waits for an AppendEntries answer
        // (its own heartbeats are off). A follower answers once the entries are fsynced, and
        // when the disk is busy (other writers flushing gigabytes) that takes longer than a
        // heartbeat interval: every send timed out and went again with the same entries, and a
        // timeout after one failed connect even backed off half a second, so followers heard
        // their leader too seldom and stood for election. See `append_entries_timeout_ms`.
        let lease_ms = self.lease_ms();
        let config = openraft::Config {
            cluster_name: format!("group-{group}"),
            heartbeat_interval: self.append_entries_timeout_ms(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A follower slow to answer hears its leader at least once per AppendEntries timeout plus
    /// a heartbeat interval (a timed-out send goes again with the next heartbeat); that must
    /// stay within the shortest election timeout, and the timeout below openraft's vote
    /// timeout, which its configuration check requires.
    #[test]
    fn a_slow_follower_hears_its_leader_within_its_election_timeout() {
        let timings = [
            RaftTiming::default(),
            RaftTiming {
                heartbeat_interval_ms: 100,
                election_timeout_min_ms: 500,
                election_timeout_max_ms: 1000,
            },
            RaftTiming {
                heartbeat_interval_ms: 50,
                election_timeout_min_ms: 150,
                election_timeout_max_ms: 300,
            },
        ];
        for timing in timings {
            let timeout = timing.append_entries_timeout_ms();
            assert!(timeout >= timing.heartbeat_interval_ms, "{timing:?}");
            assert!(
                timeout + timing.heartbeat_interval_ms < timing.election_timeout_min_ms,
                "{timing:?}: {timeout} ms"
            );
            let config = timing
                .openraft_config(GroupId(1))
                .unwrap_or_else(|e| panic!("{timing:?}: {e}"));
            assert_eq!(config.heartbeat_interval, timeout);
            assert!(config.election_timeout_min > timeout, "{timing:?}");
        }
    }
}
