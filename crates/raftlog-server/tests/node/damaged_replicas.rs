//! A node whose replica of a partition is corrupt or lost starts without it (never recreating it
//! empty, which would let it vote with an empty log), answers for it with the reason, and keeps
//! serving its other partitions; the other replicas keep serving the partition. A node whose
//! controller replica is lost cannot run without it, so it stops, naming it.

use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

use raftlog_proto::internal::raft_transport_client::RaftTransportClient;
use raftlog_proto::internal::GroupStatusRequest;
use raftlog_proto::v1;
use raftlog_proto::v1::ErrorReason;
use raftlog_testkit::InProcessCluster;

use crate::common::clients;
use crate::common::create_topic;
use crate::common::expect_status;
use crate::common::metadata;
use crate::common::produce_request;
use crate::common::produce_to_leader;
use crate::common::reason;

/// The node whose replicas are damaged.
const DAMAGED_NODE: u64 = 3;
/// Records produced (and acknowledged) before the damage, per topic.
const RECORDS_BEFORE: u32 = 20;

fn value(topic: &str, offset: u32) -> Vec<u8> {
    format!("{topic}-{offset}").into_bytes()
}

/// Produces `values` one request each; every one must be acknowledged.
async fn produce_acknowledged(
    cluster: &InProcessCluster,
    topic: &str,
    offsets: std::ops::Range<u32>,
) {
    for offset in offsets {
        let response = produce_to_leader(
            cluster,
            produce_request(topic, 0, &[&value(topic, offset)]),
            Duration::from_secs(20),
        )
        .await;
        assert_eq!(response.base_offset, u64::from(offset));
    }
}

fn fetch_request(topic: &str) -> v1::FetchRequest {
    v1::FetchRequest {
        topic: topic.into(),
        partition: 0,
        offset: 0,
        max_bytes: 0,
        max_wait_ms: 0,
    }
}

/// Asserts node `id` returns exactly the records `0 .. count` of `topic`, retrying while it
/// catches up for at most `within`.
async fn assert_node_serves(
    cluster: &InProcessCluster,
    id: u64,
    topic: &str,
    count: u32,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        let fetched = clients(cluster, id).fetch.fetch(fetch_request(topic)).await;
        let records = match fetched {
            Ok(response) => response.into_inner().records,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(status) => panic!("node {id} does not serve {topic}: {status:?}"),
        };
        if records.len() < count as usize && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let values: Vec<Vec<u8>> = records.iter().map(|r| r.value.to_vec()).collect();
        let expected: Vec<Vec<u8>> = (0..count).map(|o| value(topic, o)).collect();
        assert_eq!(
            values, expected,
            "node {id} lost or changed records of {topic}"
        );
        return;
    }
}

/// Whether node `id` runs Raft group `group` (asked over its peer port).
async fn runs_group(cluster: &InProcessCluster, id: u64, group: u64) -> bool {
    let address = &cluster.nodes()[(id - 1) as usize].peer_addr;
    let mut client = RaftTransportClient::new(raftlog_testkit::wait::channel(
        address,
        Duration::from_secs(2),
    ));
    let response = client
        .group_status(GroupStatusRequest {
            group_ids: vec![group],
        })
        .await
        .expect("group status");
    !response.into_inner().groups.is_empty()
}

