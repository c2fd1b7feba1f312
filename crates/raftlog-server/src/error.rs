//! Errors of a node: `ServerError` for requests, with their one mapping to `tonic::Status`,
//! and `NodeError` for a node that cannot start or stops abnormally.
//!
//! Every status carries a `google.rpc.ErrorInfo` whose `reason` is the name of a
//! `v1::ErrorReason` (the registry of reasons, documented in the proto) and whose metadata says
//! `retryable` true or false, as the reason's `RetryClass` says; retryable errors carry
//! `google.rpc.RetryInfo`, invalid input carries `BadRequest`. No status is built elsewhere.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use raftlog_proto::v1::ErrorReason;
use raftlog_types::NodeId;
use tonic::Code;
use tonic::Status;
use tonic_types::ErrorDetails;
use tonic_types::StatusExt;

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
    /// The node stopped while a write it had accepted was in flight; it may still commit.
    #[error("{what}: the node stopped while the write was in flight; the records may or may not be committed")]
    Interrupted {
        /// The partition.
        what: String,
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

    /// The reason sent in ErrorInfo, by its proto name.
    pub fn reason(&self) -> ErrorReason {
        match self {
            ServerError::NotLeader {
                leader_id: Some(_), ..
            } => ErrorReason::NotLeader,
            ServerError::NotLeader {
                leader_id: None, ..
            } => ErrorReason::NoLeader,
            ServerError::TopicNotFound { .. } | ServerError::Deleted { .. } => {
                ErrorReason::TopicNotFound
            }
            ServerError::PartitionNotFound { .. } => ErrorReason::PartitionNotFound,
            ServerError::TopicExists { .. } => ErrorReason::TopicExists,
            ServerError::InvalidArgument { reason, .. } => *reason,
            ServerError::OffsetOutOfRange { .. } => ErrorReason::OffsetOutOfRange,
            ServerError::OffsetNotAvailable { .. } => ErrorReason::OffsetNotAvailable,
            ServerError::NoQuorum { .. } => ErrorReason::NoQuorum,
            ServerError::Timeout { .. } => ErrorReason::Timeout,
            ServerError::Interrupted { .. } => ErrorReason::Interrupted,
            ServerError::NotAReplica { .. } => ErrorReason::NotAReplica,
            ServerError::Overloaded { .. } => ErrorReason::Overloaded,
            ServerError::NotReady { .. } => ErrorReason::NotReady,
            ServerError::Precondition { reason, .. } => *reason,
            ServerError::GroupNotFound { .. } => ErrorReason::GroupNotFound,
            ServerError::Internal { .. } => ErrorReason::Internal,
        }
    }

    /// The gRPC code, and the ErrorInfo metadata beyond `retryable`.
    fn code_and_metadata(&self) -> (Code, HashMap<String, String>) {
        let mut metadata = HashMap::new();
        let code = match self {
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
                Code::Unavailable
            }
            ServerError::TopicNotFound { .. }
            | ServerError::PartitionNotFound { .. }
            | ServerError::Deleted { .. }
            | ServerError::GroupNotFound { .. } => Code::NotFound,
            ServerError::TopicExists { .. } => Code::AlreadyExists,
            ServerError::InvalidArgument { .. } => Code::InvalidArgument,
            ServerError::OffsetOutOfRange {
                log_start_offset,
                high_watermark,
                ..
            } => {
                metadata.insert("log_start_offset".to_owned(), log_start_offset.to_string());
                metadata.insert("high_watermark".to_owned(), high_watermark.to_string());
                Code::OutOfRange
            }
            ServerError::OffsetNotAvailable { high_watermark, .. } => {
                metadata.insert("high_watermark".to_owned(), high_watermark.to_string());
                Code::Unavailable
            }
            ServerError::NoQuorum { .. } | ServerError::NotReady { .. } => Code::Unavailable,
            // UNAVAILABLE, but its reason's class is OutcomeUnknown, so it carries no RetryInfo
            // and `retryable` false: the records may be committed, and only an idempotent
            // producer may send them again.
            ServerError::Timeout { .. } | ServerError::Interrupted { .. } => Code::Unavailable,
            ServerError::NotAReplica {
                replica_address, ..
            } => {
                if let Some(addr) = replica_address {
                    metadata.insert("replica_address".to_owned(), addr.clone());
                }
                Code::FailedPrecondition
            }
            ServerError::Overloaded { .. } => Code::ResourceExhausted,
            ServerError::Precondition { .. } => Code::FailedPrecondition,
            ServerError::Internal { .. } => Code::Internal,
        };
        (code, metadata)
    }

    /// How long a client should wait before it retries an error whose reason is retryable
    /// (only those get RetryInfo).
    fn retry_delay(&self) -> Duration {
        let ms = match self {
            ServerError::NotLeader {
                leader_id: Some(_), ..
            } => 0,
            ServerError::NotLeader {
                leader_id: None, ..
            } => 200,
            ServerError::Overloaded { .. } => 50,
            ServerError::OffsetNotAvailable { .. } => 100,
            ServerError::NoQuorum { .. } | ServerError::NotReady { .. } => 500,
            // Not retryable: no RetryInfo is sent (a new retryable error waits this long).
            _ => 200,
        };
        Duration::from_millis(ms)
    }

    /// The gRPC status: code, message, ErrorInfo, and RetryInfo/BadRequest where they apply.
    pub fn to_status(&self) -> Status {
        let reason = self.reason();
        debug_assert_ne!(reason, ErrorReason::Unspecified, "{self}");
        let (code, mut metadata) = self.code_and_metadata();
        let retryable = reason.is_retryable();
        metadata.insert("retryable".to_owned(), retryable.to_string());
        let mut details =
            ErrorDetails::with_error_info(reason.as_str_name(), ERROR_DOMAIN, metadata);
        if retryable {
            details.set_retry_info(Some(self.retry_delay()));
        }
        if let ServerError::InvalidArgument { field, message, .. } = self {
            details.add_bad_request_violation(field.clone(), message.clone());
        }
        Status::with_error_details(code, self.to_string(), details)
    }
}

