//! Short Jepsen-style runs per fault kind: real nodes, producers (plain and idempotent) and
//! consumers under the nemesis, final reads from every node, and the full anomaly checker.
//! Longer randomized runs: `raftlog-jepsen test --time-limit 300`.
//!
//! Partition runs need root and iptables (module `needs_root`), clock runs need libfaketime
//! (`scripts/test.sh` installs both); without them these tests fail and say so rather than
//! pass without testing.

use std::time::Duration;

use std::time::Instant;

use raftlog_client::record;
use raftlog_client::Client;
use raftlog_client::ClientOptions;
use raftlog_client::ErrorReason;
use raftlog_jepsen::nemesis::PartitionShape;
use raftlog_jepsen::network::Network;
use raftlog_jepsen::run::Fault;
use raftlog_jepsen::run::RunConfig;

use crate::kit::assert_not_available_for;
use crate::kit::produce_numbers;
use crate::kit::RAFTLOG;

async fn run_clean(faults: Vec<Fault>) {
    run_clean_with(faults, None).await;
}

/// A short run; with `retention_bytes`, retention deletes records all along (64 KiB segments).
async fn run_clean_with(
    faults: Vec<Fault>,
    retention_bytes: Option<u64>,
) -> raftlog_jepsen::Report {
    let seed = raftlog_jepsen::run::test_seed();
    let dir = tempfile::TempDir::new().expect("temp dir");
    let config = RunConfig {
        nodes: 3,
        time_limit: Duration::from_secs(8),
        faults,
        seed,
        partitions: 3,
        producers: 4,
        consumers: 2,
        retention_bytes,
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
    if !report.valid {
        // The nodes' logs and data dirs are what explains a failure: keep them.
        let kept = dir.keep();
        panic!(
            "anomalies found (seed {seed}; nodes' logs and data kept in {}):\n{}",
            kept.display(),
            report.table()
        );
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_faults_no_anomalies() {
    run_clean(Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_nodes_no_anomalies() {
    run_clean(vec![Fault::Kill]).await;
}

/// Retention deletes records mid-run while nodes are killed: consumers move past what was
/// deleted, the checker excuses only values below each partition's final log start, and the
/// final reads of every replica still agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deleting_mid_run_under_kills_no_anomalies() {
    let report = run_clean_with(vec![Fault::Kill], Some(64 * 1024)).await;
    assert!(
        report.stats.values_deleted > 0,
        "retention deleted nothing:\n{}",
        report.table()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_nodes_no_anomalies() {
    run_clean(vec![Fault::Pause]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_skew_no_anomalies() {
    run_clean(vec![Fault::Clock]).await;
}

async fn connect_retrying(addresses: Vec<String>) -> Client {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match Client::connect_with(&addresses, ClientOptions::default()).await {
            Ok(client) => return client,
            Err(error) => assert!(Instant::now() < deadline, "connect: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The leader of partition 0 of `topic`, once it is one of `ids`.
async fn leader_among(client: &Client, topic: &str, ids: &[u64]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(description) = client.describe_topic(topic).await {
            if let Some(leader) = description.partitions[0]
                .leader_id
                .filter(|id| ids.contains(id))
            {
                return leader;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader of {topic} among {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The runs that cut links with iptables: they need root, so they form nextest's `needs-root`
/// group, which a plain `cargo nextest run` leaves out and `scripts/test.sh` (and CI) runs.
mod needs_root {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn isolated_node_no_anomalies() {
        run_clean(vec![Fault::Partition(PartitionShape::IsolateOne)]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn isolated_leader_no_anomalies() {
        run_clean(vec![Fault::Partition(PartitionShape::IsolateLeader)]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn minority_majority_split_no_anomalies() {
        run_clean(vec![Fault::Partition(PartitionShape::Halves)]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn majorities_ring_no_anomalies() {
        run_clean(vec![Fault::Partition(PartitionShape::Ring)]).await;
    }

    /// A leader cut off from the others calls itself leader of its term until its quorum lease
    /// runs out and CheckQuorum steps it down, while the others elect a new one and commit more.
    /// Its own high watermark is then behind: it must answer an offset the new leader wrote with
    /// the retryable OFFSET_NOT_AVAILABLE (as a leader whose lease has run out, or as a replica
    /// that may be behind), not OFFSET_OUT_OF_RANGE, and serve it once the partition heals.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_isolated_leader_answers_offset_not_available_for_what_the_new_leader_wrote() {
        Network::check_available().expect("partitions need root and iptables");
        let dir = tempfile::TempDir::new().expect("temp dir");
        let cluster =
            raftlog_jepsen::cluster::start(std::path::Path::new(RAFTLOG), dir.path(), 3, None)
                .expect("start");
        let mut network = Network::new(
            format!("raftlog-test-isolated-leader-{}", std::process::id()),
            cluster.ips(),
        );
        let client_at = |ids: &[u64]| {
            let addresses: Vec<String> = ids.iter().map(|id| cluster.addr(*id)).collect();
            connect_retrying(addresses)
        };

        let client = client_at(&[1, 2, 3]).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err(error) = client.create_topic("isolated", 1, 3).await {
            assert!(Instant::now() < deadline, "create: {error}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        produce_numbers(&client, "isolated", 0..10).await;
        // Asked after the writes: the preferred replica may take over right after the creation.
        let old_leader = leader_among(&client, "isolated", &[1, 2, 3]).await;

        let others: Vec<u64> = (1..=3).filter(|id| *id != old_leader).collect();
        for other in &others {
            network.cut(old_leader, *other).expect("cut");
        }
        let survivors = client_at(&others).await;
        leader_among(&survivors, "isolated", &others).await;
        produce_numbers(&survivors, "isolated", 10..20).await;

        let old_address = cluster.addr(old_leader);
        // For a while: its metrics are reported only when its Raft core does something, and the
        // lease must not depend on when that was.
        assert_not_available_for(
            &survivors,
            &old_address,
            "isolated",
            15,
            Duration::from_secs(3),
        )
        .await;
        // A write it is asked for is refused up front, with nothing written, rather than left to
        // time out with an unknown outcome.
        let only_old = Client::connect_with(
            std::slice::from_ref(&old_address),
            ClientOptions {
                request_timeout: Duration::from_secs(10),
                retry_deadline: Duration::from_millis(1),
            },
        )
        .await
        .expect("connect to the isolated leader");
        let error = only_old
            .produce("isolated", 0, vec![record(None, b"refused".to_vec())])
            .await
            .expect_err("the isolated leader cannot commit");
        // Refused up front, nothing written: NO_QUORUM while it still calls itself leader,
        // NO_LEADER once CheckQuorum has stepped it down.
        assert!(
            matches!(
                error.reason(),
                Some(ErrorReason::NoQuorum | ErrorReason::NoLeader)
            ),
            "{error}"
        );

        network.heal().expect("heal");
        let deadline = Instant::now() + Duration::from_secs(30);
        let response = loop {
            match survivors
                .fetch_from(&old_address, "isolated", 0, 15, 0, 5_000)
                .await
            {
                Ok(response) => break response,
                Err(error) if error.is_retryable() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("offset 15 from the old leader after healing: {error}"),
            }
        };
        assert_eq!(response.records[0].offset, 15, "{response:?}");
        assert_eq!(response.records[0].value.as_ref(), b"15");
    }
}
