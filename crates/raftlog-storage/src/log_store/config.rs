//! The tunables of a segment log ([`LogConfig`]), their allowed ranges, and what they mean for
//! the segment files (how far each is preallocated). Nothing here touches the disk: `open.rs`,
//! `append.rs` and `truncate.rs` apply these values.

use std::time::Duration;

use raftlog_types::limits::RECENT_ENTRIES_NODE_BYTES_DEFAULT;
use raftlog_types::limits::SEGMENT_BYTES_DEFAULT;
use raftlog_types::limits::SEGMENT_BYTES_MAX;
use raftlog_types::limits::SEGMENT_BYTES_MIN;
use raftlog_types::limits::SEGMENT_INDEX_INTERVAL_BYTES;

/// Tunables of a segment log.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// A segment is sealed and a new one started once it holds this many bytes.
    pub segment_bytes: u64,
    /// Preallocate each segment to `segment_bytes` so appends do not grow the file.
    pub preallocate: bool,
    /// Bytes of log between two entries of the sparse position index.
    pub index_interval_bytes: u64,
    /// How often, at most, the committed log id is written to disk.
    pub committed_persist_interval: Duration,
    /// Bytes of recent entries all logs of a node together keep decoded in memory.
    pub recent_entries_node_bytes: u64,
    /// Segment bytes all logs of a node together leave in the page cache after writing or
    /// reading them; the oldest beyond it are dropped (`page_cache.rs`). `None` leaves them
    /// all to the kernel.
    pub page_cache_node_bytes: Option<u64>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            preallocate: true,
            index_interval_bytes: SEGMENT_INDEX_INTERVAL_BYTES,
            committed_persist_interval: Duration::from_secs(1),
            recent_entries_node_bytes: RECENT_ENTRIES_NODE_BYTES_DEFAULT,
            page_cache_node_bytes: None,
        }
    }
}

/// A configuration value out of its allowed range.
#[derive(Debug, thiserror::Error)]
#[error("{key} = {value} is out of range: allowed {min} ..= {max}")]
pub struct LogConfigError {
    /// The configuration key.
    pub key: &'static str,
    /// The value given.
    pub value: u64,
    /// Smallest allowed value.
    pub min: u64,
    /// Largest allowed value.
    pub max: u64,
}

impl LogConfig {
    /// Checks every value against its allowed range.
    pub fn validate(&self) -> std::result::Result<(), LogConfigError> {
        let check = |key, value, min, max| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(LogConfigError {
                    key,
                    value,
                    min,
                    max,
                })
            }
        };
        check(
            "segment_bytes",
            self.segment_bytes,
            SEGMENT_BYTES_MIN,
            SEGMENT_BYTES_MAX,
        )?;
        check(
            "index_interval_bytes",
            self.index_interval_bytes,
            1,
            self.segment_bytes,
        )?;
        Ok(())
    }

    /// How far the segment being written may be preallocated: 0 when preallocation is off.
    pub(super) fn preallocate_bytes(&self) -> u64 {
        if self.preallocate {
            self.segment_bytes
        } else {
            0
        }
    }
}
