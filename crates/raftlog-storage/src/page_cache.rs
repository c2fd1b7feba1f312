//! A node's budget of segment bytes left in the kernel's page cache.
//!
//! Every byte a node appends or reads lands in the page cache. Left alone, the kernel keeps it
//! there while free memory lasts, so a busy node takes fresh memory for every new write. On a
//! virtual machine whose host takes free memory back (Firecracker and QEMU free page reporting,
//! ballooning) fresh memory is the expensive kind: each page costs a fault on the host the first
//! time the guest touches it, several times what writing into pages freed a moment before
//! costs; in the pipelined produce benchmark that was a large share of the cluster's CPU
//! (benchmarks/HISTORY.md, 2026-11-29).
//!
//! So each node counts the segment bytes it brought into the page cache, in the order it did,
//! and once they exceed its limit advises the kernel to drop the oldest ones
//! (`POSIX_FADV_DONTNEED`). The kernel then reuses those pages for the next writes and reads.
//! Written bytes are counted only once they are synced: the advice drops clean pages only, and
//! never affects what is durable. The most recently written and read bytes stay cached, which
//! is what tailing consumers and replication read; older ones are read from disk again, as they
//! would be after a restart. (Redpanda takes the same idea further and bypasses the page cache
//! with direct I/O and its own cache.)
//!
//! The count is of insertions, not of distinct pages: a range read twice is counted twice. That
//! errs towards releasing early, which costs a disk read, never correctness.

use std::collections::VecDeque;
use std::fs::File;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::Weak;

use parking_lot::Mutex;

/// The size of the pages the kernel caches file data in.
pub(crate) const PAGE_BYTES: u64 = 4096;

/// Written bytes are counted in runs of at least this many per segment, so the queue holds
/// about one range per MiB whatever the size of the appends.
pub(crate) const COUNTED_RUN_BYTES_MIN: u64 = 1024 * 1024;

/// Reads smaller than this are not counted, so that small entries read one by one do not grow
/// the queue by a range each; their pages stay the kernel's to keep or drop.
pub(crate) const COUNTED_READ_BYTES_MIN: u64 = 64 * 1024;

/// The segment bytes a node has in the page cache, oldest first, against its limit.
pub struct PageCacheBudget {
    limit: u64,
    counted: Mutex<CountedRanges>,
}

#[derive(Default)]
struct CountedRanges {
    bytes: u64,
    ranges: VecDeque<CountedRange>,
}

struct CountedRange {
    /// Weak, so a purged segment's file is closed (and its pages freed) without waiting here.
    file: Weak<File>,
    bytes: Range<u64>,
}

impl PageCacheBudget {
    /// A budget of `limit` bytes; `None` counts and releases nothing.
    pub fn new(limit: Option<u64>) -> Arc<PageCacheBudget> {
        Arc::new(PageCacheBudget {
            limit: limit.unwrap_or(u64::MAX),
            counted: Mutex::new(CountedRanges::default()),
        })
    }

    /// Bytes counted now.
    pub fn held(&self) -> u64 {
        self.counted.lock().bytes
    }

    /// Counts `bytes` of `file` as just brought into the page cache, then releases the oldest
    /// counted bytes beyond the limit.
    pub(crate) fn note_cached(&self, file: &Arc<File>, bytes: Range<u64>) {
        if bytes.is_empty() || self.limit == u64::MAX {
            return;
        }
        let mut to_release = Vec::new();
        {
            let mut counted = self.counted.lock();
            counted.bytes += bytes.end - bytes.start;
            match counted.ranges.back_mut() {
                Some(last)
                    if last.bytes.end == bytes.start
                        && std::ptr::eq(last.file.as_ptr(), Arc::as_ptr(file)) =>
                {
                    last.bytes.end = bytes.end;
                }
                _ => counted.ranges.push_back(CountedRange {
                    file: Arc::downgrade(file),
                    bytes,
                }),
            }
            while counted.bytes > self.limit {
                let Some(oldest) = counted.ranges.pop_front() else {
                    break;
                };
                counted.bytes -= oldest.bytes.end - oldest.bytes.start;
                to_release.push(oldest);
            }
        }
        // Outside the lock: the advice walks the file's cached pages.
        for range in to_release {
            if let Some(file) = range.file.upgrade() {
                release(&file, range.bytes);
            }
        }
    }
}

/// Advises the kernel to drop the cached pages wholly inside `bytes`. Dirty pages are kept (the
/// kernel only starts writing them back), so this never loses data; an error is only a missed
/// chance to recycle memory, and is ignored.
fn release(file: &File, bytes: Range<u64>) {
    let (Ok(offset), Ok(len)) = (
        libc::off_t::try_from(bytes.start),
        libc::off_t::try_from(bytes.end - bytes.start),
    ) else {
        return;
    };
    // SAFETY: `posix_fadvise` only reads its integer arguments; the descriptor is owned by
    // `file`, which outlives the call.
    let rc =
        unsafe { libc::posix_fadvise(file.as_raw_fd(), offset, len, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        tracing::debug!(error = rc, "posix_fadvise(DONTNEED) failed");
    }
}
