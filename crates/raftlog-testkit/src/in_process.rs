//! Nodes in this process: each one is `raftlog_server::run(config, id, shutdown)` in a tokio task
//! of its own, on the test's runtime, with a trigger for its shutdown future.
//!
//! `run` returns only after every task it started has stopped, so [`InProcessCluster::stop`]
//! triggers the shutdown and awaits `run`: a node that does not stop within the timeout fails
//! the test, and a stopped node holds no file, port or task when [`InProcessCluster::start`]
//! starts it again over the same data dir. Dropping the cluster stops every node the same way
//! (or, outside a multi-threaded runtime or while panicking, aborts them) and removes the
//! temporary directory.

use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

use raftlog_proto::v1;
use raftlog_server::ClusterConfig;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::config::write_config;
use crate::config::ClusterSpec;
use crate::config::GeneratedConfig;
use crate::config::NodeAddr;
use crate::wait;

/// How long [`InProcessCluster::stop`] waits for `run` to return before it fails the test.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A node running in this process.
struct Running {
    shutdown: oneshot::Sender<()>,
    /// `run`'s task; its error as text (the error type is the server's own).
    task: JoinHandle<Result<(), String>>,
}

/// Why a node did not stop cleanly.
#[derive(Debug)]
pub enum StopFailure {
    /// `run` had not returned when the time was up.
    TimedOut(Duration),
    /// `run` returned an error.
    Failed(String),
    /// `run`'s task panicked or was aborted.
    Panicked(String),
}

impl std::fmt::Display for StopFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopFailure::TimedOut(after) => {
                write!(f, "run had not returned {after:?} after shutdown")
            }
            StopFailure::Failed(error) => write!(f, "run returned an error: {error}"),
            StopFailure::Panicked(error) => write!(f, "run's task failed: {error}"),
        }
    }
}

/// A cluster of nodes in this process.
pub struct InProcessCluster {
    dir: TempDir,
    generated: GeneratedConfig,
    config: ClusterConfig,
    running: Vec<Option<Running>>,
}

impl InProcessCluster {
    /// Starts `count` nodes with short timers and waits until the controller has a leader.
    pub async fn start_nodes(count: u64) -> InProcessCluster {
        InProcessCluster::start_spec(ClusterSpec::new(count)).await
    }

    /// Starts the nodes of `spec` and waits until the controller has a leader.
    pub async fn start_spec(spec: ClusterSpec) -> InProcessCluster {
        crate::init_logs();
        let dir = crate::temp_dir();
        let generated = write_config(dir.path(), &spec).expect("write config");
        let config = ClusterConfig::parse(&generated.text, &generated.path).expect("parse config");
        config.validate().expect("valid config");
        let mut cluster = InProcessCluster {
            dir,
            running: generated.nodes.iter().map(|_| None).collect(),
            generated,
            config,
        };
        for id in 1..=spec.nodes {
            cluster.start(id);
        }
        cluster.wait_for_controller().await;
        cluster
    }

