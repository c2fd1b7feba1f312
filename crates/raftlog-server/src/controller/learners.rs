//! On the controller leader, every roster node that is not a controller voter is added as a
//! learner, so that every node follows the metadata.

use std::time::Duration;

use raftlog_raft::RaftGroup;
use raftlog_types::NodeId;
use raftlog_types::NodeInfo;
use tokio_util::sync::CancellationToken;

use crate::config::NodeEntry;

/// How often the controller leader looks for roster nodes missing from the controller group.
const LEARNER_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Runs until `shutdown` is cancelled.
pub(crate) async fn run_learners(
    controller: RaftGroup,
    node_id: NodeId,
    roster: Vec<NodeEntry>,
    shutdown: CancellationToken,
) {
    loop {
        let is_leader = controller.metrics().borrow().current_leader == Some(node_id);
        if is_leader {
            let membership = controller.metrics().borrow().membership_config.clone();
            for node in &roster {
                if membership.membership().get_node(&node.id).is_none() {
                    let info = NodeInfo {
                        peer_addr: node.peer_addr.clone(),
                        client_addr: node.client_addr.clone(),
                    };
                    if let Err(error) = controller.add_learner(node.id, info, false).await {
                        tracing::warn!(group = 0, node = node.id, %error, "could not add controller learner");
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(LEARNER_CHECK_INTERVAL) => {}
        }
    }
}
