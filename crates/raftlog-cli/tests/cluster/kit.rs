//! The test kit: starts real `raftlog node` processes with a generated config, kills and
//! restarts them, and tears everything down when dropped.

use std::net::Ipv4Addr;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use raftlog_client::v1;
use raftlog_client::Client;
use raftlog_client::ClientOptions;
use raftlog_client::ErrorReason;
use tempfile::TempDir;

/// Path of the `raftlog` binary built for these tests.
pub const RAFTLOG: &str = env!("CARGO_BIN_EXE_raftlog");

/// Request timeout configured on test clusters.
pub const REQUEST_TIMEOUT_MS: u64 = 3000;

/// A loopback address of one test cluster's own (all of 127.0.0.0/8 is loopback). Tests run as
/// concurrent processes, and a port probed free on a shared address and released can be taken
/// by another test before this test's node binds it: once a test's client reached another
/// test's one-node cluster that way.
pub fn cluster_ip() -> Ipv4Addr {
    Ipv4Addr::new(
        127,
        rand::random_range(1..=254),
        rand::random(),
        rand::random_range(1..=254),
    )
}

/// The cluster id of the test cluster on `ip`.
pub fn cluster_id(ip: Ipv4Addr) -> String {
    format!("test-{ip}")
}

/// A free TCP port on `ip` (bound and released).
pub fn free_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// One node process.
pub struct NodeProcess {
    /// Node id.
    pub id: u64,
    /// Client API address.
    pub client_addr: String,
    child: Option<Child>,
}

/// A cluster of real node processes.
pub struct TestCluster {
    /// Holds config, data dirs and logs.
    pub dir: TempDir,
    config_path: PathBuf,
    /// The `cluster_id` of its configuration.
    pub cluster_id: String,
    /// The nodes, by position (`nodes[i].id == i + 1`).
    pub nodes: Vec<NodeProcess>,
}

/// Writes a cluster config for `count` nodes on fresh ports of a loopback address of the
/// cluster's own, with `timers`. The cluster id names that address, so a node of another
/// test's cluster is told apart.
pub fn write_config(
    dir: &std::path::Path,
    count: u64,
    timers: RaftTimers,
) -> (PathBuf, Vec<(u64, String)>) {
    let ip = cluster_ip();
    let RaftTimers {
        heartbeat_ms,
        election_min_ms,
        election_max_ms,
    } = timers;
    let mut text = format!(
        "cluster_id = \"{}\"\ndata_dir = \"{}\"\n[raft]\nheartbeat_interval_ms = {heartbeat_ms}\nelection_timeout_min_ms = {election_min_ms}\nelection_timeout_max_ms = {election_max_ms}\n[limits]\nrequest_timeout_ms = {REQUEST_TIMEOUT_MS}\n",
        cluster_id(ip),
        dir.join("data").display()
    );
    let mut nodes = Vec::new();
    for id in 1..=count {
        let client_addr = format!("{ip}:{}", free_port(ip));
        let peer_addr = format!("{ip}:{}", free_port(ip));
        text.push_str(&format!(
            "[[nodes]]\nid = {id}\nclient_addr = \"{client_addr}\"\npeer_addr = \"{peer_addr}\"\n"
        ));
        nodes.push((id, client_addr));
    }
    let path = dir.join("cluster.toml");
    std::fs::write(&path, text).expect("write config");
    (path, nodes)
}

/// The `[raft]` timers of a test cluster, in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct RaftTimers {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
}

impl RaftTimers {
    /// Short timers, so that failovers in tests are quick.
    pub const SHORT: RaftTimers = RaftTimers {
        heartbeat_ms: 100,
        election_min_ms: 500,
        election_max_ms: 1000,
    };
}

impl TestCluster {
    /// Starts `count` nodes with short timers and waits until the controller has a leader.
    pub async fn start(count: u64) -> TestCluster {
        TestCluster::start_with(count, RaftTimers::SHORT).await
    }

    /// Starts `count` nodes with `timers` and waits until the controller has a leader.
    pub async fn start_with(count: u64, timers: RaftTimers) -> TestCluster {
        TestCluster::start_in(TempDir::new().expect("temp dir"), count, timers).await
    }

    /// Starts `count` nodes whose data is on the disk file system the tests are built on, not in
    /// a `/tmp` that may be tmpfs (where file pages are memory): for tests of the page cache.
    pub async fn start_on_disk(count: u64, timers: RaftTimers) -> TestCluster {
        let dir = TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
        TestCluster::start_in(dir, count, timers).await
    }

