//! The record of the partition replicas this node has created, kept apart from their files so
//! that losing a replica's directory cannot also erase the fact that it existed.
//!
//! `<data_dir>/replicas/<group id>` is an empty file per replica, created (and the directory
//! synced) after the replica's own directory is durable and before its Raft group starts, so
//! before it can vote or acknowledge an entry. A replica whose directory is missing while its
//! file is here was lost (deleted, or a disk replaced under it): starting it empty would let it
//! vote with an empty log, which can elect a leader without entries a majority acknowledged.
//!
//! Durability: `record` and `forget` are durable when they return. The directory is created
//! whole (under a temporary name, then renamed): a data dir written before it existed gets a
//! file for every group directory it holds, and a crash cannot leave it half filled, which would
//! make the missing replicas look new.

use std::fs::File;
use std::path::Path;
use std::path::PathBuf;

use raftlog_types::GroupId;

use crate::error::Result;
use crate::error::StorageError;
use crate::fsutil;

const REPLICAS_DIR: &str = "replicas";
const REPLICAS_TEMP_DIR: &str = "replicas.tmp";

/// The partition replicas this node has created, by group.
#[derive(Debug)]
pub(crate) struct ReplicaRecord {
    dir: PathBuf,
}

impl ReplicaRecord {
    /// Opens the record in `data_dir`; if there is none yet, creates it holding every group
    /// directory under `groups_dir`.
    pub(crate) fn open(data_dir: &Path, groups_dir: &Path) -> Result<ReplicaRecord> {
        let dir = data_dir.join(REPLICAS_DIR);
        if !dir.exists() {
            let temp = data_dir.join(REPLICAS_TEMP_DIR);
            if temp.exists() {
                std::fs::remove_dir_all(&temp)
                    .map_err(StorageError::io("remove unfinished directory", &temp))?;
            }
            fsutil::ensure_dir(&temp)?;
            for group in group_dirs(groups_dir)? {
                create_marker(&temp.join(group.0.to_string()))?;
            }
            fsutil::sync_dir(&temp)?;
            std::fs::rename(&temp, &dir).map_err(StorageError::io("rename into place", &dir))?;
            fsutil::sync_dir(data_dir)?;
        }
        Ok(ReplicaRecord { dir })
    }

    /// The file recording `group`.
    pub(crate) fn marker(&self, group: GroupId) -> PathBuf {
        self.dir.join(group.0.to_string())
    }

    /// Whether this node created a replica of `group` (and has not deleted it).
    pub(crate) fn holds(&self, group: GroupId) -> Result<bool> {
        let marker = self.marker(group);
        match std::fs::symlink_metadata(&marker) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StorageError::io("stat", &marker)(e)),
        }
    }

    /// Records that this node holds a replica of `group`; durable when this returns.
    pub(crate) fn record(&self, group: GroupId) -> Result<()> {
        if self.holds(group)? {
            return Ok(());
        }
        create_marker(&self.marker(group))?;
        fsutil::sync_dir(&self.dir)
    }

    /// Forgets `group`, once its files are deleted; durable when this returns.
    pub(crate) fn forget(&self, group: GroupId) -> Result<()> {
        let marker = self.marker(group);
        match std::fs::remove_file(&marker) {
            Ok(()) => fsutil::sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io("remove", &marker)(e)),
        }
    }
}

fn create_marker(path: &Path) -> Result<()> {
    File::create(path)
        .map(drop)
        .map_err(StorageError::io("create", path))
}

/// The groups with a directory under `groups_dir`; other entries are ignored.
fn group_dirs(groups_dir: &Path) -> Result<Vec<GroupId>> {
    let mut groups = Vec::new();
    for dir_entry in
        std::fs::read_dir(groups_dir).map_err(StorageError::io("list directory", groups_dir))?
    {
        let dir_entry = dir_entry.map_err(StorageError::io("list directory", groups_dir))?;
        let is_dir = dir_entry
            .file_type()
            .map_err(StorageError::io("stat", dir_entry.path()))?
            .is_dir();
        let id = dir_entry.file_name().to_str().and_then(|n| n.parse().ok());
        if let (true, Some(id)) = (is_dir, id) {
            groups.push(GroupId(id));
        }
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_record_holds_the_groups_already_on_disk() -> anyhow::Result<()> {
        let data = tempfile::tempdir()?;
        let groups = data.path().join("groups");
        std::fs::create_dir_all(groups.join("4"))?;
        std::fs::create_dir_all(groups.join("not-a-group"))?;
        std::fs::write(groups.join("9"), b"a file, not a group")?;
        let record = ReplicaRecord::open(data.path(), &groups)?;
        assert!(record.holds(GroupId(4))?);
        assert!(!record.holds(GroupId(9))?);
        // Groups created later are recorded one by one, not by listing again.
        std::fs::create_dir_all(groups.join("5"))?;
        let record = ReplicaRecord::open(data.path(), &groups)?;
        assert!(!record.holds(GroupId(5))?);
        record.record(GroupId(5))?;
        record.forget(GroupId(4))?;
        let record = ReplicaRecord::open(data.path(), &groups)?;
        assert!(record.holds(GroupId(5))?);
        assert!(!record.holds(GroupId(4))?);
        Ok(())
    }
}
