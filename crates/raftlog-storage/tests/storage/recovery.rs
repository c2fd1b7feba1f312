//! Reopening logs: clean restarts, torn tails, flipped bits, missing segments, truncation and
//! purge, and group commit across groups.

use std::sync::atomic::Ordering;
use std::time::Duration;

use raftlog_storage::segment::TailState;
use raftlog_storage::LogConfig;
use raftlog_storage::NodeStorage;
use raftlog_storage::StorageError;
use raftlog_types::GroupId;
use tempfile::TempDir;

use crate::kit::*;

fn append_range(
    log: &raftlog_storage::SegmentLog,
    term: u64,
    first: u64,
    last: u64,
) -> anyhow::Result<()> {
    let mut index = first;
    while index <= last {
        let batch_end = (index + 9).min(last);
        append_durably(log, (index..=batch_end).map(|i| entry(term, i)).collect())?;
        index = batch_end + 1;
    }
    Ok(())
}

fn corrupt_error(result: anyhow::Result<impl Sized>) -> (std::path::PathBuf, u64, String) {
    let Err(err) = result else {
        panic!("opening a corrupt log succeeded")
    };
    match err.downcast_ref::<StorageError>() {
        Some(StorageError::Corrupt {
            path,
            position,
            reason,
        }) => (path.clone(), *position, reason.clone()),
        _ => panic!("expected a corruption error, got: {err:#}"),
    }
}

#[test]
fn entries_survive_reopen_across_many_segments() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    {
        let (_storage, log, _) = open_log(dir.path(), small_segments())?;
        append_range(&log, 1, 0, 999)?;
    }
    let (_storage, log, report) = open_log(dir.path(), small_segments())?;
    assert!(
        report.segments > 5,
        "expected many 64 KiB segments, got {}",
        report.segments
    );
    assert_eq!(report.tail, TailState::Clean);
    assert_eq!(log.last_log_id(), Some(log_id(1, 999)));
    assert_log_holds(&log, 0, 999)?;
    // Every sealed segment is trimmed to its last frame.
    let files = segment_files(dir.path())?;
    for sealed in &files[..files.len() - 1] {
        let bytes = std::fs::read(sealed)?;
        let ranges = frame_ranges(&bytes);
        assert_eq!(
            ranges.last().map(|r| r.1),
            Some(bytes.len()),
            "{} is not trimmed",
            sealed.display()
        );
    }
    Ok(())
}

#[test]
fn append_with_a_gap_is_refused_and_changes_nothing() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let (_storage, log, _) = open_log(dir.path(), small_segments())?;
    append_range(&log, 1, 0, 9)?;
    let err = append_durably(&log, vec![entry(1, 11)]).expect_err("gap accepted");
    assert!(
        matches!(
            err.downcast_ref::<StorageError>(),
            Some(StorageError::Hole { .. })
        ),
        "{err:#}"
    );
    assert_eq!(log.last_log_id(), Some(log_id(1, 9)));
    assert_log_holds(&log, 0, 9)?;
    Ok(())
}

#[test]
fn torn_tail_is_cut_off_and_everything_before_it_kept() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    {
        let (_storage, log, _) = open_log(dir.path(), LogConfig::default())?;
        append_range(&log, 1, 0, 99)?;
    }
    let segment = segment_files(dir.path())?.pop().expect("a segment");
    let mut bytes = std::fs::read(&segment)?;
    let (start, end) = *frame_ranges(&bytes).last().expect("frames");
    // A write that reached the disk only halfway: the second half of the last frame is zeros.
    let half = start + (end - start) / 2;
    bytes[half..end].fill(0);
    std::fs::write(&segment, &bytes)?;

    let (_storage, log, report) = open_log(dir.path(), LogConfig::default())?;
    match report.tail {
        TailState::TornTailTruncated {
            position,
            bytes_dropped,
            intact_frames_dropped,
            ..
        } => {
            assert_eq!(position, start as u64);
            assert!(bytes_dropped > 0 && bytes_dropped <= (half - start) as u64);
            assert_eq!(intact_frames_dropped, 0);
        }
        other => panic!("torn tail not reported: {other:?}"),
    }
    assert_eq!(log.last_log_id(), Some(log_id(1, 98)));
    assert_log_holds(&log, 0, 98)?;
    append_durably(&log, vec![entry(1, 99)])?;
    drop((_storage, log));

    let (_storage, log, report) = open_log(dir.path(), LogConfig::default())?;
    assert_eq!(report.tail, TailState::Clean);
    assert_log_holds(&log, 0, 99)?;
    Ok(())
}

