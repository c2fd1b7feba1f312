//! Starts raftlog nodes and clusters for tests: every test crate of the workspace and the
//! fault-injection harness use this one kit instead of a copy each. A dev-dependency only.
//!
//! Two ways to run a node, with the same generated config and the same waits:
//! - [`InProcessCluster`]: `raftlog_server::run` in a tokio task per node, with a shutdown
//!   trigger; stopping a node awaits `run`, so a test can prove that shutdown is joined. Fast
//!   (no process start), for server and client behaviour.
//! - [`ProcessCluster`]: `raftlog node` processes, for what needs a process: SIGKILL, SIGSTOP,
//!   SIGTERM, libfaketime, iptables, the CLI binary itself.
//!
//! # Layout
//! - [`config`]: the cluster spec (nodes, Raft timers, loopback addressing), the TOML text every
//!   node reads, free ports on an address of the cluster's own.
//! - [`wait`]: waiting for the controller, a topic's leaders and their settling, with the
//!   generated `raftlog.v1` clients (nothing above the server).
//! - [`in_process`]: nodes as tasks of the test's runtime; start, stop (joined), restart.
//! - [`process`]: nodes as processes; kill, pause/resume, terminate, restart, logs on failure.

// A test kit fails the test that uses it by panicking, as the tests themselves do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod config;
pub mod in_process;
pub mod process;
pub mod wait;

pub use config::Addressing;
pub use config::ClusterSpec;
pub use config::RaftTimers;
pub use in_process::InProcessCluster;
pub use process::ProcessCluster;
pub use process::ProcessOptions;

/// Sends the logs of in-process nodes to the test's output (which the test runner shows when the
/// test fails), filtered by `RAFTLOG_LOG` (default `info,openraft=warn`). Called by every
/// in-process cluster; later calls do nothing.
pub fn init_logs() {
    let filter = std::env::var("RAFTLOG_LOG").unwrap_or_else(|_| "info,openraft=warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_test_writer()
        .try_init();
}

/// A temporary directory for a cluster, kept (and named on stderr) when `KEEP_TEST_DIRS` is set.
pub fn temp_dir() -> tempfile::TempDir {
    let mut dir = tempfile::TempDir::new().expect("temp dir");
    let keep = std::env::var_os("KEEP_TEST_DIRS").is_some();
    dir.disable_cleanup(keep);
    if keep {
        eprintln!("keeping test dir {}", dir.path().display());
    }
    dir
}
