//! Durability and availability with real processes: leader kills while producing, a killed
//! node catching up, a minority down (keeps working) and a majority down (fails fast).

use std::collections::BTreeMap;
use std::time::Duration;
use std::time::Instant;

use raftlog_client::record;
use raftlog_client::ClientOptions;

use crate::kit::TestCluster;
use crate::kit::REQUEST_TIMEOUT_MS;

const TOPIC: &str = "durable";
const PARTITIONS: u32 = 3;
const RECORDS: usize = 10_000;
const BATCH: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_leader_kills_and_replicas_converge() {
    let mut cluster = crate::kit::start(3).await;
    let client = crate::kit::client(&cluster).await;
    client
        .create_topic(TOPIC, PARTITIONS, 3)
        .await
        .expect("create topic");
    cluster.wait_for_leaders(TOPIC).await;
    tracing_phase("producing 10,000 records while killing each partition's leader in turn");

    // (partition, offset) → value of every acknowledged record.
    let mut acknowledged: BTreeMap<(u32, u64), Vec<u8>> = BTreeMap::new();
    let mut failed_batches = 0;
    let batches = RECORDS / BATCH;
    let kill_at: Vec<usize> = (1..=PARTITIONS as usize)
        .map(|k| k * batches / (PARTITIONS as usize + 1))
        .collect();
    let mut killed: Option<u64> = None;
    for batch in 0..batches {
        if let Some(victim_partition) = kill_at.iter().position(|at| *at == batch) {
            if let Some(id) = killed.take() {
                cluster.restart(id).expect("restart node");
            }
            let description = cluster.wait_for_leaders(TOPIC).await;
            let leader = description.partitions[victim_partition]
                .leader_id
                .expect("leader");
            eprintln!("killing node {leader}, leader of partition {victim_partition}");
            cluster.kill(leader);
            killed = Some(leader);
        }
        let partition = (batch % PARTITIONS as usize) as u32;
        let values: Vec<Vec<u8>> = (0..BATCH)
            .map(|i| format!("v-{batch}-{i}").into_bytes())
            .collect();
        let records = values.iter().map(|v| record(None, v.clone())).collect();
        match client.produce(TOPIC, partition, records).await {
            Ok(ack) => {
                assert_eq!(ack.record_count as usize, BATCH);
                let receipt = ack.receipt.expect("receipt");
                assert_eq!(
                    receipt.durability,
                    raftlog_client::v1::Durability::MajorityFsynced as i32
                );
                for (i, value) in values.into_iter().enumerate() {
                    let previous =
                        acknowledged.insert((partition, ack.base_offset + i as u64), value);
                    assert!(
                        previous.is_none(),
                        "offset {} of partition {partition} acknowledged twice",
                        ack.base_offset + i as u64
                    );
                }
            }
            // An unknown outcome (the leader died mid-request) is allowed; it is not acknowledged.
            Err(error) => {
                eprintln!("batch {batch} not acknowledged: {error}");
                failed_batches += 1;
            }
        }
    }
    assert!(
        acknowledged.len() >= RECORDS - 10 * BATCH,
        "only {} of {RECORDS} records acknowledged ({failed_batches} batches failed)",
        acknowledged.len()
    );

    tracing_phase("restarting the last killed node; every replica must catch up and agree");
    if let Some(id) = killed.take() {
        cluster.restart(id).expect("restart node");
    }
    let description = cluster.wait_for_leaders(TOPIC).await;
    for partition in &description.partitions {
        let expected_end = partition.high_watermark;
        let mut replicas = Vec::new();
        for id in 1..=3u64 {
            let deadline = Instant::now() + Duration::from_secs(30);
            let records = loop {
                let records =
                    crate::kit::read_all_from(&cluster, &client, id, TOPIC, partition.partition)
                        .await;
                if records.len() as u64 >= expected_end || Instant::now() > deadline {
                    break records;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            assert!(
                records.len() as u64 >= expected_end,
                "node {id} did not catch up on partition {}",
                partition.partition
            );
            replicas.push(records);
        }
        // Same record at every offset on every replica (compare the common, committed prefix).
        let common = replicas.iter().map(Vec::len).min().unwrap_or(0);
        for (id, records) in replicas.iter().enumerate().skip(1) {
            assert_eq!(
                records[..common],
                replicas[0][..common],
                "node {} diverges from node 1 on partition {}",
                id + 1,
                partition.partition
            );
        }
        for ((p, offset), value) in
            acknowledged.range((partition.partition, 0)..=(partition.partition, u64::MAX))
        {
            for (id, records) in replicas.iter().enumerate() {
                let stored = records.get(*offset as usize).map(|(_, v)| v);
                assert_eq!(
                    stored,
                    Some(value),
                    "acknowledged record at {p}/{offset} is missing or different on node {}",
                    id + 1
                );
            }
        }
    }
    eprintln!("{} records acknowledged, {failed_batches} batches with unknown outcome, all present on all 3 replicas", acknowledged.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_down_keeps_serving_and_majority_down_fails_fast_without_partial_writes() {
    let mut cluster = crate::kit::start(3).await;
    let client = crate::kit::client(&cluster).await;
    let leader =
        crate::kit::create_one_partition_topic(&cluster, &client, "avail", 3, b"before").await;
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();

    tracing_phase("one of three nodes down: produce and fetch keep working");
    cluster.kill(followers[0]);
    let ack = client
        .produce("avail", 0, vec![record(None, b"minority-down".to_vec())])
        .await
        .expect("produce with one node down");
    assert_eq!(ack.base_offset, 1);
    for id in [leader, followers[1]] {
        let values = wait_for_values(&cluster, &client, id, "avail", 2).await;
        assert_eq!(
            values,
            vec![b"before".to_vec(), b"minority-down".to_vec()],
            "fetch from node {id} with one node down"
        );
    }

    tracing_phase("two of three nodes down: produce fails fast with a retryable UNAVAILABLE");
    cluster.kill(followers[1]);
    // Longer than the quorum lease (the election timeout), so the leader knows it is alone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let impatient = crate::kit::client_with(
        &cluster,
        ClientOptions {
            request_timeout: Duration::from_secs(10),
            retry_deadline: Duration::from_millis(1),
        },
    )
    .await;
    for attempt in 0..3 {
        let started = Instant::now();
        let error = impatient
            .produce(
                "avail",
                0,
                vec![record(
                    None,
                    format!("must-not-appear-{attempt}").into_bytes(),
                )],
            )
            .await
            .expect_err("produce succeeded without a majority");
        let elapsed = started.elapsed();
        assert_eq!(error.code(), Some(tonic::Code::Unavailable), "{error}");
        assert!(error.is_retryable(), "{error}");
        assert!(
            elapsed < Duration::from_millis(REQUEST_TIMEOUT_MS + 1000),
            "took {elapsed:?}"
        );
        eprintln!(
            "attempt {attempt}: failed in {elapsed:?} with {}",
            error.reason_name().unwrap_or("?")
        );
    }

    tracing_phase("after recovery the refused records never appear");
    cluster.restart(followers[0]).expect("restart node");
    cluster.restart(followers[1]).expect("restart node");
    cluster.wait_for_leaders("avail").await;
    client
        .produce("avail", 0, vec![record(None, b"after".to_vec())])
        .await
        .expect("produce after recovery");
    for id in 1..=3 {
        let values = wait_for_values(&cluster, &client, id, "avail", 3).await;
        assert_eq!(
            values,
            vec![
                b"before".to_vec(),
                b"minority-down".to_vec(),
                b"after".to_vec()
            ],
            "node {id}"
        );
    }
}

/// The values of partition 0 as node `id` serves them, once it has at least `count` (or 20 s).
async fn wait_for_values(
    cluster: &TestCluster,
    client: &raftlog_client::Client,
    id: u64,
    topic: &str,
    count: usize,
) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let values: Vec<Vec<u8>> = crate::kit::read_all_from(cluster, client, id, topic, 0)
            .await
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        if values.len() >= count || Instant::now() > deadline {
            return values;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_with_a_wiped_disk_is_refused() {
    let mut cluster = crate::kit::start(3).await;
    let client = crate::kit::client(&cluster).await;
    client
        .create_topic("wiped", 1, 3)
        .await
        .expect("create topic");
    cluster.wait_for_leaders("wiped").await;
    client
        .produce("wiped", 0, vec![record(None, b"kept".to_vec())])
        .await
        .expect("produce");
    cluster.kill(3);
    std::fs::remove_dir_all(cluster.data_dir(3)).expect("wipe node 3");
    let status = cluster
        .start_expecting_exit(3, Duration::from_secs(30))
        .expect("node with a wiped disk kept running");
    assert!(!status.success());
    let log = std::fs::read_to_string(cluster.log_path(3)).expect("log");
    assert!(log.contains("rejoining with an empty disk"), "{log}");
}

fn tracing_phase(phase: &str) {
    eprintln!("--- {phase}");
}