/// A configuration that writes the committed log id at every `store_committed`.
fn committed_written_at_once() -> LogConfig {
    LogConfig {
        committed_persist_interval: Duration::ZERO,
        ..LogConfig::default()
    }
}

/// Entries `0 ..= 99` of term 1, with entries up to `committed` stored as committed.
fn log_with_committed(dir: &std::path::Path, committed: u64) -> anyhow::Result<()> {
    let (_storage, log, _) = open_log(dir, committed_written_at_once())?;
    append_range(&log, 1, 0, committed)?;
    log.store_committed(Some(log_id(1, committed)))?;
    append_range(&log, 1, committed + 1, 99)?;
    Ok(())
}

/// After a power loss, page-cache writeback need not follow file order: a later frame of an
/// unsynced append can reach the disk while an earlier one still reads as zeros. Nothing from
/// the first unsynced frame on was acknowledged, so the log is cut there and opens.
#[test]
fn zeroed_frame_followed_by_an_intact_one_past_the_committed_point_is_cut_off() -> anyhow::Result<()>
{
    let dir = TempDir::new()?;
    log_with_committed(dir.path(), 60)?;
    let segment = segment_files(dir.path())?.pop().expect("a segment");
    let mut bytes = std::fs::read(&segment)?;
    let ranges = frame_ranges(&bytes);
    let (start, end) = ranges[80];
    let written_end = ranges.last().expect("frames").1;
    bytes[start..end].fill(0);
    std::fs::write(&segment, &bytes)?;

    let (storage, log, report) = open_log(dir.path(), committed_written_at_once())?;
    match report.tail {
        TailState::TornTailTruncated {
            position,
            bytes_dropped,
            intact_frames_dropped,
            ..
        } => {
            assert_eq!(position, start as u64);
            assert_eq!(bytes_dropped, (written_end - start) as u64);
            assert_eq!(intact_frames_dropped, 19, "frames 81..=99 follow the hole");
        }
        other => panic!("the unsynced tail was not cut off: {other:?}"),
    }
    assert_eq!(log.last_log_id(), Some(log_id(1, 79)));
    assert_log_holds(&log, 0, 79)?;
    assert!(log.read_entries(80..=99)?.is_empty());
    let cut = std::fs::read(&segment)?;
    assert!(
        cut[start..].iter().all(|b| *b == 0),
        "the dropped frames are still in the file"
    );
    // A new leader's entries take the dropped indexes, and survive a reopen.
    append_range(&log, 2, 80, 120)?;
    drop((storage, log));
    let (_storage, log, report) = open_log(dir.path(), committed_written_at_once())?;
    assert_eq!(report.tail, TailState::Clean);
    assert_eq!(log.last_log_id(), Some(log_id(2, 120)));
    assert_log_holds(&log, 0, 79)?;
    let entries = log.read_entries(80..=120)?;
    assert_eq!(entries.len(), 41);
    for entry in &entries {
        assert!(entry_is_intact(entry, entry.log_id.index));
        assert_eq!(entry.log_id.leader_id.term, 2);
    }
    Ok(())
}

