//! `raftlog cluster`: start a local cluster as child processes, stop it, show its status.

use std::path::Path;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use raftlog_server::ClusterConfig;

/// The default cluster: three nodes on 127.0.0.1, data under ./data.
const DEFAULT_CONFIG: &str = include_str!("../../../cluster-config/local-3.toml");
const PIDS_FILE: &str = "cluster.pids";
/// How long `cluster up` waits for the controller to elect a leader.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Cluster commands.
#[derive(clap::Subcommand)]
pub enum ClusterCommand {
    /// Start every node of a config as a local process and wait until the cluster works.
    Up {
        /// Cluster config; default: a 3-node cluster on 127.0.0.1 (cluster-config/local-3.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Parent directory of the nodes' data dirs; overrides the config's data_dir.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Stop a cluster started by `cluster up` (in another terminal).
    Down {
        /// The data dir given to `cluster up` (or the config's); default ./data.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Show the nodes, whether they are reachable, and the controller leader.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: crate::Format,
    },
}

/// Runs a cluster command.
pub async fn run(command: ClusterCommand, bootstrap: &[String]) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Up { config, data_dir } => up(config, data_dir).await,
        ClusterCommand::Down { data_dir } => down(&data_dir).await,
        ClusterCommand::Status { format } => {
            let client = crate::connect(bootstrap).await?;
            let status = client.describe_cluster().await?;
            match format {
                crate::Format::Text => print_status(&status),
                crate::Format::Json => {
                    let nodes: Vec<_> = status
                        .nodes
                        .iter()
                        .map(|n| {
                            serde_json::json!({"id": n.id, "client_address": n.client_address, "peer_address": n.peer_address,
                                "controller_voter": n.controller_voter, "reachable": n.reachable})
                        })
                        .collect();
                    println!(
                        "{}",
                        serde_json::json!({"cluster_id": status.cluster_id, "controller_leader_id": status.controller_leader_id,
                            "answered_by": status.answered_by, "nodes": nodes})
                    );
                }
            }
            Ok(())
        }
    }
}

fn print_status(cluster: &raftlog_client::v1::DescribeClusterResponse) {
    println!(
        "cluster {} (answered by node {})",
        cluster.cluster_id, cluster.answered_by
    );
    println!(
        "{:>4} {:<22} {:<22} {:>10} {:>10}",
        "NODE", "CLIENT-ADDRESS", "PEER-ADDRESS", "REACHABLE", "CONTROLLER"
    );
    for node in &cluster.nodes {
        let role = match (
            cluster.controller_leader_id == Some(node.id),
            node.controller_voter,
        ) {
            (true, _) => "leader",
            (false, true) => "voter",
            (false, false) => "learner",
        };
        println!(
            "{:>4} {:<22} {:<22} {:>10} {:>10}",
            node.id,
            node.client_address,
            node.peer_address,
            if node.reachable { "yes" } else { "NO" },
            role
        );
    }
}

