//! Consumer groups: a member polls what was produced and commits; after it closes, the next
//! member of the group resumes from the committed positions.

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use raftlog_client::record;
use raftlog_client::Consumer;
use raftlog_client::ConsumerConfig;
use raftlog_client::ConsumerRecord;
use raftlog_testkit::InProcessCluster;

use crate::client;

/// Polls until `count` records have come or 20 s have passed.
async fn poll_records(consumer: &mut Consumer, count: usize) -> Vec<ConsumerRecord> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut records = Vec::new();
    while records.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} records polled",
            records.len()
        );
        records.extend(consumer.poll().await.expect("poll"));
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_member_commits_and_the_next_one_resumes_there() {
    let cluster = InProcessCluster::start_nodes(3).await;
    let client = client(&cluster).await;
    client.create_topic("events", 1, 3).await.expect("create");
    cluster.wait_for_leaders("events").await;
    let values = |range: std::ops::Range<u32>| {
        range
            .map(|i| record(None, format!("e{i}").into_bytes()))
            .collect()
    };
    client
        .produce("events", 0, values(0..10))
        .await
        .expect("produce");
    let config = ConsumerConfig {
        group: Some("readers".into()),
        poll_wait: Duration::from_millis(100),
        ..ConsumerConfig::default()
    };

    let mut first = Consumer::new(Arc::clone(&client), config.clone());
    first.subscribe(&["events"]).await.expect("subscribe");
    let read = poll_records(&mut first, 10).await;
    let offsets: Vec<u64> = read.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..10).collect::<Vec<u64>>());
    assert_eq!(read[3].value, b"e3".to_vec());
    first.commit().await.expect("commit");
    first.close().await.expect("close");

    client
        .produce("events", 0, values(10..15))
        .await
        .expect("produce");
    let mut second = Consumer::new(Arc::clone(&client), config);
    second.subscribe(&["events"]).await.expect("subscribe");
    let read = poll_records(&mut second, 5).await;
    let offsets: Vec<u64> = read.iter().map(|r| r.offset).collect();
    assert_eq!(
        offsets,
        (10..15).collect::<Vec<u64>>(),
        "did not resume at the commit"
    );
    assert_eq!(second.position("events", 0), Some(15));
    second.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_whose_commit_fell_below_the_log_start_resumes_there_and_says_so() {
    let cluster = InProcessCluster::start_nodes(3).await;
    let client = client(&cluster).await;
    client.create_topic("trimmed", 1, 3).await.expect("create");
    cluster.wait_for_leaders("trimmed").await;
    let values = |range: std::ops::Range<u32>| {
        range
            .map(|i| record(None, format!("e{i}").into_bytes()))
            .collect()
    };
    client
        .produce("trimmed", 0, values(0..10))
        .await
        .expect("produce");
    let config = ConsumerConfig {
        group: Some("slow".into()),
        poll_wait: Duration::from_millis(100),
        ..ConsumerConfig::default()
    };
    let mut first = Consumer::new(Arc::clone(&client), config.clone());
    first.subscribe(&["trimmed"]).await.expect("subscribe");
    assert_eq!(poll_records(&mut first, 10).await.len(), 10);
    first.commit().await.expect("commit");
    first.close().await.expect("close");

    // The group committed 10; records up to 25 are deleted before it comes back.
    client
        .produce("trimmed", 0, values(10..30))
        .await
        .expect("produce");
    let deleted = client
        .delete_records("trimmed", 0, 25)
        .await
        .expect("delete records");
    assert_eq!(deleted.log_start_offset, 25);
    let lag = client.describe_group("slow").await.expect("describe group");
    let partition = &lag.partitions[0];
    assert_eq!(partition.committed_offset, Some(10));
    assert_eq!(
        partition.lag, 5,
        "lag counts from the log start: {partition:?}"
    );

    let mut second = Consumer::new(Arc::clone(&client), config);
    second.subscribe(&["trimmed"]).await.expect("subscribe");
    let read = poll_records(&mut second, 5).await;
    let offsets: Vec<u64> = read.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (25..30).collect::<Vec<u64>>());
    assert_eq!(read[0].value, b"e25".to_vec());
    assert_eq!(second.skipped_deleted_records(), 15);
    second.close().await.expect("close");
}
