//! One segment file of a group's log: a run of consecutive entries, CRC-framed.
//!
//! A segment is named after the index of its first entry. Only the last segment of a log is
//! written to; it is preallocated in growing steps so most appends do not grow the file (and
//! fdatasync need not write metadata). When it is full it is
//! *sealed*: trimmed to its written length and synced before the next segment is created. So a
//! sealed segment always ends exactly at its last frame, and any damage found in one is real
//! corruption, never a torn write.

use std::fs::File;
use std::fs::OpenOptions;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use raftlog_types::shared_bytes::decode_sharing;
use raftlog_types::type_config::Entry;
use raftlog_types::type_config::LogId;

use crate::error::Result;
use crate::error::StorageError;

/// The first preallocation of a segment, and the smallest later step.
pub const PREALLOCATE_STEP_MIN: u64 = 1024 * 1024;
use crate::frame::check_frame;
use crate::frame::find_intact_frame_after;
use crate::frame::FrameCheck;
use crate::frame::FRAME_HEADER_BYTES;
use crate::fsutil;
use crate::fsutil::DiskRead;
use crate::page_cache::COUNTED_RUN_BYTES_MIN;
use crate::page_cache::PAGE_BYTES;

/// File name extension of segment files.
const SEGMENT_EXTENSION: &str = "seg";

/// The name of the segment whose first entry is `base_index`; zero-padded so names sort.
pub fn segment_file_name(base_index: u64) -> String {
    format!("{base_index:020}.{SEGMENT_EXTENSION}")
}

/// The base index encoded in a segment file name, if `name` is one.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(&format!(".{SEGMENT_EXTENSION}"))?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// A frame about to be written: where it lands relative to the write position, and its log id.
#[derive(Clone, Copy, Debug)]
pub struct PendingFrame {
    /// Byte offset of the frame inside the buffer being written.
    pub buffer_pos: u64,
    /// The entry's log id.
    pub log_id: LogId,
}

/// One open segment file.
#[derive(Debug)]
pub struct Segment {
    /// Where the file is, for error messages and deletion.
    pub path: PathBuf,
    /// Shared with the group-commit flusher, which may still sync it after it is deleted.
    pub file: Arc<File>,
    /// Index of the first entry this segment holds (or will hold, while empty).
    pub base_index: u64,
    /// Index the next appended entry must have: `base_index + entry count`.
    pub next_index: u64,
    /// Byte position where the next frame goes; everything after it is zeros.
    pub write_pos: u64,
    /// Length of the file: bytes from `write_pos` up to here are allocated zeros.
    allocated: u64,
    /// How far appends may preallocate (0: never, for sealed segments and when disabled).
    preallocate_limit: u64,
    /// Log id of the last entry, `None` while the segment is empty.
    pub last_log_id: Option<LogId>,
    /// Sparse position index: `(index, byte position)` about every `index_interval_bytes`.
    sparse_index: Vec<(u64, u64)>,
    /// Bytes of log between two sparse index entries.
    index_interval_bytes: u64,
    /// Written bytes up to here were counted against the node's page-cache budget.
    page_cache_counted_upto: u64,
}

/// How an opened segment's tail was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailState {
    /// The written part ends cleanly.
    Clean,
    /// The last segment's first invalid frame, past the committed index, was found at
    /// `position`: it and everything after it (a write that was never synced) was cut off.
    TornTailTruncated {
        /// Where the cut was made.
        position: u64,
        /// Why the bytes there were not an intact frame.
        reason: String,
        /// Written (non-zero) bytes from the cut to the end of the file that were dropped.
        bytes_dropped: u64,
        /// Intact frames after the invalid one that were dropped with it (pages of the same
        /// unsynced writes that reached the disk before the invalid one did).
        intact_frames_dropped: u64,
    },
}

