//! What a power loss would take away: for every file changed since its last fsync, its length
//! then and the old bytes of every range overwritten or truncated away since; for every file or
//! directory created since its parent's last fsync, its path. Writes go through to the backing
//! file at once (reads see them), and [`Pending::revert`] puts the backing files back as a
//! power loss would leave them.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

/// Memory the saved old bytes of every file may take in all (a range of zeros counts only its
/// bookkeeping): past it a write fails with EIO rather than be silently made durable.
pub const MAX_SAVED_BYTES: u64 = 256 * 1024 * 1024;
/// Bookkeeping counted per saved range, so that many small ranges are bounded too.
const RANGE_OVERHEAD: u64 = 64;
/// Files (and directories) created and not yet made durable by an fsync of their directory.
pub const MAX_CREATED: usize = 65_536;
/// Files changed since their last fsync.
pub const MAX_DIRTY_FILES: usize = 16_384;

/// Old bytes of one range: zeros are kept as a length only (preallocated segments are mostly
/// zeros until written).
enum Saved {
    Zeros(u64),
    Bytes(Vec<u8>),
}

impl Saved {
    fn len(&self) -> u64 {
        match self {
            Saved::Zeros(len) => *len,
            Saved::Bytes(bytes) => bytes.len() as u64,
        }
    }

    fn cost(&self) -> u64 {
        RANGE_OVERHEAD
            + match self {
                Saved::Zeros(_) => 0,
                Saved::Bytes(bytes) => bytes.len() as u64,
            }
    }
}

/// One file changed since its last fsync.
struct Dirty {
    /// The backing file, held open so that it can be put back wherever it is (or was) named.
    file: Arc<File>,
    /// Its length at the last fsync (or when first seen).
    synced_len: u64,
    /// Non-overlapping ranges below `synced_len` changed since, by start offset, with the bytes
    /// they held at the last fsync.
    saved: BTreeMap<u64, Saved>,
}

/// The memory bound was reached.
#[derive(Debug)]
pub struct Full;

/// What [`Pending::revert`] discarded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    /// Files whose contents went back to their last fsync.
    pub files_reverted: usize,
    /// Files and directories removed because their creation was never made durable.
    pub entries_removed: usize,
    /// The first [`MAX_REPORTED`] of them, relative to the root.
    pub removed: Vec<PathBuf>,
}

/// Removed entries a [`Lost`] names.
pub const MAX_REPORTED: usize = 32;

/// Everything not yet fsynced in one file system.
#[derive(Default)]
pub struct Pending {
    dirty: HashMap<u64, Dirty>,
    /// Relative path of each created, not yet durable entry, by backing inode number.
    created: HashMap<u64, PathBuf>,
    saved_bytes: u64,
}

impl Pending {
    /// Remembers the old bytes of `[offset, offset + len)` of the file with backing inode
    /// `ino` before it is overwritten, and that it changed. Call before the write.
    pub fn before_write(
        &mut self,
        ino: u64,
        file: &Arc<File>,
        offset: u64,
        len: u64,
    ) -> Result<(), Full> {
        let dirty = self.dirty_entry(ino, file)?;
        let end = offset.saturating_add(len).min(dirty.synced_len);
        if offset >= end {
            return Ok(());
        }
        // The parts of the range no saved range covers yet: only the first change after an
        // fsync holds the bytes a power loss would bring back.
        let mut gaps = Vec::new();
        let mut cursor = end;
        for (&start, saved) in dirty.saved.range(..end).rev() {
            let saved_end = start + saved.len();
            if saved_end <= offset {
                break;
            }
            if saved_end < cursor {
                gaps.push((saved_end, cursor));
            }
            cursor = cursor.min(start);
        }
        if cursor > offset {
            gaps.push((offset, cursor));
        }
        let mut added = Vec::new();
        let mut cost = 0;
        for (start, gap_end) in gaps {
            let mut bytes = vec![0u8; (gap_end - start) as usize];
            // Bytes past the backing file's end were truncated away earlier and are saved
            // already, so a short read leaves only zeros that are never used.
            let mut read = 0;
            while read < bytes.len() {
                match dirty.file.read_at(&mut bytes[read..], start + read as u64) {
                    Ok(0) => break,
                    Ok(n) => read += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return Err(Full),
                }
            }
            let saved = if bytes.iter().all(|b| *b == 0) {
                Saved::Zeros(bytes.len() as u64)
            } else {
                Saved::Bytes(bytes)
            };
            cost += saved.cost();
            added.push((start, saved));
        }
        if self.saved_bytes + cost > MAX_SAVED_BYTES {
            return Err(Full);
        }
        self.saved_bytes += cost;
        let dirty = self.dirty.get_mut(&ino).ok_or(Full)?;
        dirty.saved.extend(added);
        Ok(())
    }

