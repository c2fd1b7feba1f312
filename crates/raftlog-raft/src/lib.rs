//! The multi-Raft host: every Raft group a node replicates (the controller and each partition
//! replica) runs as its own openraft instance, and all of them share one gRPC service
//! (`RaftTransport`) and one pooled connection per peer. Requests carry their group id.

pub mod error;
pub mod host;
pub mod network;
pub mod timing;
pub mod transport;

pub use error::RaftHostError;
pub use host::RaftHost;
pub use network::PeerPool;
pub use timing::RaftTiming;
pub use transport::PeerDirectory;
pub use transport::TransportService;

/// One Raft group's handle.
pub type RaftGroup = openraft::Raft<raftlog_types::TypeConfig>;
