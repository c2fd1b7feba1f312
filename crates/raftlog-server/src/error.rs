//! Request errors of a node, and their one mapping to `tonic::Status`.
//!
//! Every status carries a `google.rpc.ErrorInfo` whose `reason` is stable (clients act on it),
//! retryable errors carry `google.rpc.RetryInfo`, invalid input carries `BadRequest`.

use std::collections::HashMap;
use std::time::Duration;

use raftlog_types::NodeId;
use tonic::Code;
use tonic::Status;
use tonic_types::ErrorDetails;
use tonic_types::StatusExt;

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
        /// Stable reason code.
        reason: &'static str,
        /// The offending field.
        field: String,
        /// What is wrong, with the allowed range and the value given.
        message: String,
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
    },
    /// Too many requests are queued for the partition.
    #[error("{what} has {queued} produce requests queued; retry after a short pause")]
    Overloaded {
        /// The partition.
        what: String,
        /// Queue length.
        queued: usize,
    },
    /// The node is starting or stopping.
    #[error("node is {state}")]
    NotReady {
        /// "starting" or "shutting down".
        state: &'static str,
    },
    /// The request conflicts with the current state (producer sequence, group membership).
    #[error("{message}")]
    Precondition {
        /// Stable reason code, e.g. `OUT_OF_ORDER_SEQUENCE`, `UNKNOWN_MEMBER`.
        reason: &'static str,
        /// What is wrong and what to do.
        message: String,
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
            reason: "INVALID_ARGUMENT",
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

    /// The stable reason code sent in ErrorInfo.
    pub fn reason(&self) -> &'static str {
        match self {
            ServerError::NotLeader {
                leader_id: Some(_), ..
            } => "NOT_LEADER",
            ServerError::NotLeader {
                leader_id: None, ..
            } => "NO_LEADER",
            ServerError::TopicNotFound { .. } => "TOPIC_NOT_FOUND",
            ServerError::PartitionNotFound { .. } => "PARTITION_NOT_FOUND",
            ServerError::TopicExists { .. } => "TOPIC_EXISTS",
            ServerError::InvalidArgument { reason, .. } => reason,
            ServerError::OffsetOutOfRange { .. } => "OFFSET_OUT_OF_RANGE",
            ServerError::OffsetNotAvailable { .. } => "OFFSET_NOT_AVAILABLE",
            ServerError::NoQuorum { .. } => "NO_QUORUM",
            ServerError::Timeout { .. } => "TIMEOUT",
            ServerError::NotAReplica { .. } => "NOT_A_REPLICA",
            ServerError::Overloaded { .. } => "OVERLOADED",
            ServerError::NotReady { .. } => "NOT_READY",
            ServerError::Precondition { reason, .. } => reason,
            ServerError::GroupNotFound { .. } => "GROUP_NOT_FOUND",
            ServerError::Internal { .. } => "INTERNAL",
        }
    }

    /// The gRPC status: code, message, ErrorInfo, and RetryInfo/BadRequest where they apply.
    pub fn to_status(&self) -> Status {
        let mut metadata = HashMap::new();
        let (code, retry_after) = match self {
            ServerError::NotLeader {
                leader_id,
                leader_address,
                ..
            } => {
                if let Some(id) = leader_id {
                    metadata.insert("leader_id".to_owned(), id.to_string());
                }
                if let Some(addr) = leader_address {
                    metadata.insert("leader_address".to_owned(), addr.clone());
                }
                let delay = if leader_id.is_some() { 0 } else { 200 };
                (Code::Unavailable, Some(Duration::from_millis(delay)))
            }
            ServerError::TopicNotFound { .. } | ServerError::PartitionNotFound { .. } => {
                (Code::NotFound, None)
            }
            ServerError::TopicExists { .. } => (Code::AlreadyExists, None),
            ServerError::InvalidArgument { .. } => (Code::InvalidArgument, None),
            ServerError::OffsetOutOfRange {
                log_start_offset,
                high_watermark,
                ..
            } => {
                metadata.insert("log_start_offset".to_owned(), log_start_offset.to_string());
                metadata.insert("high_watermark".to_owned(), high_watermark.to_string());
                (Code::OutOfRange, None)
            }
            ServerError::OffsetNotAvailable { high_watermark, .. } => {
                metadata.insert("high_watermark".to_owned(), high_watermark.to_string());
                (Code::Unavailable, Some(Duration::from_millis(100)))
            }
            ServerError::NoQuorum { .. } => (Code::Unavailable, Some(Duration::from_millis(500))),
            ServerError::Timeout { .. } => (Code::Unavailable, Some(Duration::from_millis(200))),
            ServerError::NotAReplica {
                replica_address, ..
            } => {
                if let Some(addr) = replica_address {
                    metadata.insert("replica_address".to_owned(), addr.clone());
                }
                (Code::FailedPrecondition, None)
            }
            ServerError::Overloaded { .. } => {
                (Code::ResourceExhausted, Some(Duration::from_millis(50)))
            }
            ServerError::NotReady { .. } => (Code::Unavailable, Some(Duration::from_millis(500))),
            ServerError::Precondition { .. } => (Code::FailedPrecondition, None),
            ServerError::GroupNotFound { .. } => (Code::NotFound, None),
            ServerError::Internal { .. } => (Code::Internal, None),
        };
        metadata.insert("retryable".to_owned(), retry_after.is_some().to_string());
        let mut details = ErrorDetails::with_error_info(self.reason(), ERROR_DOMAIN, metadata);
        if let Some(delay) = retry_after {
            details.set_retry_info(Some(delay));
        }
        if let ServerError::InvalidArgument { field, message, .. } = self {
            details.add_bad_request_violation(field.clone(), message.clone());
        }
        Status::with_error_details(code, self.to_string(), details)
    }
}

impl From<ServerError> for Status {
    fn from(error: ServerError) -> Self {
        error.to_status()
    }
}
