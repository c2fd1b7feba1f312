//! Routing: a client whose cached leader has become a follower is answered NOT_LEADER with the
//! leader's address and sends the request there, without the caller noticing.

use std::time::Duration;

use raftlog_client::record;
use raftlog_testkit::InProcessCluster;

use crate::client;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_produce_to_a_deposed_leader_is_routed_to_the_new_one() {
    let mut cluster = InProcessCluster::start_nodes(3).await;
    let client = client(&cluster).await;
    client.create_topic("routed", 1, 3).await.expect("create");
    let old = cluster.wait_for_settled_leaders("routed").await.partitions[0]
        .leader_id
        .expect("leader");
    // The client learns the leader and caches it.
    let ack = client
        .produce("routed", 0, vec![record(None, b"a".to_vec())])
        .await
        .expect("produce");
    assert_eq!(ack.receipt.expect("receipt").leader_id, old);

    // Leadership moves while the client is not looking; the old leader comes back a follower.
    cluster.stop(old).await;
    let new = cluster.wait_for_leaders("routed").await.partitions[0]
        .leader_id
        .expect("leader");
    assert_ne!(new, old);
    cluster.start(old);
    cluster.wait_for_controller().await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let ack = client
        .produce("routed", 0, vec![record(None, b"b".to_vec())])
        .await
        .expect("produce after the move");
    let receipt = ack.receipt.expect("receipt");
    assert_eq!(
        receipt.leader_id, new,
        "written by another node than the leader"
    );
    assert_eq!(ack.base_offset, 1);
}
