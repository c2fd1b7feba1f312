//! Reads are served partly from the log's recent entries in memory and partly from its
//! segments: whatever the mix, a read returns exactly what was written, also after a
//! truncation rewrote the tail and a purge cut the head, and the same as a reopened log (which
//! holds nothing in memory).

use raftlog_storage::SegmentLog;
use raftlog_types::type_config::Entry;
use tempfile::TempDir;

use crate::kit::*;

/// Enough entries (~1 KiB each on average) that the oldest are on disk only.
const ENTRIES: u64 = 3000;

/// Entries `range`, with the term of each; `term_of` says which term wrote which index.
fn assert_reads(
    log: &SegmentLog,
    range: std::ops::Range<u64>,
    term_of: impl Fn(u64) -> u64,
) -> anyhow::Result<Vec<Entry>> {
    let entries = log.read_entries(range.clone())?;
    anyhow::ensure!(
        entries.len() as u64 == range.end - range.start,
        "read {} entries of {range:?}",
        entries.len()
    );
    for (entry, index) in entries.iter().zip(range) {
        anyhow::ensure!(
            entry_is_intact(entry, index),
            "entry {index} is not what was written"
        );
        anyhow::ensure!(
            entry.log_id.leader_id.term == term_of(index),
            "entry {index} has term {}, expected {}",
            entry.log_id.leader_id.term,
            term_of(index)
        );
    }
    Ok(entries)
}

#[test]
fn reads_return_what_was_written_from_memory_and_disk_alike() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let (storage, log, _) = open_log(dir.path(), small_segments())?;
    for start in (0..ENTRIES).step_by(50) {
        append_durably(&log, (start..start + 50).map(|i| entry(1, i)).collect())?;
    }
    let ranges = [
        0..ENTRIES,
        0..10,
        1000..2500,
        2000..ENTRIES,
        ENTRIES - 1..ENTRIES,
        1500..1501,
    ];
    for range in ranges.clone() {
        assert_reads(&log, range, |_| 1)?;
    }

    // The tail rewritten in a new term: no entry of the old tail is served again.
    log.truncate_from(2500)?;
    anyhow::ensure!(
        log.read_entries(2500..ENTRIES)?.is_empty(),
        "truncated entries read"
    );
    append_durably(&log, (2500..2600).map(|i| entry(2, i)).collect())?;
    let term_of = |index: u64| if index < 2500 { 1 } else { 2 };
    assert_reads(&log, 2400..2600, term_of)?;
    assert_reads(&log, 0..2600, term_of)?;

    log.purge_upto(log_id(2, 2550))?;
    assert_reads(&log, 2551..2600, term_of)?;
    let from_memory = log.read_entries(0..ENTRIES)?;
    anyhow::ensure!(
        from_memory.first().map(|e| e.log_id.index) == Some(2551),
        "purged entries read"
    );

    drop(log);
    drop(storage);
    let (_storage, reopened, _) = open_log(dir.path(), small_segments())?;
    let from_disk = reopened.read_entries(0..ENTRIES)?;
    anyhow::ensure!(
        from_disk == from_memory,
        "the reopened log reads differently"
    );
    Ok(())
}
