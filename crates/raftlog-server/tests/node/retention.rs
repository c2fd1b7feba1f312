//! Retention: a partition past its topic's `retention.bytes` or `retention.ms` loses its oldest
//! records on every replica at one log start the replicas agree on; reads below it are refused
//! with the valid range; a replica that was down while the leader deleted what it lacked
//! catches up by snapshot and then serves the same records as the others.

use std::collections::HashMap;
use std::time::Duration;
use std::time::Instant;

use raftlog_proto::v1;
use raftlog_proto::v1::ErrorReason;
use raftlog_testkit::InProcessCluster;

use crate::common::clients;
use crate::common::expect_status;
use crate::common::metadata;
use crate::common::produce_to_leader;
use crate::common::record;
use crate::common::segment_files;

const SEGMENT_BYTES: u64 = 64 * 1024;
const RECORD_BYTES: usize = 16 * 1024;

async fn create(cluster: &InProcessCluster, name: &str, configs: &[(&str, &str)]) -> u64 {
    let created = clients(cluster, 1)
        .admin
        .create_topic(v1::CreateTopicRequest {
            name: name.into(),
            partitions: 1,
            replicas: 3,
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        })
        .await
        .expect("create")
        .into_inner()
        .topic
        .expect("a topic");
    cluster.wait_for_leaders(name).await;
    created.partitions[0].group_id
}

/// Produces `count` records of 16 KiB, each naming its number first.
async fn produce(cluster: &InProcessCluster, topic: &str, first: usize, count: usize) {
    for i in first..first + count {
        let mut value = format!("record {i} ").into_bytes();
        value.resize(RECORD_BYTES, b'.');
        produce_to_leader(
            cluster,
            v1::ProduceRequest {
                topic: topic.into(),
                partition: 0,
                records: vec![record(&value)],
                ..Default::default()
            },
            Duration::from_secs(10),
        )
        .await;
    }
}

/// Bytes of node `id`'s segment files of `group`.
fn log_bytes(cluster: &InProcessCluster, id: u64, group: u64) -> u64 {
    segment_files(cluster, id, group)
        .iter()
        .filter_map(|path| std::fs::metadata(path).ok())
        .map(|m| m.len())
        .sum()
}

/// A fetch of `offset` from node `id`'s own replica.
async fn fetch(
    cluster: &InProcessCluster,
    id: u64,
    topic: &str,
    offset: u64,
) -> Result<tonic::Response<v1::FetchResponse>, tonic::Status> {
    clients(cluster, id)
        .fetch
        .fetch(v1::FetchRequest {
            topic: topic.into(),
            partition: 0,
            offset,
            max_bytes: 1024 * 1024,
            max_wait_ms: 0,
        })
        .await
}

/// Node `id`'s log start and high watermark; `None` while it cannot say (starting).
async fn extent(cluster: &InProcessCluster, id: u64, topic: &str) -> Option<(u64, u64)> {
    // Offset 0 is either readable or below the start; both answers carry the range.
    match fetch(cluster, id, topic, 0).await {
        Ok(response) => {
            let response = response.into_inner();
            Some((response.log_start_offset, response.high_watermark))
        }
        Err(status) => {
            let number = |key| metadata(&status, key).and_then(|v| v.parse::<u64>().ok());
            Some((number("log_start_offset")?, number("high_watermark")?))
        }
    }
}

