//! Nodes as `raftlog node` processes with the generated config, for what needs a process: a
//! SIGKILL mid-write, a SIGSTOP that freezes a node with its sockets open, SIGTERM, a node under
//! libfaketime, links cut with iptables. Each node logs to `node-<id>.log` in the cluster's
//! directory (appended across restarts); when a test fails, dropping the cluster prints the end
//! of every log.
//!
//! The binary is a parameter: tests of the CLI crate pass `env!("CARGO_BIN_EXE_raftlog")`, the
//! fault-injection harness the binary next to its own.

use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::ExitStatus;
use std::process::Stdio;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use raftlog_proto::v1;
use tempfile::TempDir;

use crate::config::write_config;
use crate::config::ClusterSpec;
use crate::config::GeneratedConfig;
use crate::config::NodeAddr;
use crate::wait;

/// Lines of each node's log printed when a test fails.
const LOG_TAIL_LINES: usize = 20;

/// Environment of node `id`'s process, asked at every (re)start.
pub type NodeEnv = Arc<dyn Fn(u64) -> std::io::Result<Vec<(String, String)>> + Send + Sync>;

/// How to run the node processes.
#[derive(Clone)]
pub struct ProcessOptions {
    /// The `raftlog` binary.
    pub binary: PathBuf,
    /// Environment of every node (default: `RAFTLOG_LOG=info,openraft=warn`).
    pub env: Vec<(String, String)>,
    /// More environment per node (e.g. libfaketime's).
    pub node_env: Option<NodeEnv>,
}

impl ProcessOptions {
    /// Runs `binary` with the default environment.
    pub fn new(binary: impl Into<PathBuf>) -> ProcessOptions {
        ProcessOptions {
            binary: binary.into(),
            env: vec![("RAFTLOG_LOG".into(), "info,openraft=warn".into())],
            node_env: None,
        }
    }
}

/// Where the cluster keeps its config, data and logs.
enum ClusterDir {
    /// A temporary directory, removed on drop (kept with `KEEP_TEST_DIRS` set).
    Temp(TempDir),
    /// A directory the caller owns (e.g. a fault-injection run's results).
    Given(PathBuf),
}

/// One node process.
struct NodeProcess {
    child: Option<Child>,
    paused: AtomicBool,
}

/// A cluster of `raftlog node` processes.
pub struct ProcessCluster {
    dir: ClusterDir,
    options: ProcessOptions,
    generated: GeneratedConfig,
    processes: Vec<NodeProcess>,
}

fn signal(child: &Child, signal: libc::c_int) -> bool {
    // SAFETY: kill(2) on a child this cluster started and has not reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) == 0 }
}

impl ProcessCluster {
    /// Starts the nodes of `spec` in a temporary directory and waits until the controller has
    /// a leader.
    pub async fn start(spec: ClusterSpec, options: ProcessOptions) -> ProcessCluster {
        ProcessCluster::start_in_temp(crate::temp_dir(), spec, options).await
    }

    /// Like [`ProcessCluster::start`], in `dir` (a temporary directory the cluster removes on
    /// drop), e.g. one on the disk file system rather than a `/tmp` that may be tmpfs.
    pub async fn start_in_temp(
        dir: TempDir,
        spec: ClusterSpec,
        options: ProcessOptions,
    ) -> ProcessCluster {
        let cluster = ProcessCluster::launch(ClusterDir::Temp(dir), &spec, options)
            .expect("start node processes");
        cluster.wait_for_controller().await;
        cluster
    }

    /// Writes the config for `spec` into `dir` (which the caller owns and keeps) and starts the
    /// nodes, without waiting for anything.
    pub fn launch_in(
        dir: &Path,
        spec: &ClusterSpec,
        options: ProcessOptions,
    ) -> std::io::Result<ProcessCluster> {
        std::fs::create_dir_all(dir)?;
        ProcessCluster::launch(ClusterDir::Given(dir.to_path_buf()), spec, options)
    }

    fn launch(
        dir: ClusterDir,
        spec: &ClusterSpec,
        options: ProcessOptions,
    ) -> std::io::Result<ProcessCluster> {
        let path = match &dir {
            ClusterDir::Temp(temp) => temp.path().to_path_buf(),
            ClusterDir::Given(path) => path.clone(),
        };
        eprintln!("test cluster dir {}", path.display());
        let generated = write_config(&path, spec)?;
        let mut cluster = ProcessCluster {
            dir,
            options,
            processes: generated
                .nodes
                .iter()
                .map(|_| NodeProcess {
                    child: None,
                    paused: AtomicBool::new(false),
                })
                .collect(),
            generated,
        };
        for id in 1..=spec.nodes {
            cluster.restart(id)?;
        }
        Ok(cluster)
    }

