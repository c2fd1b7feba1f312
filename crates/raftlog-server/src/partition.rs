//! A partition replica running on this node: its Raft group, log, applied-state view and
//! produce queue, and the read path that serves committed records from the segment log.

use openraft::EntryPayload;
use raftlog_raft::RaftGroup;
use raftlog_storage::PartitionView;
use raftlog_storage::SegmentLog;
use raftlog_types::Command;
use raftlog_types::GroupId;
use raftlog_types::NodeId;
use raftlog_types::Record;
use tokio::sync::mpsc;

use crate::batcher::ProduceJob;
use crate::error::ServerError;

/// Log entries read per storage call while collecting records.
const READ_ENTRIES_PER_CALL: u64 = 16;

/// A partition replica hosted here.
pub struct Partition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub index: u32,
    /// Its Raft group.
    pub group: GroupId,
    /// Nodes with replicas.
    pub replicas: Vec<NodeId>,
    /// The Raft instance.
    pub raft: RaftGroup,
    /// The log (read side).
    pub log: SegmentLog,
    /// Applied state: offset index and high watermark.
    pub view: PartitionView,
    /// Queue of the produce batcher.
    pub produce_queue: mpsc::Sender<ProduceJob>,
}

impl Partition {
    /// `topic/partition`, for messages.
    pub fn name(&self) -> String {
        format!("{}/{}", self.topic, self.index)
    }

    /// First offset still stored.
    pub fn log_start_offset(&self) -> Result<u64, ServerError> {
        self.view
            .log_start_offset()
            .map_err(|e| ServerError::internal(&e))
    }

    /// Checks that `offset` can be read (it may equal the high watermark: nothing yet).
    pub fn check_offset(&self, offset: u64) -> Result<(), ServerError> {
        let high_watermark = self.view.high_watermark();
        let log_start_offset = self.log_start_offset()?;
        if offset < log_start_offset || offset > high_watermark {
            return Err(ServerError::OffsetOutOfRange {
                offset,
                log_start_offset,
                high_watermark,
            });
        }
        Ok(())
    }

    /// Committed records from `offset` on, up to `max_bytes` of payload (at least one record
    /// if any is available). Never returns a record at or past the high watermark.
    pub fn read_records(
        &self,
        offset: u64,
        max_bytes: u64,
    ) -> Result<Vec<(u64, Record)>, ServerError> {
        let high_watermark = self.view.high_watermark();
        if offset >= high_watermark {
            return Ok(Vec::new());
        }
        let location = self
            .view
            .locate(offset)
            .map_err(|e| ServerError::internal(&e))?
            .ok_or_else(|| ServerError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset().unwrap_or(0),
                high_watermark,
            })?;
        let mut records = Vec::new();
        let mut bytes = 0u64;
        let mut next_offset = location.base_offset;
        let mut index = location.log_index;
        'entries: loop {
            let entries = self
                .log
                .read_entries(index..index + READ_ENTRIES_PER_CALL)
                .map_err(|e| ServerError::internal(&e))?;
            if entries.is_empty() {
                break;
            }
            for entry in entries {
                index = entry.log_id.index + 1;
                let EntryPayload::Normal(Command::AppendBatch(batch)) = entry.payload else {
                    continue;
                };
                for record in batch.records {
                    if next_offset >= high_watermark {
                        break 'entries;
                    }
                    if next_offset >= offset {
                        let size = record.payload_bytes();
                        if !records.is_empty() && bytes + size > max_bytes {
                            break 'entries;
                        }
                        bytes += size;
                        records.push((next_offset, record));
                    }
                    next_offset += 1;
                }
            }
        }
        Ok(records)
    }
}
