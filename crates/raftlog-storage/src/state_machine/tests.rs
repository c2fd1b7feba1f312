//! Time in the partition state machine: producer expiry runs on the leaders' stamps, kept
//! monotonic and persisted (in the applied state and in snapshots), and no client timestamp
//! (far future, negative) can make it forget producers or overflow.

use bytes::Bytes;
use openraft::CommittedLeaderId;
use openraft::EntryPayload;
use raftlog_types::type_config::Entry;
use raftlog_types::type_config::LogId;
use raftlog_types::BatchResult;
use raftlog_types::Command;
use raftlog_types::CommandResponse;
use raftlog_types::GroupId;
use raftlog_types::ProducerBatch;
use raftlog_types::ProducerSequence;
use raftlog_types::Record;

use super::PartitionStateMachine;
use super::PRODUCER_RETENTION_MS;
use crate::LogConfig;
use crate::NodeStorage;

const GROUP: GroupId = GroupId(3);
/// A leader's wall clock: 2023-11-14.
const LEADER_MS: i64 = 1_700_000_000_000;

fn batch(producer_id: u64, base_sequence: u64, timestamps_ms: &[i64]) -> ProducerBatch {
    ProducerBatch {
        producer: Some(ProducerSequence {
            producer_id,
            base_sequence,
        }),
        records: timestamps_ms
            .iter()
            .map(|&timestamp_ms| Record {
                key: None,
                value: Bytes::from_static(b"v"),
                headers: Vec::new(),
                timestamp_ms,
            })
            .collect(),
    }
}

fn stamped(index: u64, leader_time_ms: i64, batch: ProducerBatch) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Command::StampedAppendBatches {
            leader_time_ms,
            batches: vec![batch],
        }),
    }
}

fn unstamped(index: u64, batch: ProducerBatch) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Command::AppendBatches(vec![batch])),
    }
}

/// The one batch result of applying `entry`.
fn apply_one(state_machine: &mut PartitionStateMachine, entry: Entry) -> BatchResult {
    let responses = state_machine.apply_entries([entry]).expect("apply");
    match responses.as_slice() {
        [CommandResponse::Batches(results)] if results.len() == 1 => results[0],
        other => panic!("unexpected responses {other:?}"),
    }
}

fn appended(base_offset: u64, record_count: u32) -> BatchResult {
    BatchResult::Appended {
        base_offset,
        record_count,
    }
}

#[test]
fn far_future_and_negative_client_timestamps_forget_no_producer_and_do_not_overflow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = NodeStorage::open(dir.path(), LogConfig::default()).expect("storage");
    let (_log, mut state_machine, _) = storage.open_group(GROUP).expect("group");

    // Producer 1 writes with a sane clock; producers 2 and 3 with broken ones.
    assert_eq!(
        apply_one(
            &mut state_machine,
            stamped(1, LEADER_MS, batch(1, 0, &[LEADER_MS]))
        ),
        appended(0, 1)
    );
    assert_eq!(
        apply_one(
            &mut state_machine,
            stamped(2, LEADER_MS + 1, batch(2, 0, &[-5, i64::MIN]))
        ),
        appended(1, 2)
    );
    assert_eq!(
        apply_one(
            &mut state_machine,
            stamped(3, LEADER_MS + 2, batch(3, 0, &[i64::MAX]))
        ),
        appended(3, 1)
    );

    // Producer 1 is still known: its next batch follows, and a retry of its first batch is
    // answered with the original offset rather than written again.
    assert_eq!(
        apply_one(
            &mut state_machine,
            stamped(4, LEADER_MS + 3, batch(1, 1, &[LEADER_MS]))
        ),
        appended(4, 1)
    );
    assert_eq!(
        apply_one(
            &mut state_machine,
            stamped(5, LEADER_MS + 4, batch(1, 0, &[LEADER_MS]))
        ),
        BatchResult::Duplicate {
            base_offset: 0,
            record_count: 1
        }
    );
    for producer_id in [1, 2, 3] {
        let state = state_machine.producer(producer_id).expect("still known");
        assert!(
            (LEADER_MS..=LEADER_MS + 4).contains(&state.last_write_ms),
            "producer {producer_id} is timed by {}, not by the leader",
            state.last_write_ms
        );
    }
    assert_eq!(state_machine.applied().leader_time_ms, LEADER_MS + 4);
}