/// The same with a page of an unsynced append that never reached the disk: it reads as zeros
/// from the middle of one frame into the next, and later pages are intact.
#[test]
fn unwritten_page_inside_frames_past_the_committed_point_is_cut_off() -> anyhow::Result<()> {
    const PAGE_BYTES: usize = 4096;
    let dir = TempDir::new()?;
    log_with_committed(dir.path(), 60)?;
    let segment = segment_files(dir.path())?.pop().expect("a segment");
    let mut bytes = std::fs::read(&segment)?;
    let ranges = frame_ranges(&bytes);
    let page = ranges[70].0.next_multiple_of(PAGE_BYTES);
    let first_damaged = ranges
        .iter()
        .position(|(_, end)| *end > page)
        .expect("a frame in the page");
    assert!(
        ranges.last().expect("frames").1 > page + 2 * PAGE_BYTES,
        "frames follow the page"
    );
    bytes[page..page + PAGE_BYTES].fill(0);
    std::fs::write(&segment, &bytes)?;

    let (_storage, log, report) = open_log(dir.path(), committed_written_at_once())?;
    match report.tail {
        TailState::TornTailTruncated {
            position,
            intact_frames_dropped,
            ..
        } => {
            assert_eq!(position, ranges[first_damaged].0 as u64);
            assert!(intact_frames_dropped > 0);
        }
        other => panic!("the unsynced tail was not cut off: {other:?}"),
    }
    let last = first_damaged as u64 - 1;
    assert_eq!(log.last_log_id(), Some(log_id(1, last)));
    assert_log_holds(&log, 0, last)?;
    Ok(())
}

/// Past the stored committed point a frame may still have been synced and acknowledged (that
/// point is written at most once a second): a flipped bit with intact frames all around, and no
/// block reading as zeros, is decay of synced data, never a write that did not reach the disk.
#[test]
fn flipped_bit_past_the_committed_point_with_intact_frames_after_refuses_to_start(
) -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    log_with_committed(dir.path(), 10)?;
    let segment = segment_files(dir.path())?.pop().expect("a segment");
    let mut bytes = std::fs::read(&segment)?;
    let (start, end) = frame_ranges(&bytes)[50];
    bytes[(start + end) / 2] ^= 0x10;
    std::fs::write(&segment, &bytes)?;

    let (path, position, reason) = corrupt_error(open_log(dir.path(), committed_written_at_once()));
    assert_eq!(path, segment);
    assert_eq!(position, start as u64);
    assert!(
        reason.contains("no block between reads as zeros"),
        "{reason}"
    );
    assert_eq!(
        std::fs::read(&segment)?,
        bytes,
        "a refused open must not touch the file"
    );
    Ok(())
}

#[test]
fn flipped_bit_below_the_committed_point_refuses_to_start_and_changes_nothing() -> anyhow::Result<()>
{
    let dir = TempDir::new()?;
    log_with_committed(dir.path(), 60)?;
    let segment = segment_files(dir.path())?.pop().expect("a segment");
    let mut bytes = std::fs::read(&segment)?;
    let (start, end) = frame_ranges(&bytes)[50];
    bytes[(start + end) / 2] ^= 0x10;
    std::fs::write(&segment, &bytes)?;

    let result = open_log(dir.path(), committed_written_at_once());
    let message = match &result {
        Err(error) => format!("{error:#}"),
        Ok(_) => String::new(),
    };
    let (path, position, reason) = corrupt_error(result);
    assert_eq!(path, segment);
    assert_eq!(position, start as u64);
    assert!(reason.contains("entry 50 is committed"), "{reason}");
    assert!(
        message.contains(&segment.display().to_string())
            && message.contains(&format!("at byte {start}")),
        "the error names neither the file nor the byte: {message}"
    );
    assert_eq!(
        std::fs::read(&segment)?,
        bytes,
        "a refused open must not touch the file"
    );
    Ok(())
}

#[test]
fn zeroed_frame_at_the_committed_point_refuses_to_start() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    log_with_committed(dir.path(), 60)?;
    let segment = segment_files(dir.path())?.pop().expect("a segment");
    let mut bytes = std::fs::read(&segment)?;
    let (start, end) = frame_ranges(&bytes)[60];
    bytes[start..end].fill(0);
    std::fs::write(&segment, &bytes)?;

    let (path, position, reason) = corrupt_error(open_log(dir.path(), committed_written_at_once()));
    assert_eq!(path, segment);
    assert_eq!(position, start as u64);
    assert!(reason.contains("entry 60 is committed"), "{reason}");
    Ok(())
}

