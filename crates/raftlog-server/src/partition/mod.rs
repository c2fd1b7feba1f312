//! A partition replica running on this node: its Raft group, log, applied-state view and
//! produce queue, and the read path that serves committed records from the segment log.
//!
//! - `batcher`: merges queued produce requests into Raft entries (batch before Raft);
//! - `lease`: the quorum lease under which a leader acts as the partition's leader.
//!
//! Which replicas run here is decided by `node::partition_replicas`, from the controller's
//! metadata.

pub(crate) mod batcher;
pub(crate) mod lease;
pub(crate) mod retention;

use std::sync::Arc;

use openraft::EntryPayload;
use openraft::ServerState;
use raftlog_raft::RaftGroup;
use raftlog_storage::DiskRead;
use raftlog_storage::PartitionView;
use raftlog_storage::SegmentLog;
use raftlog_storage::StorageError;
use raftlog_types::type_config::Entry;
use raftlog_types::GroupId;
use raftlog_types::Record;
use tokio::sync::mpsc;

use crate::error::ServerError;
use crate::partition::batcher::ProduceJob;
use crate::partition::lease::QuorumLease;

/// A partition replica hosted here.
pub struct Partition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub index: u32,
    /// Its Raft group.
    pub group: GroupId,
    /// The Raft instance.
    pub raft: RaftGroup,
    /// The log (read side).
    pub log: SegmentLog,
    /// Applied state: offset index and high watermark.
    pub view: PartitionView,
    /// Queue of the produce batcher.
    pub produce_queue: mpsc::Sender<ProduceJob>,
    /// Whether this node, when it leads, still leads as far as a majority knows.
    pub lease: QuorumLease,
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
    ///
    /// Above the high watermark only a current leader that has applied an entry of its own term
    /// knows that nothing is there: every record an earlier leader acknowledged is applied before
    /// that entry. Any other replica may simply be behind (a follower learns commits after the
    /// leader, a new leader applies what its predecessor acknowledged only once it commits in its
    /// own term, a leader cut off may have been replaced), so there the offset is
    /// `OffsetNotAvailable`, which clients retry, not out of range.
    pub fn check_offset(&self, offset: u64) -> Result<(), ServerError> {
        // In this order: both only grow, so the start read first is never above the high
        // watermark read second. (The other way round, a record applied in between made an
        // empty partition refuse offset 0 as "valid offsets are 1 ..= 0".)
        let log_start_offset = self.log_start_offset()?;
        let high_watermark = self.view.high_watermark();
        if offset > high_watermark && !self.is_leader_caught_up_with_its_term() {
            return Err(ServerError::OffsetNotAvailable {
                what: self.name(),
                offset,
                high_watermark,
            });
        }
        if offset < log_start_offset || offset > high_watermark {
            return Err(ServerError::OffsetOutOfRange {
                offset,
                log_start_offset,
                high_watermark,
            });
        }
        Ok(())
    }

    /// The error for a read of `offset` that found the entry of `next` gone: out of range if
    /// retention moved the log start past `next` meanwhile (its segment was deleted), else
    /// `cause`, which is internal.
    fn deleted_while_reading(
        &self,
        next: u64,
        offset: u64,
        cause: &dyn std::fmt::Display,
    ) -> Result<ServerError, ServerError> {
        let log_start_offset = self.log_start_offset()?;
        if next < log_start_offset {
            return Ok(ServerError::OffsetOutOfRange {
                offset,
                log_start_offset,
                high_watermark: self.view.high_watermark(),
            });
        }
        Ok(ServerError::Internal {
            message: format!("{}: offset {next}: {cause}", self.name()),
        })
    }

    /// This replica leads, a majority acknowledged it within the lease (a leader cut off from
    /// the others may have been replaced), and it has applied an entry of its
    /// current term: so its high watermark is at least every offset any leader acknowledged.
    fn is_leader_caught_up_with_its_term(&self) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        metrics.state == ServerState::Leader
            && metrics
                .last_applied
                .is_some_and(|applied| applied.leader_id.term == metrics.current_term)
            && self.lease.holds(&metrics)
    }

    /// Committed records from `offset` on, up to `max_bytes` of payload (at least one record
    /// if any is available). Never returns a record at or past the high watermark. The offset
    /// index says which batches received offsets (a refused idempotent retry got none).
    ///
    /// What memory and the page cache hold is read on the calling task. A read that needs the
    /// disk runs on tokio's blocking pool instead (as `tokio::fs` does), so a consumer replaying
    /// old records never stalls the node's runtime threads for the disk; and segments are
    /// read outside the log's lock, so it never stalls the partition's appends either.
    pub async fn read_records(
        self: &Arc<Self>,
        offset: u64,
        max_bytes: u64,
    ) -> Result<Vec<(u64, Record)>, ServerError> {
        if let Some(records) = self.read_records_with(offset, max_bytes, DiskRead::CachedOnly)? {
            return Ok(records);
        }
        let partition = Arc::clone(self);
        let from_disk = tokio::task::spawn_blocking(move || {
            partition.read_records_with(offset, max_bytes, DiskRead::Wait)
        })
        .await
        .map_err(|e| ServerError::internal(&e))??;
        from_disk.ok_or_else(|| ServerError::Internal {
            message: format!(
                "{}: a read of offset {offset} that could wait for the disk did not",
                self.name()
            ),
        })
    }

    /// [`Partition::read_records`] on this thread. With `DiskRead::CachedOnly`, `None` if the
    /// first record needs the disk; once some records are read, a record that needs the disk
    /// ends the batch instead (the next fetch reads it).
    fn read_records_with(
        &self,
        offset: u64,
        max_bytes: u64,
        disk: DiskRead,
    ) -> Result<Option<Vec<(u64, Record)>>, ServerError> {
        let high_watermark = self.view.high_watermark();
        let mut records = Vec::new();
        let mut bytes = 0u64;
        let mut next = offset;
        let mut entry: Option<Entry> = None;
        while next < high_watermark {
            let Some(location) = self
                .view
                .locate(next)
                .map_err(|e| ServerError::internal(&e))?
            else {
                if records.is_empty() {
                    return Err(ServerError::OffsetOutOfRange {
                        offset,
                        log_start_offset: self.log_start_offset()?,
                        high_watermark,
                    });
                }
                break;
            };
            if entry.as_ref().map(|e| e.log_id.index) != Some(location.log_index) {
                let read = match self
                    .log
                    .read_committed_entries(location.log_index..location.log_index + 1, disk)
                {
                    Ok(mut read) => read.pop(),
                    Err(StorageError::NotCached { .. }) if records.is_empty() => return Ok(None),
                    Err(StorageError::NotCached { .. }) => return Ok(Some(records)),
                    Err(e) => return Err(self.deleted_while_reading(next, offset, &e)?),
                };
                let Some(read) = read else {
                    let missing = format!("log entry {} is missing", location.log_index);
                    return Err(self.deleted_while_reading(next, offset, &missing)?);
                };
                entry = Some(read);
            }
            let batch: &[Record] = match entry.as_ref().map(|e| &e.payload) {
                Some(EntryPayload::Normal(command)) => command
                    .append_batches()
                    .and_then(|batches| batches.get(location.batch_position as usize))
                    .map_or(&[], |b| &b.records[..]),
                _ => &[],
            };
            if batch.len() != location.record_count as usize {
                return Err(ServerError::Internal {
                    message: format!(
                        "{}: offset index and log entry {} disagree at offset {next}",
                        self.name(),
                        location.log_index
                    ),
                });
            }
            for (i, record) in batch.iter().enumerate() {
                let record_offset = location.base_offset + i as u64;
                if record_offset < next {
                    continue;
                }
                if record_offset >= high_watermark {
                    return Ok(Some(records));
                }
                let size = record.payload_bytes();
                if !records.is_empty() && bytes + size > max_bytes {
                    return Ok(Some(records));
                }
                bytes += size;
                records.push((record_offset, record.clone()));
            }
            next = location.base_offset + u64::from(location.record_count);
        }
        Ok(Some(records))
    }
}