/// The last segment file of `group_dir`'s log.
fn last_segment(group_dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(group_dir.join("log"))
        .expect("the replica's log directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files.pop().expect("a segment")
}

/// Stops node 3, flips a byte in the first (committed) entry of its replica of `corrupt`,
/// deletes its replica directory of `lost`, and starts it again. Node 3 starts, serves
/// `healthy`, and for the other two answers with the file at fault and sends readers to a
/// replica that serves them; it runs neither group and recreates no directory. Every
/// acknowledged record stays readable and the two partitions keep taking writes through the
/// other two nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_or_lost_replica_is_kept_out_and_the_partition_served_by_the_others() {
    let mut cluster = InProcessCluster::start_nodes(3).await;
    let mut groups = Vec::new();
    for topic in ["corrupt", "lost", "healthy"] {
        let description = create_topic(&cluster, topic, 1, 3).await;
        groups.push(description.partitions[0].group_id);
        produce_acknowledged(&cluster, topic, 0..RECORDS_BEFORE).await;
    }
    let (corrupt_group, lost_group) = (groups[0], groups[1]);
    cluster.stop(DAMAGED_NODE).await;

    let groups_dir = cluster.data_dir(DAMAGED_NODE).join("groups");
    let segment = last_segment(&groups_dir.join(corrupt_group.to_string()));
    let mut bytes = std::fs::read(&segment).expect("read segment");
    // Inside the payload of the first frame (its header is 12 bytes): entry 0, committed.
    bytes[16] ^= 0x5a;
    std::fs::write(&segment, &bytes).expect("write segment");
    let lost_dir = groups_dir.join(lost_group.to_string());
    std::fs::remove_dir_all(&lost_dir).expect("delete the replica directory");

    cluster.start(DAMAGED_NODE);
    assert_node_serves(
        &cluster,
        DAMAGED_NODE,
        "healthy",
        RECORDS_BEFORE,
        Duration::from_secs(20),
    )
    .await;
    let other_addresses = [cluster.addr(1), cluster.addr(2)];
    for (topic, group, named) in [
        (
            "corrupt",
            corrupt_group,
            format!("{} at byte 0", segment.display()),
        ),
        ("lost", lost_group, lost_dir.display().to_string()),
    ] {
        let status = expect_status(
            clients(&cluster, DAMAGED_NODE)
                .fetch
                .fetch(fetch_request(topic))
                .await,
            tonic::Code::FailedPrecondition,
            ErrorReason::NotAReplica,
        );
        assert!(
            status.message().contains(&named),
            "the answer for {topic} does not name {named}: {status:?}"
        );
        let hint = metadata(&status, "replica_address").expect("a replica to read from");
        assert!(other_addresses.contains(&hint), "{topic}: sent to {hint}");
        let produced = clients(&cluster, DAMAGED_NODE)
            .produce
            .produce(produce_request(topic, 0, &[b"to node 3"]))
            .await
            .expect_err("node 3 took a write for a replica it does not run");
        assert!(
            reason(&produced).is_some_and(ErrorReason::is_retryable)
                && produced.message().contains("out of service"),
            "{topic}: {produced:?}"
        );
        assert!(
            !runs_group(&cluster, DAMAGED_NODE, group).await,
            "node 3 runs the group of {topic}"
        );

        produce_acknowledged(&cluster, topic, RECORDS_BEFORE..RECORDS_BEFORE + 5).await;
        let leader = cluster.wait_for_leaders(topic).await.partitions[0]
            .leader_id
            .expect("a leader");
        assert_ne!(leader, DAMAGED_NODE);
        for id in [1, 2] {
            assert_node_serves(
                &cluster,
                id,
                topic,
                RECORDS_BEFORE + 5,
                Duration::from_secs(10),
            )
            .await;
        }
    }
    assert!(!lost_dir.exists(), "the lost replica was recreated");
    assert_eq!(
        std::fs::read(&segment).expect("read segment"),
        bytes,
        "the corrupt segment was changed"
    );
}

/// A node whose controller replica directory is gone stops with an error naming it instead of
/// recreating it empty (it could vote with an empty log); the others keep the metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_controller_replica_stops_its_node_and_is_not_recreated() {
    let mut cluster = InProcessCluster::start_nodes(3).await;
    create_topic(&cluster, "before", 1, 3).await;
    cluster.stop(DAMAGED_NODE).await;
    let controller_dir = cluster.data_dir(DAMAGED_NODE).join("groups").join("0");
    std::fs::remove_dir_all(&controller_dir).expect("delete the controller replica");

    let run = raftlog_server::run(
        cluster.config().clone(),
        DAMAGED_NODE,
        std::future::pending(),
    );
    let error = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the node ran on with its controller replica recreated")
        .expect_err("the node started without its controller replica");
    let message = error.to_string();
    assert!(
        message.contains(&controller_dir.display().to_string()) && message.contains("lost"),
        "the error does not name the lost replica: {message}"
    );
    assert!(
        !controller_dir.exists(),
        "the controller replica was recreated"
    );
    // The other two voters still hold the metadata and take changes, once one of them leads.
    let deadline = Instant::now() + Duration::from_secs(20);
    'created: loop {
        for id in [1, 2] {
            let created = clients(&cluster, id)
                .admin
                .create_topic(v1::CreateTopicRequest {
                    name: "after".into(),
                    partitions: 1,
                    replicas: 3,
                    configs: Default::default(),
                })
                .await;
            match created {
                Ok(_) => break 'created,
                Err(_) if Instant::now() < deadline => {}
                Err(status) => panic!("the other voters took no metadata change: {status:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
