//! Cluster control: real `raftlog node` processes with their own data dirs and logs, which the
//! nemesis kills, pauses, restarts and resumes from outside (the node has no test hooks).
//!
//! Each node listens on its own loopback address, `127.a.b.<id>` with `a.b` random per run, so
//! that [`crate::network`] can cut links between nodes and concurrent runs never share one.

use std::net::Ipv4Addr;
use std::net::TcpListener;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;

use crate::clock::Clocks;

/// One node process.
pub struct Node {
    /// Node id.
    pub id: u64,
    /// Client API address.
    pub client_addr: String,
    /// The loopback address the node listens on and connects to its peers from.
    pub ip: Ipv4Addr,
    child: Option<Child>,
    paused: bool,
}

/// A cluster under test.
pub struct Cluster {
    raftlog: PathBuf,
    dir: PathBuf,
    config: PathBuf,
    clocks: Option<Clocks>,
    /// The nodes; `nodes[i].id == i + 1`.
    pub nodes: Vec<Node>,
}

fn free_port(ip: Ipv4Addr) -> std::io::Result<u16> {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: sends a signal to a child process this harness started and still owns.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
}

impl Cluster {
    /// Writes a config for `count` nodes on free loopback ports under `dir` and starts them;
    /// with `clocks`, every node runs under libfaketime so its wall clock can be skewed.
    pub fn start(
        raftlog: &Path,
        dir: &Path,
        count: u64,
        clocks: Option<Clocks>,
    ) -> std::io::Result<Cluster> {
        let subnet: [u8; 2] = [rand::random_range(1..=254), rand::random()];
        let mut text = format!(
            "cluster_id = \"jepsen\"\ndata_dir = {:?}\n[raft]\nheartbeat_interval_ms = 100\nelection_timeout_min_ms = 500\nelection_timeout_max_ms = 1000\n[limits]\nrequest_timeout_ms = 3000\n",
            dir.join("data")
        );
        let mut nodes = Vec::new();
        for id in 1..=count {
            let ip = Ipv4Addr::new(127, subnet[0], subnet[1], id as u8);
            let client_addr = format!("{ip}:{}", free_port(ip)?);
            text.push_str(&format!(
                "[[nodes]]\nid = {id}\nclient_addr = \"{client_addr}\"\npeer_addr = \"{ip}:{}\"\n",
                free_port(ip)?
            ));
            nodes.push(Node {
                id,
                client_addr,
                ip,
                child: None,
                paused: false,
            });
        }
        let config = dir.join("cluster.toml");
        std::fs::write(&config, text)?;
        let mut cluster = Cluster {
            raftlog: raftlog.to_path_buf(),
            dir: dir.to_path_buf(),
            config,
            clocks,
            nodes,
        };
        for id in 1..=count {
            cluster.restart(id)?;
        }
        Ok(cluster)
    }

    fn node_mut(&mut self, id: u64) -> Option<&mut Node> {
        self.nodes.iter_mut().find(|n| n.id == id)
    }

    /// Starts node `id` if it is not running (its log is appended to).
    pub fn restart(&mut self, id: u64) -> std::io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node-{id}.log")))?;
        let (raftlog, config) = (self.raftlog.clone(), self.config.clone());
        let environment = match &self.clocks {
            Some(clocks) => clocks.environment(id).map_err(std::io::Error::other)?,
            None => Vec::new(),
        };
        let Some(node) = self.node_mut(id) else {
            return Ok(());
        };
        if node.child.is_some() {
            return Ok(());
        }
        let child = Command::new(raftlog)
            .args(["node", "--config"])
            .arg(config)
            .args(["--id", &id.to_string()])
            .envs(environment)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    /// SIGKILLs node `id`.
    pub fn kill(&mut self, id: u64) {
        if let Some(node) = self.node_mut(id) {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            node.paused = false;
        }
    }

    /// SIGSTOPs node `id`.
    pub fn pause(&mut self, id: u64) {
        if let Some(node) = self.node_mut(id) {
            if let Some(child) = &node.child {
                signal(child, libc::SIGSTOP);
                node.paused = true;
            }
        }
    }

    /// SIGCONTs node `id`.
    pub fn resume(&mut self, id: u64) {
        if let Some(node) = self.node_mut(id) {
            if let Some(child) = &node.child {
                signal(child, libc::SIGCONT);
            }
            node.paused = false;
        }
    }

    /// Ends every fault: resumes paused nodes and restarts killed ones.
    pub fn heal(&mut self) -> std::io::Result<()> {
        let ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        for id in ids {
            self.resume(id);
            self.restart(id)?;
        }
        Ok(())
    }

    /// If node `id` exited on its own (no nemesis killed it): its exit status and the last
    /// lines of its log, so that a run that cannot reach it says why.
    pub fn unexpected_exit(&mut self, id: u64) -> Option<String> {
        const LOG_TAIL_LINES: usize = 20;
        let log_path = self.dir.join(format!("node-{id}.log"));
        let node = self.node_mut(id)?;
        let status = node.child.as_mut()?.try_wait().ok()??;
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        Some(format!(
            "node {id} exited on its own ({status}); the end of {}:\n{tail}",
            log_path.display()
        ))
    }

    /// Each node's id and loopback address, for [`crate::network::Network`].
    pub fn ips(&self) -> Vec<(u64, Ipv4Addr)> {
        self.nodes.iter().map(|n| (n.id, n.ip)).collect()
    }

    /// Client addresses of every node.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.client_addr.clone()).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                signal(&child, libc::SIGCONT);
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