/// Whether `status` was answered by a raftlog node (every status it sends carries ErrorInfo),
/// rather than made by the connection to it (refused, reset, timed out).
pub fn answered_by_a_node(status: &Status) -> bool {
    status.get_error_details().error_info().is_some()
}

impl From<ServerError> for Status {
    fn from(error: ServerError) -> Self {
        error.to_status()
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
    /// A gRPC server failed.
    #[error("gRPC server ({what}): {source}")]
    Serve {
        /// Which server.
        what: &'static str,
        /// Why.
        source: tonic::transport::Error,
    },
}

#[cfg(test)]
mod tests {
    use raftlog_proto::RetryClass;

    use super::*;

    /// One error of each variant, and of each reason a variant is given in the code.
    fn one_of_each() -> Vec<ServerError> {
        let what = || "orders/2".to_owned();
        let invalid = |reason| ServerError::InvalidArgument {
            reason,
            field: "records[0]".into(),
            message: "is wrong".into(),
        };
        let conflict = |reason| ServerError::Precondition {
            reason,
            message: "conflicts".into(),
        };
        vec![
            ServerError::NotLeader {
                what: what(),
                node: 1,
                leader_id: Some(2),
                leader_address: Some("127.0.0.1:7002".into()),
            },
            ServerError::NotLeader {
                what: what(),
                node: 1,
                leader_id: None,
                leader_address: None,
            },
            ServerError::TopicNotFound {
                topic: "orders".into(),
            },
            ServerError::PartitionNotFound {
                topic: "orders".into(),
                partition: 9,
                partitions: 3,
            },
            ServerError::TopicExists {
                topic: "orders".into(),
            },
            ServerError::invalid("max_bytes", "too large"),
            invalid(ErrorReason::InvalidTopicName),
            invalid(ErrorReason::InvalidGroupName),
            invalid(ErrorReason::NotEnoughNodes),
            invalid(ErrorReason::RecordTooLarge),
            invalid(ErrorReason::BatchTooLarge),
            ServerError::OffsetOutOfRange {
                offset: 9,
                log_start_offset: 0,
                high_watermark: 3,
            },
            ServerError::OffsetNotAvailable {
                what: what(),
                offset: 9,
                high_watermark: 3,
            },
            ServerError::NoQuorum {
                what: what(),
                since_ms: 900,
            },
            ServerError::Timeout {
                what: what(),
                timeout_ms: 5000,
            },
            ServerError::NotAReplica {
                what: what(),
                node: 1,
                replicas: vec![2, 3],
                replica_address: Some("127.0.0.1:7002".into()),
            },
            ServerError::Overloaded {
                what: what(),
                queued: 1024,
            },
            ServerError::NotReady {
                state: "shutting down",
            },
            ServerError::Interrupted { what: what() },
            conflict(ErrorReason::OutOfOrderSequence),
            conflict(ErrorReason::UnknownProducer),
            conflict(ErrorReason::UnknownMember),
            conflict(ErrorReason::IllegalGeneration),
            conflict(ErrorReason::GroupActive),
            conflict(ErrorReason::ClusterMismatch),
            ServerError::Deleted { what: what() },
            ServerError::GroupNotFound {
                group: "billing".into(),
            },
            ServerError::internal(&std::io::Error::other("disk on fire")),
        ]
    }

    /// The variant's place in `one_of_each`'s order. The match has no wildcard: a new variant
    /// does not compile until it has a place here, and then the test fails until
    /// `one_of_each` has an error of it.
    fn variant_index(error: &ServerError) -> usize {
        match error {
            ServerError::NotLeader { .. } => 0,
            ServerError::TopicNotFound { .. } => 1,
            ServerError::PartitionNotFound { .. } => 2,
            ServerError::TopicExists { .. } => 3,
            ServerError::InvalidArgument { .. } => 4,
            ServerError::OffsetOutOfRange { .. } => 5,
            ServerError::OffsetNotAvailable { .. } => 6,
            ServerError::NoQuorum { .. } => 7,
            ServerError::Timeout { .. } => 8,
            ServerError::NotAReplica { .. } => 9,
            ServerError::Overloaded { .. } => 10,
            ServerError::NotReady { .. } => 11,
            ServerError::Precondition { .. } => 12,
            ServerError::Deleted { .. } => 13,
            ServerError::GroupNotFound { .. } => 14,
            ServerError::Internal { .. } => 15,
            ServerError::Interrupted { .. } => 16,
        }
    }
    const VARIANTS: usize = 17;

