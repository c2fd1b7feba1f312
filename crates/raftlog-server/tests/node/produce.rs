//! `raftlog.v1.Produce`: a produce acknowledged by the leader of a 3-replica partition is read
//! back from every replica at its offsets; a write in flight when its leader stops is answered
//! INTERRUPTED (or committed), never as if it had been refused on arrival.

use std::time::Duration;
use std::time::Instant;

use raftlog_proto::v1;
use raftlog_proto::v1::ErrorReason;
use raftlog_testkit::ClusterSpec;
use raftlog_testkit::InProcessCluster;
use raftlog_testkit::RaftTimers;

use crate::common::clients;
use crate::common::create_topic;
use crate::common::produce_request;
use crate::common::produce_to_leader;
use crate::common::reason;

/// Every record of partition 0 of `topic` that node `id` serves, once it serves `count`.
async fn read_from(
    cluster: &InProcessCluster,
    id: u64,
    topic: &str,
    count: usize,
) -> Vec<v1::StoredRecord> {
    let mut fetch = clients(cluster, id).fetch;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let request = v1::FetchRequest {
            topic: topic.into(),
            partition: 0,
            offset: 0,
            max_bytes: 0,
            max_wait_ms: 0,
        };
        match fetch.fetch(request).await {
            Ok(response) if response.get_ref().records.len() >= count => {
                return response.into_inner().records
            }
            // A follower serves up to the commit index it knows, a moment after the leader.
            Ok(_) => {}
            Err(status) if reason(&status).is_some_and(ErrorReason::is_retryable) => {}
            Err(status) => panic!("fetch from node {id}: {status:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "node {id} does not serve {count} records of {topic}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produced_records_are_fetched_from_every_replica_at_their_offsets() {
    let cluster = InProcessCluster::start_nodes(3).await;
    create_topic(&cluster, "round-trip", 1, 3).await;
    let first = produce_to_leader(
        &cluster,
        produce_request("round-trip", 0, &[b"a", b"b", b"c"]),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!((first.base_offset, first.record_count), (0, 3));
    assert!(!first.duplicate);
    let receipt = first.receipt.expect("a receipt");
    assert_eq!(receipt.durability, v1::Durability::MajorityFsynced as i32);
    let second = produce_to_leader(
        &cluster,
        produce_request("round-trip", 0, &[b"d"]),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(second.base_offset, 3);

    for id in 1..=3 {
        let records = read_from(&cluster, id, "round-trip", 4).await;
        let read: Vec<(u64, &[u8])> = records
            .iter()
            .map(|r| (r.offset, r.value.as_ref()))
            .collect();
        assert_eq!(
            read,
            vec![(0, &b"a"[..]), (1, b"b"), (2, b"c"), (3, b"d")],
            "node {id}"
        );
    }
}

/// Timers whose quorum lease (the minimum election timeout) outlasts the test's steps, so the
/// leader still takes writes after its followers have stopped.
const LONG_LEASE: RaftTimers = RaftTimers {
    heartbeat_ms: 100,
    election_min_ms: 5_000,
    election_max_ms: 10_000,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_in_flight_when_its_leader_stops_is_answered_interrupted() {
    let mut cluster = InProcessCluster::start_spec(ClusterSpec::new(3).timers(LONG_LEASE)).await;
    let description = create_topic(&cluster, "interrupted", 1, 3).await;
    produce_to_leader(
        &cluster,
        produce_request("interrupted", 0, &[b"before"]),
        Duration::from_secs(20),
    )
    .await;
    let leader = cluster
        .wait_for_settled_leaders("interrupted")
        .await
        .partitions[0]
        .leader_id
        .expect("leader");
    assert_eq!(description.partitions[0].replicas.len(), 3);
    // Without its followers the leader accepts writes (its lease still holds) that cannot commit.
    for follower in (1..=3).filter(|id| *id != leader) {
        cluster.stop(follower).await;
    }
    let writes: Vec<_> = (0..4)
        .map(|i| {
            let mut produce = clients(&cluster, leader).produce;
            tokio::spawn(async move {
                let value = format!("in flight {i}").into_bytes();
                produce
                    .produce(produce_request("interrupted", 0, &[&value]))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for write in &writes {
        assert!(
            !write.is_finished(),
            "a write was answered before its leader stopped"
        );
    }
    cluster.stop(leader).await;
    for write in writes {
        match write.await.expect("join") {
            Ok(response) => eprintln!("committed at {}", response.get_ref().base_offset),
            Err(status) => assert_eq!(
                reason(&status),
                Some(ErrorReason::Interrupted),
                "a write in flight when its leader stopped: {status:?}"
            ),
        }
    }
}