    /// Remembers what a truncation (or extension) to `new_len` changes. Call before it.
    pub fn before_set_len(
        &mut self,
        ino: u64,
        file: &Arc<File>,
        current_len: u64,
        new_len: u64,
    ) -> Result<(), Full> {
        if new_len < current_len {
            self.before_write(ino, file, new_len, current_len - new_len)
        } else {
            self.dirty_entry(ino, file).map(|_| ())
        }
    }

    fn dirty_entry(&mut self, ino: u64, file: &Arc<File>) -> Result<&mut Dirty, Full> {
        if !self.dirty.contains_key(&ino) {
            if self.dirty.len() >= MAX_DIRTY_FILES {
                return Err(Full);
            }
            let synced_len = file.metadata().map_err(|_| Full)?.len();
            self.dirty.insert(
                ino,
                Dirty {
                    file: Arc::clone(file),
                    synced_len,
                    saved: BTreeMap::new(),
                },
            );
        }
        self.dirty.get_mut(&ino).ok_or(Full)
    }

    /// The file's contents and length are durable (fsync or fdatasync returned).
    pub fn synced(&mut self, ino: u64) {
        if let Some(dirty) = self.dirty.remove(&ino) {
            let cost: u64 = dirty.saved.values().map(Saved::cost).sum();
            self.saved_bytes = self.saved_bytes.saturating_sub(cost);
        }
    }

    /// An entry was created at `path` (relative to the root).
    pub fn created(&mut self, ino: u64, path: PathBuf) -> Result<(), Full> {
        if self.created.len() >= MAX_CREATED {
            return Err(Full);
        }
        self.created.insert(ino, path);
        Ok(())
    }

    /// Directory `dir` (relative) was fsynced: the entries created in it are durable.
    pub fn dir_synced(&mut self, dir: &Path) {
        self.created.retain(|_, path| path.parent() != Some(dir));
    }

    /// An entry was removed. Removals are durable at once, and, as in a file system that
    /// journals its metadata in order, so is every creation before them: a power loss never
    /// keeps a later change of the tree and drops an earlier one.
    pub fn removed(&mut self, _path: &Path) {
        self.created.clear();
    }

    /// An entry was renamed. Like removals, renames are durable at once together with every
    /// creation before them (see [`Pending::removed`]): after the usual write-temp-then-rename
    /// the old or the new file is there, never neither, and never a renamed file without the
    /// files created before it.
    pub fn renamed(&mut self, _from: &Path, _to: &Path) {
        self.created.clear();
    }

    /// Puts the tree under `root` back as a power loss would leave it, and forgets everything
    /// pending: files that were created and never made durable are removed (deepest first), then
    /// every changed file gets its last fsynced length and bytes back.
    pub fn revert(&mut self, root: &Path) -> std::io::Result<Lost> {
        let mut lost = Lost::default();
        let mut created: Vec<PathBuf> = self.created.drain().map(|(_, p)| p).collect();
        created.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for path in created {
            let full = root.join(&path);
            let removed = match std::fs::symlink_metadata(&full) {
                Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&full),
                Ok(_) => std::fs::remove_file(&full),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => Err(e),
            };
            removed?;
            lost.entries_removed += 1;
            if lost.removed.len() < MAX_REPORTED {
                lost.removed.push(path);
            }
        }
        for (_, dirty) in self.dirty.drain() {
            dirty.file.set_len(dirty.synced_len)?;
            for (start, saved) in &dirty.saved {
                match saved {
                    Saved::Bytes(bytes) => dirty.file.write_all_at(bytes, *start)?,
                    Saved::Zeros(len) => {
                        let zeros = vec![0u8; (*len).min(1 << 20) as usize];
                        let mut at = 0;
                        while at < *len {
                            let n = (*len - at).min(zeros.len() as u64) as usize;
                            dirty.file.write_all_at(&zeros[..n], start + at)?;
                            at += n as u64;
                        }
                    }
                }
            }
            dirty.file.sync_all()?;
            lost.files_reverted += 1;
        }
        self.saved_bytes = 0;
        Ok(lost)
    }
}

