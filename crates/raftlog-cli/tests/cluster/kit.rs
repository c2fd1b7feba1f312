//! What these tests add to the shared test kit (`raftlog-testkit`, whose `ProcessCluster`
//! starts, kills, pauses and restarts the `raftlog node` processes): the binary built for
//! these tests, clients of raftlog-client for a cluster, and the reads and writes the tests
//! repeat.

use std::time::Duration;
use std::time::Instant;

use raftlog_client::Client;
use raftlog_client::ClientOptions;
use raftlog_client::ErrorReason;
pub use raftlog_testkit::config::REQUEST_TIMEOUT_MS;
use raftlog_testkit::ClusterSpec;
pub use raftlog_testkit::ProcessCluster as TestCluster;
use raftlog_testkit::ProcessOptions;
pub use raftlog_testkit::RaftTimers;

/// Path of the `raftlog` binary built for these tests.
pub const RAFTLOG: &str = env!("CARGO_BIN_EXE_raftlog");

/// Starts `count` node processes with short timers and waits until the controller has a leader.
pub async fn start(count: u64) -> TestCluster {
    start_with(count, RaftTimers::SHORT).await
}

/// Starts `count` node processes with `timers`.
pub async fn start_with(count: u64, timers: RaftTimers) -> TestCluster {
    TestCluster::start(
        ClusterSpec::new(count).timers(timers),
        ProcessOptions::new(RAFTLOG),
    )
    .await
}

/// Starts `count` nodes whose data is on the disk file system the tests are built on, not in
/// a `/tmp` that may be tmpfs (where file pages are memory): for tests of the page cache.
pub async fn start_on_disk(count: u64, timers: RaftTimers) -> TestCluster {
    let dir = tempfile::TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    TestCluster::start_in_temp(
        dir,
        ClusterSpec::new(count).timers(timers),
        ProcessOptions::new(RAFTLOG),
    )
    .await
}

/// A client bootstrapped from every running node of `cluster`.
pub async fn client(cluster: &TestCluster) -> Client {
    client_with(cluster, ClientOptions::default()).await
}

/// A client with options.
pub async fn client_with(cluster: &TestCluster, options: ClientOptions) -> Client {
    Client::connect_with(&cluster.running_addrs(), options)
        .await
        .expect("connect client")
}

/// Creates `topic` with one partition on `replicas` nodes, writes `first` to it and returns
/// the partition's leader once every replica serves that record and the leader settled (see
/// `wait_for_settled_leaders`).
pub async fn create_one_partition_topic(
    cluster: &TestCluster,
    client: &Client,
    topic: &str,
    replicas: u32,
    first: &[u8],
) -> u64 {
    client
        .create_topic(topic, 1, replicas)
        .await
        .expect("create topic");
    cluster.wait_for_leaders(topic).await;
    client
        .produce(topic, 0, vec![raftlog_client::record(None, first.to_vec())])
        .await
        .expect("first produce with all nodes up");
    let description = cluster.wait_for_leaders(topic).await;
    let replica_ids = description.partitions[0].replicas.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in &replica_ids {
        while !client
            .fetch_from(&cluster.addr(*id), topic, 0, 0, 0, 0)
            .await
            .is_ok_and(|response| !response.records.is_empty())
        {
            assert!(
                Instant::now() < deadline,
                "replica {id} of {topic} serves no first record within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The preferred replica has started and stood by now.
    let description = cluster.wait_for_settled_leaders(topic).await;
    description.partitions[0].leader_id.expect("leader")
}

/// Every committed record of a partition as node `id` serves it: (offset, value).
pub async fn read_all_from(
    cluster: &TestCluster,
    client: &Client,
    id: u64,
    topic: &str,
    partition: u32,
) -> Vec<(u64, Vec<u8>)> {
    let address = cluster.addr(id);
    let mut offset = 0;
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // A node that was just restarted may not listen yet, or not run the partition yet.
        let response = match client
            .fetch_from(&address, topic, partition, offset, 0, 0)
            .await
        {
            Ok(response) => response,
            Err(error)
                if Instant::now() < deadline
                    && (error.is_retryable()
                        || error.reason() == Some(ErrorReason::NotAReplica)) =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(error) => panic!("fetch from node {id}: {error}"),
        };
        for record in &response.records {
            assert_eq!(record.offset, offset, "node {id} skipped an offset");
            records.push((record.offset, record.value.to_vec()));
            offset += 1;
        }
        if offset >= response.high_watermark || response.records.is_empty() {
            return records;
        }
    }
}

/// Produces one record per value to partition 0 of `topic`, one request each, in order; the
/// value's decimal text is the record's value, so at offset n of a fresh partition is "n".
pub async fn produce_numbers(client: &Client, topic: &str, values: std::ops::Range<u64>) {
    for value in values {
        let produced = client
            .produce(
                topic,
                0,
                vec![raftlog_client::record(None, value.to_string().into_bytes())],
            )
            .await;
        if let Err(error) = produced {
            panic!("produce {value} to {topic}: {error}");
        }
    }
}

/// Asks `address` for `offset` of partition 0 of `topic` again and again for `period`: every
/// answer must be the retryable OFFSET_NOT_AVAILABLE of a replica that may be behind.
pub async fn assert_not_available_for(
    client: &Client,
    address: &str,
    topic: &str,
    offset: u64,
    period: Duration,
) {
    let until = Instant::now() + period;
    while Instant::now() < until {
        match client.fetch_from(address, topic, 0, offset, 0, 0).await {
            Err(error) if error.reason() == Some(ErrorReason::OffsetNotAvailable) => {}
            other => panic!("offset {offset} of {topic} from {address}: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
