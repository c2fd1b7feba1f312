//! The partition state machine holds back its sled writes and writes them in batches: records
//! must be found while their index entries are only in memory, and a crash that loses the
//! held-back writes must re-apply to exactly the same offsets.

use openraft::EntryPayload;
use raftlog_storage::state_machine::BatchLocation;
use raftlog_storage::NodeStorage;
use raftlog_storage::PartitionStateMachine;
use raftlog_types::type_config::Entry;
use raftlog_types::Command;
use raftlog_types::ProducerBatch;
use raftlog_types::Record;

use crate::kit::append_durably;
use crate::kit::log_id;
use crate::kit::small_segments;
use crate::kit::GROUP;

/// Entry `index` holds two batches, of 1 and of `index % 3 + 1` records.
fn entry_with_batches(index: u64) -> Entry {
    let records = |count: u64| -> Vec<Record> {
        (0..count)
            .map(|i| Record {
                key: None,
                value: bytes::Bytes::from(format!("{index}-{i}")),
                headers: Vec::new(),
                timestamp_ms: index as i64,
            })
            .collect()
    };
    Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Normal(Command::AppendBatches(vec![
            ProducerBatch {
                producer: None,
                records: records(1),
            },
            ProducerBatch {
                producer: None,
                records: records(index % 3 + 1),
            },
        ])),
    }
}

/// Every offset below the high watermark, located.
fn locate_all(state_machine: &PartitionStateMachine) -> anyhow::Result<Vec<BatchLocation>> {
    let view = state_machine.view();
    (0..view.high_watermark())
        .map(|offset| {
            view.locate(offset)?
                .ok_or_else(|| anyhow::anyhow!("offset {offset} is not found"))
        })
        .collect()
}

#[tokio::test]
async fn records_are_found_before_and_after_their_index_reaches_sled() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let storage = NodeStorage::open(dir.path(), small_segments())?;
    let (log, mut state_machine, _) = storage.open_group(GROUP)?;
    let entries: Vec<Entry> = (1..=150).map(entry_with_batches).collect();
    append_durably(&log, entries.clone())?;
    for entry in entries {
        let index = entry.log_id.index;
        state_machine.apply_entries([entry])?;
        let located = locate_all(&state_machine)?;
        let last = located.last().expect("records were applied");
        anyhow::ensure!(
            last.log_index == index && last.batch_position == 1,
            "the newest offset is in {last:?}, not in the second batch of entry {index}"
        );
        anyhow::ensure!(state_machine.view().log_start_offset()? == 0);
    }
    Ok(())
}

#[tokio::test]
async fn a_crash_that_loses_held_back_writes_reapplies_to_the_same_offsets() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let storage = NodeStorage::open(dir.path(), small_segments())?;
    let (log, mut state_machine, _) = storage.open_group(GROUP)?;
    let entries: Vec<Entry> = (1..=100).map(entry_with_batches).collect();
    append_durably(&log, entries.clone())?;
    for entry in entries.iter().cloned() {
        state_machine.apply_entries([entry])?;
    }
    let before_crash = locate_all(&state_machine)?;
    let next_offset = state_machine.applied().next_offset;
    // A crash: nothing held back is written.
    std::mem::forget(state_machine);

    let mut reopened = PartitionStateMachine::open(GROUP, storage.state_store(), &log)?;
    let persisted = reopened.applied().last_applied.map_or(0, |id| id.index);
    anyhow::ensure!(
        persisted < 100,
        "every apply reached sled ({persisted}); the test needs held-back writes"
    );
    // What openraft does at start-up: apply again everything after the persisted log id.
    for entry in entries.iter().skip(persisted as usize).cloned() {
        reopened.apply_entries([entry])?;
    }
    anyhow::ensure!(reopened.applied().next_offset == next_offset);
    anyhow::ensure!(
        locate_all(&reopened)? == before_crash,
        "offsets moved after re-applying"
    );

    // A clean close writes everything.
    drop(reopened);
    let after_close = PartitionStateMachine::open(GROUP, storage.state_store(), &log)?;
    anyhow::ensure!(after_close.applied().last_applied.map(|id| id.index) == Some(100));
    anyhow::ensure!(locate_all(&after_close)? == before_crash);
    Ok(())
}

/// A reader of an empty partition must see log start 0 while its first records are applied:
/// nothing was ever deleted. Reading the high watermark after the (still empty) indexes would
/// count a record applied in between as deleted, and a consumer asking for offset 0 would be
/// told it is out of range. Each group gives one chance to hit that window, so many are tried,
/// with a reader spinning on the log start while the first entry is applied.
#[test]
fn the_log_start_of_an_empty_partition_stays_0_while_its_first_records_are_applied(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let storage = NodeStorage::open(dir.path(), small_segments())?;
    for group in 1..=60u64 {
        let (log, mut state_machine, _) =
            storage.open_group(raftlog_types::GroupId(GROUP.0 + group))?;
        let entry = entry_with_batches(1);
        append_durably(&log, vec![entry.clone()])?;
        let view = state_machine.view();
        let applied = std::sync::atomic::AtomicBool::new(false);
        let reading = std::sync::atomic::AtomicBool::new(false);
        let seen = std::thread::scope(|scope| -> anyhow::Result<Vec<u64>> {
            let reader = scope.spawn(|| -> anyhow::Result<Vec<u64>> {
                let mut seen = Vec::new();
                let mut reads_after_apply = 0;
                while reads_after_apply < 100 {
                    if applied.load(std::sync::atomic::Ordering::Acquire) {
                        reads_after_apply += 1;
                    }
                    let start = view.log_start_offset()?;
                    reading.store(true, std::sync::atomic::Ordering::Release);
                    if start != 0 {
                        seen.push(start);
                    }
                }
                Ok(seen)
            });
            while !reading.load(std::sync::atomic::Ordering::Acquire) {
                std::hint::spin_loop();
            }
            state_machine.apply_entries([entry])?;
            applied.store(true, std::sync::atomic::Ordering::Release);
            reader
                .join()
                .map_err(|_| anyhow::anyhow!("the reader panicked"))?
        })?;
        anyhow::ensure!(
            seen.is_empty(),
            "group {group}: log start read as {seen:?} while its first records were applied"
        );
        anyhow::ensure!(
            view.high_watermark() == 3,
            "group {group}: 3 records applied"
        );
    }
    Ok(())
}
