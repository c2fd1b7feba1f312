//! openraft's `RaftLogReader` and `RaftLogStorage` for [`SegmentLog`]: each call is one of the
//! log's own methods, with its error turned into openraft's. The durability of each is the
//! method's: `append` hands openraft's callback to the flusher, so it fires only after the
//! `fdatasync` (`append.rs`); `save_vote` and `save_committed` write the metadata file on tokio's
//! blocking pool (`hard_state.rs` says why); `truncate` and `purge` are durable when they return
//! (`truncate.rs`).

use std::fmt::Debug;
use std::ops::RangeBounds;

use openraft::storage::LogFlushed;
use openraft::storage::RaftLogStorage;
use openraft::LogState;
use openraft::OptionalSend;
use openraft::RaftLogReader;
use raftlog_types::type_config::Entry;
use raftlog_types::type_config::LogId;
use raftlog_types::type_config::Vote;
use raftlog_types::TypeConfig;

use super::SegmentLog;
use crate::error::raft_log_read_error;
use crate::error::raft_log_write_error;
use crate::error::raft_vote_write_error;
use crate::group_commit::Completion;

type RaftStorageError = openraft::StorageError<u64>;

impl RaftLogReader<TypeConfig> for SegmentLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> std::result::Result<Vec<Entry>, RaftStorageError> {
        self.read_entries(range)
            .map_err(|e| raft_log_read_error(&e))
    }
}

impl RaftLogStorage<TypeConfig> for SegmentLog {
    type LogReader = SegmentLog;

    async fn get_log_state(
        &mut self,
    ) -> std::result::Result<LogState<TypeConfig>, RaftStorageError> {
        let files = self.shared.state.read();
        Ok(LogState {
            last_purged_log_id: files.last_purged,
            last_log_id: files.last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> std::result::Result<(), RaftStorageError> {
        let vote = *vote;
        self.write_meta_off_runtime(move |log| log.store_vote(&vote))
            .await
            .map_err(|e| raft_vote_write_error(&e))
    }

    async fn read_vote(&mut self) -> std::result::Result<Option<Vote>, RaftStorageError> {
        Ok(self.vote())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId>,
    ) -> std::result::Result<(), RaftStorageError> {
        if self.note_committed(committed) {
            self.write_meta_off_runtime(SegmentLog::write_committed)
                .await
                .map_err(|e| raft_log_write_error(&e))?;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> std::result::Result<Option<LogId>, RaftStorageError> {
        Ok(self.committed())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> std::result::Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let completion: Completion = Box::new(move |result| callback.log_io_completed(result));
        self.append_entries(entries, completion)
            .map_err(|e| raft_log_write_error(&e))
    }

    async fn truncate(&mut self, log_id: LogId) -> std::result::Result<(), RaftStorageError> {
        self.truncate_from(log_id.index)
            .map_err(|e| raft_log_write_error(&e))
    }

    async fn purge(&mut self, log_id: LogId) -> std::result::Result<(), RaftStorageError> {
        self.purge_upto(log_id)
            .map_err(|e| raft_log_write_error(&e))
    }
}
