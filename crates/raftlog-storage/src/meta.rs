//! A group's small durable metadata: vote, committed log id and last purged log id.
//!
//! Stored in `meta.slots`: two fixed slots, written alternately in place, each write followed by
//! one `fdatasync`. A slot holds a sequence number, the JSON of the metadata and a CRC; the valid
//! slot with the higher sequence number is current. A write goes to the other slot, so a crash
//! mid-write tears only a slot older than the current one, and the last completed write is what
//! a restart reads.
//!
//! Why not write a temporary file, fsync it, rename it and fsync the directory: that costs four
//! syncs' worth of journal work against one for an in-place overwrite, and votes are saved on
//! the Raft cores' threads. When a node dies, each survivor saves hundreds of votes within a
//! second (candidacy, grant, then the committed vote, for every group that lost its leader);
//! with the slower write they kept both runtime workers blocked, and vote requests waited long
//! enough for the other survivor's election timeout to fire too and split the vote
//! (benchmarks/HISTORY.md, failover of 1,000 partitions).
//!
//! Data directories written before this format have `meta.json`; it is read once, rewritten as
//! `meta.slots` and removed.

use std::fs::File;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::path::PathBuf;

use raftlog_types::type_config::LogId;
use raftlog_types::type_config::Vote;
use serde::Deserialize;
use serde::Serialize;

use crate::error::Result;
use crate::error::StorageError;
use crate::fsutil;

const META_FILE: &str = "meta.slots";
const META_TEMP_FILE: &str = "meta.slots.tmp";
const LEGACY_META_FILE: &str = "meta.json";
const LEGACY_META_TEMP_FILE: &str = "meta.json.tmp";

/// One slot per file-system page, so a write never shares a page with the other slot.
const SLOT_BYTES: usize = 4096;
const SLOT_MAGIC: [u8; 4] = *b"RLM1";
/// magic, sequence (u64), payload length (u32), crc32c (u32) of sequence, length and payload.
const SLOT_HEADER_BYTES: usize = 4 + 8 + 4 + 4;
const PAYLOAD_BYTES_MAX: usize = SLOT_BYTES - SLOT_HEADER_BYTES;

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
    /// Sequence number of the current slot; `None` while the file does not exist yet.
    sequence: Option<u64>,
}

impl MetaFile {
    /// Reads the file in `dir`, or starts empty if there is none. A metadata file of the older
    /// format is converted. A slot file in which no slot is intact is an error: it cannot come
    /// from a crash, since the file is created complete and only one slot is written at a time.
    pub fn open(dir: &Path) -> Result<MetaFile> {
        let path = dir.join(META_FILE);
        remove_if_present(&dir.join(META_TEMP_FILE))?;
        let mut meta = MetaFile {
            dir: dir.to_path_buf(),
            path: path.clone(),
            stored: LogMeta::default(),
            sequence: None,
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                let (sequence, stored) = current_slot(&path, &bytes)?;
                meta.stored = stored;
                meta.sequence = Some(sequence);
                remove_if_present(&dir.join(LEGACY_META_FILE))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(legacy) = read_legacy(dir)? {
                    meta.store(legacy)?;
                    remove_if_present(&dir.join(LEGACY_META_FILE))?;
                    fsutil::sync_dir(dir)?;
                }
            }
            Err(e) => return Err(StorageError::io("read", &path)(e)),
        }
        remove_if_present(&dir.join(LEGACY_META_TEMP_FILE))?;
        Ok(meta)
    }

    /// What is on disk.
    pub fn stored(&self) -> &LogMeta {
        &self.stored
    }

    /// Writes `meta`; it is durable when this returns.
    pub fn store(&mut self, meta: LogMeta) -> Result<()> {
        let sequence = self.sequence.map_or(0, |current| current + 1);
        let slot = encode_slot(&self.path, sequence, &meta)?;
        match self.sequence {
            Some(_) => self.overwrite_slot(sequence, &slot)?,
            None => self.create(&slot)?,
        }
        self.stored = meta;
        self.sequence = Some(sequence);
        Ok(())
    }

    /// Writes the slot that does not hold the current metadata, in place.
    fn overwrite_slot(&self, sequence: u64, slot: &[u8]) -> Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(StorageError::io("open", &self.path))?;
        file.write_all_at(slot, slot_offset(sequence))
            .map_err(StorageError::io("write", &self.path))?;
        file.sync_data()
            .map_err(StorageError::io("fdatasync", &self.path))
    }

    /// Creates the file complete (first slot filled, second empty) under a temporary name, so
    /// that the file, once it exists, always holds an intact slot.
    fn create(&self, first_slot: &[u8]) -> Result<()> {
        let temp = self.dir.join(META_TEMP_FILE);
        let mut contents = vec![0; 2 * SLOT_BYTES];
        contents[..first_slot.len()].copy_from_slice(first_slot);
        let mut file = File::create(&temp).map_err(StorageError::io("create", &temp))?;
        file.write_all(&contents)
            .map_err(StorageError::io("write", &temp))?;
        file.sync_all().map_err(StorageError::io("fsync", &temp))?;
        drop(file);
        std::fs::rename(&temp, &self.path)
            .map_err(StorageError::io("rename into place", &self.path))?;
        fsutil::sync_dir(&self.dir)
    }
}

