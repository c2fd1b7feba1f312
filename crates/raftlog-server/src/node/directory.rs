//! The node's answers to its peers' node-level questions (`PeerDirectory`): who a peer is
//! (the identity check of new data dirs) and how the asked groups stand here.

use std::sync::Arc;

use raftlog_proto::internal::GroupStatus;
use raftlog_proto::internal::GroupStatusRequest;
use raftlog_proto::internal::GroupStatusResponse;
use raftlog_proto::internal::IdentifyRequest;
use raftlog_proto::internal::IdentifyResponse;
use raftlog_raft::PeerDirectory;
use raftlog_raft::RaftHost;
use raftlog_types::GroupId;
use tonic::Status;

use super::identity::PeerRegistry;
use crate::context::PartitionMap;

/// Answers the node-level questions of peers.
pub(super) struct NodeDirectory {
    pub(super) peers: PeerRegistry,
    pub(super) host: Arc<RaftHost>,
    pub(super) partitions: PartitionMap,
}

impl PeerDirectory for NodeDirectory {
    fn identify(&self, request: IdentifyRequest) -> Result<IdentifyResponse, Status> {
        self.peers.identify(&request)
    }

    fn group_status(&self, request: GroupStatusRequest) -> Result<GroupStatusResponse, Status> {
        let groups = request
            .group_ids
            .into_iter()
            .filter_map(|id| {
                let raft = self.host.group(GroupId(id))?;
                let metrics = raft.metrics().borrow().clone();
                let partition = self.partitions.read().get(&GroupId(id)).cloned();
                let (high_watermark, log_start_offset) = match partition {
                    Some(p) => {
                        // The start first: read after it, the high watermark is never below it.
                        let log_start_offset = p.log_start_offset().unwrap_or(0);
                        (p.view.high_watermark(), log_start_offset)
                    }
                    None => (0, 0),
                };
                Some(GroupStatus {
                    group_id: id,
                    leader_id: metrics.current_leader,
                    term: metrics.current_term,
                    high_watermark,
                    log_start_offset,
                    snapshot_index: metrics.snapshot.map(|id| id.index),
                    purged_index: metrics.purged.map(|id| id.index),
                    last_log_index: metrics.last_log_index,
                })
            })
            .collect();
        Ok(GroupStatusResponse { groups })
    }
}
