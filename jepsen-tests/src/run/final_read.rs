//! Final reads: once every fault is healed, each partition is read from each of its replicas to
//! that replica's end, so that the checker compares whole logs. A replica that does not get
//! there in time is recorded with how far it got and why (the verdict is then INCOMPLETE):
//! a final read never gives up silently.

use std::time::Duration;
use std::time::Instant;

use raftlog_client::v1;
use raftlog_client::Client;
use raftlog_client::ErrorReason;

use super::Recorder;
use crate::cluster::ProcessCluster;
use crate::history::Action;
use crate::history::Kind;

/// How long a replica's read may go on. Healing restarts every node; a restarted replica
/// catches up through Raft from the leader, which a healthy cluster does well within these.
#[derive(Clone, Copy, Debug)]
struct ReadLimits {
    /// No progress (no new record, no growth of the replica's end) for this long ends it.
    stall_max: Duration,
    /// Progress or not, it ends after this long.
    read_max: Duration,
}

/// The limits of a run's final reads.
const READ_LIMITS: ReadLimits = ReadLimits {
    stall_max: Duration::from_secs(30),
    read_max: Duration::from_secs(180),
};
/// How long to wait for every partition to have a leader before reading.
const LEADERS_WAIT_MAX: Duration = Duration::from_secs(30);
/// Record bytes per fetch.
const FETCH_BYTES_MAX: u32 = 1024 * 1024;

/// Reads every partition of `topic` from each of its replicas and records each read.
pub(super) async fn read_all(
    client: &Client,
    cluster: &mut ProcessCluster,
    recorder: &Recorder,
    topic: &str,
) -> anyhow::Result<()> {
    let description = describe_with_leaders(client, topic).await?;
    for partition in &description.partitions {
        // Every replica of the partition; with more nodes than replicas the others hold none.
        // The leader first: the description's high watermark is the answering node's view,
        // which a replica that was cut off and is still catching up gives too low, and a read
        // of that replica would end there, short of what was acknowledged. Each later read
        // must reach at least where the reads before it ended.
        let mut replicas: Vec<(u64, String)> = cluster
            .nodes()
            .iter()
            .filter(|n| partition.replicas.contains(&n.id))
            .map(|n| (n.id, n.client_addr.clone()))
            .collect();
        replicas.sort_by_key(|(node, _)| Some(*node) != partition.leader_id);
        let mut partition = partition.clone();
        for (node, address) in replicas {
            let mut read = read_replica(client, &address, topic, &partition, READ_LIMITS).await;
            if read.error.is_none() && !read.out_of_service {
                partition.high_watermark = partition.high_watermark.max(read.reached);
            }
            if let Some(error) = &mut read.error {
                if let Some(exit) = cluster.unexpected_exit(node) {
                    error.push_str(&format!("; the node exited: {exit}"));
                }
            }
            recorder.record(
                0,
                Kind::Ok,
                Action::FinalRead {
                    node,
                    partition: partition.partition,
                    records: read.records,
                    target: read.target,
                    reached: read.reached,
                    error: read.error,
                    out_of_service: read.out_of_service,
                    log_start: read.log_start,
                },
            );
        }
    }
    Ok(())
}

