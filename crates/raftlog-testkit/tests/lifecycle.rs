//! The kit's own promises: an in-process node stops (its `run` returns) and starts again over
//! the same data dir; a node process is killed, paused and restarted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use raftlog_testkit::ClusterSpec;
use raftlog_testkit::InProcessCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_node_stops_and_starts_again_over_its_data_dir() {
    let mut cluster = InProcessCluster::start_nodes(1).await;
    let data_dir = cluster.data_dir(1);
    assert!(data_dir.is_dir(), "{}", data_dir.display());
    let took = cluster.stop(1).await;
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
    assert!(!cluster.is_running(1));
    assert!(cluster.running_addrs().is_empty());
    // A stopped node holds neither its ports nor its data dir's locks.
    cluster.start(1);
    cluster.wait_for_controller().await;
    assert!(
        cluster.exited(1).await.is_none(),
        "the restarted node exited"
    );
    cluster.stop(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_in_process_cluster_elects_a_controller_and_drops_cleanly() {
    let cluster = InProcessCluster::start_spec(ClusterSpec::new(3)).await;
    assert_eq!(cluster.running_ids(), vec![1, 2, 3]);
    let dir = cluster.dir().to_path_buf();
    drop(cluster);
    assert!(!dir.exists(), "the cluster's directory outlived it");
}
