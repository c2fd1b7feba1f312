//! The producer: deliveries carry the offsets the records were written at; an idempotent
//! producer whose partition leader stops mid-stream writes every record exactly once.

use std::sync::Arc;
use std::time::Duration;

use raftlog_client::record;
use raftlog_client::Partitioner;
use raftlog_client::Producer;
use raftlog_client::ProducerConfig;
use raftlog_testkit::InProcessCluster;

use crate::client;
use crate::read_all;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_carry_the_offsets_the_records_were_written_at() {
    let cluster = InProcessCluster::start_nodes(1).await;
    let client = client(&cluster).await;
    client
        .create_topic("deliveries", 2, 1)
        .await
        .expect("create");
    cluster.wait_for_leaders("deliveries").await;
    let producer = Producer::new(Arc::clone(&client), ProducerConfig::default());
    let mut pending = Vec::new();
    for i in 0..200u32 {
        let value = format!("v{i}").into_bytes();
        pending.push(
            producer
                .send_to("deliveries", i % 2, record(None, value))
                .await
                .expect("send"),
        );
    }
    producer.flush().await;
    assert_eq!(producer.buffered_bytes(), 0, "flush left records buffered");
    let mut next = [0u64; 2];
    for (i, delivery) in pending.into_iter().enumerate() {
        let delivery = delivery.await.expect("delivered");
        let partition = (i % 2) as u32;
        assert_eq!(
            (delivery.topic.as_str(), delivery.partition),
            ("deliveries", partition)
        );
        assert_eq!(delivery.offset, next[partition as usize], "record {i}");
        assert!(!delivery.duplicate);
        next[partition as usize] += 1;
    }
    for partition in 0..2 {
        let stored = read_all(&client, "deliveries", partition).await;
        let expected: Vec<(u64, Vec<u8>)> = (0..100u64)
            .map(|n| (n, format!("v{}", n * 2 + u64::from(partition)).into_bytes()))
            .collect();
        assert_eq!(stored, expected, "partition {partition}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_after_the_leader_stops_write_every_record_once() {
    let mut cluster = InProcessCluster::start_nodes(3).await;
    let client = client(&cluster).await;
    client
        .create_topic("idempotent", 1, 3)
        .await
        .expect("create");
    cluster.wait_for_settled_leaders("idempotent").await;
    let producer = Producer::new(
        Arc::clone(&client),
        ProducerConfig {
            partitioner: Partitioner::RoundRobin,
            linger: Duration::from_millis(1),
            ..ProducerConfig::default()
        },
    );
    let sender = {
        let producer = producer.clone();
        tokio::spawn(async move {
            let mut deliveries = Vec::new();
            for i in 0..1500u32 {
                let value = format!("r{i}").into_bytes();
                deliveries.push(
                    producer
                        .send("idempotent", record(None, value))
                        .await
                        .expect("send"),
                );
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            let mut offsets = Vec::new();
            for delivery in deliveries {
                offsets.push(delivery.await.expect("every record is delivered").offset);
            }
            offsets
        })
    };
    // Stop the leader while records stream in (for about a second), then bring it back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let leader = cluster.wait_for_leaders("idempotent").await.partitions[0]
        .leader_id
        .expect("leader");
    cluster.stop(leader).await;
    assert!(
        !sender.is_finished(),
        "every record was sent before the leader stopped"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.start(leader);
    let offsets = tokio::time::timeout(Duration::from_secs(60), sender)
        .await
        .expect("the producer did not finish")
        .expect("join");
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "offsets out of order"
    );

    cluster.wait_for_leaders("idempotent").await;
    let stored: Vec<Vec<u8>> = read_all(&client, "idempotent", 0)
        .await
        .into_iter()
        .map(|(_, value)| value)
        .collect();
    let expected: Vec<Vec<u8>> = (0..1500).map(|i| format!("r{i}").into_bytes()).collect();
    assert_eq!(stored.len(), expected.len(), "duplicates or losses");
    assert_eq!(stored, expected, "records out of order, duplicated or lost");
}
