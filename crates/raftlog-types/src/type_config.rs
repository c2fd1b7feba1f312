//! The openraft type configuration shared by every group of every node.

use std::io::Cursor;

use crate::command::Command;
use crate::command::CommandResponse;
use crate::ids::NodeId;
use crate::node::NodeInfo;

openraft::declare_raft_types!(
    /// One configuration for the controller and every partition group, so the transport and
    /// the storage engine handle all groups alike.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A log entry of any group.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id: term, leader and index.
pub type LogId = openraft::LogId<NodeId>;
/// A vote: term, candidate and whether it is committed.
pub type Vote = openraft::Vote<NodeId>;