#[test]
fn log_ending_before_its_committed_point_refuses_to_start() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    {
        let (_storage, log, _) = open_log(dir.path(), small_segments())?;
        append_range(&log, 1, 0, 299)?;
        log.store_committed(Some(log_id(1, 299)))?;
    }
    let mut files = segment_files(dir.path())?;
    assert!(files.len() >= 2);
    let last = files.pop().expect("a segment");
    std::fs::remove_file(&last)?;
    let (path, _, reason) = corrupt_error(open_log(dir.path(), small_segments()));
    assert_eq!(path, *files.last().expect("a segment"));
    assert!(
        reason.contains("entries up to 299 are committed"),
        "{reason}"
    );
    Ok(())
}

#[test]
fn damage_in_a_sealed_segment_refuses_to_start() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    {
        let (_storage, log, _) = open_log(dir.path(), small_segments())?;
        append_range(&log, 1, 0, 299)?;
    }
    let first = segment_files(dir.path())?.remove(0);
    let mut bytes = std::fs::read(&first)?;
    // Even the very last frame of a sealed segment is never a torn write.
    let (start, end) = *frame_ranges(&bytes).last().expect("frames");
    bytes[end - 1] ^= 0x01;
    std::fs::write(&first, &bytes)?;

    let (path, position, reason) = corrupt_error(open_log(dir.path(), small_segments()));
    assert_eq!(path, first);
    assert_eq!(position, start as u64);
    assert!(reason.contains("sealed segment"), "{reason}");
    Ok(())
}

#[test]
fn damaged_committed_entry_at_the_tail_refuses_to_start() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let config = LogConfig {
        committed_persist_interval: Duration::ZERO,
        ..LogConfig::default()
    };
    {
        let (_storage, log, _) = open_log(dir.path(), config.clone())?;
        append_range(&log, 1, 0, 99)?;
        log.store_committed(Some(log_id(1, 99)))?;
    }
    let segment = segment_files(dir.path())?.pop().expect("a segment");
    let mut bytes = std::fs::read(&segment)?;
    let (start, end) = *frame_ranges(&bytes).last().expect("frames");
    bytes[start..end].fill(0xab);
    std::fs::write(&segment, &bytes)?;

    let (_, position, reason) = corrupt_error(open_log(dir.path(), config));
    assert_eq!(position, start as u64);
    assert!(reason.contains("committed"), "{reason}");
    Ok(())
}

#[test]
fn missing_middle_segment_is_reported_as_a_hole() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    {
        let (_storage, log, _) = open_log(dir.path(), small_segments())?;
        append_range(&log, 1, 0, 499)?;
    }
    let files = segment_files(dir.path())?;
    assert!(files.len() >= 3);
    std::fs::remove_file(&files[1])?;
    let (path, _, reason) = corrupt_error(open_log(dir.path(), small_segments()));
    assert_eq!(path, files[2]);
    assert!(reason.contains("entries are missing"), "{reason}");
    Ok(())
}

