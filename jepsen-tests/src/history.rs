//! Histories: what every client process asked for and what it got, in real-time order.
//!
//! A send appends values (unique across the whole run) to one partition; its completion says
//! at which offsets they landed. A poll returns, per partition, the (offset, value) pairs read.
//! Completions are `ok` (it happened), `fail` (it definitely did not happen) or `info`
//! (unknown: a timeout or a crash). Stored one JSON object per line.

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
    /// The final read of a whole partition from one node, after every fault was healed.
    FinalRead {
        /// The node read from.
        node: u64,
        /// The partition.
        partition: u32,
        /// (offset, value) from the log start to the end.
        records: Vec<(u64, u64)>,
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
