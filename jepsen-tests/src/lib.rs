//! raftlog's fault-injection harness, in the spirit of Jepsen's queue/Kafka workload.
//!
//! This crate holds the part that decides whether a run was correct: the [`history`] format
//! (every operation's invocation and completion, as JSON lines) and the [`checker`], which
//! re-implements the anomaly checks of Jepsen's Kafka workload, one file per property. Cluster
//! control, the nemesis and the workload that produce histories build on it.

pub mod checker;
pub mod clock;
pub mod cluster;
pub mod disk;
pub mod history;
pub mod nemesis;
pub mod network;
pub mod plot;
pub mod run;

pub use checker::check;
pub use checker::Report;
pub use history::History;
pub use history::Op;
