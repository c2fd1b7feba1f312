//! Reads are served partly from the log's recent entries in memory and partly from its
//! segments: whatever the mix, a read returns exactly what was written, also after a
//! truncation rewrote the tail and a purge cut the head, and the same as a reopened log (which
//! holds nothing in memory).

use raftlog_storage::log_store::LogConfig;
use raftlog_storage::NodeStorage;
use raftlog_storage::SegmentLog;
use raftlog_types::type_config::Entry;
use raftlog_types::GroupId;
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

/// All logs of a node share one budget for recent entries: over it, the logs that appended
/// least recently give theirs up, the busy one keeps its own, and every log still reads back
/// exactly what was written (from disk where memory no longer holds it).
#[test]
fn logs_of_a_node_keep_recent_entries_within_one_budget() -> anyhow::Result<()> {
    const GROUPS: u64 = 8;
    const BUDGET: u64 = 128 * 1024;
    let dir = TempDir::new()?;
    let storage = NodeStorage::open(
        dir.path(),
        LogConfig {
            recent_entries_node_bytes: BUDGET,
            ..small_segments()
        },
    )?;
    let logs = (0..GROUPS)
        .map(|group| Ok(storage.open_group(GroupId(100 + group))?.0))
        .collect::<anyhow::Result<Vec<_>>>()?;

    // Each log gets ~50 KiB in rounds, so eight of them would hold ~400 KiB without the budget.
    let mut largest_held = 0;
    for round in 0..5 {
        for (position, log) in logs.iter().enumerate() {
            let start = round * 10;
            append_durably(log, (start..start + 10).map(|i| entry(1, i)).collect())?;
            let held = storage.recent_entries_bytes();
            largest_held = largest_held.max(held);
            anyhow::ensure!(
                held <= BUDGET,
                "the node holds {held} bytes of recent entries, over its budget of {BUDGET}"
            );
            anyhow::ensure!(
                log.recent_entries_bytes() > 0,
                "log {position} lost its own entries right after appending"
            );
            let per_log: u64 = logs.iter().map(|log| log.recent_entries_bytes()).sum();
            anyhow::ensure!(
                per_log == held,
                "logs hold {per_log}, the node counts {held}"
            );
        }
    }
    anyhow::ensure!(
        largest_held > BUDGET / 2,
        "the budget was never used ({largest_held} bytes at most)"
    );
    for log in &logs {
        assert_reads(log, 0..50, |_| 1)?;
    }
    drop(logs);
    anyhow::ensure!(
        storage.recent_entries_bytes() == 0,
        "closed logs still count {} bytes",
        storage.recent_entries_bytes()
    );
    Ok(())
}

/// Over the budget, the logs that appended least recently give their entries up first; the
/// log that is appending keeps everything it holds.
#[test]
fn the_least_recently_appended_logs_give_their_recent_entries_up_first() -> anyhow::Result<()> {
    const GROUPS: u64 = 8;
    let append_first_ten = |storage: &NodeStorage| -> anyhow::Result<Vec<SegmentLog>> {
        let mut logs = Vec::new();
        for group in 0..GROUPS {
            let (log, _, _) = storage.open_group(GroupId(200 + group))?;
            append_durably(&log, (0..10).map(|i| entry(1, i)).collect())?;
            logs.push(log);
        }
        Ok(logs)
    };
    // What ten entries take, measured with room for everything.
    let probe_dir = TempDir::new()?;
    let probe = NodeStorage::open(probe_dir.path(), small_segments())?;
    let ten_entries = append_first_ten(&probe)?[0].recent_entries_bytes();

    // Room for the eight logs' first ten entries and half as much again.
    let dir = TempDir::new()?;
    let storage = NodeStorage::open(
        dir.path(),
        LogConfig {
            recent_entries_node_bytes: GROUPS * ten_entries + ten_entries / 2,
            ..small_segments()
        },
    )?;
    let logs = append_first_ten(&storage)?;
    anyhow::ensure!(
        logs.iter()
            .all(|log| log.recent_entries_bytes() == ten_entries),
        "entries were given up while the node was within its budget"
    );

    // The last log appends about four logs' worth more.
    let busy = &logs[GROUPS as usize - 1];
    append_durably(busy, (10..50).map(|i| entry(1, i)).collect())?;
    let held: Vec<u64> = logs.iter().map(|log| log.recent_entries_bytes()).collect();
    anyhow::ensure!(
        held[0] == 0,
        "the least recently appended log kept its entries: {held:?}"
    );
    anyhow::ensure!(
        held[GROUPS as usize - 2] == ten_entries,
        "the most recently appended other log gave its entries up: {held:?}"
    );
    let busy_entries = busy.read_entries(0..50)?;
    anyhow::ensure!(busy_entries.len() == 50, "the busy log lost entries");
    anyhow::ensure!(
        held[GROUPS as usize - 1] > 4 * ten_entries,
        "the appending log gave up its own entries: {held:?}"
    );
    anyhow::ensure!(
        storage.recent_entries_bytes() <= GROUPS * ten_entries + ten_entries / 2,
        "over the budget: {held:?}"
    );
    Ok(())
}
