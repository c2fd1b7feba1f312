//! The quorum lease: a leader acts as the partition's leader (takes writes, declares offsets
//! absent) only while a majority has acknowledged it recently. A leader cut off from the others
//! still calls itself leader until it hears of a newer term.

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
        let voters: Vec<NodeId> = metrics.membership_config.membership().voter_ids().collect();
        let light_ms = self
            .host
            .light_quorum_age(self.group, metrics.current_term, &voters)
            .map(|age| age.as_millis() as u64);
        // Not `millis_since_quorum_ack`: that is the age when the metrics were last reported,
        // and an idle leader cut off from the others reports nothing (openraft patch 4).
        let raft_ms = metrics
            .last_quorum_acked
            .map(|acked| acked.elapsed().as_millis() as u64);
        match (raft_ms, light_ms) {
            (Some(raft), Some(light)) => Some(raft.min(light)),
            (raft, light) => raft.or(light),
        }
    }

    /// Whether a majority acknowledged this node as leader within the lease.
    pub fn holds(&self, metrics: &RaftMetrics<NodeId, NodeInfo>) -> bool {
        self.contact_age_ms(metrics)
            .is_some_and(|age_ms| age_ms <= self.lease.as_millis() as u64)
    }
}
