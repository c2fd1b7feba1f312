//! Helpers shared by the storage tests: entries with checkable payloads, and blocking appends.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use openraft::CommittedLeaderId;
use openraft::EntryPayload;
use raftlog_storage::LogConfig;
use raftlog_storage::NodeStorage;
use raftlog_storage::SegmentLog;
use raftlog_types::type_config::Entry;
use raftlog_types::type_config::LogId;
use raftlog_types::Command;
use raftlog_types::GroupId;
use raftlog_types::ProducerBatch;
use raftlog_types::Record;

/// The group every single-log test uses.
pub const GROUP: GroupId = GroupId(7);

/// A log id of leader node 1.
pub fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

/// The value stored at `index`: its length and bytes both depend on the index, so a misplaced
/// or damaged entry cannot pass for the right one.
pub fn payload_for(index: u64) -> Bytes {
    let len = 16 + (index.wrapping_mul(2_654_435_761) % 2000) as usize;
    let mut value = Vec::with_capacity(len);
    let mut x = index ^ 0x9e37_79b9_7f4a_7c15;
    while value.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        value.extend_from_slice(&x.to_le_bytes());
    }
    value.truncate(len);
    Bytes::from(value)
}

/// A normal entry holding one record whose value is `payload_for(index)`.
pub fn entry(term: u64, index: u64) -> Entry {
    let record = Record {
        key: None,
        value: payload_for(index),
        headers: Vec::new(),
        timestamp_ms: index as i64,
    };
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(Command::AppendBatches(vec![ProducerBatch {
            producer: None,
            records: vec![record],
        }])),
    }
}

/// Whether `entry` is exactly what `entry(_, index)` wrote.
pub fn entry_is_intact(entry: &Entry, index: u64) -> bool {
    match &entry.payload {
        EntryPayload::Normal(Command::AppendBatches(batches)) => {
            entry.log_id.index == index
                && batches.len() == 1
                && batches[0].records.len() == 1
                && batches[0].records[0].value == payload_for(index)
        }
        _ => false,
    }
}

/// A configuration with small segments, so tests cross segment boundaries.
pub fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024,
        ..LogConfig::default()
    }
}

/// Opens a node's storage and the test group's log.
pub fn open_log(
    dir: &Path,
    config: LogConfig,
) -> anyhow::Result<(
    NodeStorage,
    SegmentLog,
    raftlog_storage::log_store::OpenReport,
)> {
    let storage = NodeStorage::open(dir, config)?;
    let (log, _state_machine, report) = storage.open_group(GROUP)?;
    Ok((storage, log, report))
}

/// Appends and waits until the entries are durable.
pub fn append_durably(log: &SegmentLog, entries: Vec<Entry>) -> anyhow::Result<()> {
    let (done, wait) = mpsc::channel();
    log.append_entries(entries, Box::new(move |result| drop(done.send(result))))?;
    wait.recv_timeout(Duration::from_secs(30))
        .context("append callback never fired")?
        .context("append failed to sync")?;
    Ok(())
}

/// Asserts the log holds exactly the intact entries `first ..= last`.
pub fn assert_log_holds(log: &SegmentLog, first: u64, last: u64) -> anyhow::Result<()> {
    assert_entries_are(&log.read_entries(first..=last)?, first, last)
}

/// Asserts `entries` are exactly the intact entries `first ..= last`.
pub fn assert_entries_are(entries: &[Entry], first: u64, last: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        entries.len() as u64 == last - first + 1,
        "expected entries {first}..={last}, read {} entries",
        entries.len()
    );
    for (offset, entry) in entries.iter().enumerate() {
        let index = first + offset as u64;
        anyhow::ensure!(
            entry_is_intact(entry, index),
            "entry {index} is not what was written"
        );
    }
    Ok(())
}

/// Byte ranges `(start, end)` of the intact frames at the start of a segment file.
pub fn frame_ranges(bytes: &[u8]) -> Vec<(usize, usize)> {
    use raftlog_storage::frame::check_frame;
    use raftlog_storage::frame::FrameCheck;
    use raftlog_storage::frame::FRAME_HEADER_BYTES;
    let mut ranges = Vec::new();
    let mut pos = 0;
    while let FrameCheck::Valid { payload_len } = check_frame(&bytes[pos..]) {
        let end = pos + FRAME_HEADER_BYTES + payload_len;
        ranges.push((pos, end));
        pos = end;
    }
    ranges
}

/// The segment files of the test group, in index order.
pub fn segment_files(data_dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let log_dir = data_dir
        .join("groups")
        .join(GROUP.0.to_string())
        .join("log");
    let mut files: Vec<_> = std::fs::read_dir(&log_dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|x| x == "seg"));
    files.sort();
    Ok(files)
}