/// What `Segment::open` needs to know about the segment's place in the log.
pub struct OpenOptionsForSegment {
    /// Whether this is the log's last segment, the only one that may have a torn tail.
    pub is_last: bool,
    /// The highest index known committed; a damaged entry at or below it is never cut off.
    pub committed_index: Option<u64>,
    /// Bytes between two sparse index entries.
    pub index_interval_bytes: u64,
}

impl Segment {
    /// Creates an empty segment, preallocated to `preallocate_bytes`, and makes its existence
    /// durable (file and directory synced) before returning.
    pub fn create(
        dir: &Path,
        base_index: u64,
        preallocate_bytes: u64,
        index_interval_bytes: u64,
    ) -> Result<Segment> {
        let path = dir.join(segment_file_name(base_index));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(StorageError::io("create segment", &path))?;
        let allocated = preallocate_bytes.min(PREALLOCATE_STEP_MIN);
        fsutil::preallocate(&file, &path, 0, allocated)?;
        file.sync_all()
            .map_err(StorageError::io("fsync new segment", &path))?;
        fsutil::sync_dir(dir)?;
        Ok(Segment {
            path,
            file: Arc::new(file),
            base_index,
            next_index: base_index,
            write_pos: 0,
            allocated,
            preallocate_limit: preallocate_bytes,
            last_log_id: None,
            sparse_index: Vec::new(),
            index_interval_bytes,
            page_cache_counted_upto: 0,
        })
    }

    /// Opens an existing segment, checks every frame and rebuilds the sparse index.
    ///
    /// The first invalid frame of the last segment, above the committed index, starts a write
    /// that was never synced: it and everything after it is cut off (and the cut synced), even
    /// where an intact frame follows, if the damage reads as unwritten blocks
    /// (`cut_unsynced_tail`). Any other damage is returned as `StorageError::Corrupt` and nothing
    /// is changed on disk.
    pub fn open(
        path: &Path,
        base_index: u64,
        options: &OpenOptionsForSegment,
    ) -> Result<(Segment, TailState)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(StorageError::io("open segment", path))?;
        let bytes = std::fs::read(path).map_err(StorageError::io("read segment", path))?;
        let mut segment = Segment {
            path: path.to_path_buf(),
            file: Arc::new(file),
            base_index,
            next_index: base_index,
            write_pos: 0,
            allocated: bytes.len() as u64,
            preallocate_limit: 0,
            last_log_id: None,
            sparse_index: Vec::new(),
            index_interval_bytes: options.index_interval_bytes,
            page_cache_counted_upto: 0,
        };
        let corrupt = |position: usize, reason: String| StorageError::Corrupt {
            path: path.to_path_buf(),
            position: position as u64,
            reason,
        };

        let mut pos = 0usize;
        let damage = loop {
            match check_frame(&bytes[pos..]) {
                FrameCheck::End => {
                    let rest = &bytes[pos..];
                    match rest.iter().position(|b| *b != 0) {
                        None => break None,
                        Some(nonzero) => {
                            break Some(format!(
                                "non-zero bytes at {} after the end of the log",
                                pos + nonzero
                            ))
                        }
                    }
                }
                FrameCheck::Damaged { reason } => break Some(reason),
                FrameCheck::Valid { payload_len } => {
                    let payload =
                        &bytes[pos + FRAME_HEADER_BYTES..pos + FRAME_HEADER_BYTES + payload_len];
                    let entry: Entry = match postcard::from_bytes(payload) {
                        Ok(entry) => entry,
                        // The checksum matched, so these bytes were written as they are: an
                        // undecodable entry is a format bug, never a torn write.
                        Err(e) => {
                            return Err(corrupt(pos, format!("intact frame does not decode: {e}")))
                        }
                    };
                    if entry.log_id.index != segment.next_index {
                        return Err(corrupt(
                            pos,
                            format!(
                                "entry has index {} where {} was expected",
                                entry.log_id.index, segment.next_index
                            ),
                        ));
                    }
                    if let Some(previous) = segment.last_log_id {
                        if entry.log_id.leader_id.term < previous.leader_id.term {
                            return Err(corrupt(
                                pos,
                                format!(
                                    "entry {} has term {} after term {}",
                                    entry.log_id.index,
                                    entry.log_id.leader_id.term,
                                    previous.leader_id.term
                                ),
                            ));
                        }
                    }
                    segment.note_frame_written(entry.log_id, pos as u64);
                    pos += FRAME_HEADER_BYTES + payload_len;
                    segment.write_pos = pos as u64;
                    // Bytes read while opening are the kernel's to keep or drop; only new
                    // appends are counted.
                    segment.page_cache_counted_upto = segment.write_pos & !(PAGE_BYTES - 1);
                }
            }
        };

