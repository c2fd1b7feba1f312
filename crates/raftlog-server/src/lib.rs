//! A raftlog node: the controller group (cluster metadata), the partition manager that runs the
//! partition groups the controller assigns here, the per-partition produce batcher, and the
//! gRPC services (public `raftlog.v1`, internal Raft transport, health, reflection).
//!
//! The binary only parses arguments and calls [`run`], which ends when its shutdown future
//! completes.

pub mod batcher;
pub mod config;
pub mod controller;
pub mod error;
pub mod groups;
pub mod identity;
pub mod lease;
pub mod manager;
pub mod node;
pub mod partition;
pub mod service;

pub use config::ClusterConfig;
pub use config::ConfigError;
pub use error::ServerError;
pub use node::run;
pub use node::NodeError;
