//! The cluster config a test cluster runs with: node addresses on loopback, short Raft timers,
//! and the TOML text every node of the cluster reads (the same text whether the nodes run in
//! this process or as `raftlog node` processes).
//!
//! Addresses: tests run as concurrent processes, and a port probed free on a shared address and
//! released can be taken by another test before this test's node binds it (once a test's
//! client reached another test's one-node cluster that way). So each cluster picks a loopback
//! address of its own (all of 127.0.0.0/8 is loopback) and the cluster id names it, so that a
//! node of another test's cluster is told apart.

use std::net::Ipv4Addr;
use std::net::TcpListener;
use std::path::Path;
use std::path::PathBuf;

/// Request timeout configured on test clusters, in milliseconds.
pub const REQUEST_TIMEOUT_MS: u64 = 3000;

/// How often test nodes check retention: often, so that tests of it wait little.
pub const RETENTION_CHECK_INTERVAL_MS: u64 = 200;

/// The `[raft]` timers of a test cluster, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaftTimers {
    /// `raft.heartbeat_interval_ms`.
    pub heartbeat_ms: u64,
    /// `raft.election_timeout_min_ms`.
    pub election_min_ms: u64,
    /// `raft.election_timeout_max_ms`.
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

/// How the nodes of a cluster get their loopback addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// One random `127.x.y.z` for every node of the cluster (ports tell the nodes apart): the
    /// widest choice, so concurrent tests practically never share an address.
    SharedIp,
    /// `127.a.b.<id>` with `a.b` random per cluster: each node has an address of its own, from
    /// which it also opens its peer connections, so iptables rules can cut one link.
    IpPerNode,
}

/// What cluster to configure.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Number of nodes, with ids `1..=nodes`.
    pub nodes: u64,
    /// Raft timers.
    pub timers: RaftTimers,
    /// `limits.request_timeout_ms`.
    pub request_timeout_ms: u64,
    /// How nodes get their addresses.
    pub addressing: Addressing,
    /// The cluster id; `None`: `test-<address>`, naming the cluster's address.
    pub cluster_id: Option<String>,
    /// `raft.controller_snapshot_entries`; `None`: the node's default.
    pub controller_snapshot_entries: Option<u64>,
}

impl ClusterSpec {
    /// `nodes` nodes with short timers on an address of the cluster's own.
    pub fn new(nodes: u64) -> ClusterSpec {
        ClusterSpec {
            nodes,
            timers: RaftTimers::SHORT,
            request_timeout_ms: REQUEST_TIMEOUT_MS,
            addressing: Addressing::SharedIp,
            cluster_id: None,
            controller_snapshot_entries: None,
        }
    }

    /// The same with `timers`.
    pub fn timers(mut self, timers: RaftTimers) -> ClusterSpec {
        self.timers = timers;
        self
    }

    /// The same with `addressing`.
    pub fn addressing(mut self, addressing: Addressing) -> ClusterSpec {
        self.addressing = addressing;
        self
    }

    /// The same with the controller snapshotting every `entries` entries.
    pub fn controller_snapshot_entries(mut self, entries: u64) -> ClusterSpec {
        self.controller_snapshot_entries = Some(entries);
        self
    }

    /// The same with cluster id `id`.
    pub fn cluster_id(mut self, id: impl Into<String>) -> ClusterSpec {
        self.cluster_id = Some(id.into());
        self
    }
}

/// One node's entry of a generated config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAddr {
    /// Node id.
    pub id: u64,
    /// The loopback address the node listens on.
    pub ip: Ipv4Addr,
    /// Client API address, `ip:port`.
    pub client_addr: String,
    /// Peer (Raft transport) address, `ip:port`.
    pub peer_addr: String,
}

/// A generated cluster config.
#[derive(Clone, Debug)]
pub struct GeneratedConfig {
    /// Where the TOML text was written.
    pub path: PathBuf,
    /// The TOML text.
    pub text: String,
    /// The config's `cluster_id`.
    pub cluster_id: String,
    /// The nodes; `nodes[i].id == i + 1`.
    pub nodes: Vec<NodeAddr>,
}

/// A random loopback address, `127.x.y.z` with `x` and `z` never 0 or 255.
pub fn cluster_ip() -> Ipv4Addr {
    Ipv4Addr::new(
        127,
        rand::random_range(1..=254),
        rand::random(),
        rand::random_range(1..=254),
    )
}

/// Ports picked for one config, each still bound until the config is written.
///
/// A port that is bound and released at once can be handed out again by the kernel: with
/// `IpPerNode` addressing every node has its own IP, but with `SharedIp` six ports come from one
/// address, and one config in about a thousand named a port twice, so its nodes refused it
/// ("address ... is used twice"; CI failed on one). Keeping every listener open until the whole
/// config is written makes each port distinct; the nodes bind them only after we drop them.
struct PortReservations {
    held: Vec<TcpListener>,
}