        let Some(reason) = damage else {
            return Ok((segment, TailState::Clean));
        };
        let tail = segment.cut_unsynced_tail(&bytes, pos, reason, options)?;
        Ok((segment, tail))
    }

    /// Handles the first invalid frame of an opened segment, found at `pos`: in the last segment
    /// and past the committed index, where it reads as a write that never reached the disk, it
    /// and everything after it is cut off (and the cut synced); anywhere else it is corruption.
    ///
    /// Why an intact frame after it does not make it corruption: the kernel writes dirty pages
    /// back in no particular order, so after a power loss a later page of an unsynced append can
    /// be on disk while an earlier one is not. No frame from the first unsynced one on was
    /// acknowledged by this node (an append is acknowledged only after its sync), so none of them
    /// can be needed by a majority; Kafka and Redpanda truncate at the first invalid batch too.
    ///
    /// The stored committed index lags the acknowledged entries by up to the committed persist
    /// interval, so past it a frame may still have been synced and acknowledged. With an intact
    /// frame after it, the damage is therefore cut off only if it looks like a write that never
    /// reached the disk: a page or sector that was not written reads as zeros (segments are
    /// preallocated, so unwritten blocks read as zeros), so the frame's header is zeros or some
    /// aligned [`UNWRITTEN_BLOCK_BYTES`] block before the intact frame is. A flipped bit
    /// with intact frames all around is decay of synced data, and is corruption.
    fn cut_unsynced_tail(
        &mut self,
        bytes: &[u8],
        pos: usize,
        reason: String,
        options: &OpenOptionsForSegment,
    ) -> Result<TailState> {
        let corrupt = |reason: String| StorageError::Corrupt {
            path: self.path.clone(),
            position: pos as u64,
            reason,
        };
        if !options.is_last {
            return Err(corrupt(format!(
                "{reason} (in a sealed segment, so not a torn write)"
            )));
        }
        if let Some(committed) = options.committed_index {
            if self.next_index <= committed {
                return Err(corrupt(format!(
                    "{reason}; entry {} is committed, so it cannot be a torn write",
                    self.next_index
                )));
            }
        }
        if let Some(intact) = find_intact_frame_after(bytes, pos + 1) {
            let header_unwritten = matches!(check_frame(&bytes[pos..]), FrameCheck::End);
            if !header_unwritten && !holds_unwritten_block(&bytes[..intact], pos) {
                return Err(corrupt(format!(
                    "{reason}, yet an intact frame follows at byte {intact} and no block between reads as zeros: damaged data, not a write that never reached the disk"
                )));
            }
        }
        let bytes_dropped = bytes
            .iter()
            .rposition(|b| *b != 0)
            .map_or(0, |last| (last + 1).saturating_sub(pos)) as u64;
        let intact_frames_dropped = count_intact_frames_after(bytes, pos);
        self.cut_at(self.write_pos)?;
        Ok(TailState::TornTailTruncated {
            position: pos as u64,
            reason,
            bytes_dropped,
            intact_frames_dropped,
        })
    }

    /// Number of entries in the segment.
    pub fn entry_count(&self) -> u64 {
        self.next_index - self.base_index
    }

    /// Index of the last entry, `None` while empty.
    pub fn last_index(&self) -> Option<u64> {
        self.next_index
            .checked_sub(1)
            .filter(|last| *last >= self.base_index)
    }

    fn note_frame_written(&mut self, log_id: LogId, pos: u64) {
        let due = match self.sparse_index.last() {
            None => true,
            Some((_, last_pos)) => pos - last_pos >= self.index_interval_bytes,
        };
        if due {
            self.sparse_index.push((log_id.index, pos));
        }
        self.last_log_id = Some(log_id);
        self.next_index = log_id.index + 1;
    }

    /// Writes already-framed entries at the write position. The bytes are in the page cache
    /// when this returns, not on disk: durability comes from the group-commit flusher.
    pub fn write_frames(&mut self, buffer: &[u8], frames: &[PendingFrame]) -> Result<()> {
        self.grow_allocation(self.write_pos + buffer.len() as u64)?;
        self.file
            .write_all_at(buffer, self.write_pos)
            .map_err(StorageError::io("write segment", &self.path))?;
        let start = self.write_pos;
        for frame in frames {
            self.note_frame_written(frame.log_id, start + frame.buffer_pos);
        }
        self.write_pos = start + buffer.len() as u64;
        Ok(())
    }

    /// The written bytes not yet counted against the node's page-cache budget, once they are a
    /// run of at least [`COUNTED_RUN_BYTES_MIN`]: whole pages only, so the page being written
    /// to is never released.
    pub fn take_uncounted_run(&mut self) -> Option<Range<u64>> {
        let end = self.write_pos & !(PAGE_BYTES - 1);
        if end < self.page_cache_counted_upto + COUNTED_RUN_BYTES_MIN {
            return None;
        }
        let run = self.page_cache_counted_upto..end;
        self.page_cache_counted_upto = end;
        Some(run)
    }

    /// After [`Segment::seal`] synced the whole file: the bytes not yet counted against the
    /// node's page-cache budget, up to the end of the last page.
    pub fn take_rest_after_seal(&mut self) -> Option<Range<u64>> {
        let end = self.write_pos.next_multiple_of(PAGE_BYTES);
        if end <= self.page_cache_counted_upto {
            return None;
        }
        let rest = self.page_cache_counted_upto..end;
        self.page_cache_counted_upto = end;
        Some(rest)
    }

    /// Extends the preallocated zeros to cover `end`, doubling them each time up to the limit:
    /// a busy segment is allocated in a handful of steps, an idle partition's costs only
    /// [`PREALLOCATE_STEP_MIN`] of disk (1,000 partitions preallocating 64 MiB each on three
    /// replicas would take 192 GB before a record is written).
    fn grow_allocation(&mut self, end: u64) -> Result<()> {
        if end <= self.allocated || self.allocated >= self.preallocate_limit {
            return Ok(());
        }
        let target = (self.allocated * 2)
            .max(PREALLOCATE_STEP_MIN)
            .max(end)
            .min(self.preallocate_limit.max(end));
        fsutil::preallocate(
            &self.file,
            &self.path,
            self.allocated,
            target - self.allocated,
        )?;
        self.allocated = target;
        Ok(())
    }

    /// Trims the file to its written length and syncs it: after this the segment is immutable
    /// and fully durable, which is what lets recovery treat damage in it as corruption.
    pub fn seal(&mut self) -> Result<()> {
        self.file
            .set_len(self.write_pos)
            .map_err(StorageError::io("trim sealed segment", &self.path))?;
        self.preallocate_limit = 0;
        self.allocated = self.write_pos;
        self.file
            .sync_data()
            .map_err(StorageError::io("fdatasync sealed segment", &self.path))
    }

    /// Makes a sealed segment writable again (after a truncation made it the last one).
    pub fn reopen_for_append(&mut self, preallocate_bytes: u64) -> Result<()> {
        self.preallocate_limit = preallocate_bytes;
        self.grow_allocation(self.write_pos.max(1))
    }

    /// Byte position of entry `index`, which must be in this segment.
    fn position_of(&self, index: u64) -> Result<u64> {
        let (mut current, mut pos) = self.floor_index_entry(index);
        while current < index {
            let mut header = [0u8; FRAME_HEADER_BYTES];
            self.file
                .read_exact_at(&mut header, pos)
                .map_err(StorageError::io("read segment", &self.path))?;
            let payload_len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
            pos += (FRAME_HEADER_BYTES as u64) + u64::from(payload_len);
            current += 1;
        }
        Ok(pos)
    }

    fn floor_index_entry(&self, index: u64) -> (u64, u64) {
        let slot = self.sparse_index.partition_point(|(i, _)| *i <= index);
        match slot.checked_sub(1) {
            Some(slot) => self.sparse_index[slot],
            None => (self.base_index, 0),
        }
    }

    /// Removes entries from `index` on, durably: the file is cut, re-extended with zeros and
    /// synced before this returns, so removed entries can never reappear after a crash.
    pub fn truncate_from(&mut self, index: u64, preallocate_bytes: u64) -> Result<()> {
        if index >= self.next_index {
            return Ok(());
        }
        let cut = self.position_of(index)?;
        self.page_cache_counted_upto = self.page_cache_counted_upto.min(cut & !(PAGE_BYTES - 1));
        self.sparse_index.retain(|(i, _)| *i < index);
        self.next_index = index;
        self.write_pos = cut;
        self.last_log_id = match index.checked_sub(1).filter(|prev| *prev >= self.base_index) {
            Some(prev) => self.read(prev, index)?.pop().map(|e| e.log_id),
            None => None,
        };
        self.cut_at(cut)?;
        self.reopen_for_append(preallocate_bytes)?;
        self.file
            .sync_data()
            .map_err(StorageError::io("fdatasync truncated segment", &self.path))
    }

    /// Zeroes everything from `pos` to the end of the file, durably.
    fn cut_at(&self, pos: u64) -> Result<()> {
        let len = self
            .file
            .metadata()
            .map_err(StorageError::io("stat segment", &self.path))?
            .len();
        self.file
            .set_len(pos)
            .map_err(StorageError::io("truncate segment", &self.path))?;
        fsutil::preallocate(&self.file, &self.path, pos, len.saturating_sub(pos))?;
        self.file
            .sync_data()
            .map_err(StorageError::io("fdatasync segment", &self.path))
    }

    /// Reads entries `start .. end` (clamped to this segment), checking every frame's checksum.
    pub fn read(&self, start: u64, end: u64) -> Result<Vec<Entry>> {
        match self.plan_read(start, end) {
            Some(read) => Ok(read.run(DiskRead::Wait)?.0),
            None => Ok(Vec::new()),
        }
    }

    /// What reading entries `start .. end` (clamped to this segment) takes, for a caller that
    /// reads after releasing the log's lock; `None` if none of them is here.
    pub(crate) fn plan_read(&self, start: u64, end: u64) -> Option<SegmentRead> {
        let start = start.max(self.base_index);
        let end = end.min(self.next_index);
        if start >= end {
            return None;
        }
        let (first_index, from) = self.floor_index_entry(start);
        let slot = self.sparse_index.partition_point(|(i, _)| *i < end);
        let to = self
            .sparse_index
            .get(slot)
            .map_or(self.write_pos, |(_, pos)| *pos);
        Some(SegmentRead {
            path: self.path.clone(),
            file: Arc::clone(&self.file),
            bytes: from..to,
            first_index,
            entries: start..end,
        })
    }
}

