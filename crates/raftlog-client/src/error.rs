//! Client errors, carrying the server's reason (`ErrorReason`, defined in the proto).

use std::collections::HashMap;
use std::time::Duration;

use raftlog_proto::v1::ErrorReason;
use raftlog_proto::RetryClass;
use tonic_types::StatusExt;

/// A failed client call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status.
    #[error("{message} ({})", reason.as_deref().unwrap_or("UNKNOWN"))]
    Server {
        /// gRPC status code.
        code: tonic::Code,
        /// ErrorInfo's reason as sent: the name of an [`ErrorReason`], e.g. `NOT_LEADER` (or of
        /// one newer than this client). `None` if the status carried no ErrorInfo: then it came
        /// from the connection, not from a node.
        reason: Option<String>,
        /// The server's message.
        message: String,
        /// ErrorInfo metadata, e.g. `leader_address`.
        metadata: HashMap<String, String>,
        /// Server's suggested retry delay, if the error is retryable.
        retry_after: Option<Duration>,
    },
    /// No node could be reached.
    #[error("cannot reach {address}: {message}")]
    Unreachable {
        /// The address tried last.
        address: String,
        /// Why.
        message: String,
    },
    /// Retries did not succeed before the deadline; the last error is kept.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// How many attempts were made.
        attempts: u32,
        /// The last error.
        last: Box<ClientError>,
    },
    /// The producer's buffer is full (`try_send`); `send` would have waited.
    #[error("producer buffer is full ({buffered_bytes} of {buffer_bytes_max} bytes)")]
    BufferFull {
        /// Bytes buffered now.
        buffered_bytes: usize,
        /// The configured bound.
        buffer_bytes_max: usize,
    },
    /// The arguments are invalid before anything was sent.
    #[error("{0}")]
    InvalidArgument(String),
}

impl ClientError {
    /// Builds the error from a status, reading its ErrorInfo and RetryInfo.
    pub fn from_status(status: &tonic::Status) -> ClientError {
        let details = status.get_error_details();
        let (reason, metadata) = match details.error_info() {
            Some(info) => (Some(info.reason.clone()), info.metadata.clone()),
            None => (None, HashMap::new()),
        };
        let retry_after = details.retry_info().and_then(|r| r.retry_delay);
        ClientError::Server {
            code: status.code(),
            reason,
            message: status.message().to_owned(),
            metadata,
            retry_after,
        }
    }

    /// The server's reason, if it sent one this client knows.
    pub fn reason(&self) -> Option<ErrorReason> {
        self.reason_name().and_then(ErrorReason::from_str_name)
    }

    /// The server's reason as sent (also one newer than this client), if it sent one.
    pub fn reason_name(&self) -> Option<&str> {
        match self {
            ClientError::Server { reason, .. } => reason.as_deref(),
            ClientError::RetriesExhausted { last, .. } => last.reason_name(),
            _ => None,
        }
    }

    /// Whether the request was certainly not written: the server refused it up front (its
    /// reason's class is [`RetryClass::Retryable`](crate::RetryClass::Retryable)), or no node was
    /// reached. Such a request may be sent again even when it is not idempotent.
    pub fn refused_before_write(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
            || self.reason().is_some_and(ErrorReason::is_retryable)
    }

    /// Whether the request may or may not have been written: the server gave up waiting for
    /// its commit ([`RetryClass::OutcomeUnknown`](crate::RetryClass::OutcomeUnknown)), the call got no
    /// answer in time, or the status says nothing more precise. Only an idempotent request
    /// may be sent again.
    pub fn outcome_unknown(&self) -> bool {
        self.reason()
            .is_some_and(|r| r.retry_class() == RetryClass::OutcomeUnknown)
            || self.timed_out()
            || matches!(
                self.code(),
                Some(tonic::Code::Unknown | tonic::Code::Unavailable)
            )
    }

    /// The gRPC code, if this came from a status.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            ClientError::RetriesExhausted { last, .. } => last.code(),
            _ => None,
        }
    }

    /// The call got no answer in time (tonic ends it as `Cancelled`, "Timeout expired"): the
    /// node may hang or be stopped, and what it did with the request is unknown.
    pub fn timed_out(&self) -> bool {
        matches!(
            self.code(),
            Some(tonic::Code::Cancelled | tonic::Code::DeadlineExceeded)
        )
    }

    /// A metadata value of the server's ErrorInfo.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        match self {
            ClientError::Server { metadata, .. } => metadata.get(key).map(String::as_str),
            ClientError::RetriesExhausted { last, .. } => last.metadata(key),
            _ => None,
        }
    }

    /// Whether the server (or the transport) says a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Server {
                retry_after, code, ..
            } => retry_after.is_some() || *code == tonic::Code::Unavailable,
            ClientError::Unreachable { .. } => true,
            // The deadline ran out, but the cause may still pass with a later retry.
            ClientError::RetriesExhausted { last, .. } => last.is_retryable(),
            ClientError::BufferFull { .. } => true,
            ClientError::InvalidArgument(_) => false,
        }
    }
}
