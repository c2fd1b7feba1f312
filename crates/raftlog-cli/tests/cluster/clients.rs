//! The clients: idempotent retries across a leader kill, consumer group failover with real
//! consumer processes, producer back pressure, a follower that stops promptly on SIGTERM, and a
//! client that moves past a node that does not answer.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::io::BufRead;
use std::process::Command;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use raftlog_client::record;
use raftlog_client::v1;
use raftlog_client::Client;
use raftlog_client::ClientError;
use raftlog_client::ClientOptions;
use raftlog_client::ErrorReason;
use raftlog_client::Producer;
use raftlog_client::ProducerConfig;

use crate::kit::produce_numbers;
use crate::kit::RAFTLOG;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_after_a_leader_kill_write_every_record_once() {
    let mut cluster = crate::kit::start(3).await;
    let client = Arc::new(crate::kit::client(&cluster).await);
    client
        .create_topic("idem", 1, 3)
        .await
        .expect("create topic");
    cluster.wait_for_leaders("idem").await;
    let producer_id = client.init_producer().await.expect("producer id");
    let mut expected: Vec<Vec<u8>> = Vec::new();
    let mut sequence = 0u64;
    let mut killed = None;
    for batch in 0..40u64 {
        let values: Vec<Vec<u8>> = (0..20)
            .map(|i| format!("b{batch}-{i}").into_bytes())
            .collect();
        let request = v1::ProduceRequest {
            topic: "idem".into(),
            partition: 0,
            records: values.iter().map(|v| record(None, v.clone())).collect(),
            acks: v1::Acks::All as i32,
            timeout_ms: 0,
            producer: Some(v1::ProducerSequence {
                producer_id,
                base_sequence: sequence,
            }),
        };
        if batch % 10 == 5 {
            // Kill the leader while the batch is in flight; whatever happened to it, send it again.
            let leader = cluster.wait_for_leaders("idem").await.partitions[0]
                .leader_id
                .expect("leader");
            let in_flight = {
                let client = Arc::clone(&client);
                let request = request.clone();
                tokio::spawn(async move { client.send_produce(request).await })
            };
            tokio::time::sleep(Duration::from_millis(batch % 4)).await;
            cluster.kill(leader);
            killed = Some(leader);
            let outcome = in_flight.await.expect("join");
            eprintln!(
                "batch {batch}: in-flight request when node {leader} was killed: {:?}",
                outcome.as_ref().map(|r| r.base_offset)
            );
        }
        let first = client
            .send_produce(request.clone())
            .await
            .expect("deliberate retry");
        let second = client
            .send_produce(request)
            .await
            .expect("second deliberate retry");
        assert!(
            second.duplicate,
            "an exact retry was written again (batch {batch})"
        );
        assert_eq!(
            second.base_offset, first.base_offset,
            "a retry got other offsets (batch {batch})"
        );
        sequence += 20;
        expected.extend(values);
        if let Some(id) = killed.take() {
            cluster.restart(id).expect("restart node");
        }
    }
    // A batch that skips ahead is refused, and nothing of it is written.
    let gap = v1::ProduceRequest {
        topic: "idem".into(),
        partition: 0,
        records: vec![record(None, b"gap".to_vec())],
        acks: v1::Acks::All as i32,
        timeout_ms: 0,
        producer: Some(v1::ProducerSequence {
            producer_id,
            base_sequence: sequence + 5,
        }),
    };
    let error = client
        .send_produce(gap)
        .await
        .expect_err("a sequence gap was accepted");
    assert_eq!(
        error.reason(),
        Some(ErrorReason::OutOfOrderSequence),
        "{error}"
    );

    let leader = cluster.wait_for_leaders("idem").await.partitions[0]
        .leader_id
        .expect("leader");
    let stored: Vec<Vec<u8>> = crate::kit::read_all_from(&cluster, &client, leader, "idem", 0)
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        stored.len(),
        expected.len(),
        "duplicates or losses: {} stored, {} expected",
        stored.len(),
        expected.len()
    );
    assert_eq!(stored, expected, "records out of order, duplicated or lost");
}

/// A `raftlog consume --group` process whose JSON output lines are collected.
struct ConsumerProcess {
    child: std::process::Child,
    values: Arc<Mutex<Vec<String>>>,
}

