//! The application data that travels through Raft, and what applying it returns.

use std::fmt;

use serde::Deserialize;
use serde::Serialize;

use crate::record::RecordBatch;

/// A command in a group's Raft log. Variants are only ever added at the end: their position is
/// their encoding in existing log files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Append a batch of records to a partition; it receives the next offsets in apply order.
    AppendBatch(RecordBatch),
}

impl Command {
    /// A close upper estimate of the encoded size, so encoders can size their buffer once
    /// instead of growing it while copying megabytes of record data.
    pub fn encoded_bytes_hint(&self) -> usize {
        match self {
            Command::AppendBatch(batch) => {
                // Per record: length prefixes, option tags and the timestamp varint.
                const RECORD_OVERHEAD_BYTES: usize = 32;
                16 + batch
                    .records
                    .iter()
                    .map(|r| {
                        r.payload_bytes() as usize + RECORD_OVERHEAD_BYTES + 8 * r.headers.len()
                    })
                    .sum::<usize>()
            }
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::AppendBatch(batch) => write!(f, "AppendBatch({} records)", batch.len()),
        }
    }
}

/// The result of applying one log entry to a state machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// The entry carried no command (blank or membership entry).
    #[default]
    None,
    /// A batch was appended: its records hold offsets `base_offset .. base_offset + record_count`.
    Appended {
        /// Offset of the batch's first record.
        base_offset: u64,
        /// Number of records, and so of offsets, in the batch.
        record_count: u32,
    },
}