/// A read of consecutive entries from one segment, planned under the log's lock. It needs no
/// lock to run: the bytes of the frames it reads do not change while their entries exist
/// (appends go past them, a truncation cuts at or after their end, and a purged segment's file
/// stays readable while open), so a caller reading entries that cannot be truncated
/// (committed ones) may run it after releasing the lock.
pub(crate) struct SegmentRead {
    path: PathBuf,
    pub(crate) file: Arc<File>,
    /// From the frame of `first_index` to at least the end of the frame of `entries.end - 1`.
    bytes: Range<u64>,
    first_index: u64,
    entries: Range<u64>,
}

impl SegmentRead {
    /// Reads the entries, checking every frame's checksum; also gives the byte range read.
    /// With `DiskRead::CachedOnly` bytes outside the page cache are `StorageError::NotCached`.
    pub(crate) fn run(self, disk: DiskRead) -> Result<(Vec<Entry>, Range<u64>)> {
        let SegmentRead {
            path,
            file,
            bytes: range,
            first_index,
            entries: wanted,
        } = self;
        let len = usize::try_from(range.end - range.start).map_err(|_| StorageError::Corrupt {
            path: path.clone(),
            position: range.start,
            reason: format!("a read of entries {wanted:?} would span {range:?}"),
        })?;
        let Some(bytes) = fsutil::read_at(&file, &path, range.start, len, disk)? else {
            return Err(StorageError::NotCached { path, bytes: range });
        };
        // Records decoded below are slices of this one read, not copies.
        let bytes = Bytes::from(bytes);
        let mut entries = Vec::with_capacity((wanted.end - wanted.start) as usize);
        let mut pos = 0usize;
        let mut index = first_index;
        while index < wanted.end {
            let FrameCheck::Valid { payload_len } = check_frame(&bytes[pos..]) else {
                return Err(StorageError::Corrupt {
                    path,
                    position: range.start + pos as u64,
                    reason: format!("entry {index} failed its checksum on read"),
                });
            };
            if index >= wanted.start {
                let payload = pos + FRAME_HEADER_BYTES..pos + FRAME_HEADER_BYTES + payload_len;
                let entry: Entry =
                    decode_sharing(&bytes, |read| postcard::from_bytes(&read[payload])).map_err(
                        |e| StorageError::Corrupt {
                            path: path.clone(),
                            position: range.start + pos as u64,
                            reason: format!("entry {index} does not decode: {e}"),
                        },
                    )?;
                entries.push(entry);
            }
            pos += FRAME_HEADER_BYTES + payload_len;
            index += 1;
        }
        Ok((entries, range))
    }
}