    async fn start_in(mut dir: TempDir, count: u64, timers: RaftTimers) -> TestCluster {
        dir.disable_cleanup(std::env::var_os("KEEP_TEST_DIRS").is_some());
        eprintln!("test dir {}", dir.path().display());
        let (config_path, addrs) = write_config(dir.path(), count, timers);
        let ip = addrs
            .first()
            .and_then(|(_, addr)| addr.rsplit_once(':')?.0.parse().ok())
            .expect("a cluster has a node with an address");
        let nodes = addrs
            .into_iter()
            .map(|(id, client_addr)| NodeProcess {
                id,
                client_addr,
                child: None,
            })
            .collect();
        let mut cluster = TestCluster {
            dir,
            config_path,
            cluster_id: cluster_id(ip),
            nodes,
        };
        for id in 1..=count {
            cluster.restart(id);
        }
        cluster.wait_for_controller().await;
        cluster
    }

    /// The log file of node `id`.
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}.log"))
    }

    /// The data dir of node `id`.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join("data").join(format!("node-{id}"))
    }

    /// Starts node `id` (again), appending to its log.
    pub fn restart(&mut self, id: u64) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))
            .expect("open log");
        let child = Command::new(RAFTLOG)
            .args(["node", "--config"])
            .arg(&self.config_path)
            .args(["--id", &id.to_string()])
            .env("RAFTLOG_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn raftlog node");
        self.node_mut(id).child = Some(child);
    }

    /// Starts node `id` and returns its exit status if it exits within `wait`.
    pub fn start_expecting_exit(
        &mut self,
        id: u64,
        wait: Duration,
    ) -> Option<std::process::ExitStatus> {
        self.restart(id);
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Some(status) = self
                .node_mut(id)
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.node_mut(id).child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    fn node_mut(&mut self, id: u64) -> &mut NodeProcess {
        self.nodes.iter_mut().find(|n| n.id == id).expect("node id")
    }

    /// The client address of node `id`.
    pub fn addr(&self, id: u64) -> String {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .expect("node id")
            .client_addr
            .clone()
    }

    /// SIGKILLs node `id`.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.node_mut(id).child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERMs node `id` and waits up to `within` for it to exit: its exit status, or `None`
    /// if it was still running then (it is SIGKILLed).
    pub fn terminate(&mut self, id: u64, within: Duration) -> Option<std::process::ExitStatus> {
        self.signal(id, libc::SIGTERM);
        let mut child = self.node_mut(id).child.take().expect("node is running");
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
    /// process stalled in a long pause.
    pub fn pause(&self, id: u64) {
        self.signal(id, libc::SIGSTOP);
    }

    /// SIGCONTs node `id` after `pause`.
    pub fn resume(&self, id: u64) {
        self.signal(id, libc::SIGCONT);
    }

    fn signal(&self, id: u64, signal: libc::c_int) {
        let node = self.nodes.iter().find(|n| n.id == id).expect("node id");
        let pid = node.child.as_ref().expect("node is running").id();
        // SAFETY: kill(2) on a child this cluster started and has not reaped.
        let result = unsafe { libc::kill(pid as libc::pid_t, signal) };
        assert_eq!(result, 0, "signal {signal} to node {id}");
    }

    /// Client addresses of the nodes that are running.
    pub fn running_addrs(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.client_addr.clone())
            .collect()
    }

    /// A client bootstrapped from every running node.
    pub async fn client(&self) -> Client {
        self.client_with(ClientOptions::default()).await
    }

    /// A client with options.
    pub async fn client_with(&self, options: ClientOptions) -> Client {
        Client::connect_with(&self.running_addrs(), options)
            .await
            .expect("connect client")
    }

    async fn wait_for_controller(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(client) = Client::connect_with(
                &self.running_addrs(),
                ClientOptions {
                    request_timeout: Duration::from_secs(2),
                    retry_deadline: Duration::from_millis(1),
                },
            )
            .await
            {
                if let Ok(status) = client.describe_cluster().await {
                    assert_eq!(
                        status.cluster_id, self.cluster_id,
                        "a node of another cluster answered on this cluster's address"
                    );
                    if status.controller_leader_id.is_some() {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no controller leader within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until every partition of `topic` has a leader among the running nodes.
    pub async fn wait_for_leaders(&self, client: &Client, topic: &str) -> v1::TopicDescription {
        let running: Vec<u64> = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(description) = client.describe_topic(topic).await {
                if description
                    .partitions
                    .iter()
                    .all(|p| p.leader_id.is_some_and(|l| running.contains(&l)))
                {
                    return description;
                }
            }
            assert!(
                Instant::now() < deadline,
                "partitions of {topic} have no leaders within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until every partition of `topic` has a leader and no leader or term changed for a
    /// second. Each replica of a new partition starts on its node in turn, which a busy disk
    /// spreads over seconds, and the preferred replica stands for election as soon as it starts:
    /// leaders named before then may change.
    pub async fn wait_for_settled_leaders(
        &self,
        client: &Client,
        topic: &str,
    ) -> v1::TopicDescription {
        let leaders_and_terms = |description: &v1::TopicDescription| -> Vec<(Option<u64>, u64)> {
            description
                .partitions
                .iter()
                .map(|p| (p.leader_id, p.term))
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = self.wait_for_leaders(client, topic).await;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = self.wait_for_leaders(client, topic).await;
            if leaders_and_terms(&now) == leaders_and_terms(&last) {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "the leaders of {topic} did not settle within 30 s"
            );
            last = now;
        }
    }

    /// Creates `topic` with one partition on `replicas` nodes, writes `first` to it and returns
    /// the partition's leader once every replica serves that record and the leader settled (see
    /// `wait_for_settled_leaders`).
    pub async fn create_one_partition_topic(
        &self,
        client: &Client,
        topic: &str,
        replicas: u32,
        first: &[u8],
    ) -> u64 {
        client
            .create_topic(topic, 1, replicas)
            .await
            .expect("create topic");
        self.wait_for_leaders(client, topic).await;
        client
            .produce(topic, 0, vec![raftlog_client::record(None, first.to_vec())])
            .await
            .expect("first produce with all nodes up");
        let description = self.wait_for_leaders(client, topic).await;
        let replica_ids = description.partitions[0].replicas.clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        for id in &replica_ids {
            while !client
                .fetch_from(&self.addr(*id), topic, 0, 0, 0, 0)
                .await
                .is_ok_and(|response| !response.records.is_empty())
            {
                assert!(
                    Instant::now() < deadline,
                    "replica {id} of {topic} serves no first record within 30 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // The preferred replica has started and stood by now.
        let description = self.wait_for_settled_leaders(client, topic).await;
        description.partitions[0].leader_id.expect("leader")
    }

    /// Every committed record of a partition as node `id` serves it: (offset, value).
    pub async fn read_all_from(
        &self,
        client: &Client,
        id: u64,
        topic: &str,
        partition: u32,
    ) -> Vec<(u64, Vec<u8>)> {
        let address = self.addr(id);
        let mut offset = 0;
        let mut records = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // A node that was just restarted may not listen yet, or not run the partition yet.
            let response = match client
                .fetch_from(&address, topic, partition, offset, 0, 0)
                .await
            {
                Ok(response) => response,
                Err(error)
                    if Instant::now() < deadline
                        && (error.is_retryable()
                            || error.reason() == Some(ErrorReason::NotAReplica)) =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(error) => panic!("fetch from node {id}: {error}"),
            };
            for record in &response.records {
                assert_eq!(record.offset, offset, "node {id} skipped an offset");
                records.push((record.offset, record.value.to_vec()));
                offset += 1;
            }
            if offset >= response.high_watermark || response.records.is_empty() {
                return records;
            }
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Produces one record per value to partition 0 of `topic`, one request each, in order; the
/// value's decimal text is the record's value, so at offset n of a fresh partition is "n".
pub async fn produce_numbers(client: &Client, topic: &str, values: std::ops::Range<u64>) {
    for value in values {
        let produced = client
            .produce(
                topic,
                0,
                vec![raftlog_client::record(None, value.to_string().into_bytes())],
            )
            .await;
        if let Err(error) = produced {
            panic!("produce {value} to {topic}: {error}");
        }
    }
}

/// Asks `address` for `offset` of partition 0 of `topic` again and again for `period`: every
/// answer must be the retryable OFFSET_NOT_AVAILABLE of a replica that may be behind.
pub async fn assert_not_available_for(
    client: &Client,
    address: &str,
    topic: &str,
    offset: u64,
    period: Duration,
) {
    let until = Instant::now() + period;
    while Instant::now() < until {
        match client.fetch_from(address, topic, 0, offset, 0, 0).await {
            Err(error) if error.reason() == Some(ErrorReason::OffsetNotAvailable) => {}
            other => panic!("offset {offset} of {topic} from {address}: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
