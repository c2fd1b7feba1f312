//! Errors of a node: `ServerError` for requests (mapped to `tonic::Status` once, in
//! `api/status.rs`), and `NodeError` for a node that cannot start or stops abnormally.

use std::path::PathBuf;

use raftlog_proto::v1::ErrorReason;
use raftlog_types::NodeId;

pub use crate::node::identity::IdentityError;

/// The `domain` of every ErrorInfo raftlog sends.
pub const ERROR_DOMAIN: &str = "raftlog.v1";

/// Why a request could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// This node is not the partition's (or controller's) leader.
    #[error("node {node} is not the leader of {what}; {}", leader_hint(*leader_id, leader_address))]
    NotLeader {
        /// What was addressed, e.g. `orders/2` or `the controller`.
        what: String,
        /// The answering node.
        node: NodeId,
        /// The leader, if known.
        leader_id: Option<NodeId>,
        /// The leader's client address, if known.
        leader_address: Option<String>,
    },
    /// No such topic.
    #[error("topic {topic:?} does not exist")]
    TopicNotFound {
        /// The name asked for.
        topic: String,
    },
    /// No such partition.
    #[error("topic {topic:?} has partitions 0 ..= {}, not {partition}", partitions.saturating_sub(1))]
    PartitionNotFound {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many the topic has.
        partitions: u32,
    },
    /// The topic exists already.
    #[error("topic {topic:?} already exists")]
    TopicExists {
        /// The name.
        topic: String,
    },
    /// A request field is invalid.
    #[error("invalid {field}: {message}")]
    InvalidArgument {
        /// `InvalidArgument`, or a more precise reason such as `RecordTooLarge`.
        reason: ErrorReason,
        /// The offending field.
        field: String,
        /// What is wrong, with the allowed range and the value given.
        message: String,
    },
    /// A record's timestamp is further from the leader's clock than the configured bound
    /// (reason `INVALID_TIMESTAMP`); nothing of the request was written.
    #[error("invalid {field}: {message}")]
    InvalidTimestamp {
        /// The offending field, `records[i].timestamp_ms`.
        field: String,
        /// How far off it is, and the bound that applies.
        message: String,
        /// The leader's clock when it checked, ms since the Unix epoch.
        leader_time_ms: i64,
        /// The bound the timestamp broke, in ms on the side it is off.
        max_skew_ms: u64,
    },
    /// A fetch offset outside the stored range.
    #[error("offset {offset} is out of range: valid offsets are {log_start_offset} ..= {high_watermark}")]
    OffsetOutOfRange {
        /// Offset asked for.
        offset: u64,
        /// First stored offset.
        log_start_offset: u64,
        /// Offset the next record will receive (readable by long poll).
        high_watermark: u64,
    },
    /// A fetch offset above the high watermark of a replica that may not have caught up with
    /// the leader yet (a follower, a new leader before it applied an entry of its term, or a
    /// leader without recent quorum contact, which may have been replaced):
    /// another replica, or this one a moment later, may hold it. Kafka's OFFSET_NOT_AVAILABLE.
    #[error("{what}: offset {offset} is not available on this replica yet: its high watermark is {high_watermark}, and it is not a leader that a majority acknowledged recently and that has committed in its term; retry, or fetch from the leader")]
    OffsetNotAvailable {
        /// The partition.
        what: String,
        /// Offset asked for.
        offset: u64,
        /// This replica's high watermark.
        high_watermark: u64,
    },
    /// The leader has not heard from a majority recently, so a write cannot commit now.
    #[error("partition {what} cannot reach a majority of its replicas (last quorum contact {since_ms} ms ago); nothing was written")]
    NoQuorum {
        /// The partition.
        what: String,
        /// Milliseconds since the leader last heard from a majority.
        since_ms: u64,
    },
    /// The write did not commit in time; it may still commit later.
    #[error("{what}: no majority acknowledged within {timeout_ms} ms; the records may or may not be committed")]
    Timeout {
        /// The partition.
        what: String,
        /// The timeout.
        timeout_ms: u64,
    },
    /// The partition is not replicated on this node (for reads).
    #[error("node {node} holds no replica of {what}; replicas are on nodes {replicas:?}")]
    NotAReplica {
        /// The partition.
        what: String,
        /// The answering node.
        node: NodeId,
        /// Nodes that hold replicas.
        replicas: Vec<NodeId>,
        /// Client address of the first replica, as a routing hint.
        replica_address: Option<String>,
        /// This node was given a replica but refused it at start-up (corrupt or lost data):
        /// ErrorInfo metadata `out_of_service` = "true", so a reader knows that this replica
        /// will not serve until it is replaced, rather than that it is behind.
        out_of_service: bool,
    },
    /// Too many requests are queued for the partition.
    #[error("{what} has {queued} produce requests queued; retry after a short pause")]
    Overloaded {
        /// The partition.
        what: String,
        /// Queue length.
        queued: usize,
    },
    /// The node stopped while a write it had accepted was in flight; it may still commit.
    #[error("{what}: the node stopped while the write was in flight; the records may or may not be committed")]
    Interrupted {
        /// The partition.
        what: String,
    },
    /// The leader's data dir is below its minimum free space; nothing was written.
    #[error("{what}: {low}")]
    DiskFull {
        /// `topic/partition`.
        what: String,
        /// The reading and the minimum.
        low: raftlog_storage::LowDiskSpace,
    },
    /// The node is starting or stopping (and refused the request on arrival).
    #[error("node is {state}")]
    NotReady {
        /// "starting" or "shutting down".
        state: &'static str,
    },
    /// The request conflicts with the current state (producer sequence, group membership).
    #[error("{message}")]
    Precondition {
        /// The conflict, e.g. `OutOfOrderSequence`, `UnknownMember`.
        reason: ErrorReason,
        /// What is wrong and what to do.
        message: String,
    },
    /// The partition's replica here was removed (its topic was deleted) while it was read.
    #[error("{what} was deleted")]
    Deleted {
        /// The partition.
        what: String,
    },
    /// No such consumer group.
    #[error("group {group:?} has no members and no committed offsets")]
    GroupNotFound {
        /// The group asked for.
        group: String,
    },
    /// An internal failure (storage, Raft) that the client cannot fix.
    #[error("internal error: {message}")]
    Internal {
        /// What failed.
        message: String,
    },
}