/// The smallest unit a disk writes whole (a sector): a write that did not reach the disk leaves
/// at least one such aligned block of zeros.
pub const UNWRITTEN_BLOCK_BYTES: usize = 512;

/// Whether `bytes` holds an all-zero block of [`UNWRITTEN_BLOCK_BYTES`], aligned to its size,
/// at or after `from`.
fn holds_unwritten_block(bytes: &[u8], from: usize) -> bool {
    let first = from.next_multiple_of(UNWRITTEN_BLOCK_BYTES);
    bytes.get(first..).is_some_and(|rest| {
        rest.chunks_exact(UNWRITTEN_BLOCK_BYTES)
            .any(|block| block.iter().all(|b| *b == 0))
    })
}

/// How many intact frames start after `pos`, each searched for after the end of the previous
/// one (so a frame carried inside another's payload is not counted).
fn count_intact_frames_after(bytes: &[u8], pos: usize) -> u64 {
    let mut count = 0;
    let mut from = pos + 1;
    while let Some(start) = find_intact_frame_after(bytes, from) {
        count += 1;
        from = match check_frame(&bytes[start..]) {
            FrameCheck::Valid { payload_len } => start + FRAME_HEADER_BYTES + payload_len,
            FrameCheck::End | FrameCheck::Damaged { .. } => start + 1,
        };
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_sort() {
        assert_eq!(segment_file_name(42), "00000000000000000042.seg");
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_file_name("42.seg"), None);
        assert_eq!(parse_segment_file_name("00000000000000000042.tmp"), None);
        assert!(segment_file_name(9) < segment_file_name(10));
    }
}