    fn slot(&self, id: u64) -> usize {
        self.generated
            .nodes
            .iter()
            .position(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    fn process_mut(&mut self, id: u64) -> &mut NodeProcess {
        let slot = self.slot(id);
        &mut self.processes[slot]
    }

    /// Starts node `id` if it is not running, appending to its log.
    pub fn restart(&mut self, id: u64) -> std::io::Result<()> {
        if self.process_mut(id).child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))?;
        let node_env = match &self.options.node_env {
            Some(node_env) => node_env(id)?,
            None => Vec::new(),
        };
        let child = Command::new(&self.options.binary)
            .args(["node", "--config"])
            .arg(&self.generated.path)
            .args(["--id", &id.to_string()])
            .envs(self.options.env.iter().cloned())
            .envs(node_env)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("spawn {}: {e}", self.options.binary.display()),
                )
            })?;
        let process = self.process_mut(id);
        process.child = Some(child);
        process.paused.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Starts node `id` and returns its exit status if it exits within `wait`.
    pub fn start_expecting_exit(&mut self, id: u64, wait: Duration) -> Option<ExitStatus> {
        self.restart(id).expect("start node");
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            let process = self.process_mut(id);
            if let Some(status) = process
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                process.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// SIGKILLs node `id` (running, paused or not) and reaps it.
    pub fn kill(&mut self, id: u64) {
        let process = self.process_mut(id);
        if let Some(mut child) = process.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        process.paused.store(false, Ordering::Relaxed);
    }

    /// SIGTERMs node `id` and waits up to `within` for it to exit: its exit status, or `None`
    /// if it was still running then (it is SIGKILLed).
    pub fn terminate(&mut self, id: u64, within: Duration) -> Option<ExitStatus> {
        let process = self.process_mut(id);
        let mut child = process.child.take().expect("node is running");
        process.paused.store(false, Ordering::Relaxed);
        signal(&child, libc::SIGTERM);
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// SIGSTOPs node `id`: it keeps its sockets and its memory but does nothing, like a
    /// process stalled in a long pause. Does nothing to a node that is not running.
    pub fn pause(&self, id: u64) {
        let process = &self.processes[self.slot(id)];
        if let Some(child) = &process.child {
            assert!(signal(child, libc::SIGSTOP), "SIGSTOP node {id}");
            process.paused.store(true, Ordering::Relaxed);
        }
    }

    /// SIGCONTs node `id` after [`ProcessCluster::pause`].
    pub fn resume(&self, id: u64) {
        let process = &self.processes[self.slot(id)];
        if let Some(child) = &process.child {
            assert!(signal(child, libc::SIGCONT), "SIGCONT node {id}");
        }
        process.paused.store(false, Ordering::Relaxed);
    }

    /// Ends every process fault: resumes paused nodes and restarts killed ones.
    pub fn heal(&mut self) -> std::io::Result<()> {
        for id in self.ids() {
            self.resume(id);
            self.restart(id)?;
        }
        Ok(())
    }

    /// If node `id` exited on its own (nobody killed it): its exit status and the last lines
    /// of its log, so that a test that cannot reach it says why.
    pub fn unexpected_exit(&mut self, id: u64) -> Option<String> {
        let log_path = self.log_path(id);
        let status = self.process_mut(id).child.as_mut()?.try_wait().ok()??;
        Some(format!(
            "node {id} exited on its own ({status}); the end of {}:\n{}",
            log_path.display(),
            log_tail(&log_path)
        ))
    }

    /// Whether node `id` has a process (running or paused).
    pub fn is_running(&self, id: u64) -> bool {
        self.processes[self.slot(id)].child.is_some()
    }

    /// Whether node `id` is paused.
    pub fn is_paused(&self, id: u64) -> bool {
        self.processes[self.slot(id)].paused.load(Ordering::Relaxed)
    }

    /// Every node id.
    pub fn ids(&self) -> Vec<u64> {
        self.generated.nodes.iter().map(|n| n.id).collect()
    }

    /// Ids of the nodes with a process (paused ones included).
    pub fn running_ids(&self) -> Vec<u64> {
        self.ids()
            .into_iter()
            .filter(|id| self.is_running(*id))
            .collect()
    }

    /// The nodes' addresses.
    pub fn nodes(&self) -> &[NodeAddr] {
        &self.generated.nodes
    }

    /// Each node's id and loopback address (for iptables rules).
    pub fn ips(&self) -> Vec<(u64, std::net::Ipv4Addr)> {
        self.generated.nodes.iter().map(|n| (n.id, n.ip)).collect()
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

    /// Client addresses of the nodes with a process (paused ones included).
    pub fn running_addrs(&self) -> Vec<String> {
        self.running_ids()
            .into_iter()
            .map(|id| self.addr(id))
            .collect()
    }

    /// The config's `cluster_id`.
    pub fn cluster_id(&self) -> &str {
        &self.generated.cluster_id
    }

    /// The config file every node reads.
    pub fn config_path(&self) -> &Path {
        &self.generated.path
    }

    /// The directory holding config, data dirs and logs.
    pub fn dir(&self) -> &Path {
        match &self.dir {
            ClusterDir::Temp(temp) => temp.path(),
            ClusterDir::Given(path) => path,
        }
    }

    /// The log file of node `id`.
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir().join(format!("node-{id}.log"))
    }

    /// The data dir of node `id`.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir().join("data").join(format!("node-{id}"))
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

/// The last [`LOG_TAIL_LINES`] lines of the log at `path`.
fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for process in &mut self.processes {
            if let Some(mut child) = process.child.take() {
                signal(&child, libc::SIGCONT);
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            for id in self.ids() {
                let path = self.log_path(id);
                eprintln!("--- the end of {}:\n{}", path.display(), log_tail(&path));
            }
        }
    }
}