fn leader_hint(leader_id: Option<NodeId>, leader_address: &Option<String>) -> String {
    match (leader_id, leader_address) {
        (Some(id), Some(addr)) => format!("the leader is node {id} at {addr}"),
        (Some(id), None) => format!("the leader is node {id}"),
        _ => "no leader is known yet".to_owned(),
    }
}

impl ServerError {
    /// An invalid-argument error with reason `INVALID_ARGUMENT`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ServerError::InvalidArgument {
            reason: ErrorReason::InvalidArgument,
            field: field.into(),
            message: message.into(),
        }
    }

    /// An internal error from anything displayable, with its cause chain.
    pub fn internal(error: &dyn std::error::Error) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        ServerError::Internal { message }
    }
}

/// Why a node could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The node id is not in the roster.
    #[error("node id {node} is not in the config's [[nodes]] (ids: {ids:?})")]
    UnknownNode {
        /// The id given.
        node: NodeId,
        /// The ids in the roster.
        ids: Vec<NodeId>,
    },
    /// The data dir cannot be used.
    #[error("data dir {}: {message}", path.display())]
    DataDir {
        /// The data dir.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The identity check refused the data dir.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Storage could not be opened.
    #[error("storage: {0}")]
    Storage(String),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr} ({what})")]
    Bind {
        /// The address.
        addr: String,
        /// Which listener.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The controller group could not start.
    #[error("controller group: {0}")]
    Controller(String),
    /// A Raft group's core stopped on a storage error (e.g. a failed write or `fdatasync`) or
    /// a panic: the node stopped rather than serve from a disk it cannot trust (fail-stop).
    /// Restarted, it recovers from what the disk holds.
    #[error("stopped: Raft group {group} failed: {reason}")]
    GroupFailed {
        /// The group.
        group: u64,
        /// What openraft reported.
        reason: String,
    },
    /// A gRPC server failed.
    #[error("gRPC server ({what}): {source}")]
    Serve {
        /// Which server.
        what: &'static str,
        /// Why.
        source: tonic::transport::Error,
    },
}
