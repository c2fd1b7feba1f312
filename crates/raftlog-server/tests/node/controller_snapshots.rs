//! The controller group snapshots its state (metadata and committed offsets) every
//! `raft.controller_snapshot_entries` entries and purges its log below: a replica that was
//! down while the log it lacked was purged catches up by installing the snapshot, and every
//! node restarted from its snapshot and the log after it has the same metadata and offsets.

use std::time::Duration;
use std::time::Instant;

use raftlog_proto::internal::raft_transport_client::RaftTransportClient;
use raftlog_proto::internal::GroupStatus;
use raftlog_proto::internal::GroupStatusRequest;
use raftlog_proto::v1;
use raftlog_testkit::ClusterSpec;
use raftlog_testkit::InProcessCluster;

use crate::common::clients;
use crate::common::create_topic;
use crate::common::produce_request;
use crate::common::produce_to_leader;

/// Entries between two controller snapshots; a tenth of it stays behind each one.
const SNAPSHOT_ENTRIES: u64 = 32;
/// Consumer groups committing, and commits (one controller entry each).
const GROUPS: u64 = 20;
const COMMITS: u64 = 240;
/// The node that is down while the others commit.
const LAGGING: u64 = 3;

/// Node `id`'s view of the controller group (group 0), once it answers (a node just started
/// may not listen yet).
async fn controller_status(cluster: &InProcessCluster, id: u64) -> GroupStatus {
    let address = &cluster.nodes()[(id - 1) as usize].peer_addr;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut client = RaftTransportClient::new(raftlog_testkit::wait::channel(
            address,
            Duration::from_secs(2),
        ));
        let answered = client
            .group_status(GroupStatusRequest { group_ids: vec![0] })
            .await
            .map(|response| response.into_inner().groups.pop());
        match answered {
            Ok(Some(status)) => return status,
            other => assert!(
                Instant::now() < deadline,
                "node {id} does not report its controller group: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The controller leader once it answers consumer-group requests.
async fn coordinator(cluster: &InProcessCluster) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(id) = raftlog_testkit::wait::describe_cluster(&cluster.running_addrs())
            .await
            .and_then(|c| c.controller_leader_id)
        {
            let probe = clients(cluster, id)
                .groups
                .list_groups(v1::ListGroupsRequest {})
                .await;
            if probe.is_ok() {
                return id;
            }
        }
        assert!(Instant::now() < deadline, "no coordinator");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn group(i: u64) -> String {
    format!("g{}", i % GROUPS)
}

/// Commits of standalone consumers (no members): commit `i` is offset `i` of group `i % GROUPS`,
/// so each group's last commit is its highest offset.
async fn commit_all(cluster: &InProcessCluster) {
    for i in 0..COMMITS {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let id = coordinator(cluster).await;
            let committed = clients(cluster, id)
                .groups
                .commit_offsets(v1::CommitOffsetsRequest {
                    group: group(i),
                    member_id: String::new(),
                    generation: 0,
                    offsets: vec![v1::PartitionOffset {
                        topic: "orders".into(),
                        partition: 0,
                        offset: i,
                    }],
                })
                .await;
            match committed {
                Ok(_) => break,
                Err(status) if Instant::now() < deadline => {
                    eprintln!("commit {i}: {status:?}; again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(status) => panic!("commit {i}: {status:?}"),
            }
        }
    }
}

/// Every group's committed offset, as the coordinator answers.
async fn assert_offsets(cluster: &InProcessCluster) {
    let id = coordinator(cluster).await;
    for g in 0..GROUPS {
        let fetched = clients(cluster, id)
            .groups
            .fetch_offsets(v1::FetchOffsetsRequest {
                group: group(g),
                partitions: Vec::new(),
            })
            .await
            .expect("fetch offsets")
            .into_inner();
        let offsets: Vec<u64> = fetched.offsets.iter().map(|o| o.offset).collect();
        let last = (0..COMMITS)
            .rev()
            .find(|i| i % GROUPS == g)
            .expect("a commit");
        assert_eq!(offsets, vec![last], "group {}", group(g));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_the_purged_controller_log_catches_up_by_snapshot_and_restarts_keep_state()
{
    let mut cluster = InProcessCluster::start_spec(
        ClusterSpec::new(3).controller_snapshot_entries(SNAPSHOT_ENTRIES),
    )
    .await;
    create_topic(&cluster, "orders", 1, 3).await;
    cluster.wait_for_leaders("orders").await;
    let lagging_last = controller_status(&cluster, LAGGING)
        .await
        .last_log_index
        .expect("a controller log");
    cluster.stop(LAGGING).await;

    commit_all(&cluster).await;
    // A topic the lagging node learns of only from the snapshot.
    create_topic(&cluster, "later", 1, 3).await;
    let leader = coordinator(&cluster).await;
    let status = controller_status(&cluster, leader).await;
    let (snapshot, purged) = (
        status.snapshot_index.expect("a controller snapshot"),
        status.purged_index.expect("a purged controller log"),
    );
    assert!(
        snapshot >= COMMITS - SNAPSHOT_ENTRIES && purged > lagging_last,
        "leader's controller log: snapshot at {snapshot}, purged to {purged}; the lagging node \
         stopped at {lagging_last}"
    );
    assert!(
        status.last_log_index.expect("a log") - purged <= 2 * SNAPSHOT_ENTRIES,
        "the controller log keeps {} entries past its purge point: {status:?}",
        status.last_log_index.unwrap_or(0) - purged
    );

    cluster.start(LAGGING);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let caught_up = controller_status(&cluster, LAGGING).await;
        if caught_up
            .snapshot_index
            .is_some_and(|index| index >= purged)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {LAGGING} installed no snapshot: {caught_up:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // It runs the replica of the topic created while it was down.
    let written = produce_to_leader(
        &cluster,
        produce_request("later", 0, &[b"after"]),
        Duration::from_secs(20),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let fetched = clients(&cluster, LAGGING)
            .fetch
            .fetch(v1::FetchRequest {
                topic: "later".into(),
                partition: 0,
                offset: written.base_offset,
                max_bytes: 0,
                max_wait_ms: 0,
            })
            .await;
        if fetched.is_ok_and(|f| !f.into_inner().records.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {LAGGING} does not serve `later`"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_offsets(&cluster).await;

    // Every node restarts from its snapshot and the log after it.
    for id in 1..=3 {
        cluster.stop(id).await;
    }
    for id in 1..=3 {
        cluster.start(id);
    }
    assert_offsets(&cluster).await;
}
