//! Node identity: which cluster and node a data dir belongs to, and the uuids of peers.
//!
//! On first start a node creates `node.json` (cluster id, node id, a fresh uuid). Later starts
//! refuse a data dir of another cluster or node id. A node whose data dir is new asks its peers
//! (`Identify`) what uuid they have on record for its id: if one knows a different uuid, the
//! id was in use with data that this disk no longer has, and rejoining with an empty log could
//! lose acknowledged records, so the node refuses to start.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

use parking_lot::Mutex;
use raftlog_proto::internal::IdentifyRequest;
use raftlog_proto::internal::IdentifyResponse;
use raftlog_proto::v1::ErrorReason;
use raftlog_raft::PeerPool;
use raftlog_types::NodeId;
use serde::Deserialize;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::Status;

use crate::config::ClusterConfig;
use crate::error::ServerError;

const IDENTITY_FILE: &str = "node.json";
const PEERS_FILE: &str = "peers.json";

/// How long a node with a new data dir waits to hear from a majority of its peers.
const FRESH_NODE_CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the node must not start on this data dir.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing an identity file failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An identity file is not valid JSON of the expected shape.
    #[error("identity file {} is invalid: {source}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The data dir belongs to another cluster or node.
    #[error("data dir {} belongs to cluster {found_cluster:?} node {found_node}, but this is cluster {cluster:?} node {node}; refusing to start", dir.display())]
    Mismatch {
        /// The data dir.
        dir: PathBuf,
        /// Cluster id recorded in it.
        found_cluster: String,
        /// Node id recorded in it.
        found_node: NodeId,
        /// Configured cluster id.
        cluster: String,
        /// Configured node id.
        node: NodeId,
    },
    /// The data dir has data but no identity file.
    #[error("data dir {} holds data but no {IDENTITY_FILE}; refusing to guess whose it is", dir.display())]
    Unidentified {
        /// The data dir.
        dir: PathBuf,
    },
    /// A peer knows this node id with another uuid: the disk was wiped or replaced.
    #[error("node {peer} knows node id {node} as {known_uuid}, but this data dir is new ({new_uuid}): rejoining with an empty disk could lose acknowledged records. Restore the node's data dir, or give it a new node id")]
    WipedDisk {
        /// This node's id.
        node: NodeId,
        /// The peer that remembered it.
        peer: NodeId,
        /// The uuid the peer knows.
        known_uuid: String,
        /// The uuid this new data dir would have had.
        new_uuid: String,
    },
    /// A new node could not reach enough peers to make sure its id is not in use.
    #[error("node {node} has a new data dir and could reach only {reached} of the {needed} peers needed to check that its id is unused, within {timeout_s} s")]
    PeersUnreachable {
        /// This node's id.
        node: NodeId,
        /// Peers that answered.
        reached: usize,
        /// Peers that must answer.
        needed: usize,
        /// How long it tried.
        timeout_s: u64,
    },
}