/// Waits until every node in `ids` satisfies `done` with its `(log start, high watermark,
/// log bytes)`; returns them.
async fn wait_until(
    cluster: &InProcessCluster,
    ids: &[u64],
    topic: &str,
    group: u64,
    what: &str,
    done: impl Fn(&[(u64, u64, u64)]) -> bool,
) -> Vec<(u64, u64, u64)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut seen = Vec::new();
        for id in ids {
            if let Some((start, high_watermark)) = extent(cluster, *id, topic).await {
                seen.push((start, high_watermark, log_bytes(cluster, *id, group)));
            }
        }
        if seen.len() == ids.len() && done(&seen) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: (log start, high watermark, log bytes) per node {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts that every node in `ids` refuses offsets below `start` with the range, and serves
/// the same records from `start` to `end`.
async fn assert_same_records(cluster: &InProcessCluster, ids: &[u64], topic: &str, start: u64) {
    let mut first: Option<Vec<(u64, Vec<u8>)>> = None;
    for id in ids {
        if start > 0 {
            let status = expect_status(
                fetch(cluster, *id, topic, start - 1).await,
                tonic::Code::OutOfRange,
                ErrorReason::OffsetOutOfRange,
            );
            assert_eq!(
                metadata(&status, "log_start_offset"),
                Some(start.to_string()),
                "node {id}: {status:?}"
            );
        }
        let mut records = Vec::new();
        let mut offset = start;
        loop {
            let response = fetch(cluster, *id, topic, offset)
                .await
                .unwrap_or_else(|s| panic!("node {id} offset {offset}: {s:?}"))
                .into_inner();
            if response.records.is_empty() {
                break;
            }
            for r in response.records {
                assert_eq!(
                    r.offset, offset,
                    "node {id}: offsets in order without a gap"
                );
                let value = r.value.to_vec();
                assert!(value.starts_with(format!("record {offset} ").as_bytes()));
                records.push((r.offset, value));
                offset += 1;
            }
        }
        match &first {
            None => first = Some(records),
            Some(expected) => assert!(*expected == records, "node {id} serves other records"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_times_retention_bytes_leaves_every_replica_under_it_plus_two_segments() {
    let cluster = InProcessCluster::start_nodes(3).await;
    let retention = 4 * SEGMENT_BYTES;
    let group = create(
        &cluster,
        "sized",
        &[
            ("segment.bytes", &SEGMENT_BYTES.to_string()),
            ("retention.bytes", &retention.to_string()),
        ],
    )
    .await;
    // 10 × retention.bytes.
    let count = (10 * retention) as usize / RECORD_BYTES;
    produce(&cluster, "sized", 0, count).await;
    let bound = retention + 2 * SEGMENT_BYTES;
    let seen = wait_until(&cluster, &[1, 2, 3], "sized", group, "retention", |seen| {
        seen.iter().all(|(start, high_watermark, bytes)| {
            *high_watermark == count as u64 && *start > 0 && *start == seen[0].0 && *bytes <= bound
        })
    })
    .await;
    let start = seen[0].0;
    // Most of it is gone: what is kept is about retention.bytes.
    assert!(
        start as usize >= count - (bound as usize / RECORD_BYTES),
        "log start {start} of {count}"
    );
    assert_same_records(&cluster, &[1, 2, 3], "sized", start).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_older_than_retention_ms_go_from_every_replica_and_new_ones_follow() {
    let cluster = InProcessCluster::start_nodes(3).await;
    let group = create(&cluster, "timed", &[("retention.ms", "1500")]).await;
    produce(&cluster, "timed", 0, 20).await;
    // All of them expire, the active segment too, and the replicas purge their logs.
    wait_until(
        &cluster,
        &[1, 2, 3],
        "timed",
        group,
        "time retention",
        |seen| {
            seen.iter().all(|(start, high_watermark, bytes)| {
                *start == 20 && *high_watermark == 20 && *bytes < (RECORD_BYTES as u64)
            })
        },
    )
    .await;
    assert_same_records(&cluster, &[1, 2, 3], "timed", 20).await;
    // The partition goes on where it was.
    produce(&cluster, "timed", 20, 3).await;
    wait_until(
        &cluster,
        &[1, 2, 3],
        "timed",
        group,
        "new records",
        |seen| {
            seen.iter()
                .all(|(_, high_watermark, _)| *high_watermark == 23)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_down_while_the_leader_deleted_what_it_lacked_catches_up_by_snapshot() {
    let mut cluster = InProcessCluster::start_nodes(3).await;
    let retention = 4 * SEGMENT_BYTES;
    let group = create(
        &cluster,
        "lagging",
        &[
            ("segment.bytes", &SEGMENT_BYTES.to_string()),
            ("retention.bytes", &retention.to_string()),
        ],
    )
    .await;
    produce(&cluster, "lagging", 0, 8).await;
    let description = cluster.wait_for_leaders("lagging").await;
    let leader = description.partitions[0].leader_id.expect("a leader");
    let down = (1..=3).find(|id| *id != leader).expect("a follower");
    let up: Vec<u64> = (1..=3).filter(|id| *id != down).collect();
    cluster.stop(down).await;
    // Far more than the replica that is down holds or retention keeps.
    let count = 8 + (6 * retention) as usize / RECORD_BYTES;
    produce(&cluster, "lagging", 8, count - 8).await;
    let seen = wait_until(&cluster, &up, "lagging", group, "retention", |seen| {
        seen.iter().all(|(start, high_watermark, _)| {
            *high_watermark == count as u64 && *start > 8 && *start == seen[0].0
        })
    })
    .await;
    let start = seen[0].0;
    cluster.start(down);
    let seen = wait_until(&cluster, &[1, 2, 3], "lagging", group, "catch-up", |seen| {
        seen.iter().all(|(s, high_watermark, bytes)| {
            *high_watermark == count as u64
                && *s >= start
                && *s == seen[0].0
                && *bytes <= retention + 2 * SEGMENT_BYTES
        })
    })
    .await;
    assert_same_records(&cluster, &[1, 2, 3], "lagging", seen[0].0).await;
}

async fn delete_records(
    cluster: &InProcessCluster,
    id: u64,
    topic: &str,
    before_offset: u64,
) -> Result<tonic::Response<v1::DeleteRecordsResponse>, tonic::Status> {
    clients(cluster, id)
        .admin
        .delete_records(v1::DeleteRecordsRequest {
            topic: topic.into(),
            partition: 0,
            before_offset,
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_the_log_start_on_every_replica_and_refuses_past_the_end() {
    let cluster = InProcessCluster::start_nodes(3).await;
    let group = create(&cluster, "trimmed", &[]).await;
    produce(&cluster, "trimmed", 0, 30).await;
    let leader = cluster.wait_for_leaders("trimmed").await.partitions[0]
        .leader_id
        .expect("a leader");
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");

    // Past the high watermark: refused with the range, nothing changed.
    let status = expect_status(
        delete_records(&cluster, leader, "trimmed", 31).await,
        tonic::Code::OutOfRange,
        ErrorReason::OffsetOutOfRange,
    );
    assert_eq!(metadata(&status, "high_watermark").as_deref(), Some("30"));
    // Anywhere but the leader: NOT_LEADER, naming it.
    let status = expect_status(
        delete_records(&cluster, follower, "trimmed", 12).await,
        tonic::Code::Unavailable,
        ErrorReason::NotLeader,
    );
    assert_eq!(
        metadata(&status, "leader_address"),
        Some(cluster.addr(leader))
    );
    assert_same_records(&cluster, &[1, 2, 3], "trimmed", 0).await;

    let response = delete_records(&cluster, leader, "trimmed", 12)
        .await
        .expect("delete records")
        .into_inner();
    assert_eq!(
        (response.log_start_offset, response.high_watermark),
        (12, 30)
    );
    wait_until(
        &cluster,
        &[1, 2, 3],
        "trimmed",
        group,
        "delete records",
        |seen| seen.iter().all(|(start, _, _)| *start == 12),
    )
    .await;
    assert_same_records(&cluster, &[1, 2, 3], "trimmed", 12).await;
    // Below the log start: nothing to do, and no error.
    let response = delete_records(&cluster, leader, "trimmed", 5)
        .await
        .expect("delete records below the start")
        .into_inner();
    assert_eq!(response.log_start_offset, 12);
    // Up to the high watermark: every record, and the partition goes on.
    delete_records(&cluster, leader, "trimmed", 30)
        .await
        .expect("delete all records");
    produce(&cluster, "trimmed", 30, 2).await;
    wait_until(
        &cluster,
        &[1, 2, 3],
        "trimmed",
        group,
        "after deleting all",
        |seen| {
            seen.iter()
                .all(|(start, high_watermark, _)| *start == 30 && *high_watermark == 32)
        },
    )
    .await;
    assert_same_records(&cluster, &[1, 2, 3], "trimmed", 30).await;
}
