//! Reading a log: the public reads of [`SegmentLog`] and `EntriesRead`, which plans a read under
//! the log's lock and runs it, from the decoded recent entries in memory (`recent.rs`) and from
//! the segment files for older ones. Large segment reads are counted against the node's
//! page-cache budget (`page_cache.rs`). Nothing here writes.

use std::fs::File;
use std::ops::Bound;
use std::ops::Range;
use std::ops::RangeBounds;
use std::sync::Arc;

use raftlog_types::type_config::Entry;

use super::LogFiles;
use super::SegmentLog;
use crate::error::Result;
use crate::fsutil::DiskRead;
use crate::page_cache::COUNTED_READ_BYTES_MIN;
use crate::segment::SegmentRead;

impl SegmentLog {
    /// Reads the entries in `range` that exist (purged and future ones are skipped).
    pub fn read_entries<RB: RangeBounds<u64>>(&self, range: RB) -> Result<Vec<Entry>> {
        // Segments are read under the lock: these may be entries a truncation is removing.
        let files = self.shared.state.read();
        let plan = EntriesRead::plan(&files, range);
        let read = plan.run(DiskRead::Wait);
        drop(files);
        self.count_read(read)
    }

    /// Reads committed entries in `range`, as [`SegmentLog::read_entries`] does, but reads the
    /// segment files after releasing the log's lock, so a read that waits for the disk holds up
    /// no append; with `DiskRead::CachedOnly` it never waits for the disk at all
    /// (`StorageError::NotCached`). Only for entries that cannot be truncated meanwhile.
    pub fn read_committed_entries(&self, range: Range<u64>, disk: DiskRead) -> Result<Vec<Entry>> {
        let plan = EntriesRead::plan(&self.shared.state.read(), range);
        self.count_read(plan.run(disk))
    }

    /// Counts the larger segment reads against the page-cache budget (outside the lock: a
    /// release walks the file's cached pages).
    fn count_read(&self, read: Result<(Vec<Entry>, Vec<CountedRead>)>) -> Result<Vec<Entry>> {
        let (entries, counted) = read?;
        for (file, bytes) in counted {
            self.shared.page_cache.note_cached(&file, bytes);
        }
        Ok(entries)
    }
}

/// A segment file and the bytes read from it, to count against the page-cache budget.
type CountedRead = (Arc<File>, Range<u64>);

/// The entries of a range, split into segment reads and the entries already in memory.
struct EntriesRead {
    segments: Vec<SegmentRead>,
    from_memory: Vec<Entry>,
}

impl EntriesRead {
    /// The reads of the entries in `range` that exist (purged and future ones are skipped).
    fn plan<RB: RangeBounds<u64>>(files: &LogFiles, range: RB) -> EntriesRead {
        let mut plan = EntriesRead {
            segments: Vec::new(),
            from_memory: Vec::new(),
        };
        let first_kept = files.last_purged.map_or(0, |id| id.index + 1);
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        }
        .max(first_kept);
        let end = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        }
        .min(files.next_index().unwrap_or(0));
        if start >= end {
            return plan;
        }
        // Whatever `recent` holds comes from memory; only older entries from the segments.
        let disk_end = files
            .recent
            .first_index()
            .map_or(end, |first| first.clamp(start, end));
        if start < disk_end {
            let first = files.segments.partition_point(|s| s.next_index <= start);
            for segment in &files.segments[first..] {
                if segment.base_index >= disk_end {
                    break;
                }
                plan.segments.extend(segment.plan_read(start, disk_end));
            }
        }
        files.recent.read(disk_end, end, &mut plan.from_memory);
        plan
    }

    /// The entries in order, and the segment reads large enough to count against the budget.
    fn run(self, disk: DiskRead) -> Result<(Vec<Entry>, Vec<CountedRead>)> {
        let mut entries = Vec::new();
        let mut counted = Vec::new();
        for read in self.segments {
            let file = Arc::clone(&read.file);
            let (read, bytes) = read.run(disk)?;
            if bytes.end - bytes.start >= COUNTED_READ_BYTES_MIN {
                counted.push((file, bytes));
            }
            entries.extend(read);
        }
        entries.extend(self.from_memory);
        Ok((entries, counted))
    }
}
