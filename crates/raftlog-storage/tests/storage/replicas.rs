//! Partition replicas: created where this node never held one, refused (never recreated empty)
//! where it did and the directory is gone, created again after a deliberate delete.

use raftlog_storage::LogConfig;
use raftlog_storage::NodeStorage;
use raftlog_storage::StorageError;
use tempfile::TempDir;

use crate::kit::*;

#[test]
fn a_lost_replica_directory_is_refused_not_recreated() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    {
        let storage = NodeStorage::open(dir.path(), LogConfig::default())?;
        let (log, _, _) = storage.open_replica(GROUP)?;
        append_durably(&log, (0..10).map(|i| entry(1, i)).collect())?;
    }
    let group_dir = dir.path().join("groups").join(GROUP.0.to_string());
    std::fs::remove_dir_all(&group_dir)?;

    let storage = NodeStorage::open(dir.path(), LogConfig::default())?;
    let error = match storage.open_replica(GROUP) {
        Ok(_) => anyhow::bail!("a lost replica was recreated empty"),
        Err(error) => error,
    };
    assert!(
        matches!(&error, StorageError::ReplicaLost { path, .. } if *path == group_dir),
        "{error}"
    );
    assert!(error.is_damaged_data());
    assert!(
        error.to_string().contains(&group_dir.display().to_string()),
        "{error}"
    );
    assert!(!group_dir.exists(), "a refused open created the directory");

    // Deleted on purpose (its topic was), the group may be created again.
    storage.delete_replica(GROUP)?;
    let (log, _, _) = storage.open_replica(GROUP)?;
    assert_eq!(log.last_log_id(), None);
    Ok(())
}

#[test]
fn a_corrupt_replica_is_reported_as_damaged_data() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    {
        let storage = NodeStorage::open(dir.path(), LogConfig::default())?;
        let (log, _, _) = storage.open_replica(GROUP)?;
        append_durably(&log, (0..10).map(|i| entry(1, i)).collect())?;
        log.store_committed(Some(log_id(1, 9)))?;
    }
    let segment = segment_files(dir.path())?.pop().expect("a segment");
    let mut bytes = std::fs::read(&segment)?;
    let (start, end) = frame_ranges(&bytes)[3];
    bytes[(start + end) / 2] ^= 0x40;
    std::fs::write(&segment, &bytes)?;

    let storage = NodeStorage::open(dir.path(), LogConfig::default())?;
    let error = match storage.open_replica(GROUP) {
        Ok(_) => anyhow::bail!("a corrupt replica opened"),
        Err(error) => error,
    };
    assert!(error.is_damaged_data(), "{error}");
    let message = error.to_string();
    assert!(
        message.contains(&segment.display().to_string())
            && message.contains(&format!("at byte {start}")),
        "{message}"
    );
    Ok(())
}