    #[test]
    fn every_error_names_a_reason_of_the_proto_and_says_whether_to_retry_as_it_classifies() {
        let errors = one_of_each();
        let mut seen_variants = [false; VARIANTS];
        let mut seen_reasons = Vec::new();
        for error in &errors {
            seen_variants[variant_index(error)] = true;
            let status = error.to_status();
            let details = status.get_error_details();
            let info = details
                .error_info()
                .unwrap_or_else(|| panic!("{error}: no ErrorInfo"));
            assert_eq!(info.domain, ERROR_DOMAIN);
            let reason = ErrorReason::from_str_name(&info.reason)
                .unwrap_or_else(|| panic!("{error}: reason {:?} is not in the proto", info.reason));
            assert_ne!(reason, ErrorReason::Unspecified, "{error}");
            assert_eq!(reason, error.reason());
            let retryable = reason.retry_class() == RetryClass::Retryable;
            assert_eq!(
                info.metadata.get("retryable").map(String::as_str),
                Some(if retryable { "true" } else { "false" }),
                "{error}"
            );
            assert_eq!(details.retry_info().is_some(), retryable, "{error}");
            assert_eq!(
                details.bad_request().is_some(),
                matches!(error, ServerError::InvalidArgument { .. }),
                "{error}"
            );
            assert_eq!(status.message(), error.to_string());
            seen_reasons.push(reason);
        }
        assert!(
            seen_variants.iter().all(|seen| *seen),
            "one_of_each lacks a variant: {seen_variants:?}"
        );
        // And the proto holds no reason the server never sends.
        for reason in ErrorReason::all().filter(|r| *r != ErrorReason::Unspecified) {
            assert!(seen_reasons.contains(&reason), "{reason:?} is never sent");
        }
    }

    #[test]
    fn a_timeout_does_not_invite_a_retry_but_a_refusal_does() {
        let timeout = ServerError::Timeout {
            what: "orders/0".into(),
            timeout_ms: 5000,
        }
        .to_status();
        assert_eq!(timeout.code(), Code::Unavailable);
        let details = timeout.get_error_details();
        assert!(details.retry_info().is_none());
        let info = details.error_info().expect("ErrorInfo");
        assert_eq!(
            (info.reason.as_str(), info.metadata["retryable"].as_str()),
            ("TIMEOUT", "false")
        );
        let refusal = ServerError::NoQuorum {
            what: "orders/0".into(),
            since_ms: 900,
        }
        .to_status();
        let details = refusal.get_error_details();
        let delay = details.retry_info().and_then(|r| r.retry_delay);
        assert_eq!(delay, Some(Duration::from_millis(500)));
        let info = details.error_info().expect("ErrorInfo");
        assert_eq!(
            (info.reason.as_str(), info.metadata["retryable"].as_str()),
            ("NO_QUORUM", "true")
        );
    }

    /// Whether a line of code calls a constructor of `tonic::Status` (`Status::not_found(..)`,
    /// `Status::new(..)`, ...), as opposed to naming the type or another `...Status` type.
    fn builds_a_status(code: &str) -> bool {
        code.match_indices("Status::").any(|(at, _)| {
            let before = code[..at].chars().next_back();
            let after = code[at + "Status::".len()..].chars().next();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                && after.is_some_and(|c| c.is_ascii_lowercase())
        })
    }

    /// Every status the server sends is built by `ServerError::to_status`: no other file of
    /// the crate builds a `Status` or an ErrorInfo, or spells a reason as a string.
    #[test]
    fn no_status_or_reason_is_made_outside_this_file() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        let mut dirs = vec![src];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("read src") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        assert!(files.len() > 10, "{files:?}");
        assert!(builds_a_status("Err(tonic::Status::not_found(\"gone\"))"));
        assert!(!builds_a_status(
            "Result<GroupStatus, Status> { GroupStatus::default() }"
        ));
        let mut found = Vec::new();
        for path in files.iter().filter(|p| !p.ends_with("src/error.rs")) {
            let text = std::fs::read_to_string(path).expect("read source");
            for (number, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                let builds_status = builds_a_status(code);
                let spells_a_reason = code
                    .split('"')
                    .skip(1)
                    .step_by(2)
                    .any(|literal| ErrorReason::from_str_name(literal).is_some());
                if builds_status
                    || spells_a_reason
                    || code.contains("with_error_info")
                    || code.contains("ErrorDetails")
                {
                    found.push(format!(
                        "{}:{}: {}",
                        path.display(),
                        number + 1,
                        line.trim()
                    ));
                }
            }
        }
        assert!(
            found.is_empty(),
            "build it with ServerError:\n{}",
            found.join("\n")
        );
    }
}
