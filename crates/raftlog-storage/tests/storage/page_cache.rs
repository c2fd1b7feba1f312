//! A node leaves at most its page-cache budget of segment bytes in the kernel's page cache: the
//! oldest synced bytes beyond it are dropped, the newest stay, and everything still reads back
//! exactly as written, from disk where the cache no longer holds it. And a read that may not
//! wait for the disk tells entries outside the page cache from those in it.
//!
//! Residency is what the kernel reports (`mincore`), so these tests run on a disk file system
//! under the target directory: on tmpfs file pages are memory and cannot be dropped.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;
use std::time::Instant;

use raftlog_storage::log_store::LogConfig;
use raftlog_storage::DiskRead;
use raftlog_storage::SegmentLog;
use raftlog_storage::StorageError;
use tempfile::TempDir;

use crate::kit::*;

const MIB: u64 = 1024 * 1024;
const PAGE: u64 = 4096;

/// Which pages of `path` are in the page cache.
fn resident_pages(path: &Path) -> anyhow::Result<Vec<bool>> {
    let file = File::open(path)?;
    let len = usize::try_from(file.metadata()?.len())?;
    let pages = len.div_ceil(PAGE as usize);
    if pages == 0 {
        return Ok(Vec::new());
    }
    // SAFETY: a fresh read-only shared mapping of a file we hold open; it is only passed to
    // `mincore` (which reads no page contents) and unmapped before returning.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    anyhow::ensure!(
        map != libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    let mut vec = vec![0u8; pages];
    // SAFETY: `map` is a live mapping of `len` bytes and `vec` has one byte per page of it.
    let rc = unsafe { libc::mincore(map, len, vec.as_mut_ptr()) };
    let mincore_error = std::io::Error::last_os_error();
    // SAFETY: `map` and `len` are exactly what `mmap` returned and was given.
    unsafe { libc::munmap(map, len) };
    anyhow::ensure!(rc == 0, "mincore: {mincore_error}");
    Ok(vec.into_iter().map(|page| page & 1 == 1).collect())
}

/// Appends entries of ~1 KiB until the log holds at least `bytes`; returns the count.
fn append_bytes(log: &SegmentLog, bytes: u64) -> anyhow::Result<u64> {
    let mut written = 0;
    let mut next = 0;
    while written < bytes {
        let batch: Vec<_> = (next..next + 100).map(|i| entry(1, i)).collect();
        written += (next..next + 100)
            .map(|i| payload_for(i).len() as u64)
            .sum::<u64>();
        append_durably(log, batch)?;
        next += 100;
    }
    Ok(next)
}

/// Segments large enough that every test here writes one, unpreallocated, so its length is
/// what was written; with `page_cache_node_bytes` as the node's budget.
fn one_large_segment(page_cache_node_bytes: Option<u64>) -> LogConfig {
    LogConfig {
        segment_bytes: 64 * MIB,
        preallocate: false,
        page_cache_node_bytes,
        ..LogConfig::default()
    }
}

/// A directory on the disk file system the tests build on, not a possible tmpfs `/tmp`.
fn disk_dir() -> anyhow::Result<TempDir> {
    Ok(TempDir::new_in(env!("CARGO_TARGET_TMPDIR"))?)
}

