//! The storage layer's one error type. Every variant names the file or group it concerns, so an
//! operator reading the message knows where to look.

use std::io;
use std::path::PathBuf;

use raftlog_types::GroupId;

/// Everything that can go wrong in the storage layer. Messages do not repeat their `source`:
/// print the chain (`{:#}` with anyhow, or walk `Error::source`) to see the cause.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A system call on a file or directory failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done, e.g. "open segment", "fdatasync".
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A read that was not allowed to wait for the disk needed it (`DiskRead::CachedOnly`):
    /// not a failure, a request to read again where waiting is allowed.
    #[error("bytes {bytes:?} of {} are not in the page cache", path.display())]
    NotCached {
        /// The segment file.
        path: PathBuf,
        /// The bytes the read needed.
        bytes: std::ops::Range<u64>,
    },

    /// A path that must be a directory is something else.
    #[error("{} must be a directory but is not", path.display())]
    NotADirectory {
        /// The offending path.
        path: PathBuf,
    },

    /// Stored data failed a check that a torn write cannot explain. The node refuses to start
    /// rather than silently drop data that may have been acknowledged.
    #[error("corrupt log data in {} at byte {position}: {reason}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte position of the first damaged frame.
        position: u64,
        /// What check failed.
        reason: String,
    },

    /// A partition replica this node created has no directory any more. Started empty it could
    /// vote with an empty log and help elect a leader that lacks acknowledged entries, so it
    /// is refused; the other replicas serve the partition.
    #[error("the replica of group {group} is lost: {} is missing, but {} records that this node created it; refusing to start it empty", path.display(), marker.display())]
    ReplicaLost {
        /// The group.
        group: GroupId,
        /// The missing directory.
        path: PathBuf,
        /// The file recording that this node created the replica.
        marker: PathBuf,
    },

    /// An append or a file set on disk would leave a gap in the log.
    #[error("log of group {group} would have a hole: {reason}")]
    Hole {
        /// The group whose log this is.
        group: GroupId,
        /// Which indexes do not follow each other.
        reason: String,
    },

    /// An entry is larger than `ENTRY_BYTES_MAX`.
    #[error("log entry {index} of group {group} encodes to {size_bytes} bytes, over the limit of {limit_bytes}")]
    EntryTooLarge {
        /// The group whose log this is.
        group: GroupId,
        /// Index of the entry.
        index: u64,
        /// Its encoded size.
        size_bytes: u64,
        /// The limit.
        limit_bytes: u64,
    },

    /// An entry could not be encoded.
    #[error("encode log entry {index} of group {group}")]
    Encode {
        /// The group whose log this is.
        group: GroupId,
        /// Index of the entry.
        index: u64,
        /// The encoder's error.
        #[source]
        source: postcard::Error,
    },

    /// A small metadata file (vote, committed, purged) could not be parsed.
    #[error("metadata file {} is invalid", path.display())]
    Meta {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },

    /// A small metadata file holds no intact copy of the metadata, or the metadata would not fit.
    #[error("metadata file {} is invalid: {reason}", path.display())]
    MetaDamaged {
        /// The file.
        path: PathBuf,
        /// What check failed.
        reason: String,
    },

    /// The sled state store failed.
    #[error("state store {}", path.display())]
    StateStore {
        /// The sled database directory.
        path: PathBuf,
        /// sled's error.
        #[source]
        source: sled::Error,
    },

    /// The state store is locked: another process is using this data directory.
    #[error("state store {} is locked by another process: is another node running on this data directory?", path.display())]
    Locked {
        /// The sled database directory.
        path: PathBuf,
    },

    /// A value in the state store could not be decoded.
    #[error("state of group {group}, key {key}: {reason}")]
    StateDecode {
        /// The group whose state this is.
        group: GroupId,
        /// The sled key.
        key: String,
        /// What was wrong with the value.
        reason: String,
    },

    /// The group-commit flusher thread has stopped, so nothing more can be made durable.
    #[error("group-commit flusher has stopped")]
    FlusherStopped,

    /// A metadata write handed to the blocking thread pool did not finish (it panicked, or the
    /// runtime is shutting down).
    #[error("group {group}: metadata write on the blocking thread pool did not finish")]
    MetaWriteAbandoned {
        /// The group.
        group: GroupId,
        /// Why the task ended.
        #[source]
        source: tokio::task::JoinError,
    },

    /// The group's log was closed while something waited for its entries to become durable.
    #[error("group {group}: the log was closed while waiting for entries to become durable")]
    LogClosed {
        /// The group.
        group: GroupId,
    },
}

/// Shorthand used throughout the crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

impl StorageError {
    /// Whether this says stored data is damaged or missing (not an operation that failed and
    /// may succeed when tried again): a replica that fails to open so must not be started.
    pub fn is_damaged_data(&self) -> bool {
        matches!(
            self,
            StorageError::Corrupt { .. }
                | StorageError::Hole { .. }
                | StorageError::Meta { .. }
                | StorageError::MetaDamaged { .. }
                | StorageError::StateDecode { .. }
                | StorageError::ReplicaLost { .. }
        )
    }

    /// Builds the closure for `map_err` that wraps an `io::Error` with the operation and path.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| StorageError::Io { op, path, source }
    }
}

/// Converts to openraft's storage error; the subject tells openraft which part failed.
pub(crate) fn raft_log_read_error(err: &StorageError) -> openraft::StorageError<u64> {
    openraft::StorageIOError::read_logs(err).into()
}

pub(crate) fn raft_log_write_error(err: &StorageError) -> openraft::StorageError<u64> {
    openraft::StorageIOError::write_logs(err).into()
}

pub(crate) fn raft_vote_write_error(err: &StorageError) -> openraft::StorageError<u64> {
    openraft::StorageIOError::write_vote(err).into()
}

pub(crate) fn raft_sm_read_error(err: &StorageError) -> openraft::StorageError<u64> {
    openraft::StorageIOError::read_state_machine(err).into()
}

pub(crate) fn raft_sm_write_error(err: &StorageError) -> openraft::StorageError<u64> {
    openraft::StorageIOError::write_state_machine(err).into()
}
