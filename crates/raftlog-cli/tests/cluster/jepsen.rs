//! Short Jepsen-style runs per fault kind: real nodes, producers (plain and idempotent) and
//! consumers under the nemesis, final reads from every node, and the full anomaly checker.
//! Longer randomized runs: `raftlog-jepsen test --time-limit 300`.
//!
//! Partition runs need root and iptables, clock runs need libfaketime (`.ci/run` installs
//! both); without them these tests fail and say so rather than pass without testing.

use std::time::Duration;

use raftlog_jepsen::nemesis::PartitionShape;
use raftlog_jepsen::run::Fault;
use raftlog_jepsen::run::RunConfig;

use crate::kit::RAFTLOG;

async fn run_clean(faults: Vec<Fault>, seed: u64) {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let config = RunConfig {
        nodes: 3,
        time_limit: Duration::from_secs(8),
        faults,
        seed,
        partitions: 3,
        producers: 4,
        consumers: 2,
    };
    let history = raftlog_jepsen::run::run(&config, std::path::Path::new(RAFTLOG), dir.path())
        .await
        .expect("run");
    let report = raftlog_jepsen::check(&history);
    eprintln!("{}", report.table());
    assert!(
        report.stats.values_acknowledged > 100,
        "too little was acknowledged to mean anything:\n{}",
        report.table()
    );
    assert!(
        report.valid,
        "anomalies found (seed {seed}):\n{}",
        report.table()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_faults_no_anomalies() {
    run_clean(Vec::new(), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_nodes_no_anomalies() {
    run_clean(vec![Fault::Kill], 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_nodes_no_anomalies() {
    run_clean(vec![Fault::Pause], 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_node_no_anomalies() {
    run_clean(vec![Fault::Partition(PartitionShape::IsolateOne)], 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_no_anomalies() {
    run_clean(vec![Fault::Partition(PartitionShape::IsolateLeader)], 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_majority_split_no_anomalies() {
    run_clean(vec![Fault::Partition(PartitionShape::Halves)], 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn majorities_ring_no_anomalies() {
    run_clean(vec![Fault::Partition(PartitionShape::Ring)], 7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_skew_no_anomalies() {
    run_clean(vec![Fault::Clock], 8).await;
}