/// Counts the resident pages of the single segment in `[from, to)` bytes, waiting up to 5 s
/// for `done` to hold (the release runs on the flusher thread after the acknowledgement).
fn wait_for_residency(
    data_dir: &Path,
    done: impl Fn(&[bool], usize) -> bool,
) -> anyhow::Result<(Vec<bool>, usize)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let files = segment_files(data_dir)?;
        anyhow::ensure!(files.len() == 1, "expected one segment, found {files:?}");
        let written = usize::try_from(std::fs::metadata(&files[0])?.len())?;
        let pages = resident_pages(&files[0])?;
        if done(&pages, written) || Instant::now() > deadline {
            return Ok((pages, written));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_node_drops_the_oldest_synced_bytes_beyond_its_page_cache_budget() -> anyhow::Result<()> {
    const BUDGET: u64 = 4 * MIB;
    let dir = disk_dir()?;
    let config = one_large_segment(Some(BUDGET));
    let (storage, log, _) = open_log(dir.path(), config)?;
    let count = append_bytes(&log, 16 * MIB)?;

    // Dropped: everything but the last budget's worth, give or take the run of writes (1 MiB)
    // not counted yet and the run that pushed the count over.
    let dropped_below = |written: usize| (written as u64).saturating_sub(BUDGET + 2 * MIB);
    let (pages, written) = wait_for_residency(dir.path(), |pages, written| {
        let below = (dropped_below(written) / PAGE) as usize;
        !pages[..below].iter().any(|resident| *resident)
    })?;
    let below = (dropped_below(written) / PAGE) as usize;
    let still_cached = pages[..below].iter().filter(|r| **r).count();
    anyhow::ensure!(
        still_cached == 0,
        "{still_cached} of the {below} oldest pages are still cached, with a budget of {BUDGET} bytes"
    );
    let newest = (written - MIB as usize) / PAGE as usize;
    let newest_dropped = pages[newest..].iter().filter(|r| !**r).count();
    anyhow::ensure!(
        newest_dropped == 0,
        "{newest_dropped} pages of the newest MiB were dropped"
    );
    let held = storage.page_cache_bytes();
    anyhow::ensure!(
        held <= BUDGET + MIB,
        "the node counts {held} bytes, over its budget of {BUDGET} by more than one run"
    );

    // Read back from disk, and counted: reading the oldest half pushes out the newest writes.
    assert_log_holds(&log, 0, count - 1)?;
    let (pages, _) = wait_for_residency(dir.path(), |_, _| true)?;
    let resident = pages.iter().filter(|r| **r).count() as u64 * PAGE;
    anyhow::ensure!(
        resident <= BUDGET + 2 * MIB,
        "{resident} bytes are cached after reading everything, with a budget of {BUDGET}"
    );
    Ok(())
}

/// The control: without a budget (the default) nothing written is dropped, so the test above
/// sees the node's own release, not the kernel's reclaim.
#[test]
fn without_a_budget_a_node_leaves_written_bytes_cached() -> anyhow::Result<()> {
    let dir = disk_dir()?;
    let config = one_large_segment(None);
    let (storage, log, _) = open_log(dir.path(), config)?;
    append_bytes(&log, 16 * MIB)?;
    // Let any release that would wrongly happen land.
    std::thread::sleep(Duration::from_millis(200));
    let (pages, _) = wait_for_residency(dir.path(), |_, _| true)?;
    let dropped = pages.iter().filter(|r| !**r).count();
    anyhow::ensure!(
        dropped == 0,
        "{dropped} written pages were dropped without a budget"
    );
    anyhow::ensure!(
        storage.page_cache_bytes() == 0,
        "without a budget the node counted {} bytes",
        storage.page_cache_bytes()
    );
    Ok(())
}

/// Sealed segments are counted to their last byte, so a node whose segments are small (fewer
/// bytes than a counted run of writes) still keeps only its budget cached.
#[test]
fn sealed_segments_are_dropped_to_their_last_page() -> anyhow::Result<()> {
    const BUDGET: u64 = 512 * 1024;
    let dir = disk_dir()?;
    let config = LogConfig {
        segment_bytes: 128 * 1024,
        preallocate: false,
        page_cache_node_bytes: Some(BUDGET),
        ..LogConfig::default()
    };
    let (_storage, log, _) = open_log(dir.path(), config)?;
    append_bytes(&log, 4 * MIB)?;
    let segments = segment_files(dir.path())?;
    anyhow::ensure!(segments.len() > 20, "only {} segments", segments.len());
    // All but the newest few segments: the budget covers at most 4 of them plus the active one.
    let old = &segments[..segments.len() - 6];
    let mut cached = 0;
    for path in old {
        cached += resident_pages(path)?.iter().filter(|r| **r).count();
    }
    anyhow::ensure!(
        cached == 0,
        "{cached} pages of {} sealed segments outside the budget are still cached",
        old.len()
    );
    Ok(())
}

/// Asks the kernel to drop every cached page of `path` (they are clean: the entries are synced).
fn drop_cached_pages(path: &Path) -> anyhow::Result<()> {
    let file = File::open(path)?;
    // SAFETY: `posix_fadvise` only reads its integer arguments; `file` owns the descriptor.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    anyhow::ensure!(rc == 0, "posix_fadvise: error {rc}");
    Ok(())
}

/// A read that may not wait for the disk (what async fetch handlers do first) says so instead
/// of reading: committed entries dropped from the page cache are `NotCached`, read intact
/// when waiting is allowed, and cached after that. Entries still in memory never need the disk.
#[test]
fn a_read_that_may_not_wait_reports_entries_outside_the_page_cache() -> anyhow::Result<()> {
    let dir = disk_dir()?;
    let config = one_large_segment(None);
    let (_storage, log, _) = open_log(dir.path(), config)?;
    let count = append_bytes(&log, 8 * MIB)?;
    let segments = segment_files(dir.path())?;
    for path in &segments {
        drop_cached_pages(path)?;
    }
    let cached = resident_pages(&segments[0])?[..256]
        .iter()
        .filter(|r| **r)
        .count();
    anyhow::ensure!(cached == 0, "{cached} of the first 256 pages stayed cached");

    let oldest = 0..300;
    match log.read_committed_entries(oldest.clone(), DiskRead::CachedOnly) {
        Err(StorageError::NotCached { .. }) => {}
        Ok(entries) => anyhow::bail!(
            "a cached-only read of dropped entries read {} of them",
            entries.len()
        ),
        Err(error) => anyhow::bail!("a cached-only read of dropped entries failed: {error}"),
    }
    let from_disk = log.read_committed_entries(oldest.clone(), DiskRead::Wait)?;
    assert_entries_are(&from_disk, 0, 299)?;
    let from_cache = log.read_committed_entries(oldest, DiskRead::CachedOnly)?;
    assert_entries_are(&from_cache, 0, 299)?;

    let from_memory = log.read_committed_entries(count - 50..count, DiskRead::CachedOnly)?;
    assert_entries_are(&from_memory, count - 50, count - 1)?;
    Ok(())
}