fn slot_offset(sequence: u64) -> u64 {
    (sequence % 2) * SLOT_BYTES as u64
}

fn encode_slot(path: &Path, sequence: u64, meta: &LogMeta) -> Result<Vec<u8>> {
    let payload = serde_json::to_vec(meta).map_err(|source| StorageError::Meta {
        path: path.to_path_buf(),
        source,
    })?;
    if payload.len() > PAYLOAD_BYTES_MAX {
        return Err(StorageError::MetaDamaged {
            path: path.to_path_buf(),
            reason: format!(
                "metadata encodes to {} bytes, over the slot's {PAYLOAD_BYTES_MAX}",
                payload.len()
            ),
        });
    }
    // Bounded by PAYLOAD_BYTES_MAX just above.
    let length = (payload.len() as u32).to_le_bytes();
    let sequence_bytes = sequence.to_le_bytes();
    let crc = crc32c::crc32c_append(
        crc32c::crc32c_append(crc32c::crc32c(&sequence_bytes), &length),
        &payload,
    );
    let mut slot = Vec::with_capacity(SLOT_HEADER_BYTES + payload.len());
    slot.extend_from_slice(&SLOT_MAGIC);
    slot.extend_from_slice(&sequence_bytes);
    slot.extend_from_slice(&length);
    slot.extend_from_slice(&crc.to_le_bytes());
    slot.extend_from_slice(&payload);
    Ok(slot)
}

/// The slot's sequence number and payload, or `None` if it is empty or torn.
fn decode_slot(slot: &[u8]) -> Option<(u64, &[u8])> {
    let header = slot.get(..SLOT_HEADER_BYTES)?;
    if header[..4] != SLOT_MAGIC {
        return None;
    }
    let sequence_bytes = &header[4..12];
    let length_bytes = &header[12..16];
    let crc = u32::from_le_bytes(header[16..20].try_into().ok()?);
    let length = u32::from_le_bytes(length_bytes.try_into().ok()?) as usize;
    let payload = slot.get(SLOT_HEADER_BYTES..SLOT_HEADER_BYTES.checked_add(length)?)?;
    let expected = crc32c::crc32c_append(
        crc32c::crc32c_append(crc32c::crc32c(sequence_bytes), length_bytes),
        payload,
    );
    let sequence = u64::from_le_bytes(sequence_bytes.try_into().ok()?);
    (crc == expected).then_some((sequence, payload))
}

