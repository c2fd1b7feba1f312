//! The application data that travels through Raft, and what applying it returns.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::Serialize;

use crate::ids::NodeId;

/// A command in a group's Raft log. Variants are only ever added at the end: their position is
/// their encoding in existing log files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Change cluster metadata; only the controller group (group 0) carries these.
    Controller(ControllerCommand),
    /// Append several producers' batches; each is accepted or refused on its own (producer
    /// sequence checks), and accepted ones receive the next offsets in order.
    AppendBatches(Vec<ProducerBatch>),
    /// `AppendBatches` stamped with the proposing leader's wall clock. Every partition entry
    /// proposed today is one of these; `AppendBatches` remains for entries already in logs.
    /// Producer expiry runs on the stamps (monotonically: the largest seen so far), never on
    /// the records' client timestamps, so a client's clock cannot move it.
    StampedAppendBatches {
        /// The leader's wall clock when it proposed the entry, ms since the Unix epoch.
        leader_time_ms: i64,
        /// The batches, as in `AppendBatches`.
        batches: Vec<ProducerBatch>,
    },
    /// Move the partition's log start offset forward to `log_start_offset` (clamped to the high
    /// watermark; never backward): records below it are deleted on every replica, which then
    /// frees whole segments below it. Retention (size or time, decided by the leader) and
    /// `DeleteRecords` both propose it, so that the replicas agree on the log start through the
    /// log instead of each deciding on its own clock.
    AdvanceLogStart {
        /// The new first offset.
        log_start_offset: u64,
    },
}

/// An idempotent producer's numbering of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerSequence {
    /// Cluster-wide unique producer id.
    pub producer_id: u64,
    /// Sequence number of the batch's first record.
    pub base_sequence: u64,
}

/// One produce request's records, as merged into a Raft entry by the batcher.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerBatch {
    /// Set for idempotent producers.
    pub producer: Option<ProducerSequence>,
    /// The records.
    pub records: Vec<crate::record::Record>,
}

/// What happened to one batch of an `AppendBatches` or `StampedAppendBatches` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchResult {
    /// Written at `base_offset ..`.
    Appended {
        /// First offset.
        base_offset: u64,
        /// Number of records.
        record_count: u32,
    },
    /// An exact retry of a batch written before at `base_offset ..`; not written again.
    Duplicate {
        /// First offset of the original.
        base_offset: u64,
        /// Number of records.
        record_count: u32,
    },
    /// The sequence does not follow the producer's last one.
    OutOfOrder {
        /// The sequence that would have been accepted.
        expected: u64,
        /// The sequence received.
        received: u64,
    },
    /// The partition does not know the producer, and the batch does not start at sequence 0.
    UnknownProducer {
        /// The sequence received.
        received: u64,
    },
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
    /// Issue the next producer id.
    AllocateProducerId,
    /// Set committed positions of a consumer group.
    CommitOffsets {
        /// The group.
        group: String,
        /// (topic, partition, next offset to read).
        offsets: Vec<(String, u32, u64)>,
    },
    /// Raise the longest session timeout granted to a member of a consumer group. A new
    /// coordinator waits that long before moving partitions the previous one had handed out.
    RecordGroupSession {
        /// The group.
        group: String,
        /// The session timeout just granted, in milliseconds.
        session_timeout_ms: u32,
    },
    /// `CreateTopic` with the topic's own configs; every topic created today is one of these,
    /// and `CreateTopic` remains for entries already in logs.
    CreateTopicWithConfigs {
        /// Validated topic name.
        name: String,
        /// Replica node ids of each partition.
        assignments: Vec<Vec<NodeId>>,
        /// Creation time in milliseconds since the Unix epoch, stamped by the proposer.
        created_at_ms: i64,
        /// Validated, canonical configs (`crate::topic_config`) set on the topic.
        configs: BTreeMap<String, String>,
    },
    /// Set and remove some of a topic's configs, all at once.
    AlterTopicConfigs {
        /// Name of the topic.
        name: String,
        /// Validated, canonical values to set.
        set: BTreeMap<String, String>,
        /// Keys to remove (back to the cluster's default); none is also in `set`.
        delete: Vec<String>,
    },
    /// Issue the next `count` producer ids at once, to the controller leader that proposed it,
    /// which hands them out one by one without a Raft write each (Kafka's KIP-730). Every id
    /// proposed today comes from one of these; `AllocateProducerId` remains for old entries.
    AllocateProducerIdBlock {
        /// How many ids.
        count: u64,
    },
}

impl Command {
    /// The producer batches of a partition entry (either form), or `None` for a controller
    /// command.
    pub fn append_batches(&self) -> Option<&[ProducerBatch]> {
        match self {
            Command::Controller(_) | Command::AdvanceLogStart { .. } => None,
            Command::AppendBatches(batches) | Command::StampedAppendBatches { batches, .. } => {
                Some(batches)
            }
        }
    }

    /// A close upper estimate of the encoded size, so encoders can size their buffer once
    /// instead of growing it while copying megabytes of record data.
    pub fn encoded_bytes_hint(&self) -> usize {
        match self {
            Command::Controller(_) => 256,
            Command::AdvanceLogStart { .. } => 16,
            Command::AppendBatches(batches) | Command::StampedAppendBatches { batches, .. } => {
                16 + batches
                    .iter()
                    .map(|b| {
                        24 + b
                            .records
                            .iter()
                            .map(|r| r.encoded_bytes_estimate() as usize)
                            .sum::<usize>()
                    })
                    .sum::<usize>()
            }
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Controller(command) => write!(f, "Controller({command:?})"),
            Command::AppendBatches(batches) => {
                write!(f, "AppendBatches({} batches)", batches.len())
            }
            Command::StampedAppendBatches {
                leader_time_ms,
                batches,
            } => write!(
                f,
                "StampedAppendBatches({} batches at {leader_time_ms} ms)",
                batches.len()
            ),
            Command::AdvanceLogStart { log_start_offset } => {
                write!(f, "AdvanceLogStart({log_start_offset})")
            }
        }
    }
}

/// The result of applying one log entry to a state machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// The entry carried no command (blank or membership entry).
    #[default]
    None,
    /// A topic was created; its partitions got groups `first_group_id ..`.
    TopicCreated {
        /// Group id of partition 0; partition `i` has `first_group_id + i`.
        first_group_id: u64,
    },
    /// A topic was deleted.
    TopicDeleted,
    /// One result per batch of an `AppendBatches` or `StampedAppendBatches` entry.
    Batches(Vec<BatchResult>),
    /// A producer id was issued.
    ProducerIdAllocated {
        /// The id.
        producer_id: u64,
    },
    /// Consumer group offsets were committed.
    OffsetsCommitted,
    /// A consumer group's longest session timeout was recorded.
    GroupSessionRecorded,
    /// The controller refused the command; the state did not change.
    Rejected {
        /// Stable reason code, e.g. `TOPIC_EXISTS`.
        reason: String,
        /// Human-readable explanation.
        message: String,
    },
    /// A topic's configs were changed.
    TopicConfigsAltered,
    /// A partition's log start offset is now `log_start_offset` (`AdvanceLogStart`).
    LogStartAdvanced {
        /// The log start after the command: at least what it was, at most the high watermark.
        log_start_offset: u64,
    },
    /// Producer ids `first .. first + count` were issued.
    ProducerIdBlockAllocated {
        /// The first id of the block.
        first: u64,
        /// How many.
        count: u64,
    },
}
