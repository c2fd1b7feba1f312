//! One short run per disk and one-way fault: real `raftlog node` processes, each data dir on a
//! fault file system, producers and consumers, final reads from every node and the full
//! anomaly checker. They need root (FUSE mounts, iptables), so they live in `needs_root`.
//!
//! The node binary is the workspace's `raftlog`, next to this test's directory in the target
//! dir (`cargo nextest run --workspace` builds it; alone: `cargo build -p raftlog-cli` first).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod needs_root {
    use std::path::PathBuf;
    use std::time::Duration;

    use raftlog_jepsen::run::Fault;
    use raftlog_jepsen::run::RunConfig;

    fn raftlog_binary() -> PathBuf {
        let exe = std::env::current_exe().expect("test path");
        // target/<profile>/deps/<this test> → target/<profile>/raftlog
        let binary = exe
            .parent()
            .and_then(|deps| deps.parent())
            .map(|profile| profile.join("raftlog"))
            .expect("target dir");
        assert!(
            binary.exists(),
            "{} not found: build it with `cargo build -p raftlog-cli`",
            binary.display()
        );
        binary
    }

    async fn run_clean(fault: Fault) {
        let seed = raftlog_jepsen::run::test_seed();
        let dir = tempfile::TempDir::new().expect("temp dir");
        let config = RunConfig {
            nodes: 3,
            time_limit: Duration::from_secs(10),
            faults: vec![fault],
            seed,
            partitions: 3,
            producers: 4,
            consumers: 2,
            retention_bytes: None,
        };
        let history = raftlog_jepsen::run::run(&config, &raftlog_binary(), dir.path())
            .await
            .expect("run");
        let nemesis = std::fs::read_to_string(dir.path().join("nemesis.log")).unwrap_or_default();
        let report = raftlog_jepsen::check(&history);
        eprintln!("{nemesis}{}", report.table());
        assert!(!nemesis.is_empty(), "no fault was injected");
        assert!(
            report.stats.values_acknowledged > 100,
            "too little was acknowledged to mean anything:\n{}",
            report.table()
        );
        if !report.valid {
            // The nodes' logs and data dirs are what explains a failure: keep them.
            let kept = dir.keep();
            panic!(
                "anomalies found under {fault:?} (seed {seed}; nodes' logs and data kept in {}):\n{nemesis}{}",
                kept.display(),
                report.table()
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn power_loss_of_one_node_no_anomalies() {
        run_clean(Fault::PowerLoss).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn power_loss_of_every_node_no_anomalies() {
        run_clean(Fault::PowerLossAll).await;
    }

    // A node refuses a replica whose damage it detects (out of service, listed by the
    // checker; its partition is read from the other replicas), or repairs what reads as an
    // unsynced tail from its leader.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn corrupted_minority_no_anomalies() {
        run_clean(Fault::Corrupt).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stalled_disk_no_anomalies() {
        run_clean(Fault::DiskStall).await;
    }

    // A node whose write or sync fails with ENOSPC stops (fail-stop, like etcd and Redpanda)
    // and the heal restarts it on what its disk holds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn full_disk_no_anomalies() {
        run_clean(Fault::DiskFull).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oneway_partition_no_anomalies() {
        run_clean(Fault::PartitionOneWay).await;
    }
}