impl ConsumerProcess {
    fn start(bootstrap: &str, topic: &str, group: &str) -> ConsumerProcess {
        let mut child = Command::new(RAFTLOG)
            .args([
                "--bootstrap",
                bootstrap,
                "consume",
                topic,
                "--group",
                group,
                "--follow",
                "--format",
                "json",
            ])
            .args(["--session-timeout-ms", "3000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start consumer");
        let stdout = child.stdout.take().expect("stdout");
        let values = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&values);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) {
                    if let Some(value) = json["value"].as_str() {
                        sink.lock().expect("lock").push(value.to_owned());
                    }
                }
            }
        });
        ConsumerProcess { child, values }
    }
}

impl Drop for ConsumerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_for_members(
    client: &raftlog_client::Client,
    group: &str,
    members: usize,
) -> v1::DescribeGroupResponse {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(description) = client.describe_group(group).await {
            let assigned: usize = description.members.iter().map(|m| m.assignment.len()).sum();
            if description.members.len() == members
                && assigned == 6
                && description.members.iter().all(|m| !m.assignment.is_empty())
            {
                return description;
            }
        }
        assert!(
            Instant::now() < deadline,
            "group {group} never had {members} members sharing 6 partitions"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_group_member_s_partitions_move_and_nothing_is_lost() {
    let cluster = crate::kit::start(3).await;
    let client = Arc::new(crate::kit::client(&cluster).await);
    client
        .create_topic("work", 6, 3)
        .await
        .expect("create topic");
    cluster.wait_for_leaders("work").await;
    let bootstrap = cluster.running_addrs().join(",");
    let mut consumers: Vec<ConsumerProcess> = (0..3)
        .map(|_| ConsumerProcess::start(&bootstrap, "work", "workers"))
        .collect();
    let description = wait_for_members(&client, "workers", 3).await;
    for member in &description.members {
        assert_eq!(
            member.assignment.len(),
            2,
            "uneven assignment: {description:?}"
        );
    }

    let producer = Producer::new(Arc::clone(&client), ProducerConfig::default());
    let mut produced = BTreeSet::new();
    let produce = |from: usize, to: usize| {
        let producer = producer.clone();
        async move {
            let mut deliveries = Vec::new();
            for i in from..to {
                deliveries.push(
                    producer
                        .send("work", record(None, format!("job-{i}").into_bytes()))
                        .await
                        .expect("send"),
                );
            }
            for delivery in deliveries {
                delivery.await.expect("delivered");
            }
        }
    };
    produce(0, 3000).await;
    produced.extend((0..3000).map(|i| format!("job-{i}")));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let killed_at = Instant::now();
    let killed = consumers.remove(0);
    let killed_values = Arc::clone(&killed.values);
    drop(killed); // SIGKILL: no LeaveGroup, no last commit.
    wait_for_members(&client, "workers", 2).await;
    let moved_after = killed_at.elapsed();
    eprintln!("partitions of the killed member moved after {moved_after:?} (session timeout 3 s)");
    assert!(
        moved_after < Duration::from_secs(8),
        "reassignment took {moved_after:?}"
    );

    produce(3000, 6000).await;
    produced.extend((3000..6000).map(|i| format!("job-{i}")));

    // At-least-once: every record reaches some member, the killed one included; records it
    // read but had not committed are read again by its successor.
    let consumed = |consumers: &[ConsumerProcess]| -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for values in consumers.iter().map(|c| &c.values).chain([&killed_values]) {
            for value in values.lock().expect("lock").iter() {
                *counts.entry(value.clone()).or_insert(0usize) += 1;
            }
        }
        counts
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let counts = loop {
        let counts = consumed(&consumers);
        if produced.iter().all(|v| counts.contains_key(v)) {
            break counts;
        }
        if Instant::now() > deadline {
            let missing: Vec<_> = produced
                .iter()
                .filter(|v| !counts.contains_key(*v))
                .take(5)
                .collect();
            panic!(
                "{} produced records were never consumed, e.g. {missing:?}",
                produced.iter().filter(|v| !counts.contains_key(*v)).count()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let unexpected: Vec<_> = counts
        .keys()
        .filter(|v| !produced.contains(*v))
        .take(5)
        .collect();
    assert!(
        unexpected.is_empty(),
        "consumed records that were never produced: {unexpected:?}"
    );
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    eprintln!("all {} records consumed; {duplicates} delivered more than once (redelivery after the kill)", produced.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_faster_than_the_cluster_stays_within_its_buffer() {
    let cluster = crate::kit::start(1).await;
    let client = Arc::new(crate::kit::client(&cluster).await);
    client
        .create_topic("flood", 1, 1)
        .await
        .expect("create topic");
    cluster.wait_for_leaders("flood").await;
    const BUFFER: usize = 256 * 1024;
    let producer = Producer::new(
        Arc::clone(&client),
        ProducerConfig {
            buffer_bytes_max: BUFFER,
            ..ProducerConfig::default()
        },
    );

    // try_send refuses once the buffer is full instead of growing it.
    let mut deliveries = Vec::new();
    let full = loop {
        match producer
            .try_send("flood", record(None, vec![7u8; 4096]))
            .await
        {
            Ok(delivery) => deliveries.push(delivery),
            Err(error) => break error,
        }
        assert!(
            deliveries.len() < 10_000,
            "try_send never reported a full buffer"
        );
    };
    assert!(matches!(full, ClientError::BufferFull { .. }), "{full}");
    assert!(producer.buffered_bytes() <= BUFFER);

    // send waits instead: 8 MiB through a 256 KiB buffer, never more than 256 KiB held.
    let sampler = {
        let producer = producer.clone();
        tokio::spawn(async move {
            let mut most = 0usize;
            for _ in 0..5000 {
                most = most.max(producer.buffered_bytes());
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            most
        })
    };
    for _ in 0..2048 {
        deliveries.push(
            producer
                .send("flood", record(None, vec![7u8; 4096]))
                .await
                .expect("send"),
        );
    }
    let total = deliveries.len();
    for delivery in deliveries {
        delivery.await.expect("delivered");
    }
    let most = sampler.await.expect("sampler");
    eprintln!("{total} records of 4 KiB sent; at most {most} bytes buffered (bound {BUFFER})");
    assert!(
        most <= BUFFER,
        "buffered {most} bytes, over the {BUFFER} bound"
    );
    assert!(
        most > BUFFER / 2,
        "the buffer never filled ({most} bytes): the test did not push hard enough"
    );
    let fetched = client.fetch("flood", 0, 0, 1, 0).await.expect("fetch");
    assert_eq!(fetched.high_watermark as usize, total);
}

/// A node stops promptly on SIGTERM while a leader replicates to it. Its peer server's graceful
/// shutdown waits for every open HTTP/2 stream, and the leader keeps a replication stream open
/// to it for as long as it runs, so the node has to end those streams itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_stops_promptly_on_sigterm_while_its_leader_replicates() {
    let mut cluster = crate::kit::start(3).await;
    let client = crate::kit::client(&cluster).await;
    let leader =
        crate::kit::create_one_partition_topic(&cluster, &client, "stopping", 3, b"0").await;
    produce_numbers(&client, "stopping", 1..20).await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let exit = cluster
        .terminate(follower, Duration::from_secs(5))
        .expect("the follower still ran 5 s after SIGTERM");
    assert!(exit.success(), "the follower exited with {exit}");
    // The other two carry on.
    produce_numbers(&client, "stopping", 20..25).await;
}

/// A node that hangs (here: stopped) leaves its calls to time out. A client whose first
/// bootstrap address is that node, and that node the controller's leader, still connects, reads
/// metadata from the others and gets a producer id from the controller the others elect, as a
/// Kafka client moves on to its next bootstrap server and coordinator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_moves_past_a_node_that_does_not_answer() {
    let cluster = crate::kit::start(3).await;
    let client = crate::kit::client(&cluster).await;
    client
        .create_topic("past-a-hung-node", 1, 3)
        .await
        .expect("create topic");
    cluster.wait_for_leaders("past-a-hung-node").await;
    let controller = client
        .describe_cluster()
        .await
        .expect("describe cluster")
        .controller_leader_id
        .expect("a controller leader");

    cluster.pause(controller);
    let mut bootstrap = vec![cluster.addr(controller)];
    bootstrap.extend(
        (1..=3)
            .filter(|id| *id != controller)
            .map(|id| cluster.addr(id)),
    );
    let options = ClientOptions {
        request_timeout: Duration::from_secs(1),
        retry_deadline: Duration::from_secs(20),
    };
    let hung_first = Client::connect_with(&bootstrap, options)
        .await
        .expect("connect with the first bootstrap node stopped");
    let description = hung_first
        .describe_topic("past-a-hung-node")
        .await
        .expect("describe a topic with a node stopped");
    assert_eq!(description.partitions.len(), 1, "{description:?}");
    let topics = hung_first
        .list_topics()
        .await
        .expect("list topics with a node stopped");
    assert!(
        topics.iter().any(|topic| topic.name == "past-a-hung-node"),
        "{topics:?}"
    );
    hung_first
        .init_producer()
        .await
        .expect("a producer id from the controller the other nodes elect");
    cluster.resume(controller);
}
