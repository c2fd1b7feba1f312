//! The application data that travels through Raft, and what applying it returns.

use std::fmt;

use serde::Deserialize;
use serde::Serialize;

use crate::ids::NodeId;
use crate::record::RecordBatch;

/// A command in a group's Raft log. Variants are only ever added at the end: their position is
/// their encoding in existing log files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Append a batch of records to a partition; it receives the next offsets in apply order.
    AppendBatch(RecordBatch),
    /// Change cluster metadata; only the controller group (group 0) carries these.
    Controller(ControllerCommand),
}

/// A change to the cluster metadata held by the controller group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerCommand {
    /// Create a topic whose partition `i` is replicated on `assignments[i]` (first = preferred
    /// leader). Group ids are allocated when the command is applied, so every replica of the
    /// controller allocates the same ones.
    CreateTopic {
        /// Validated topic name.
        name: String,
        /// Replica node ids of each partition.
        assignments: Vec<Vec<NodeId>>,
        /// Creation time in milliseconds since the Unix epoch, stamped by the proposer.
        created_at_ms: i64,
    },
    /// Delete a topic and its partitions.
    DeleteTopic {
        /// Name of the topic.
        name: String,
    },
}

impl Command {
    /// A close upper estimate of the encoded size, so encoders can size their buffer once
    /// instead of growing it while copying megabytes of record data.
    pub fn encoded_bytes_hint(&self) -> usize {
        match self {
            Command::Controller(_) => 256,
            Command::AppendBatch(batch) => {
                16 + batch
                    .records
                    .iter()
                    .map(|r| r.encoded_bytes_estimate() as usize)
                    .sum::<usize>()
            }
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::AppendBatch(batch) => write!(f, "AppendBatch({} records)", batch.len()),
            Command::Controller(command) => write!(f, "Controller({command:?})"),
        }
    }
}

/// The result of applying one log entry to a state machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// The entry carried no command (blank or membership entry).
    #[default]
    None,
    /// A batch was appended: its records hold offsets `base_offset .. base_offset + record_count`.
    Appended {
        /// Offset of the batch's first record.
        base_offset: u64,
        /// Number of records, and so of offsets, in the batch.
        record_count: u32,
    },
    /// A topic was created; its partitions got groups `first_group_id ..`.
    TopicCreated {
        /// Group id of partition 0; partition `i` has `first_group_id + i`.
        first_group_id: u64,
    },
    /// A topic was deleted.
    TopicDeleted,
    /// The controller refused the command; the state did not change.
    Rejected {
        /// Stable reason code, e.g. `TOPIC_EXISTS`.
        reason: String,
        /// Human-readable explanation.
        message: String,
    },
}
