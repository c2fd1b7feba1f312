//! Consumer-group sessions: while this node leads the controller, members that stopped
//! heartbeating are expired; when it stops leading, every member is forgotten (members then
//! join the new leader again, which waits out their old sessions before moving partitions).

use std::sync::Arc;
use std::time::Duration;

use raftlog_raft::RaftGroup;
use raftlog_types::NodeId;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::ConsumerGroupCoordinator;
use crate::controller::ControllerState;

/// How often sessions are checked: the granularity of a session timeout.
const SESSION_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// Runs until `shutdown` is cancelled.
pub(crate) async fn run_sessions(
    coordinator: Arc<ConsumerGroupCoordinator>,
    controller: RaftGroup,
    node_id: NodeId,
    metadata: watch::Receiver<Arc<ControllerState>>,
    shutdown: CancellationToken,
) {
    let mut was_leader = false;
    loop {
        let (is_leader, term) = {
            let metrics = controller.metrics();
            let metrics = metrics.borrow();
            (
                metrics.current_leader == Some(node_id),
                metrics.current_term,
            )
        };
        if is_leader {
            // Noticing the takeover here, not at the first request, starts the wait for the
            // previous coordinator's members as early as possible.
            coordinator.lead(term);
            let metadata = metadata.borrow().clone();
            coordinator.expire(&metadata);
        } else if was_leader {
            coordinator.clear();
        }
        was_leader = is_leader;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(SESSION_CHECK_INTERVAL) => {}
        }
    }
}
