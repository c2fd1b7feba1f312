//! The quorum lease: a leader acts as the partition's leader (takes writes, declares offsets
//! absent) only while a majority has acknowledged it recently: within `RaftTiming::read_lease_ms`,
//! which ends before any voter of that majority may vote for another node. A leader cut off
//! from the others steps down once CheckQuorum's window passes (raftlog-raft's watchdog).

use std::sync::Arc;
use std::time::Duration;

use openraft::RaftMetrics;
use raftlog_raft::RaftHost;
use raftlog_types::GroupId;
use raftlog_types::NodeId;
use raftlog_types::NodeInfo;

/// One partition's lease, as its leader on this node sees it.
#[derive(Clone)]
pub struct QuorumLease {
    /// The node's Raft host, which knows the light-heartbeat acknowledgements of idle groups.
    pub host: Arc<RaftHost>,
    /// The partition's group.
    pub group: GroupId,
    /// How recent a majority's acknowledgement must be.
    pub lease: Duration,
}

impl QuorumLease {
    /// Milliseconds since a majority of the voters last acknowledged this node as leader of its
    /// current term: Raft acknowledgements while entries flow, light-heartbeat ones while idle.
    /// `None` if they never did.
    pub fn contact_age_ms(&self, metrics: &RaftMetrics<NodeId, NodeInfo>) -> Option<u64> {
        self.host
            .quorum_contact_age(self.group, metrics)
            .map(|age| age.as_millis() as u64)
    }

    /// Whether a majority acknowledged this node as leader within the lease.
    pub fn holds(&self, metrics: &RaftMetrics<NodeId, NodeInfo>) -> bool {
        self.contact_age_ms(metrics)
            .is_some_and(|age_ms| age_ms <= self.lease.as_millis() as u64)
    }
}
