//! Cluster control for a run: real `raftlog node` processes (the shared test kit's
//! [`ProcessCluster`]) with their data dirs and logs in the run's results, which the nemesis
//! kills, pauses, restarts and resumes from outside (the node has no test hooks).
//!
//! Each node listens on its own loopback address, `127.a.b.<id>` with `a.b` random per run, so
//! that [`crate::network`] can cut links between nodes and concurrent runs never share one;
//! with clock faults every node runs under libfaketime.

use std::path::Path;
use std::sync::Arc;

use raftlog_testkit::Addressing;
use raftlog_testkit::ClusterSpec;
pub use raftlog_testkit::ProcessCluster;
use raftlog_testkit::ProcessOptions;

use crate::clock::Clocks;

/// Writes a config for `count` nodes on free loopback ports under `dir` and starts them,
/// without waiting for them; with `clocks`, every node runs under libfaketime so its wall
/// clock can be skewed.
pub fn start(
    raftlog: &Path,
    dir: &Path,
    count: u64,
    clocks: Option<Clocks>,
) -> std::io::Result<ProcessCluster> {
    let spec = ClusterSpec::new(count)
        .addressing(Addressing::IpPerNode)
        .cluster_id("jepsen");
    let options = ProcessOptions {
        binary: raftlog.to_path_buf(),
        // The nodes log at their default level: the logs are part of a run's results.
        env: Vec::new(),
        node_env: clocks.map(|clocks| {
            Arc::new(move |id| clocks.environment(id).map_err(std::io::Error::other))
                as raftlog_testkit::process::NodeEnv
        }),
    };
    ProcessCluster::launch_in(dir, &spec, options)
}
