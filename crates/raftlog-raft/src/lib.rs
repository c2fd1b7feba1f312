//! The multi-Raft host: every Raft group a node replicates (the controller and each partition
//! replica) runs as its own openraft instance, and all of them share one gRPC service
//! (`RaftTransport`) and one pooled connection per peer. Requests carry their group id.
//!
//! # Layout
//! - `registry`: [`RaftHost`], one `HostedGroup` per running group in one map, and the stop
//!   and join of the node-wide timers;
//! - `election_clock`: each replica's election deadline and its ranked timeouts;
//! - `timers`: starts the node-wide timers, `heartbeat` (light heartbeats of the idle groups
//!   led here, and their acknowledgements), `election` (the election timer, which stands only
//!   after a `pre_vote`) and `watchdog` (CheckQuorum, stalled disks and wedged cores: leaders
//!   that cannot lead step down);
//! - `timing`: [`RaftTiming`], the timers' configuration, and openraft's config from it;
//! - `peer`: the connection pool, the `Replicate` stream per peer, and retry backoff;
//! - `openraft_network`: openraft's network traits over the pool (the client side);
//! - `transport`: the `RaftTransport` service (the server side).

mod election;
mod election_clock;
pub mod error;
mod heartbeat;
pub mod openraft_network;
pub mod peer;
mod pre_vote;
mod registry;
mod ticks;
mod timers;
pub mod timing;
pub mod transport;
mod watchdog;

pub use error::RaftHostError;
pub use openraft_network::GroupNetwork;
pub use openraft_network::GroupNetworkFactory;
pub use peer::PeerPool;
pub use registry::GroupFailure;
pub use registry::RaftHost;
pub use timing::RaftTiming;
pub use transport::PeerDirectory;
pub use transport::TransportService;

/// One Raft group's handle.
pub type RaftGroup = openraft::Raft<raftlog_types::TypeConfig>;
