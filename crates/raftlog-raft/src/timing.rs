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

/// Heartbeat and election timers, in milliseconds, and how often the controller snapshots:
/// the `[raft]` section of the cluster configuration, and the one place their defaults are
/// written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTiming {
    /// Leader heartbeat period (`RAFT_HEARTBEAT_INTERVAL_MS_MIN ..= _MAX`).
    pub heartbeat_interval_ms: u64,
    /// Lower bound of the randomized election timeout; more than 3 heartbeat intervals.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomized election timeout; above the lower bound.
    pub election_timeout_max_ms: u64,
    /// The controller group snapshots its state (metadata and committed offsets) once this many
    /// entries were applied since its last snapshot, and purges its log below the snapshot but
    /// for a tenth of this many entries, which a follower a little behind still replicates from;
    /// one further behind installs the snapshot. Kafka's KRaft snapshots its metadata log alike
    /// (`metadata.log.max.record.bytes.between.snapshots`).
    pub controller_snapshot_entries: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming {
            heartbeat_interval_ms: 250,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            controller_snapshot_entries: 10_000,
        }
    }
}

impl RaftTiming {
    /// The vote-refusal window: a replica refuses votes (and pre-votes) until it has not heard
    /// from its leader for this long, whether by a Raft AppendEntries (openraft's own lease,
    /// see `openraft_config`) or by a light heartbeat (`RaftHost::refuses_votes`). Below the
    /// shortest election timeout, so a candidate the host starts after its leader died is
    /// never refused for a leader that is already gone.
    pub fn vote_refusal_ms(&self) -> u64 {
        (self.election_timeout_min_ms * 3 / 4).max(self.heartbeat_interval_ms + 2)
    }

    /// The read lease: how long after a majority acknowledged it (measured from when the
    /// acknowledged message was sent) a leader still acts as the partition's leader, e.g. says
    /// an offset above its high watermark does not exist. It must end before any voter of that
    /// majority can grant a vote to someone else: each refuses for `vote_refusal_ms` from when it
    /// received the message, which is no earlier than it was sent. Kept a quarter of the
    /// shortest election timeout below that window, for clocks that run at slightly different
    /// rates, and above two heartbeat intervals, so an idle leader's light heartbeats renew it.
    pub fn read_lease_ms(&self) -> u64 {
        (self.election_timeout_min_ms / 2).max(2 * self.heartbeat_interval_ms + 1)
    }

    /// CheckQuorum: a leader that has had no acknowledgement from a majority for this long
    /// steps down (`watchdog.rs`), so that its followers (which may still hear it, if only one
    /// direction is cut) stand for election and clients find the new leader.
    pub fn check_quorum_ms(&self) -> u64 {
        self.election_timeout_min_ms
    }

    /// How long this node's log may have a sync outstanding, with none completing, before the
    /// node counts its disk as stalled: its groups' leaders step down and it stands for no
    /// election until a sync completes (`watchdog.rs`). Half the shortest election timeout, so
    /// that with the followers' election timeout the partitions it led take writes again
    /// within two election timeouts; a healthy sync takes milliseconds.
    pub fn disk_stall_ms(&self) -> u64 {
        self.election_timeout_min_ms / 2
    }

    /// How long a leader waits for a follower's answer to an AppendEntries before it gives up
    /// on it; the next heartbeat sends it again. Half the shortest election timeout (at least a
    /// heartbeat interval), so that a follower slow to answer still hears its leader well
    /// within its election timeout; always below the lease.
    pub fn append_entries_timeout_ms(&self) -> u64 {
        self.heartbeat_interval_ms
            .max(self.election_timeout_min_ms / 2)
    }

    /// openraft's configuration for one group. Partition groups never take a snapshot by
    /// openraft's own policy: they are asked to when retention moved their log start, and then
    /// purge their log right up to it. The controller group snapshots every
    /// `controller_snapshot_entries` entries and keeps a tenth of that behind its snapshot.
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
        let lease_ms = self.vote_refusal_ms();
        let (snapshot_policy, max_in_snapshot_log_to_keep) = if group == GroupId::CONTROLLER {
            let entries = self.controller_snapshot_entries;
            (
                openraft::SnapshotPolicy::LogsSinceLast(entries),
                entries / 10,
            )
        } else {
            // A partition snapshot is taken only when retention moved its log start, below it
            // (raftlog-server's `partition/retention.rs`), and the log is purged right up to
            // it: what stays is what retention keeps, not a count of entries.
            (openraft::SnapshotPolicy::Never, 0)
        };
        let config = openraft::Config {
            cluster_name: format!("group-{group}"),
            heartbeat_interval: self.append_entries_timeout_ms(),
            election_timeout_min: lease_ms - 1,
            election_timeout_max: lease_ms,
            max_payload_entries: APPEND_ENTRIES_ENTRIES_MAX,
            commit_notify_delay_us: COMMIT_NOTIFY_DELAY_US,
            snapshot_policy,
            max_in_snapshot_log_to_keep,
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

    /// The read lease ends before a voter that acknowledged it may vote for another node, and
    /// that refusal ends before the shortest election timeout, so a candidate is never refused
    /// for a leader that is gone; an idle leader's light heartbeats renew the lease in time.
    #[test]
    fn the_read_lease_ends_before_voters_may_vote_again() {
        for timing in [
            RaftTiming::default(),
            RaftTiming {
                heartbeat_interval_ms: 100,
                election_timeout_min_ms: 500,
                election_timeout_max_ms: 1000,
                ..RaftTiming::default()
            },
            RaftTiming {
                heartbeat_interval_ms: 50,
                election_timeout_min_ms: 151,
                election_timeout_max_ms: 300,
                ..RaftTiming::default()
            },
        ] {
            let (read, refusal) = (timing.read_lease_ms(), timing.vote_refusal_ms());
            assert!(
                read < refusal,
                "{timing:?}: read {read} ms, refusal {refusal} ms"
            );
            assert!(refusal < timing.election_timeout_min_ms, "{timing:?}");
            assert!(read > 2 * timing.heartbeat_interval_ms, "{timing:?}");
            let config = timing.openraft_config(GroupId(1)).unwrap();
            assert_eq!(config.election_timeout_max, refusal, "openraft's lease");
        }
    }

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
                ..RaftTiming::default()
            },
            RaftTiming {
                heartbeat_interval_ms: 50,
                election_timeout_min_ms: 150,
                election_timeout_max_ms: 300,
                ..RaftTiming::default()
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
