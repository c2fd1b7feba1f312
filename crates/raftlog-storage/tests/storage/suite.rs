//! openraft's own storage test suite, run against the segment log and partition state machine.

use openraft::testing::StoreBuilder;
use openraft::testing::Suite;
use raftlog_storage::LogConfig;
use raftlog_storage::NodeStorage;
use raftlog_storage::PartitionStateMachine;
use raftlog_storage::SegmentLog;
use raftlog_types::GroupId;
use raftlog_types::TypeConfig;
use tempfile::TempDir;

struct SegmentStoreBuilder;

fn io_error<E: std::error::Error + 'static>(e: E) -> openraft::StorageError<u64> {
    openraft::StorageIOError::write(&e).into()
}

impl StoreBuilder<TypeConfig, SegmentLog, PartitionStateMachine, TempDir> for SegmentStoreBuilder {
    async fn build(
        &self,
    ) -> Result<(TempDir, SegmentLog, PartitionStateMachine), openraft::StorageError<u64>> {
        let dir = TempDir::new().map_err(io_error)?;
        let storage = NodeStorage::open(
            dir.path(),
            LogConfig {
                segment_bytes: 64 * 1024,
                ..LogConfig::default()
            },
        )
        .map_err(io_error)?;
        let (log, state_machine, _report) = storage.open_group(GroupId(1)).map_err(io_error)?;
        Ok((dir, log, state_machine))
    }
}

#[test]
fn openraft_storage_suite_passes() -> anyhow::Result<()> {
    Suite::test_all(SegmentStoreBuilder)?;
    Ok(())
}