/// The contents of `node.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeIdentity {
    /// The cluster this data dir belongs to.
    pub cluster_id: String,
    /// The node this data dir belongs to.
    pub node_id: NodeId,
    /// Random id of this data dir, created with it.
    pub node_uuid: String,
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    let io = |op, source| IdentityError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    let temp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&temp).map_err(|e| io("create", e))?;
    file.write_all(bytes).map_err(|e| io("write", e))?;
    file.sync_all().map_err(|e| io("fsync", e))?;
    std::fs::rename(&temp, path).map_err(|e| io("rename", e))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("fsync directory of", e))?;
    }
    Ok(())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, IdentityError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| IdentityError::Invalid {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(IdentityError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// What was found in the data dir.
pub enum LoadedIdentity {
    /// The data dir was initialized before and matches the configuration.
    Existing(NodeIdentity),
    /// The data dir is new: this identity must pass `check_with_peers` before it is stored.
    Fresh(NodeIdentity),
}

/// Reads the identity of `dir`, or prepares a fresh one if the dir holds no data.
pub fn load_identity(
    dir: &Path,
    cluster_id: &str,
    node_id: NodeId,
) -> Result<LoadedIdentity, IdentityError> {
    let path = dir.join(IDENTITY_FILE);
    if let Some(found) = read_json::<NodeIdentity>(&path)? {
        if found.cluster_id != cluster_id || found.node_id != node_id {
            return Err(IdentityError::Mismatch {
                dir: dir.to_path_buf(),
                found_cluster: found.cluster_id,
                found_node: found.node_id,
                cluster: cluster_id.to_owned(),
                node: node_id,
            });
        }
        return Ok(LoadedIdentity::Existing(found));
    }
    if dir.join("groups").exists() || dir.join("state").exists() {
        return Err(IdentityError::Unidentified {
            dir: dir.to_path_buf(),
        });
    }
    Ok(LoadedIdentity::Fresh(NodeIdentity {
        cluster_id: cluster_id.to_owned(),
        node_id,
        node_uuid: uuid::Uuid::new_v4().to_string(),
    }))
}

/// Stores a (checked) identity in `dir`.
pub fn store_identity(dir: &Path, identity: &NodeIdentity) -> Result<(), IdentityError> {
    let bytes = serde_json::to_vec_pretty(identity).map_err(|source| IdentityError::Invalid {
        path: dir.join(IDENTITY_FILE),
        source,
    })?;
    write_atomically(&dir.join(IDENTITY_FILE), &bytes)
}

/// Asks the peers whether they know this node id under another uuid. Needs answers from a
/// majority of the other nodes (all of them if there are fewer than three).
pub async fn check_with_peers(
    config: &ClusterConfig,
    identity: &NodeIdentity,
    pool: &PeerPool,
) -> Result<(), IdentityError> {
    let peers: Vec<_> = config
        .nodes
        .iter()
        .filter(|n| n.id != identity.node_id)
        .collect();
    if peers.is_empty() {
        return Ok(());
    }
    let needed = if peers.len() < 3 {
        peers.len()
    } else {
        peers.len() / 2 + 1
    };
    let deadline = Instant::now() + FRESH_NODE_CHECK_TIMEOUT;
    let mut answered: BTreeMap<NodeId, IdentifyResponse> = BTreeMap::new();
    loop {
        for peer in &peers {
            if answered.contains_key(&peer.id) {
                continue;
            }
            let Ok(mut client) = pool.client(&peer.peer_addr) else {
                continue;
            };
            let mut request = tonic::Request::new(IdentifyRequest {
                cluster_id: identity.cluster_id.clone(),
                node_id: identity.node_id,
                node_uuid: identity.node_uuid.clone(),
            });
            request.set_timeout(Duration::from_secs(1));
            if let Ok(response) = client.identify(request).await {
                let response = response.into_inner();
                if !response.known_uuid_of_asker.is_empty()
                    && response.known_uuid_of_asker != identity.node_uuid
                {
                    return Err(IdentityError::WipedDisk {
                        node: identity.node_id,
                        peer: peer.id,
                        known_uuid: response.known_uuid_of_asker,
                        new_uuid: identity.node_uuid.clone(),
                    });
                }
                answered.insert(peer.id, response);
            }
        }
        if answered.len() >= needed {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(IdentityError::PeersUnreachable {
                node: identity.node_id,
                reached: answered.len(),
                needed,
                timeout_s: FRESH_NODE_CHECK_TIMEOUT.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The uuids this node has seen for each peer id, kept in `peers.json`.
pub struct PeerRegistry {
    path: PathBuf,
    cluster_id: String,
    node_id: NodeId,
    known: Mutex<BTreeMap<NodeId, String>>,
}

impl PeerRegistry {
    /// Loads the registry of the node whose data dir is `dir`.
    pub fn open(
        dir: &Path,
        cluster_id: &str,
        node_id: NodeId,
    ) -> Result<PeerRegistry, IdentityError> {
        let path = dir.join(PEERS_FILE);
        let known = read_json(&path)?.unwrap_or_default();
        Ok(PeerRegistry {
            path,
            cluster_id: cluster_id.to_owned(),
            node_id,
            known: Mutex::new(known),
        })
    }

    /// Answers a peer's `Identify`, recording its uuid the first time its id is seen.
    pub fn identify(&self, request: &IdentifyRequest) -> Result<IdentifyResponse, Status> {
        if request.cluster_id != self.cluster_id {
            return Err(ServerError::Precondition {
                reason: ErrorReason::ClusterMismatch,
                message: format!(
                    "node {} belongs to cluster {:?}, not {:?}",
                    self.node_id, self.cluster_id, request.cluster_id
                ),
            }
            .into());
        }
        let mut known = self.known.lock();
        let known_uuid = match known.get(&request.node_id) {
            Some(uuid) => uuid.clone(),
            None if request.node_uuid.is_empty() => String::new(),
            None => {
                known.insert(request.node_id, request.node_uuid.clone());
                let bytes =
                    serde_json::to_vec_pretty(&*known).map_err(|e| ServerError::internal(&e))?;
                write_atomically(&self.path, &bytes).map_err(|e| ServerError::internal(&e))?;
                tracing::info!(node = self.node_id, peer = request.node_id, uuid = %request.node_uuid, "recorded a new peer");
                String::new()
            }
        };
        Ok(IdentifyResponse {
            cluster_id: self.cluster_id.clone(),
            node_id: self.node_id,
            known_uuid_of_asker: known_uuid,
        })
    }
}

/// How often, and how far apart, a node tells a peer that does not answer its identity.
const IDENTITY_ANNOUNCE_ATTEMPTS: usize = 60;
const IDENTITY_ANNOUNCE_RETRY: Duration = Duration::from_secs(1);

/// Tells every peer this node's uuid, so that they can recognise a wiped disk later.
/// The announcements run on the node's `tasks` and end on `stop`.
pub(crate) fn announce(
    config: &ClusterConfig,
    identity: &NodeIdentity,
    pool: &PeerPool,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) {
    for peer in config.nodes.iter().filter(|n| n.id != identity.node_id) {
        let Ok(mut client) = pool.client(&peer.peer_addr) else {
            continue;
        };
        let request = IdentifyRequest {
            cluster_id: identity.cluster_id.clone(),
            node_id: identity.node_id,
            node_uuid: identity.node_uuid.clone(),
        };
        let peer_id = peer.id;
        let stop = stop.clone();
        tasks.spawn(async move {
            for _ in 0..IDENTITY_ANNOUNCE_ATTEMPTS {
                if client.identify(request.clone()).await.is_ok() {
                    return;
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(IDENTITY_ANNOUNCE_RETRY) => {}
                }
            }
            tracing::debug!(
                peer = peer_id,
                "peer never answered the identity announcement"
            );
        });
    }
}
