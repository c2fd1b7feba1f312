//! A group's small durable metadata: vote, committed log id and last purged log id.
//!
//! Stored as one JSON file, replaced atomically: write `meta.json.tmp`, fsync it, rename it over
//! `meta.json`, fsync the directory. A crash at any point leaves either the old or the new file.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;

use raftlog_types::type_config::LogId;
use raftlog_types::type_config::Vote;
use serde::Deserialize;
use serde::Serialize;

use crate::error::Result;
use crate::error::StorageError;
use crate::fsutil;

const META_FILE: &str = "meta.json";
const META_TEMP_FILE: &str = "meta.json.tmp";

/// The metadata itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogMeta {
    /// The last vote saved; Raft's safety depends on it surviving any crash.
    pub vote: Option<Vote>,
    /// The highest log id known committed when the file was last written.
    pub committed: Option<LogId>,
    /// Entries up to and including this one are purged.
    pub last_purged: Option<LogId>,
}

/// The metadata file of one group.
#[derive(Debug)]
pub struct MetaFile {
    dir: PathBuf,
    path: PathBuf,
    /// What is on disk.
    stored: LogMeta,
}

impl MetaFile {
    /// Reads the file in `dir`, or starts empty if there is none. A leftover temporary file from
    /// a crash mid-write is discarded: the rename never happened, so the old file is current.
    pub fn open(dir: &Path) -> Result<MetaFile> {
        let path = dir.join(META_FILE);
        let temp = dir.join(META_TEMP_FILE);
        if temp.exists() {
            std::fs::remove_file(&temp)
                .map_err(StorageError::io("remove stale temp file", &temp))?;
        }
        let stored = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StorageError::Meta {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => LogMeta::default(),
            Err(e) => {
                return Err(StorageError::Io {
                    op: "read",
                    path,
                    source: e,
                })
            }
        };
        Ok(MetaFile {
            dir: dir.to_path_buf(),
            path,
            stored,
        })
    }

    /// What is on disk.
    pub fn stored(&self) -> &LogMeta {
        &self.stored
    }

    /// Replaces the file with `meta`; it is durable when this returns.
    pub fn store(&mut self, meta: LogMeta) -> Result<()> {
        let temp = self.dir.join(META_TEMP_FILE);
        let bytes = serde_json::to_vec_pretty(&meta).map_err(|source| StorageError::Meta {
            path: temp.clone(),
            source,
        })?;
        let mut file = File::create(&temp).map_err(StorageError::io("create", &temp))?;
        file.write_all(&bytes)
            .map_err(StorageError::io("write", &temp))?;
        file.sync_all().map_err(StorageError::io("fsync", &temp))?;
        drop(file);
        std::fs::rename(&temp, &self.path)
            .map_err(StorageError::io("rename into place", &self.path))?;
        fsutil::sync_dir(&self.dir)?;
        self.stored = meta;
        Ok(())
    }
}
