//! Types shared by every raftlog layer: identifiers, records and batches, the commands that
//! travel through Raft, the openraft type configuration and the limits every layer enforces.
//!
//! This crate has no I/O; it only says what the data is and how large it may be.

pub mod command;
pub mod ids;
pub mod limits;
pub mod node;
pub mod record;
pub mod shared_bytes;
pub mod topic;
pub mod topic_config;
pub mod type_config;

pub use command::BatchResult;
pub use command::Command;
pub use command::CommandResponse;
pub use command::ControllerCommand;
pub use command::ProducerBatch;
pub use command::ProducerSequence;
pub use ids::GroupId;
pub use ids::NodeId;
pub use ids::Offset;
pub use node::NodeInfo;
pub use record::Header;
pub use record::Record;
pub use type_config::TypeConfig;
