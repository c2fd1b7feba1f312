//! Consumer groups (Kafka's meaning: consumers that share a topic's partitions), not Raft
//! groups. The controller leader coordinates every consumer group:
//! - `coordinator`: live membership, generations and incremental assignment;
//! - `sessions`: expiring members that stopped heartbeating, and forgetting them all when this
//!   node stops leading the controller.
//!
//! Committed offsets are controller state (`controller::state`), written through its Raft group.

mod coordinator;
mod sessions;

pub(crate) use coordinator::ConsumerGroupCoordinator;
pub(crate) use coordinator::Join;
pub(crate) use coordinator::Strategy;
pub(crate) use coordinator::TopicPartition;
pub(crate) use sessions::run_sessions;