/// Where `path` is after renaming `from` to `to`, if it is `from` or below it.
pub fn moved(path: &Path, from: &Path, to: &Path) -> Option<PathBuf> {
    let rest = path.strip_prefix(from).ok()?;
    // `join("")` would add a trailing slash, which names a directory.
    Some(if rest.as_os_str().is_empty() {
        to.to_path_buf()
    } else {
        to.join(rest)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, Arc<File>) {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let path = dir.path().join("f");
        std::fs::write(&path, bytes).expect("write");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        (dir, Arc::new(file))
    }

    #[test]
    fn overlapping_writes_and_a_truncation_revert_to_the_synced_bytes() {
        let (dir, file) = file_with(b"0123456789");
        let mut pending = Pending::default();
        pending.before_write(1, &file, 2, 3).expect("save");
        file.write_all_at(b"abc", 2).expect("write");
        pending.before_write(1, &file, 0, 6).expect("save");
        file.write_all_at(b"ABCDEF", 0).expect("write");
        pending.before_set_len(1, &file, 10, 4).expect("save");
        file.set_len(4).expect("truncate");
        pending.before_write(1, &file, 8, 6).expect("save");
        file.write_all_at(b"xxxxxx", 8).expect("write");
        let lost = pending.revert(dir.path()).expect("revert");
        assert_eq!(lost.files_reverted, 1);
        assert_eq!(
            std::fs::read(dir.path().join("f")).expect("read"),
            b"0123456789"
        );
    }

    #[test]
    fn a_synced_file_keeps_what_it_had_at_the_sync() {
        let (dir, file) = file_with(b"");
        let mut pending = Pending::default();
        pending.before_write(1, &file, 0, 5).expect("save");
        file.write_all_at(b"hello", 0).expect("write");
        pending.synced(1);
        pending.before_write(1, &file, 5, 6).expect("save");
        file.write_all_at(b" world", 5).expect("write");
        pending.revert(dir.path()).expect("revert");
        assert_eq!(std::fs::read(dir.path().join("f")).expect("read"), b"hello");
    }

    #[test]
    fn a_renamed_path_is_exactly_the_new_name() {
        assert_eq!(
            moved(Path::new("d/tmp"), Path::new("d/tmp"), Path::new("d/meta")),
            Some("d/meta".into())
        );
        assert_eq!(
            moved(Path::new("d/x"), Path::new("d"), Path::new("e")),
            Some("e/x".into())
        );
        assert_eq!(
            moved(Path::new("dd/x"), Path::new("d"), Path::new("e")),
            None
        );
    }

    #[test]
    fn created_entries_go_unless_their_directory_was_synced() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        std::fs::create_dir(dir.path().join("d")).expect("mkdir");
        std::fs::write(dir.path().join("d/kept"), b"k").expect("write");
        std::fs::write(dir.path().join("d/gone"), b"g").expect("write");
        std::fs::write(dir.path().join("top"), b"t").expect("write");
        let mut pending = Pending::default();
        pending.created(1, "d/kept".into()).expect("created");
        pending.created(2, "d/gone".into()).expect("created");
        pending.created(3, "top".into()).expect("created");
        pending.dir_synced(Path::new("d"));
        pending.created(2, "d/gone".into()).expect("created");
        let lost = pending.revert(dir.path()).expect("revert");
        assert_eq!(lost.entries_removed, 2);
        assert!(dir.path().join("d/kept").exists());
        assert!(!dir.path().join("d/gone").exists());
        assert!(!dir.path().join("top").exists());
    }

    #[test]
    fn a_rename_makes_every_earlier_creation_durable_and_later_ones_stay_pending() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        for name in ["a", "b", "c"] {
            std::fs::write(dir.path().join(name), name).expect("write");
        }
        let mut pending = Pending::default();
        pending.created(1, "a".into()).expect("created");
        pending.created(2, "b".into()).expect("created");
        pending.renamed(Path::new("b"), Path::new("b2"));
        std::fs::rename(dir.path().join("b"), dir.path().join("b2")).expect("rename");
        pending.created(3, "c".into()).expect("created");
        let lost = pending.revert(dir.path()).expect("revert");
        assert_eq!(lost.removed, vec![PathBuf::from("c")]);
        assert!(dir.path().join("a").exists() && dir.path().join("b2").exists());
    }
}
