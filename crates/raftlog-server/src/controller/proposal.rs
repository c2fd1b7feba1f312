//! Proposing a metadata change to the controller group: applied here when this node leads it,
//! or the leader to forward to.

use std::time::Duration;

use openraft::error::ClientWriteError;
use openraft::error::RaftError;
use raftlog_raft::RaftGroup;
use raftlog_types::Command;
use raftlog_types::CommandResponse;
use raftlog_types::ControllerCommand;
use raftlog_types::NodeId;

use crate::error::ServerError;

/// How the controller handled a proposed command.
pub(crate) enum ControllerOutcome {
    /// Applied here (this node leads the controller), with the state machine's response.
    Applied(CommandResponse),
    /// Another node leads the controller (if known).
    Forward(Option<NodeId>),
}

/// Proposes `command` to the controller group and waits up to `timeout` for it to be applied.
pub(crate) async fn propose(
    controller: &RaftGroup,
    command: ControllerCommand,
    timeout: Duration,
) -> Result<ControllerOutcome, ServerError> {
    let write = controller.client_write(Command::Controller(command));
    match tokio::time::timeout(timeout, write).await {
        Err(_) => Err(ServerError::Timeout {
            what: "the controller".into(),
            timeout_ms: timeout.as_millis() as u64,
        }),
        Ok(Ok(response)) => Ok(ControllerOutcome::Applied(response.data)),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))) => {
            Ok(ControllerOutcome::Forward(forward.leader_id))
        }
        Ok(Err(error)) => Err(ServerError::internal(&error)),
    }
}
