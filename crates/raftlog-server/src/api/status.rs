//! The one mapping of `ServerError` to `tonic::Status`.
//!
//! Every status carries a `google.rpc.ErrorInfo` whose `reason` is the name of a
//! `v1::ErrorReason` (the registry of reasons, documented in the proto) and whose metadata says
//! `retryable` true or false, as the reason's `RetryClass` says; retryable errors carry
//! `google.rpc.RetryInfo`, invalid input carries `BadRequest`. No status is built elsewhere
//! (a test below reads every source file of the crate to hold that).

use std::collections::HashMap;
use std::time::Duration;

use raftlog_proto::v1::ErrorReason;
use tonic::Code;
use tonic::Status;
use tonic_types::ErrorDetails;
use tonic_types::StatusExt;

use crate::error::ServerError;
use crate::error::ERROR_DOMAIN;

impl ServerError {
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
            ServerError::InvalidTimestamp { .. } => ErrorReason::InvalidTimestamp,
            ServerError::OffsetOutOfRange { .. } => ErrorReason::OffsetOutOfRange,
            ServerError::OffsetNotAvailable { .. } => ErrorReason::OffsetNotAvailable,
            ServerError::NoQuorum { .. } => ErrorReason::NoQuorum,
            ServerError::Timeout { .. } => ErrorReason::Timeout,
            ServerError::Interrupted { .. } => ErrorReason::Interrupted,
            ServerError::NotAReplica { .. } => ErrorReason::NotAReplica,
            ServerError::Overloaded { .. } => ErrorReason::Overloaded,
            ServerError::NotReady { .. } => ErrorReason::NotReady,
            ServerError::DiskFull { .. } => ErrorReason::DiskFull,
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
            ServerError::InvalidTimestamp {
                leader_time_ms,
                max_skew_ms,
                ..
            } => {
                metadata.insert("leader_time_ms".to_owned(), leader_time_ms.to_string());
                metadata.insert("max_skew_ms".to_owned(), max_skew_ms.to_string());
                Code::InvalidArgument
            }
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
                replica_address,
                out_of_service,
                ..
            } => {
                if let Some(addr) = replica_address {
                    metadata.insert("replica_address".to_owned(), addr.clone());
                }
                if *out_of_service {
                    metadata.insert("out_of_service".to_owned(), "true".to_owned());
                }
                Code::FailedPrecondition
            }
            ServerError::Overloaded { .. } => Code::ResourceExhausted,
            ServerError::DiskFull { low, .. } => {
                metadata.insert("free_bytes".to_owned(), low.free_bytes.to_string());
                metadata.insert("min_free_bytes".to_owned(), low.min_free_bytes.to_string());
                Code::ResourceExhausted
            }
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
            // Space comes back when an operator or retention frees it: not in milliseconds.
            ServerError::DiskFull { .. } => 1_000,
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
        if let ServerError::InvalidArgument { field, message, .. }
        | ServerError::InvalidTimestamp { field, message, .. } = self
        {
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
            invalid(ErrorReason::RecordKeyRequired),
            invalid(ErrorReason::BatchTooLarge),
            invalid(ErrorReason::InvalidConfig),
            ServerError::InvalidTimestamp {
                field: "records[0].timestamp_ms".into(),
                message: "too far ahead".into(),
                leader_time_ms: 1_700_000_000_000,
                max_skew_ms: 3_600_000,
            },
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
                out_of_service: true,
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
            conflict(ErrorReason::PartitionNotOwned),
            ServerError::Deleted { what: what() },
            ServerError::GroupNotFound {
                group: "billing".into(),
            },
            ServerError::DiskFull {
                what: what(),
                low: raftlog_storage::LowDiskSpace {
                    free_bytes: 1 << 20,
                    min_free_bytes: 1 << 28,
                },
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
            ServerError::InvalidTimestamp { .. } => 17,
            ServerError::DiskFull { .. } => 18,
        }
    }
    const VARIANTS: usize = 19;

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
                matches!(
                    error,
                    ServerError::InvalidArgument { .. } | ServerError::InvalidTimestamp { .. }
                ),
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
    fn an_invalid_timestamp_names_the_leader_time_and_the_bound_it_broke() {
        let status = ServerError::InvalidTimestamp {
            field: "records[1].timestamp_ms".into(),
            message: "is 2 hours ahead".into(),
            leader_time_ms: 1_700_000_000_000,
            max_skew_ms: 3_600_000,
        }
        .to_status();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let info = details.error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "INVALID_TIMESTAMP");
        assert_eq!(info.metadata["leader_time_ms"], "1700000000000");
        assert_eq!(info.metadata["max_skew_ms"], "3600000");
        assert_eq!(info.metadata["retryable"], "false");
        let violations = &details.bad_request().expect("BadRequest").field_violations;
        assert_eq!(violations[0].field, "records[1].timestamp_ms");
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
        for path in files.iter().filter(|p| !p.ends_with("src/api/status.rs")) {
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