async fn up(config_path: Option<PathBuf>, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let (mut config, text) = match &config_path {
        Some(path) => (
            ClusterConfig::load(path)?,
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?,
        ),
        None => (
            ClusterConfig::parse(DEFAULT_CONFIG, Path::new("<built-in local-3.toml>"))?,
            DEFAULT_CONFIG.to_owned(),
        ),
    };
    if let Some(dir) = &data_dir {
        config.data_dir = dir.clone();
    }
    config.validate()?;
    let root = config.data_dir.clone();
    std::fs::create_dir_all(&root)
        .with_context(|| format!("create data dir {}", root.display()))?;
    let pids_path = root.join(PIDS_FILE);
    if let Ok(pids) = std::fs::read_to_string(&pids_path) {
        let alive: Vec<_> = pids
            .lines()
            .filter_map(|l| l.parse::<i32>().ok())
            .filter(|pid| process_alive(*pid))
            .collect();
        anyhow::ensure!(
            alive.is_empty(),
            "a cluster is already running from {} (pids {alive:?}); stop it with `raftlog cluster down --data-dir {}`",
            root.display(),
            root.display()
        );
    }
    // Every node reads the same file: the one given, or the built-in one written next to the data.
    let config_file = match config_path {
        Some(path) => {
            std::fs::canonicalize(&path).with_context(|| format!("resolve {}", path.display()))?
        }
        None => {
            let path = root.join("cluster.toml");
            std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
            path
        }
    };
    let exe = std::env::current_exe().context("locate the raftlog binary")?;
    let mut children = Vec::new();
    for node in &config.nodes {
        let log_path = root.join(format!("node-{}.log", node.id));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("create {}", log_path.display()))?;
        let log_err = log.try_clone().context("duplicate log handle")?;
        let child = tokio::process::Command::new(&exe)
            .args(["node", "--config"])
            .arg(&config_file)
            .args(["--id", &node.id.to_string()])
            .env("RAFTLOG_DATA_DIR", &root)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start node {}", node.id))?;
        children.push((node.id, log_path, child));
    }
    let pids: Vec<String> = children
        .iter()
        .filter_map(|(_, _, c)| c.id())
        .map(|p| p.to_string())
        .collect();
    std::fs::write(&pids_path, pids.join("\n"))
        .with_context(|| format!("write {}", pids_path.display()))?;

    let bootstrap: Vec<String> = config.nodes.iter().map(|n| n.client_addr.clone()).collect();
    let started = Instant::now();
    let status = loop {
        let exited = children
            .iter_mut()
            .find_map(|(id, log_path, child)| match child.try_wait() {
                Ok(Some(exit)) => Some((*id, log_path.clone(), exit)),
                _ => None,
            });
        if let Some((id, log_path, exit)) = exited {
            let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
            let last = tail.lines().last().unwrap_or("(empty log)").to_owned();
            stop_all(&mut children).await;
            let _ = std::fs::remove_file(&pids_path);
            anyhow::bail!("node {id} exited ({exit}) during start-up; last log line: {last}");
        }
        if let Ok(client) = raftlog_client::Client::connect_with(
            &bootstrap,
            raftlog_client::ClientOptions {
                request_timeout: Duration::from_secs(2),
                retry_deadline: Duration::from_millis(1),
            },
        )
        .await
        {
            if let Ok(status) = client.describe_cluster().await {
                if status.controller_leader_id.is_some() && status.nodes.iter().all(|n| n.reachable)
                {
                    break status;
                }
            }
        }
        if started.elapsed() > READY_TIMEOUT {
            stop_all(&mut children).await;
            let _ = std::fs::remove_file(&pids_path);
            anyhow::bail!(
                "the cluster did not elect a controller leader within {} s; see the logs in {}",
                READY_TIMEOUT.as_secs(),
                root.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    println!(
        "raftlog cluster is up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    print_status(&status);
    println!();
    println!("data and logs: {}", root.display());
    println!("try:  raftlog topic create demo --partitions 3 --replicas 3");
    println!("      echo hello | raftlog produce demo && raftlog consume demo");
    println!(
        "Ctrl-C (or `raftlog cluster down --data-dir {}`) stops the cluster.",
        root.display()
    );

    // A node that dies (or is killed, as in the tour) is reported; the others keep running.
    let stop = crate::stop_requested();
    tokio::pin!(stop);
    let mut reported = vec![false; children.len()];
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                for (i, (id, log_path, child)) in children.iter_mut().enumerate() {
                    if !reported[i] {
                        if let Ok(Some(status)) = child.try_wait() {
                            reported[i] = true;
                            eprintln!("node {id} exited ({status}); its log is {}", log_path.display());
                        }
                    }
                }
            }
        }
    }
    stop_all(&mut children).await;
    let _ = std::fs::remove_file(&pids_path);
    println!("cluster stopped");
    Ok(())
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn terminate(pid: i32) {
    // SAFETY: sends SIGTERM to a process this tool started.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

async fn stop_all(children: &mut [(u64, PathBuf, tokio::process::Child)]) {
    for (_, _, child) in children.iter() {
        if let Some(pid) = child.id() {
            terminate(pid as i32);
        }
    }
    for (id, _, child) in children.iter_mut() {
        if tokio::time::timeout(STOP_TIMEOUT, child.wait())
            .await
            .is_err()
        {
            eprintln!(
                "node {id} did not stop within {} s; killing it",
                STOP_TIMEOUT.as_secs()
            );
            let _ = child.kill().await;
        }
    }
}

async fn down(data_dir: &Path) -> anyhow::Result<()> {
    let pids_path = data_dir.join(PIDS_FILE);
    let pids = std::fs::read_to_string(&pids_path).with_context(|| {
        format!(
            "no cluster started from {} (cannot read {})",
            data_dir.display(),
            pids_path.display()
        )
    })?;
    let pids: Vec<i32> = pids.lines().filter_map(|l| l.trim().parse().ok()).collect();
    for pid in &pids {
        terminate(*pid);
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while pids.iter().any(|pid| process_alive(*pid)) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "nodes still running after {} s: {pids:?}",
            STOP_TIMEOUT.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("stopped {} nodes", pids.len());
    Ok(())
}