    /// Starts node `id` (again, over its data dir); panics if it runs.
    pub fn start(&mut self, id: u64) {
        let slot = self.slot(id);
        assert!(self.running[slot].is_none(), "node {id} is running");
        let (shutdown, stopped) = oneshot::channel::<()>();
        let config = self.config.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                // A dropped trigger stops the node too.
                let _ = stopped.await;
            };
            raftlog_server::run(config, id, shutdown)
                .await
                .map_err(|error| error.to_string())
        });
        self.running[slot] = Some(Running { shutdown, task });
    }

    /// Triggers node `id`'s shutdown and waits until `run` has returned; panics if that takes
    /// over [`STOP_TIMEOUT`] or `run` failed. Returns how long it took.
    pub async fn stop(&mut self, id: u64) -> Duration {
        match self.stop_within(id, STOP_TIMEOUT).await {
            Ok(took) => took,
            Err(failure) => panic!("node {id} did not stop cleanly: {failure}"),
        }
    }

    /// Triggers node `id`'s shutdown and waits up to `within` for `run` to return: how long it
    /// took, or why it did not stop cleanly (a node still running then is aborted). Panics if
    /// node `id` is not running.
    pub async fn stop_within(
        &mut self,
        id: u64,
        within: Duration,
    ) -> Result<Duration, StopFailure> {
        let slot = self.slot(id);
        let Running { shutdown, mut task } = self.running[slot]
            .take()
            .unwrap_or_else(|| panic!("node {id} is not running"));
        let started = Instant::now();
        let _ = shutdown.send(());
        match tokio::time::timeout(within, &mut task).await {
            Ok(Ok(Ok(()))) => Ok(started.elapsed()),
            Ok(Ok(Err(error))) => Err(StopFailure::Failed(error)),
            Ok(Err(join)) => Err(StopFailure::Panicked(join.to_string())),
            Err(_) => {
                task.abort();
                Err(StopFailure::TimedOut(within))
            }
        }
    }

    /// Whether node `id` runs (was started and not stopped; `run` may have returned an error).
    pub fn is_running(&self, id: u64) -> bool {
        self.running[self.slot(id)].is_some()
    }

    /// If node `id`'s `run` has returned on its own (no stop asked for it): its result.
    pub async fn exited(&mut self, id: u64) -> Option<Result<(), String>> {
        let slot = self.slot(id);
        if !self.running[slot].as_ref()?.task.is_finished() {
            return None;
        }
        let running = self.running[slot].take()?;
        Some(
            running
                .task
                .await
                .unwrap_or_else(|join| Err(join.to_string())),
        )
    }

    fn slot(&self, id: u64) -> usize {
        self.generated
            .nodes
            .iter()
            .position(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// The nodes' addresses.
    pub fn nodes(&self) -> &[NodeAddr] {
        &self.generated.nodes
    }

    /// Ids of the nodes that run.
    pub fn running_ids(&self) -> Vec<u64> {
        self.generated
            .nodes
            .iter()
            .filter(|n| self.is_running(n.id))
            .map(|n| n.id)
            .collect()
    }

    /// The client address of node `id`.
    pub fn addr(&self, id: u64) -> String {
        self.generated.nodes[self.slot(id)].client_addr.clone()
    }

    /// Client addresses of every node.
    pub fn addrs(&self) -> Vec<String> {
        self.generated
            .nodes
            .iter()
            .map(|n| n.client_addr.clone())
            .collect()
    }

    /// Client addresses of the nodes that run.
    pub fn running_addrs(&self) -> Vec<String> {
        self.running_ids()
            .into_iter()
            .map(|id| self.addr(id))
            .collect()
    }

    /// A channel to node `id`'s client port, calls timing out after `timeout`.
    pub fn channel(&self, id: u64, timeout: Duration) -> Channel {
        wait::channel(&self.addr(id), timeout)
    }

    /// The config every node runs with.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The directory holding the config and the data dirs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The data dir of node `id`.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.config.node_data_dir(id)
    }

    /// Waits until the controller has a leader (see [`wait::for_controller`]).
    pub async fn wait_for_controller(&self) {
        wait::for_controller(&self.running_addrs(), &self.generated.cluster_id).await;
    }

    /// Waits until every partition of `topic` has a leader among the running nodes.
    pub async fn wait_for_leaders(&self, topic: &str) -> v1::TopicDescription {
        wait::for_leaders(&self.running_addrs(), &self.running_ids(), topic).await
    }

    /// Waits until `topic`'s leaders are elected and settled (see
    /// [`wait::for_settled_leaders`]).
    pub async fn wait_for_settled_leaders(&self, topic: &str) -> v1::TopicDescription {
        wait::for_settled_leaders(&self.running_addrs(), &self.running_ids(), topic).await
    }
}

impl Drop for InProcessCluster {
    fn drop(&mut self) {
        let running: Vec<Running> = self.running.iter_mut().filter_map(Option::take).collect();
        let tasks: Vec<JoinHandle<Result<(), String>>> = running
            .into_iter()
            .map(|Running { shutdown, task }| {
                let _ = shutdown.send(());
                task
            })
            .collect();
        let joinable = !std::thread::panicking()
            && tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if joinable {
            // Stopped before the data dirs go: nothing writes into a removed directory.
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    for task in tasks {
                        let abort = task.abort_handle();
                        if tokio::time::timeout(STOP_TIMEOUT, task).await.is_err() {
                            abort.abort();
                        }
                    }
                });
            });
        } else {
            tasks.iter().for_each(JoinHandle::abort);
        }
    }
}