/// The newest intact slot of the file's contents, parsed.
fn current_slot(path: &Path, bytes: &[u8]) -> Result<(u64, LogMeta)> {
    let newest = bytes
        .chunks(SLOT_BYTES)
        .take(2)
        .enumerate()
        .filter_map(|(index, slot)| {
            decode_slot(slot).map(|(sequence, payload)| (index, sequence, payload))
        })
        // A slot's sequence number must match its place, or the file was not written by us.
        .filter(|(index, sequence, _)| slot_offset(*sequence) == (*index * SLOT_BYTES) as u64)
        .max_by_key(|(_, sequence, _)| *sequence);
    let Some((_, sequence, payload)) = newest else {
        return Err(StorageError::MetaDamaged {
            path: path.to_path_buf(),
            reason: "neither slot is intact".to_string(),
        });
    };
    let meta = serde_json::from_slice(payload).map_err(|source| StorageError::Meta {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((sequence, meta))
}

fn read_legacy(dir: &Path) -> Result<Option<LogMeta>> {
    let path = dir.join(LEGACY_META_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StorageError::Meta { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io("read", &path)(e)),
    }
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io("remove", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    fn meta_with_term(term: u64) -> LogMeta {
        LogMeta {
            vote: Some(Vote::new(term, 2)),
            committed: Some(LogId::new(CommittedLeaderId::new(term, 2), 7 * term)),
            last_purged: None,
        }
    }

    #[test]
    fn every_store_survives_a_reopen() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        assert_eq!(MetaFile::open(dir.path())?.stored(), &LogMeta::default());
        for term in 1..=5 {
            let mut meta = MetaFile::open(dir.path())?;
            meta.store(meta_with_term(term))?;
            assert_eq!(MetaFile::open(dir.path())?.stored(), &meta_with_term(term));
        }
        Ok(())
    }

    /// A crash in the middle of a write tears the slot being written; the one before is intact
    /// and is what a restart reads.
    #[test]
    fn a_torn_write_leaves_the_previous_metadata() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut meta = MetaFile::open(dir.path())?;
        for term in 1..=3 {
            meta.store(meta_with_term(term))?;
        }
        // Term 3 went to slot 0 (sequence 2); tear a fourth write into slot 1.
        let path = dir.path().join(META_FILE);
        let slot = encode_slot(&path, 3, &meta_with_term(4))?;
        let file = OpenOptions::new().write(true).open(&path)?;
        file.write_all_at(&slot[..slot.len() / 2], slot_offset(3))?;
        drop(file);

        let mut reopened = MetaFile::open(dir.path())?;
        assert_eq!(reopened.stored(), &meta_with_term(3));
        // The next write goes to the torn slot again, never over the intact one.
        reopened.store(meta_with_term(5))?;
        assert_eq!(MetaFile::open(dir.path())?.stored(), &meta_with_term(5));
        Ok(())
    }

    #[test]
    fn a_file_without_an_intact_slot_is_an_error_naming_it() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        MetaFile::open(dir.path())?.store(meta_with_term(1))?;
        let path = dir.path().join(META_FILE);
        let mut bytes = std::fs::read(&path)?;
        bytes[SLOT_HEADER_BYTES + 3] ^= 0xff;
        std::fs::write(&path, &bytes)?;
        let message = format!(
            "{:#}",
            MetaFile::open(dir.path())
                .err()
                .map(anyhow::Error::from)
                .ok_or_else(|| anyhow::anyhow!("opened a corrupt file"))?
        );
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("neither slot is intact"), "{message}");
        Ok(())
    }

    #[test]
    fn a_json_file_of_the_older_format_is_converted() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let legacy = dir.path().join(LEGACY_META_FILE);
        std::fs::write(&legacy, serde_json::to_vec_pretty(&meta_with_term(4))?)?;
        assert_eq!(MetaFile::open(dir.path())?.stored(), &meta_with_term(4));
        assert!(!legacy.exists());
        assert!(dir.path().join(META_FILE).exists());
        assert_eq!(MetaFile::open(dir.path())?.stored(), &meta_with_term(4));
        Ok(())
    }
}