/// The topic once every partition has a leader (or as it is after the wait: each replica's
/// own end still bounds its read).
async fn describe_with_leaders(
    client: &Client,
    topic: &str,
) -> anyhow::Result<v1::TopicDescription> {
    let ready_by = Instant::now() + LEADERS_WAIT_MAX;
    loop {
        match client.describe_topic(topic).await {
            Ok(description)
                if description.partitions.iter().all(|p| p.leader_id.is_some())
                    || Instant::now() > ready_by =>
            {
                return Ok(description);
            }
            Err(error) if Instant::now() > ready_by => return Err(error.into()),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// What one replica's read got.
struct ReplicaRead {
    records: Vec<(u64, u64)>,
    target: u64,
    reached: u64,
    error: Option<String>,
    out_of_service: bool,
    /// Where the replica's log started (records below were deleted by retention).
    log_start: u64,
}

/// Reads one replica from offset 0 until it reaches both the partition's committed end (as
/// described after healing) and the replica's own end (its high watermark, as it answers).
async fn read_replica(
    client: &Client,
    address: &str,
    topic: &str,
    partition: &v1::PartitionDescription,
    limits: ReadLimits,
) -> ReplicaRead {
    let mut read = ReplicaRead {
        records: Vec::new(),
        target: partition.high_watermark,
        reached: 0,
        error: None,
        out_of_service: false,
        log_start: 0,
    };
    let started = Instant::now();
    let mut progressed = Instant::now();
    let mut answered = false;
    let mut last_error: Option<String> = None;
    while !(answered && read.reached >= read.target) {
        if progressed.elapsed() > limits.stall_max || started.elapsed() > limits.read_max {
            read.error = Some(format!(
                "no progress for {} s (read for {} s); last error: {}",
                progressed.elapsed().as_secs(),
                started.elapsed().as_secs(),
                last_error.as_deref().unwrap_or("none")
            ));
            break;
        }
        let fetched = client
            .fetch_from(
                address,
                topic,
                partition.partition,
                read.reached,
                FETCH_BYTES_MAX,
                0,
            )
            .await;
        match fetched {
            Ok(response) => {
                answered = true;
                if response.high_watermark > read.target {
                    read.target = response.high_watermark;
                    progressed = Instant::now();
                }
                if response.records.is_empty() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                for record in &response.records {
                    if let Some(value) = std::str::from_utf8(&record.value)
                        .ok()
                        .and_then(|v| v.parse().ok())
                    {
                        read.records.push((record.offset, value));
                    }
                    read.reached = record.offset + 1;
                    progressed = Instant::now();
                }
            }
            Err(error)
                if error.reason() == Some(ErrorReason::NotAReplica)
                    && error.metadata("out_of_service") == Some("true") =>
            {
                read.out_of_service = true;
                read.error = Some(error.to_string());
                break;
            }
            Err(error) if crate::run::below_log_start(&error, read.reached).is_some() => {
                // Retention deleted the start of the log: the read begins where it starts.
                if let Some(log_start) = crate::run::below_log_start(&error, read.reached) {
                    read.log_start = log_start;
                    read.reached = log_start;
                    progressed = Instant::now();
                }
            }
            Err(error) => {
                // A replica behind the committed end answers OFFSET_NOT_AVAILABLE until it
                // catches up; anything else (a node still starting...) is retried the same way,
                // and the last error is kept for the record if the read ends short.
                last_error = Some(error.to_string());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    read
}

#[cfg(test)]
mod tests {
    use raftlog_client::record;
    use raftlog_testkit::in_process::InProcessCluster;

    use super::*;

    const LIMITS: ReadLimits = ReadLimits {
        stall_max: Duration::from_millis(500),
        read_max: Duration::from_secs(5),
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_read_short_of_its_target_says_how_far_it_got_and_why() {
        let cluster = InProcessCluster::start_nodes(1).await;
        let client = Client::connect(&cluster.addrs()).await.expect("connect");
        client.create_topic("t", 1, 1).await.expect("create");
        cluster.wait_for_leaders("t").await;
        let records = (1..=3u64)
            .map(|v| record(None, v.to_string().into_bytes()))
            .collect();
        client.produce("t", 0, records).await.expect("produce");
        let description = client.describe_topic("t").await.expect("describe");
        let mut partition = description.partitions[0].clone();
        let address = cluster.addr(1);

        // Reaching the end: every record, no error.
        let read = read_replica(&client, &address, "t", &partition, LIMITS).await;
        assert_eq!(read.records, vec![(0, 1), (1, 2), (2, 3)]);
        assert_eq!((read.reached, read.target, read.error), (3, 3, None));

        // An end the replica never reaches: the read stops, with how far it got and why.
        partition.high_watermark = 10;
        let read = read_replica(&client, &address, "t", &partition, LIMITS).await;
        assert_eq!((read.reached, read.target), (3, 10));
        let error = read
            .error
            .expect("a read short of its target recorded no error");
        assert!(error.contains("no progress"), "{error}");
    }
}