#[test]
fn truncate_and_purge_are_durable_and_leave_no_hole() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    {
        let (_storage, log, _) = open_log(dir.path(), small_segments())?;
        append_range(&log, 1, 0, 999)?;
        log.truncate_from(800)?;
        assert_eq!(log.last_log_id(), Some(log_id(1, 799)));
        assert!(log.read_entries(800..900)?.is_empty());
    }
    {
        let (_storage, log, _) = open_log(dir.path(), small_segments())?;
        assert_eq!(log.last_log_id(), Some(log_id(1, 799)));
        assert_log_holds(&log, 0, 799)?;
        // A new leader's entries replace the truncated ones.
        append_range(&log, 2, 800, 899)?;
        let files_before = segment_files(dir.path())?.len();
        log.purge_upto(log_id(1, 300))?;
        log.wait_for_purged_files();
        assert!(
            segment_files(dir.path())?.len() < files_before,
            "purge removed no segment"
        );
        assert!(log.read_entries(0..=300)?.is_empty());
    }
    let (_storage, log, report) = open_log(dir.path(), small_segments())?;
    assert_eq!(report.tail, TailState::Clean);
    assert_eq!(log.last_purged_log_id(), Some(log_id(1, 300)));
    assert_eq!(log.last_log_id(), Some(log_id(2, 899)));
    assert!(log.read_entries(0..=300)?.is_empty());
    let entries = log.read_entries(301..=899)?;
    assert_eq!(entries.len(), 599);
    for entry in &entries {
        let index = entry.log_id.index;
        assert!(entry_is_intact(entry, index), "entry {index} damaged");
        assert_eq!(entry.log_id.leader_id.term, if index < 800 { 1 } else { 2 });
    }
    Ok(())
}

#[test]
fn truncate_at_a_segment_boundary_reopens_the_previous_segment() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let (_storage, log, _) = open_log(dir.path(), small_segments())?;
    append_range(&log, 1, 0, 299)?;
    let files = segment_files(dir.path())?;
    let second_base: u64 = files[1]
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("name")
        .parse()?;
    log.truncate_from(second_base)?;
    assert_eq!(segment_files(dir.path())?.len(), 1);
    append_range(&log, 2, second_base, second_base + 20)?;
    drop((_storage, log));
    let (_storage, log, _) = open_log(dir.path(), small_segments())?;
    assert_eq!(log.last_log_id(), Some(log_id(2, second_base + 20)));
    assert_log_holds(&log, 0, second_base + 20)?;
    Ok(())
}

#[test]
fn purge_past_the_last_entry_restarts_the_log_after_it() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    {
        let (_storage, log, _) = open_log(dir.path(), small_segments())?;
        append_range(&log, 1, 0, 49)?;
        // As after installing a snapshot that is ahead of the local log.
        log.purge_upto(log_id(3, 500))?;
        assert_eq!(log.last_log_id(), Some(log_id(3, 500)));
        log.wait_for_purged_files();
        assert!(segment_files(dir.path())?.is_empty());
        append_range(&log, 3, 501, 520)?;
    }
    let (_storage, log, _) = open_log(dir.path(), small_segments())?;
    assert_eq!(log.last_purged_log_id(), Some(log_id(3, 500)));
    assert_eq!(log.last_log_id(), Some(log_id(3, 520)));
    assert_eq!(log.read_entries(0..1000)?.len(), 20);
    Ok(())
}

#[test]
fn interrupted_purge_is_completed_on_open() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let first_segment;
    let saved;
    {
        let (_storage, log, _) = open_log(dir.path(), small_segments())?;
        append_range(&log, 1, 0, 499)?;
        first_segment = segment_files(dir.path())?.remove(0);
        saved = std::fs::read(&first_segment)?;
        log.purge_upto(log_id(1, 400))?;
    }
    // The crash came after the purge point was stored but before the file was deleted.
    std::fs::write(&first_segment, &saved)?;
    let (_storage, log, report) = open_log(dir.path(), small_segments())?;
    assert!(report.purged_segments_removed >= 1);
    assert!(!first_segment.exists());
    assert_log_holds(&log, 401, 499)?;
    Ok(())
}

#[test]
fn vote_survives_reopen() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let vote = openraft::Vote::new_committed(5, 2);
    {
        let (_storage, log, _) = open_log(dir.path(), LogConfig::default())?;
        log.store_vote(&vote)?;
    }
    let (_storage, log, _) = open_log(dir.path(), LogConfig::default())?;
    assert_eq!(log.vote(), Some(vote));
    Ok(())
}

