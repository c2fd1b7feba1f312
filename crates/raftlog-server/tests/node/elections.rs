//! Leaders that cannot lead stop, and nodes that cannot win do not raise the term: CheckQuorum
//! and PreVote (raftlog-raft's `watchdog.rs` and `pre_vote.rs`). Each node is asked about
//! itself over its peer port (`GroupStatus`), since a node's own view is what is tested.

use std::time::Duration;
use std::time::Instant;

use raftlog_proto::internal::raft_transport_client::RaftTransportClient;
use raftlog_proto::internal::GroupStatus;
use raftlog_proto::internal::GroupStatusRequest;
use raftlog_testkit::InProcessCluster;

use crate::common::create_topic;
use crate::common::produce_request;
use crate::common::produce_to_leader;

/// Group `group` as node `id` sees it, if it runs there.
async fn status_on(cluster: &InProcessCluster, id: u64, group: u64) -> Option<GroupStatus> {
    let address = &cluster.nodes()[(id - 1) as usize].peer_addr;
    let mut client = RaftTransportClient::new(raftlog_testkit::wait::channel(
        address,
        Duration::from_secs(2),
    ));
    let request = GroupStatusRequest {
        group_ids: vec![group],
    };
    let response = client.group_status(request).await.ok()?;
    response.into_inner().groups.into_iter().next()
}

/// A partition leader whose two followers stop steps down within CheckQuorum's window (the
/// shortest election timeout) plus a few watchdog rounds, and does not then raise its term
/// over several election timeouts, because no pre-vote wins. Without CheckQuorum it led on
/// alone; without PreVote it stood again at every timeout, each time in a higher term, and
/// would have deposed the group's leader on return. When the followers return, the partition
/// elects a leader and takes writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_without_a_quorum_steps_down_and_does_not_raise_its_term() {
    let mut cluster = InProcessCluster::start_nodes(3).await;
    let topic = create_topic(&cluster, "alone", 1, 3).await;
    let partition = &topic.partitions[0];
    let (group, leader) = (partition.group_id, partition.leader_id.expect("a leader"));
    let raft = cluster.config().raft;
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    for id in &followers {
        cluster.stop(*id).await;
    }
    let stopped_at = Instant::now();

    let step_down_within = Duration::from_millis(raft.election_timeout_min_ms + 500);
    let term = loop {
        let status = status_on(&cluster, leader, group)
            .await
            .expect("the group runs");
        if status.leader_id != Some(leader) {
            break status.term;
        }
        assert!(
            stopped_at.elapsed() < step_down_within,
            "node {leader} still leads group {group} {:?} after its followers stopped",
            stopped_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    tokio::time::sleep(Duration::from_millis(4 * raft.election_timeout_max_ms)).await;
    let status = status_on(&cluster, leader, group)
        .await
        .expect("the group runs");
    assert_eq!(
        status.term, term,
        "node {leader} raised group {group}'s term alone (no majority could have voted)"
    );
    assert_ne!(status.leader_id, Some(leader));

    for id in &followers {
        cluster.start(*id);
    }
    let response = produce_to_leader(
        &cluster,
        produce_request("alone", 0, &[b"after"]),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(response.base_offset, 0);
}