impl PortReservations {
    fn new() -> Self {
        Self { held: Vec::new() }
    }

    /// A free port on `ip`, held until `self` is dropped.
    fn take(&mut self, ip: Ipv4Addr) -> std::io::Result<u16> {
        let listener = TcpListener::bind((ip, 0))?;
        let port = listener.local_addr()?.port();
        self.held.push(listener);
        Ok(port)
    }
}

/// Writes `dir/cluster.toml` for `spec`, with data under `dir/data`, on fresh ports.
pub fn write_config(dir: &Path, spec: &ClusterSpec) -> std::io::Result<GeneratedConfig> {
    let shared = cluster_ip();
    let ip_of = |id: u64| match spec.addressing {
        Addressing::SharedIp => shared,
        Addressing::IpPerNode => {
            let [_, a, b, _] = shared.octets();
            Ipv4Addr::new(127, a, b, id as u8)
        }
    };
    let cluster_id = spec
        .cluster_id
        .clone()
        .unwrap_or_else(|| format!("test-{shared}"));
    let RaftTimers {
        heartbeat_ms,
        election_min_ms,
        election_max_ms,
    } = spec.timers;
    let controller_snapshots = spec
        .controller_snapshot_entries
        .map(|entries| format!("controller_snapshot_entries = {entries}\n"))
        .unwrap_or_default();
    let mut text = format!(
        "cluster_id = \"{cluster_id}\"\ndata_dir = {:?}\n[raft]\nheartbeat_interval_ms = {heartbeat_ms}\nelection_timeout_min_ms = {election_min_ms}\nelection_timeout_max_ms = {election_max_ms}\n{controller_snapshots}[limits]\nrequest_timeout_ms = {}\n[storage]\nretention_check_interval_ms = {RETENTION_CHECK_INTERVAL_MS}\n",
        dir.join("data").display().to_string(),
        spec.request_timeout_ms,
    );
    let mut ports = PortReservations::new();
    let mut nodes = Vec::new();
    for id in 1..=spec.nodes {
        let ip = ip_of(id);
        let node = NodeAddr {
            id,
            ip,
            client_addr: format!("{ip}:{}", ports.take(ip)?),
            peer_addr: format!("{ip}:{}", ports.take(ip)?),
        };
        text.push_str(&format!(
            "[[nodes]]\nid = {id}\nclient_addr = \"{}\"\npeer_addr = \"{}\"\n",
            node.client_addr, node.peer_addr
        ));
        nodes.push(node);
    }
    let path = dir.join("cluster.toml");
    std::fs::write(&path, &text)?;
    drop(ports);
    Ok(GeneratedConfig {
        path,
        text,
        cluster_id,
        nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_generated_config_names_one_address_twice() {
        let dir = tempfile::TempDir::new().unwrap();
        for _ in 0..2_000 {
            let generated = write_config(dir.path(), &ClusterSpec::new(3)).unwrap();
            let config =
                raftlog_server::ClusterConfig::parse(&generated.text, &generated.path).unwrap();
            config.validate().unwrap();
        }
    }

    #[test]
    fn a_generated_config_parses_and_names_every_node() {
        let dir = tempfile::TempDir::new().unwrap();
        for addressing in [Addressing::SharedIp, Addressing::IpPerNode] {
            let spec = ClusterSpec::new(3).addressing(addressing);
            let generated = write_config(dir.path(), &spec).unwrap();
            let config =
                raftlog_server::ClusterConfig::parse(&generated.text, &generated.path).unwrap();
            config.validate().unwrap();
            assert_eq!(config.cluster_id, generated.cluster_id);
            assert_eq!(config.data_dir, dir.path().join("data"));
            let ids: Vec<u64> = config.nodes.iter().map(|n| n.id).collect();
            assert_eq!(ids, vec![1, 2, 3]);
            for (entry, node) in config.nodes.iter().zip(&generated.nodes) {
                assert_eq!(entry.client_addr, node.client_addr);
                assert_eq!(entry.peer_addr, node.peer_addr);
            }
            let ips: Vec<Ipv4Addr> = generated.nodes.iter().map(|n| n.ip).collect();
            match addressing {
                Addressing::SharedIp => assert!(ips.iter().all(|ip| *ip == ips[0])),
                Addressing::IpPerNode => {
                    assert_eq!(
                        ips.iter().map(|ip| ip.octets()[3]).collect::<Vec<_>>(),
                        ids.iter().map(|id| *id as u8).collect::<Vec<_>>()
                    );
                }
            }
        }
    }
}
