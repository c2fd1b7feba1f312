//! A raftlog node: the controller group (cluster metadata), the partition replicas the
//! controller assigns here with their produce batchers, the consumer-group coordinator, and
//! the gRPC services (public `raftlog.v1`, internal Raft transport, health, reflection).
//!
//! The binary only parses arguments and calls [`run`], which ends when its shutdown future
//! completes and every task the node started has stopped.
//!
//! # Layout
//! From the bottom floor up; each module imports only from the ones before it:
//! - `config`, `error`: the cluster configuration and the node's errors (public);
//! - `controller`: the metadata group's state, state machine, placement and proposals;
//! - `partition`: a partition replica, its batcher and its quorum lease;
//! - `consumer_group`: the consumer-group coordinator and its sessions;
//! - `context`: `NodeContext`, what the services and background tasks share;
//! - `api`: one thin adapter per public gRPC service;
//! - `node`: [`run`], the start order, the task set and the partition replicas' manager.
//!
//! The life of a produce and of a fetch, hop by hop: `docs/ARCHITECTURE.md`.

mod api;
pub mod config;
mod consumer_group;
mod context;
mod controller;
pub mod error;
mod node;
mod partition;

pub use config::ClusterConfig;
pub use config::ConfigError;
pub use error::NodeError;
pub use error::ServerError;
pub use node::run;

/// The controller's state machine, public only for the crate's benchmark of its apply cost
/// (`benches/controller_apply.rs`); nodes build it themselves.
#[doc(hidden)]
pub use controller::ControllerStateMachine;