#[test]
fn group_commit_shares_syncs_across_groups() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let storage = NodeStorage::open(dir.path(), LogConfig::default())?;
    let logs: Vec<_> = (0..8)
        .map(|g| storage.open_group(GroupId(100 + g)).map(|(log, _, _)| log))
        .collect::<Result<_, _>>()?;
    std::thread::scope(|scope| {
        for log in &logs {
            scope.spawn(move || {
                for index in 0..100 {
                    append_durably(log, vec![entry(1, index)]).expect("append");
                }
            });
        }
    });
    for log in &logs {
        assert_log_holds(log, 0, 99)?;
    }
    let stats = storage.flusher().stats();
    let requests = stats.requests.load(Ordering::Relaxed);
    let rounds = stats.rounds.load(Ordering::Relaxed);
    assert_eq!(requests, 800);
    assert!(
        rounds < requests,
        "no append shared a sync round: {rounds} rounds for {requests} requests"
    );
    Ok(())
}

/// Total length of the test group's segment files.
fn segment_file_bytes(dir: &std::path::Path) -> anyhow::Result<u64> {
    let log_dir = dir.join("groups").join(GROUP.0.to_string()).join("log");
    let mut total = 0;
    for file in std::fs::read_dir(&log_dir)? {
        let file = file?;
        if file.path().extension().is_some_and(|e| e == "seg") {
            total += file.metadata()?.len();
        }
    }
    Ok(total)
}

#[test]
fn idle_logs_preallocate_little_and_busy_ones_grow() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let config = LogConfig::default();
    let segment_bytes = config.segment_bytes;
    {
        let (_storage, log, _) = open_log(dir.path(), config.clone())?;
        append_range(&log, 1, 0, 0)?;
        let idle = segment_file_bytes(dir.path())?;
        assert!(
            idle <= raftlog_storage::segment::PREALLOCATE_STEP_MIN,
            "an idle log holds {idle} bytes of segment"
        );
        // ~1 KiB per entry on average: a few MiB crosses several allocation steps.
        append_range(&log, 1, 1, 4000)?;
        let busy = segment_file_bytes(dir.path())?;
        assert!(
            busy > 2 * raftlog_storage::segment::PREALLOCATE_STEP_MIN && busy <= segment_bytes,
            "a busy log's segment is {busy} bytes"
        );
    }
    let (_storage, log, report) = open_log(dir.path(), config)?;
    assert_eq!(report.tail, TailState::Clean);
    assert_log_holds(&log, 0, 4000)?;
    Ok(())
}

/// The meta file's committed id is written lazily, so after a crash it can lag what the state
/// machine applied; applied entries are committed all the same. A tail cut short below the last
/// applied entry (a damaged disk, not a power loss: nothing is applied before it is durable
/// here) must refuse the replica, not read as an unsynced tail and be cut off, which left the
/// replica serving offsets whose entries it no longer had.
#[test]
fn tail_cut_short_below_the_applied_entry_refuses_to_start_and_changes_nothing(
) -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    {
        let storage = NodeStorage::open(dir.path(), LogConfig::default())?;
        let (log, mut state_machine, _) = storage.open_group(GROUP)?;
        append_range(&log, 1, 0, 99)?;
        for index in 0..=99 {
            state_machine.apply_entries([entry(1, index)])?;
        }
        // A clean close writes the applied state; no committed id was ever stored.
        drop(state_machine);
    }
    let segment = segment_files(dir.path())?.pop().expect("a segment");
    let mut bytes = std::fs::read(&segment)?;
    let (start, end) = *frame_ranges(&bytes).last().expect("frames");
    // The last frame, entry 99, loses its second half.
    bytes.truncate(start + (end - start) / 2);
    std::fs::write(&segment, &bytes)?;

    let (path, position, reason) = corrupt_error(open_log(dir.path(), LogConfig::default()));
    assert_eq!(path, segment);
    assert_eq!(position, start as u64);
    assert!(reason.contains("entry 99 is committed"), "{reason}");
    assert_eq!(
        std::fs::read(&segment)?,
        bytes,
        "a refused open must not touch the file"
    );
    Ok(())
}
