//! What the cluster knows about a node: where its peers and its clients reach it.

use std::fmt;

use serde::Deserialize;
use serde::Serialize;

/// A node's addresses, stored in every Raft membership so any replica can tell a client where
/// the leader is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `host:port` of the node-to-node Raft transport.
    pub peer_addr: String,
    /// `host:port` of the public client API.
    pub client_addr: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer={} client={}", self.peer_addr, self.client_addr)
    }
}
