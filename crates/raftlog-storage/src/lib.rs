//! raftlog's durable storage.
//!
//! - [`SegmentLog`]: a group's Raft log in CRC-framed, preallocated segment files, implementing
//!   openraft's `RaftLogStorage`. An append is acknowledged to openraft only after `fdatasync`;
//!   one [`GroupCommit`] flusher per node coalesces the syncs of every group.
//! - [`PartitionStateMachine`]: a partition's derived state (offsets, applied index,
//!   membership) in the node's sled database ([`StateStore`]), implementing `RaftStateMachine`.
//! - [`NodeStorage`]: the data directory of one node, tying the two together.
//!
//! Each module states the durability of its write paths next to them.

pub mod disk_space;
pub mod durability;
pub mod error;
mod file_remover;
pub mod frame;
mod fsutil;
pub mod group_commit;
pub mod log_store;
pub mod meta;
pub mod node_storage;
pub mod page_cache;
mod recent;
mod replicas;
pub mod segment;
pub mod state_machine;
pub mod state_store;

pub use disk_space::DiskSpace;
pub use disk_space::LowDiskSpace;
pub use durability::Durability;
pub use error::StorageError;
pub use fsutil::preallocate;
pub use fsutil::DiskRead;
pub use group_commit::GroupCommit;
pub use log_store::LogConfig;
pub use log_store::SegmentLog;
pub use log_store::SegmentSpan;
pub use node_storage::NodeStorage;
pub use page_cache::PageCacheBudget;
pub use state_machine::CheckpointMark;
pub use state_machine::PartitionStateMachine;
pub use state_machine::PartitionView;
pub use state_store::StateStore;
