//! Client errors, carrying the server's stable reason code.

use std::collections::HashMap;
use std::time::Duration;

use tonic_types::StatusExt;

/// A failed client call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status.
    #[error("{message} ({reason})")]
    Server {
        /// gRPC status code.
        code: tonic::Code,
        /// Stable reason from ErrorInfo, e.g. `NOT_LEADER`; `UNKNOWN` if the server sent none.
        reason: String,
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
            Some(info) => (info.reason.clone(), info.metadata.clone()),
            None => ("UNKNOWN".to_owned(), HashMap::new()),
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

    /// The stable reason code, if the server sent one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            ClientError::Server { reason, .. } => Some(reason),
            ClientError::RetriesExhausted { last, .. } => last.reason(),
            _ => None,
        }
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