#[test]
fn the_partition_clock_only_moves_forward_survives_a_reopen_and_drives_expiry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = NodeStorage::open(dir.path(), LogConfig::default()).expect("storage");
    // These entries are applied without being in the log, so only the state machine is
    // reopened (a log reopened under a later applied entry is refused as cut short).
    let (log, mut state_machine, _) = storage.open_group(GROUP).expect("group");
    {
        apply_one(&mut state_machine, stamped(1, LEADER_MS, batch(1, 0, &[1])));
        // A new leader whose clock is behind does not turn the partition's time back.
        apply_one(
            &mut state_machine,
            stamped(2, LEADER_MS - 60_000, batch(2, 0, &[1])),
        );
        assert_eq!(state_machine.applied().leader_time_ms, LEADER_MS);
        assert_eq!(
            state_machine.producer(2).map(|s| s.last_write_ms),
            Some(LEADER_MS)
        );
    }
    drop(state_machine);
    let mut state_machine =
        PartitionStateMachine::open(GROUP, storage.state_store(), &log).expect("reopen");
    assert_eq!(state_machine.applied().leader_time_ms, LEADER_MS);

    // Expiry still works, by the leaders' time: a producer idle past the retention goes.
    let later_ms = LEADER_MS + PRODUCER_RETENTION_MS + 1;
    apply_one(&mut state_machine, stamped(3, later_ms, batch(3, 0, &[1])));
    assert!(state_machine.producer(1).is_none());
    assert!(state_machine.producer(2).is_none());
    assert_eq!(
        apply_one(&mut state_machine, stamped(4, later_ms, batch(1, 1, &[1]))),
        BatchResult::UnknownProducer { received: 1 }
    );
}

#[test]
fn an_unstamped_entry_is_timed_by_its_records_as_before_and_leaves_the_clock_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = NodeStorage::open(dir.path(), LogConfig::default()).expect("storage");
    let (_log, mut state_machine, _) = storage.open_group(GROUP).expect("group");
    apply_one(&mut state_machine, stamped(1, LEADER_MS, batch(1, 0, &[1])));
    apply_one(&mut state_machine, unstamped(2, batch(2, 0, &[7, 42])));
    assert_eq!(state_machine.producer(2).map(|s| s.last_write_ms), Some(42));
    assert_eq!(state_machine.applied().leader_time_ms, LEADER_MS);
    // An old entry with a negative, then a far-future, record timestamp: no overflow.
    apply_one(&mut state_machine, unstamped(3, batch(3, 0, &[i64::MIN])));
    apply_one(&mut state_machine, unstamped(4, batch(4, 0, &[i64::MAX])));
    assert_eq!(state_machine.applied().leader_time_ms, LEADER_MS);
}

#[tokio::test]
async fn a_snapshot_carries_the_partition_clock_to_the_replica_that_installs_it() {
    use openraft::RaftSnapshotBuilder;

    let dir = tempfile::tempdir().expect("tempdir");
    let storage = NodeStorage::open(dir.path(), LogConfig::default()).expect("storage");
    let (_log, mut source, _) = storage.open_group(GROUP).expect("group");
    apply_one(&mut source, stamped(1, LEADER_MS, batch(1, 0, &[1])));
    // A snapshot is taken only where every record below it is deleted.
    source
        .apply_entries([Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 2),
            payload: EntryPayload::Normal(Command::AdvanceLogStart {
                log_start_offset: 1,
            }),
        }])
        .expect("apply");
    let snapshot = source
        .snapshot_builder(None)
        .build_snapshot()
        .await
        .expect("snapshot");
    let (_other_log, mut target, _) = storage.open_group(GroupId(4)).expect("other group");
    target
        .install(&snapshot.meta, snapshot.snapshot.into_inner())
        .expect("install");
    assert_eq!(target.applied().leader_time_ms, LEADER_MS);
    assert_eq!(target.producer(1).map(|s| s.last_write_ms), Some(LEADER_MS));
}
