//! Deleting records at the start of a partition: the log start moves through an entry every
//! replica applies (`AdvanceLogStart`), and a snapshot is only ever taken where every record
//! below it is deleted (a segment-end checkpoint), so purging the log up to it loses no record
//! at or above the log start, and a replica that installs it reads on from there.

use openraft::storage::RaftStateMachine;
use openraft::CommittedLeaderId;
use openraft::EntryPayload;
use openraft::RaftSnapshotBuilder;
use raftlog_types::type_config::Entry;
use raftlog_types::type_config::LogId;
use raftlog_types::Command;
use raftlog_types::CommandResponse;
use raftlog_types::GroupId;

use crate::kit::append_durably;
use crate::kit::entry;
use crate::kit::small_segments;

fn advance_log_start(index: u64, log_start_offset: u64) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Command::AdvanceLogStart { log_start_offset }),
    }
}

#[tokio::test]
async fn a_snapshot_stops_at_the_last_segment_end_below_the_log_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let storage = raftlog_storage::NodeStorage::open(dir.path(), small_segments())?;
    let (log, mut state_machine, _) = storage.open_group(GroupId(7))?;
    // Entry i holds one record at offset i - 1, about 1 KiB each: several 64 KiB segments.
    let entries: Vec<Entry> = (1..=400).map(|i| entry(1, i)).collect();
    append_durably(&log, entries.clone())?;
    state_machine.apply_entries(entries)?;
    let segments = log.segments();
    anyhow::ensure!(segments.len() >= 4, "only {} segments", segments.len());

    // Nothing is deleted yet: there is nothing to snapshot, and openraft's answer is "none".
    let snapshot = state_machine
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await?;
    anyhow::ensure!(snapshot.meta.last_log_id.is_none());

    // Delete records below the middle of the third segment.
    let third = segments[2];
    let log_start = (third.base_index + third.next_index) / 2 - 1;
    let responses = state_machine.apply_entries([advance_log_start(401, log_start)])?;
    anyhow::ensure!(
        responses
            == vec![CommandResponse::LogStartAdvanced {
                log_start_offset: log_start
            }]
    );
    anyhow::ensure!(state_machine.view().log_start_offset()? == log_start);
    // Never past the high watermark, never back.
    state_machine.apply_entries([advance_log_start(402, 10_000)])?;
    anyhow::ensure!(state_machine.view().log_start_offset()? == 400);
    state_machine.apply_entries([advance_log_start(403, 5)])?;
    anyhow::ensure!(state_machine.view().log_start_offset()? == 400);
    Ok(())
}

#[tokio::test]
async fn a_replica_that_installs_the_snapshot_reads_on_from_its_segment_end() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let storage = raftlog_storage::NodeStorage::open(dir.path(), small_segments())?;
    let (log, mut leader, _) = storage.open_group(GroupId(7))?;
    let entries: Vec<Entry> = (1..=400).map(|i| entry(1, i)).collect();
    append_durably(&log, entries.clone())?;
    leader.apply_entries(entries)?;
    let segments = log.segments();
    let third = segments[2];
    let log_start = (third.base_index + third.next_index) / 2 - 1;
    append_durably(&log, vec![advance_log_start(401, log_start)])?;
    leader.apply_entries([advance_log_start(401, log_start)])?;

    let snapshot = leader.get_snapshot_builder().await.build_snapshot().await?;
    // The end of the second segment: the newest segment end below offset `log_start`.
    let snapshot_index = snapshot.meta.last_log_id.map(|id| id.index);
    anyhow::ensure!(
        snapshot_index == Some(third.base_index - 1),
        "snapshot at {snapshot_index:?}, third segment starts at {}",
        third.base_index
    );
    // Building again gives nothing newer.
    let again = leader.get_snapshot_builder().await.build_snapshot().await?;
    anyhow::ensure!(again.meta == snapshot.meta);
    let current = leader.get_current_snapshot().await?;
    anyhow::ensure!(current.map(|s| s.meta) == Some(snapshot.meta.clone()));

    // Purging there removes the first two segments; every record from the log start on is
    // still where the offset index says.
    if let Some(id) = snapshot.meta.last_log_id {
        log.purge_upto(id)?;
    }
    anyhow::ensure!(log.segments().first().map(|s| s.base_index) == Some(third.base_index));
    let view = leader.view();
    for offset in log_start..400 {
        let location = view
            .locate(offset)?
            .ok_or_else(|| anyhow::anyhow!("offset {offset} not indexed"))?;
        anyhow::ensure!(location.log_index == offset + 1);
        anyhow::ensure!(!log
            .read_entries(location.log_index..=location.log_index)?
            .is_empty());
    }
    // Trimming the offset index below the log start leaves the rest.
    let trimmed = view.trim_index_below_log_start(usize::MAX)?;
    anyhow::ensure!(trimmed as u64 == log_start, "trimmed {trimmed}");
    anyhow::ensure!(view.locate(log_start)?.is_some());

    // A replica installs the snapshot: its state is the segment end's, and the entries after
    // it, replicated to it, give it the same offsets and log start as the leader.
    let (follower_log, mut follower, _) = storage.open_group(GroupId(8))?;
    let data = snapshot.snapshot.into_inner();
    follower
        .install_snapshot(&snapshot.meta, Box::new(std::io::Cursor::new(data)))
        .await?;
    let snapshot_index = third.base_index - 1;
    anyhow::ensure!(follower.view().high_watermark() == snapshot_index);
    anyhow::ensure!(follower.view().log_start_offset()? == snapshot_index);
    let rest: Vec<Entry> = log.read_entries(snapshot_index + 1..=401)?;
    follower_log.purge_upto(LogId::new(CommittedLeaderId::new(1, 1), snapshot_index))?;
    append_durably(&follower_log, rest.clone())?;
    follower.apply_entries(rest)?;
    anyhow::ensure!(follower.view().high_watermark() == 400);
    anyhow::ensure!(follower.view().log_start_offset()? == log_start);
    for offset in log_start..400 {
        anyhow::ensure!(follower.view().locate(offset)? == leader.view().locate(offset)?);
    }
    Ok(())
}
