//! What a caller may do after an error, by its `v1::ErrorReason`: the classification that
//! `proto/raftlog/v1/raftlog.proto` documents for each value, written once, for the server
//! (`retryable` and RetryInfo in its ErrorInfo) and for every client that retries.

use crate::v1::ErrorReason;

/// Whether a failed request may be sent again, by the reason it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryClass {
    /// Refused before anything was written: the same request may be sent again (after the
    /// status's RetryInfo delay, to the leader its metadata names when it names one).
    Retryable,
    /// The request may have been written: only an idempotent request (a produce with a
    /// producer id, a read) may be sent again.
    OutcomeUnknown,
    /// The same request fails the same way until the request or the cluster changes.
    NotRetryable,
}

impl ErrorReason {
    /// The proto's classification of this reason.
    pub fn retry_class(self) -> RetryClass {
        match self {
            ErrorReason::NotLeader
            | ErrorReason::NoLeader
            | ErrorReason::NoQuorum
            | ErrorReason::Overloaded
            | ErrorReason::NotReady
            | ErrorReason::OffsetNotAvailable
            | ErrorReason::DiskFull => RetryClass::Retryable,
            ErrorReason::Timeout | ErrorReason::Interrupted => RetryClass::OutcomeUnknown,
            ErrorReason::Unspecified
            | ErrorReason::Internal
            | ErrorReason::TopicNotFound
            | ErrorReason::PartitionNotFound
            | ErrorReason::TopicExists
            | ErrorReason::NotAReplica
            | ErrorReason::OffsetOutOfRange
            | ErrorReason::GroupNotFound
            | ErrorReason::InvalidArgument
            | ErrorReason::InvalidTopicName
            | ErrorReason::InvalidGroupName
            | ErrorReason::NotEnoughNodes
            | ErrorReason::RecordTooLarge
            | ErrorReason::BatchTooLarge
            | ErrorReason::OutOfOrderSequence
            | ErrorReason::UnknownProducer
            | ErrorReason::UnknownMember
            | ErrorReason::IllegalGeneration
            | ErrorReason::GroupActive
            | ErrorReason::ClusterMismatch
            | ErrorReason::InvalidTimestamp
            | ErrorReason::InvalidConfig
            | ErrorReason::RecordKeyRequired
            | ErrorReason::PartitionNotOwned => RetryClass::NotRetryable,
        }
    }

    /// Whether the same request may be sent again whatever it was: the server refused it
    /// before writing anything. What ErrorInfo's `retryable` says.
    pub fn is_retryable(self) -> bool {
        self.retry_class() == RetryClass::Retryable
    }

    /// Every value, `Unspecified` first, in the proto's order.
    pub fn all() -> impl Iterator<Item = ErrorReason> {
        (0..=i32::from(u8::MAX)).filter_map(|value| ErrorReason::try_from(value).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_name_of_each_reason_is_its_proto_name_and_parses_back() {
        assert_eq!(ErrorReason::NotLeader.as_str_name(), "NOT_LEADER");
        assert_eq!(ErrorReason::Timeout.as_str_name(), "TIMEOUT");
        assert_eq!(
            ErrorReason::Unspecified.as_str_name(),
            "ERROR_REASON_UNSPECIFIED"
        );
        let all: Vec<ErrorReason> = ErrorReason::all().collect();
        assert_eq!(all.first(), Some(&ErrorReason::Unspecified));
        assert!(all.len() > 20, "{all:?}");
        for reason in all {
            assert_eq!(
                ErrorReason::from_str_name(reason.as_str_name()),
                Some(reason)
            );
        }
    }

    #[test]
    fn only_refusals_before_a_write_are_retryable() {
        assert!(ErrorReason::NotLeader.is_retryable());
        assert!(ErrorReason::NoQuorum.is_retryable());
        assert_eq!(
            ErrorReason::Timeout.retry_class(),
            RetryClass::OutcomeUnknown
        );
        assert!(!ErrorReason::Timeout.is_retryable());
        assert_eq!(
            ErrorReason::Interrupted.retry_class(),
            RetryClass::OutcomeUnknown
        );
        assert!(ErrorReason::NotReady.is_retryable());
        assert!(!ErrorReason::Unspecified.is_retryable());
        assert!(!ErrorReason::TopicNotFound.is_retryable());
    }
}
