//! Histories: what every client process asked for and what it got, in real-time order.
//!
//! A send appends values (unique across the whole run) to one partition; its completion says
//! at which offsets they landed. A poll returns, per partition, the (offset, value) pairs read.
//! Completions are `ok` (it happened), `fail` (it definitely did not happen) or `info`
//! (unknown: a timeout or a crash). Stored one JSON object per line.
//!
//! Consumer-group members record, besides their deliveries (polls), every join and heartbeat
//! answer (their generation and assignment: what they believed they owned, and since when they
//! were live), their commits and the committed offsets they read back. Every consumer error is
//! recorded with its ErrorReason, so that a refusal of a record known to exist is an anomaly and
//! not a mere failure.

use std::io::BufRead;
use std::path::Path;

use serde::Deserialize;
use serde::Serialize;

/// Whether an operation is starting or how it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The client is about to perform the operation.
    Invoke,
    /// It took effect.
    Ok,
    /// It definitely did not take effect.
    Fail,
    /// Its outcome is unknown.
    Info,
}

/// What an operation does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "lowercase")]
pub enum Action {
    /// Append `values` to `partition`; on `ok`, `offsets[i]` is where `values[i]` landed.
    Send {
        /// Target partition.
        partition: u32,
        /// Values, unique in the run.
        values: Vec<u64>,
        /// Offsets assigned (completions only).
        #[serde(default)]
        offsets: Vec<u64>,
    },
    /// Read; on `ok`, `reads` holds (partition, offset, value) in the order returned.
    Poll {
        /// Records read (completions only).
        #[serde(default)]
        reads: Vec<(u32, u64, u64)>,
        /// The consumer started over at an explicit position (new process, seek, rebalance):
        /// monotonicity checks restart here.
        #[serde(default)]
        reset: bool,
    },
    /// A poll's (or fetch's) failure: the completion of a `Poll` invocation.
    ConsumeError {
        /// The partition asked for, when the request named one.
        #[serde(default)]
        partition: Option<u32>,
        /// The offset asked for, when the request named one.
        #[serde(default)]
        offset: Option<u64>,
        /// The ErrorReason name the server gave (`None`: no ErrorInfo, e.g. unreachable).
        #[serde(default)]
        reason: Option<String>,
        /// The error as the client showed it.
        #[serde(default)]
        message: String,
    },
    /// The final read of a whole partition from one node, after every fault was healed.
    FinalRead {
        /// The node read from.
        node: u64,
        /// The partition.
        partition: u32,
        /// (offset, value) from the log start to the end.
        records: Vec<(u64, u64)>,
        /// The offset the read had to reach: the end of the replica (the offset its next record
        /// gets, as it reported it) or the partition's committed end, whichever is higher.
        #[serde(default)]
        target: u64,
        /// The offset after the last record read (the log start if none was).
        #[serde(default)]
        reached: u64,
        /// Why the read stopped short of `target` (`None` when it reached it).
        #[serde(default)]
        error: Option<String>,
        /// Where the replica's log started: records below were deleted by retention (0 when
        /// none were; histories before retention lack it).
        #[serde(default)]
        log_start: u64,
        /// The node said its replica is out of service (`NOT_A_REPLICA` with `out_of_service`):
        /// it refused the replica at start-up as corrupt or lost, as it must after a `corrupt`
        /// fault, and serves nothing of it. Not a read cut short.
        #[serde(default)]
        out_of_service: bool,
    },
    /// A consumer-group member's join or heartbeat; on `ok`, what the coordinator answered.
    /// The member is live from the answer until `session_timeout_ms` after the invocation (the
    /// coordinator saw the request no earlier than it was sent).
    Heartbeat {
        /// The consumer group.
        group: String,
        /// True for a join (as a new member), false for a heartbeat.
        join: bool,
        /// The member id (empty in a join's invocation).
        member: String,
        /// The generation answered (completions only).
        #[serde(default)]
        generation: u64,
        /// The partitions the member owns in it (completions only).
        #[serde(default)]
        assignment: Vec<u32>,
        /// The member's session timeout.
        session_timeout_ms: u64,
        /// The ErrorReason name of a failure.
        #[serde(default)]
        reason: Option<String>,
    },
    /// A member leaves its group: it owns nothing from the invocation on.
    Leave {
        /// The consumer group.
        group: String,
        /// The member id.
        member: String,
    },
    /// A commit of positions (the offset of the next record to consume) for partitions.
    Commit {
        /// The consumer group.
        group: String,
        /// The member id (empty for an explicit reset).
        member: String,
        /// The member's generation.
        generation: u64,
        /// (partition, position) committed.
        offsets: Vec<(u32, u64)>,
        /// An explicit reset (ResetOffsets): positions may go back.
        #[serde(default)]
        reset: bool,
        /// The ErrorReason name of a failure.
        #[serde(default)]
        reason: Option<String>,
    },
    /// A read of a group's committed positions; on `ok`, (partition, position) as read.
    CommittedOffsets {
        /// The consumer group.
        group: String,
        /// (partition, position) read (completions only).
        #[serde(default)]
        offsets: Vec<(u32, u64)>,
    },
}

/// One line of a history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// The client process (a logical thread; a crashed process gets a new number).
    pub process: u64,
    /// Invocation or completion.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// Nanoseconds since the test started.
    pub time_ns: u64,
    /// The operation.
    #[serde(flatten)]
    pub action: Action,
}

/// A whole history, in the order events happened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// The events.
    pub ops: Vec<Op>,
}

/// A history that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The file could not be read.
    #[error("read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not an operation.
    #[error("{path} line {line}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// Why.
        source: serde_json::Error,
    },
}

impl History {
    /// Reads a JSON-lines history.
    pub fn load(path: &Path) -> Result<History, HistoryError> {
        let shown = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|source| HistoryError::Read {
            path: shown.clone(),
            source,
        })?;
        let mut ops = Vec::new();
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|source| HistoryError::Read {
                path: shown.clone(),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let op = serde_json::from_str(&line).map_err(|source| HistoryError::Parse {
                path: shown.clone(),
                line: i + 1,
                source,
            })?;
            ops.push(op);
        }
        Ok(History { ops })
    }

    /// Writes it as JSON lines.
    pub fn to_json_lines(&self) -> String {
        self.ops
            .iter()
            .filter_map(|op| serde_json::to_string(op).ok())
            .map(|l| l + "\n")
            .collect()
    }
}
